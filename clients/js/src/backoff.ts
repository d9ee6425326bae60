// Exponential backoff with full jitter (DESIGN.md, "Reconnection"), the same
// schedule as the Rust client's (crates/protocol/src/backoff.rs): retry `n`
// (0-based) waits random(0, min(maxDelay, minDelay * 2^n)). Pure: the
// randomness is passed in, so the schedule is tested exactly.

export class Backoff {
  constructor(
    readonly minDelay: number,
    readonly maxDelay: number,
  ) {}

  /** The upper bound of the delay before retry `attempt` (0-based). */
  ceiling(attempt: number): number {
    const exp = Math.min(attempt, 52);
    return Math.min(this.maxDelay, this.minDelay * 2 ** exp);
  }

  /**
   * The delay (ms) before retry `attempt`, given `unit` uniform in [0, 1).
   * Without a floor: full jitter, random(0, ceiling). With a floor (a
   * server's Retry-After or `retry_after_ms` hint, cut to `maxDelay`): the
   * floor plus full jitter, cut to `maxDelay` — never earlier than the server
   * asked, and clients that got the same hint do not all return at once.
   */
  delay(attempt: number, unit: number, floor?: number): number {
    const u = Number.isNaN(unit) ? 0 : Math.min(1, Math.max(0, unit));
    const jittered = Math.floor(this.ceiling(attempt) * u);
    if (floor === undefined || !(floor >= 0)) return jittered;
    const f = Math.min(floor, this.maxDelay);
    return Math.min(this.maxDelay, f + jittered);
  }
}

const HINT_KEY = 'retry_after_ms=';

/**
 * The delay a close reason advises (` retry_after_ms=N` at its end, as the
 * server writes it for 1012 and 1013), in ms; `undefined` when absent. More
 * digits than fit is "a very long delay" (the backoff cuts it to maxDelay).
 */
export function parseRetryHint(reason: string): number | undefined {
  const at = reason.lastIndexOf(HINT_KEY);
  if (at < 0) return undefined;
  const m = /^[0-9]+/.exec(reason.slice(at + HINT_KEY.length));
  if (!m) return undefined;
  const n = Number(m[0]);
  return Number.isFinite(n) ? n : Number.MAX_SAFE_INTEGER;
}

/**
 * An HTTP `Retry-After` value in ms: delta-seconds, or an HTTP date
 * (relative to `now`). `undefined` when absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, now: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  const v = value.trim();
  if (/^[0-9]+$/.test(v)) {
    const s = Number(v);
    return Number.isFinite(s) ? s * 1000 : Number.MAX_SAFE_INTEGER;
  }
  const date = Date.parse(v);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}
