import { type Env } from './env.js';
import type { TransportName } from './state.js';
import type { Clock, FetchLike, WebSocketCtor } from './transport/transport.js';
/** The default `firstProbeDelay` (ms): the first probe after an outage's fallback. */
export declare const FIRST_PROBE_DELAY: readonly [number, number];
export type TokenSource = string | (() => string | Promise<string>);
/** A JSON object, or a function returning one (or a promise of one). */
export type ConnectDataSource = Record<string, unknown> | (() => Record<string, unknown> | Promise<Record<string, unknown>>);
export interface TetherOptions {
    /**
     * A token (JWT), or a function called before every attempt (and so after
     * 4002). It must answer within `handshakeTimeout`, or the attempt fails.
     */
    token?: TokenSource;
    /**
     * Connect data for the backend's connect hook (docs/hooks.md): a JSON
     * object, or a function returning one (or a promise), called before every
     * attempt and probe like a token function (both must answer within
     * `handshakeTimeout`). Sent as `data=<URL-encoded JSON>` on the WebSocket
     * URL and on `/lp/open`; at most 4 KiB so encoded (`MAX_CONNECT_DATA_BYTES`).
     */
    data?: ConnectDataSource;
    /** Backoff: the first retry waits at most this (ms). Default 500. */
    minDelay?: number;
    /** Backoff: no retry waits longer (ms). Default 30000. */
    maxDelay?: number;
    /**
     * Retries in a row before giving up: state `disconnected` with the last
     * failure's code (1006 for a lost connection, a close code, or a refused
     * long-poll request's HTTP status) and a reason starting "gave up after N
     * attempts". Default Infinity.
     */
    maxAttempts?: number;
    /** WebSocket open (or /lp/open) plus the `welcome` must take no longer (ms). Default 10000. */
    handshakeTimeout?: number;
    /** Publishes awaiting their ack; when full, `publish()` rejects at once. Default 1024. */
    publishQueue?: number;
    /** Match the server's `--idempotency-window` (ms). Default 300000. */
    idempotencyWindow?: number;
    /**
     * The transports allowed. Their order is ignored: WebSocket is tried first
     * when allowed, long polling is the fallback. Default ['websocket', 'longpoll'].
     */
    transports?: TransportName[];
    /** WebSocket failures in a row before falling back to long polling. Default 2. */
    fallbackAfter?: number;
    /** While on long polling, how often to try WebSocket again (ms). Default 60000. */
    probeInterval?: number;
    /**
     * A fallback after WebSocket had worked (welcomed) earlier in this client's
     * life looks like an outage rather than a block: the first probe back then
     * waits a random time in [min, max] ms instead of `probeInterval`.
     * Default `FIRST_PROBE_DELAY`, [1000, 3000].
     */
    firstProbeDelay?: readonly [number, number];
    /** Every long-poll request is aborted after this (a poll: poll_timeout_ms + this). Default 10000. */
    requestTimeout?: number;
    /** Log state changes (and more) with `console.debug`. */
    debug?: boolean;
    /** Injectables (tests, Node): default the globals. */
    WebSocket?: WebSocketCtor | null;
    fetch?: FetchLike;
    random?: () => number;
    now?: () => number;
    setTimeout?: (fn: () => void, ms: number) => unknown;
    clearTimeout?: (handle: unknown) => void;
    env?: Env;
}
export interface Resolved {
    token: TokenSource | undefined;
    data: ConnectDataSource | undefined;
    minDelay: number;
    maxDelay: number;
    maxAttempts: number;
    handshakeTimeout: number;
    publishQueue: number;
    idempotencyWindow: number;
    transports: TransportName[];
    fallbackAfter: number;
    probeInterval: number;
    firstProbeDelay: readonly [number, number];
    requestTimeout: number;
    debug: boolean;
    WebSocket: WebSocketCtor | null;
    fetch: FetchLike | null;
    random: () => number;
    clock: Clock;
    env: Env;
}
export declare function resolve(o: TetherOptions): Resolved;
/** Where the client connects, derived from its URL by {@link endpoints}. */
export interface Endpoints {
    /** The WebSocket URL, with the URL's query string. */
    ws: string;
    /** The long-polling base, `http(s)://host/prefix/lp` (no query). */
    lp: string;
    /**
     * The URL's query parameters as written (`token=X&a=b`, any `client` left
     * out: the transport sets it), added to every long-polling request.
     */
    lpQuery: string;
}
/**
 * The WebSocket URL and the long-polling base from one URL:
 * `ws(s)://host/prefix/ws` or `http(s)://host/prefix` (`/ws` and `/lp` are
 * appended to the prefix; a trailing `/ws` is the WebSocket route itself).
 * The query string (`?token=X`) goes to both transports. Relative URLs are
 * resolved against `location` in browsers.
 */
export declare function endpoints(url: string): Endpoints;
/** Adds `token=` to a WebSocket URL (browsers cannot set the header). */
export declare function withToken(url: string, token: string | undefined): string;
/** Adds `data=` (already URL-encoded connect data) to a URL. */
export declare function withData(url: string, data: string | undefined): string;
