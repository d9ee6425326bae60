export type Reconnect = 'never' | 'backoff' | 'after_token_refresh';
/** The close codes the server sends (plus 1006), with the reaction to each. */
export declare const CLOSE_CODES: Readonly<Record<number, {
    name: string;
    reconnect: Reconnect;
}>>;
/** What to do after a close with `code`; codes not in the table: backoff. */
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
