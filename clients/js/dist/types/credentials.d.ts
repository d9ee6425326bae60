import type { Resolved } from './options.js';
import { TetherError } from './state.js';
/**
 * The longest connect data the server accepts: the `data=` query value,
 * URL-encoded (`encodeURIComponent`), in bytes (the protocol crate's
 * `MAX_CONNECT_DATA_BYTES`).
 */
export declare const MAX_CONNECT_DATA_BYTES = 4096;
export interface Credentials {
    token: string | undefined;
    /** The connect data, URL-encoded, for the `data=` query parameter. */
    data: string | undefined;
}
/**
 * `data` as the `data=` query value: a JSON object, URL-encoded, at most
 * `MAX_CONNECT_DATA_BYTES`; throws a `connect_data` TetherError otherwise.
 */
export declare function encodeConnectData(data: unknown): string;
/** A one-shot timer the caller owns (so `disconnect()` clears it with the others). */
export interface Deadline {
    set(ms: number, fn: () => void): void;
    clear(): void;
}
/**
 * Gets the token and the connect data for an attempt: the options' values at
 * once (synchronously) when neither is a function, else the functions'
 * answers within `handshakeTimeout` — a function that never settles must not
 * leave the client waiting forever. A failure, bad data or a missed deadline
 * is `report`ed (a `token` or `connect_data` error) and given to `fail`; an
 * answer after the deadline, or after `current()` turned false (the caller
 * moved on: disconnect(), offline, a newer attempt), is ignored.
 */
export declare function requestCredentials(o: Resolved, deadline: Deadline, current: () => boolean, ok: (c: Credentials) => void, fail: (reason: string) => void, report: (err: TetherError) => void): void;
