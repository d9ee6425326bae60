export type Reconnect = 'never' | 'backoff' | 'after_token_refresh';
/** The close codes the server sends (plus 1006), with the reaction to each. */
export declare const CLOSE_CODES: Readonly<Record<number, {
    name: string;
    reconnect: Reconnect;
}>>;
/**
 * Application refusals (a backend's connect hook): an unnamed code in
 * 4000-4499 is retried with backoff, one in 4500-4999 is final (as 4001 and
 * 1008 are). Tether's own codes above keep their meaning.
 */
export declare const CLOSE_CODE_RANGES: ReadonlyArray<{
    readonly from: number;
    readonly to: number;
    readonly name: string;
    readonly reconnect: Reconnect;
}>;
/** What to do after a close with `code`: its row, else its range's rule, else backoff. */
export declare function reconnectFor(code: number): Reconnect;
/**
 * HTTP statuses that retrying cannot fix (the request, the credentials or
 * the origin is wrong), as in the Rust client; others are retried.
 */
export declare const PERMANENT_STATUSES: readonly number[];
/** How a connection, or an attempt at one, ended. */
export type Ended = 
/** The server closed it with a code (a WebSocket close frame, or a long-poll `close` message). */
{
    kind: 'closed';
    code: number;
    reason: string;
}
/** It died without a close code (1006): network error, timeout, silence. */
 | {
    kind: 'lost';
    reason: string;
}
/** An HTTP request was refused with `status` (long polling). */
 | {
    kind: 'refused';
    status: number;
    reason: string;
    retryAfter?: number;
};
/** The code reported for an ending, and whether and how to reconnect. */
export declare function classify(ended: Ended): {
    code: number;
    reason: string;
    reconnect: Reconnect;
    hint?: number;
};
