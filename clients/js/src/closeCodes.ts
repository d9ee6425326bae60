// The close-code table (docs/protocol.md, crates/protocol/vectors/close_codes.json)
// and what the client does after each way a connection can end.

import { parseRetryHint as parseHint } from './backoff.js';

export type Reconnect = 'never' | 'backoff' | 'after_token_refresh';

/** The close codes the server sends (plus 1006), with the reaction to each. */
export const CLOSE_CODES: Readonly<Record<number, { name: string; reconnect: Reconnect }>> = {
  1000: { name: 'normal', reconnect: 'never' },
  1001: { name: 'going_away', reconnect: 'backoff' },
  1006: { name: 'abnormal', reconnect: 'backoff' },
  1008: { name: 'policy_violation', reconnect: 'never' },
  1009: { name: 'message_too_big', reconnect: 'backoff' },
  1011: { name: 'internal_error', reconnect: 'backoff' },
  1012: { name: 'service_restart', reconnect: 'backoff' },
  1013: { name: 'try_again_later', reconnect: 'backoff' },
  4001: { name: 'unauthorized', reconnect: 'never' },
  4002: { name: 'token_expired', reconnect: 'after_token_refresh' },
  4003: { name: 'heartbeat_timeout', reconnect: 'backoff' },
  4004: { name: 'slow_consumer', reconnect: 'backoff' },
  4005: { name: 'rate_limited', reconnect: 'backoff' },
};

/**
 * Application refusals (a backend's connect hook): an unnamed code in
 * 4000-4499 is retried with backoff, one in 4500-4999 is final (as 4001 and
 * 1008 are). Tether's own codes above keep their meaning.
 */
export const CLOSE_CODE_RANGES: ReadonlyArray<{ readonly from: number; readonly to: number; readonly name: string; readonly reconnect: Reconnect }> = [
  { from: 4000, to: 4499, name: 'app_refusal', reconnect: 'backoff' },
  { from: 4500, to: 4999, name: 'app_refusal_final', reconnect: 'never' },
];

/** What to do after a close with `code`: its row, else its range's rule, else backoff. */
export function reconnectFor(code: number): Reconnect {
  return CLOSE_CODES[code]?.reconnect ?? CLOSE_CODE_RANGES.find((r) => code >= r.from && code <= r.to)?.reconnect ?? 'backoff';
}

/**
 * HTTP statuses that retrying cannot fix (the request, the credentials or
 * the origin is wrong), as in the Rust client; others are retried.
 */
export const PERMANENT_STATUSES: readonly number[] = [400, 401, 403, 404];

/** How a connection, or an attempt at one, ended. */
export type Ended =
  /** The server closed it with a code (a WebSocket close frame, or a long-poll `close` message). */
  | { kind: 'closed'; code: number; reason: string }
  /** It died without a close code (1006): network error, timeout, silence. */
  | { kind: 'lost'; reason: string }
  /** An HTTP request was refused with `status` (long polling). */
  | { kind: 'refused'; status: number; reason: string; retryAfter?: number };

/** The code reported for an ending, and whether and how to reconnect. */
export function classify(ended: Ended): { code: number; reason: string; reconnect: Reconnect; hint?: number } {
  switch (ended.kind) {
    case 'closed': {
      const hint = parseHint(ended.reason);
      return {
        code: ended.code,
        reason: `closed with ${ended.code}: ${ended.reason}`,
        reconnect: reconnectFor(ended.code),
        ...(hint === undefined ? {} : { hint }),
      };
    }
    case 'lost':
      return { code: 1006, reason: `connection lost: ${ended.reason}`, reconnect: 'backoff' };
    case 'refused':
      return {
        code: ended.status,
        reason: `refused with HTTP ${ended.status}: ${ended.reason}`,
        reconnect: PERMANENT_STATUSES.includes(ended.status) ? 'never' : 'backoff',
        ...(ended.retryAfter === undefined ? {} : { hint: ended.retryAfter }),
      };
  }
}
