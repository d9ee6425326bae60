export declare class Backoff {
    readonly minDelay: number;
    readonly maxDelay: number;
    constructor(minDelay: number, maxDelay: number);
    /** The upper bound of the delay before retry `attempt` (0-based). */
    ceiling(attempt: number): number;
    /**
     * The delay (ms) before retry `attempt`, given `unit` uniform in [0, 1).
     * Without a floor: full jitter, random(0, ceiling). With a floor (a
     * server's Retry-After or `retry_after_ms` hint, cut to `maxDelay`): the
     * floor plus full jitter, cut to `maxDelay` — never earlier than the server
     * asked, and clients that got the same hint do not all return at once.
     */
    delay(attempt: number, unit: number, floor?: number): number;
}
/**
 * The delay a close reason advises (` retry_after_ms=N` at its end, as the
 * server writes it for 1012 and 1013), in ms; `undefined` when absent. More
 * digits than fit is "a very long delay" (the backoff cuts it to maxDelay).
 */
export declare function parseRetryHint(reason: string): number | undefined;
/**
 * An HTTP `Retry-After` value in ms: delta-seconds, or an HTTP date
 * (relative to `now`). `undefined` when absent or unreadable.
 */
export declare function parseRetryAfter(value: string | null | undefined, now: number): number | undefined;
