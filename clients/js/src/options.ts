// Client options, their defaults, and the endpoints derived from the URL.

import { defaultEnv, type Env } from './env.js';
import type { TransportName } from './state.js';
import type { Clock, FetchLike, WebSocketCtor } from './transport/transport.js';

/** The default `firstProbeDelay` (ms): the first probe after an outage's fallback. */
export const FIRST_PROBE_DELAY: readonly [number, number] = [1_000, 3_000];

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

export function resolve(o: TetherOptions): Resolved {
  const g = globalThis as { WebSocket?: WebSocketCtor; fetch?: FetchLike };
  const st = o.setTimeout ?? ((fn: () => void, ms: number) => globalThis.setTimeout(fn, ms));
  const ct = o.clearTimeout ?? ((h: unknown) => globalThis.clearTimeout(h as ReturnType<typeof setTimeout>));
  const fetchImpl = o.fetch ?? (typeof g.fetch === 'function' ? (g.fetch.bind(globalThis) as FetchLike) : null);
  return {
    token: o.token,
    data: o.data,
    minDelay: o.minDelay ?? 500,
    maxDelay: o.maxDelay ?? 30_000,
    maxAttempts: o.maxAttempts ?? Infinity,
    handshakeTimeout: o.handshakeTimeout ?? 10_000,
    publishQueue: o.publishQueue ?? 1024,
    idempotencyWindow: o.idempotencyWindow ?? 300_000,
    transports: o.transports && o.transports.length > 0 ? [...o.transports] : ['websocket', 'longpoll'],
    fallbackAfter: Math.max(1, o.fallbackAfter ?? 2),
    probeInterval: o.probeInterval ?? 60_000,
    firstProbeDelay: o.firstProbeDelay ?? FIRST_PROBE_DELAY,
    requestTimeout: o.requestTimeout ?? 10_000,
    debug: o.debug ?? false,
    WebSocket: o.WebSocket === undefined ? (typeof g.WebSocket === 'function' ? g.WebSocket : null) : o.WebSocket,
    fetch: fetchImpl,
    random: o.random ?? Math.random,
    clock: { setTimeout: st, clearTimeout: ct, now: o.now ?? Date.now },
    env: o.env ?? defaultEnv(),
  };
}

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
export function endpoints(url: string): Endpoints {
  const loc = (globalThis as { location?: { href?: string } }).location?.href;
  const u = loc ? new URL(url, loc) : new URL(url);
  const secure = u.protocol === 'wss:' || u.protocol === 'https:';
  if (!['ws:', 'wss:', 'http:', 'https:'].includes(u.protocol)) {
    throw new TypeError(`unsupported URL scheme ${u.protocol} (use ws, wss, http or https)`);
  }
  let prefix = u.pathname.replace(/\/+$/, '');
  if (prefix.endsWith('/ws')) prefix = prefix.slice(0, -3);
  const query = u.search;
  const lpQuery = query
    .slice(1)
    .split('&')
    .filter((p) => p !== '' && p.split('=')[0] !== 'client')
    .join('&');
  return {
    ws: `${secure ? 'wss' : 'ws'}://${u.host}${prefix}/ws${query}`,
    lp: `${secure ? 'https' : 'http'}://${u.host}${prefix}/lp`,
    lpQuery,
  };
}

/** Adds `token=` to a WebSocket URL (browsers cannot set the header). */
export function withToken(url: string, token: string | undefined): string {
  if (!token) return url;
  return `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

/** Adds `data=` (already URL-encoded connect data) to a URL. */
export function withData(url: string, data: string | undefined): string {
  if (data === undefined) return url;
  return `${url}${url.includes('?') ? '&' : '?'}data=${data}`;
}
