// What every attempt (and every WebSocket probe) carries besides itself: the
// token, and the connect data for the backend's connect hook (docs/hooks.md).
// Each is an option value or a function asked before every attempt; both
// functions together must answer within `handshakeTimeout`.

import type { ConnectDataSource, Resolved, TokenSource } from './options.js';
import { TetherError, asError } from './state.js';

/**
 * The longest connect data the server accepts: the `data=` query value,
 * URL-encoded (`encodeURIComponent`), in bytes (the protocol crate's
 * `MAX_CONNECT_DATA_BYTES`).
 */
export const MAX_CONNECT_DATA_BYTES = 4096;

export interface Credentials {
  token: string | undefined;
  /** The connect data, URL-encoded, for the `data=` query parameter. */
  data: string | undefined;
}

/**
 * `data` as the `data=` query value: a JSON object, URL-encoded, at most
 * `MAX_CONNECT_DATA_BYTES`; throws a `connect_data` TetherError otherwise.
 */
export function encodeConnectData(data: unknown): string {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    const kind = data === null ? 'null' : Array.isArray(data) ? 'an array' : `a ${typeof data}`;
    throw new TetherError('connect_data', `the connect data must be a JSON object, not ${kind}`);
  }
  let json: string;
  try {
    json = JSON.stringify(data);
  } catch (e) {
    throw new TetherError('connect_data', `the connect data is not JSON-serialisable: ${asError(e).message}`);
  }
  const encoded = encodeURIComponent(json);
  if (encoded.length > MAX_CONNECT_DATA_BYTES) {
    throw new TetherError(
      'connect_data',
      `the connect data is ${encoded.length} bytes URL-encoded; the server accepts at most ${MAX_CONNECT_DATA_BYTES}`,
    );
  }
  return encoded;
}

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
export function requestCredentials(
  o: Resolved,
  deadline: Deadline,
  current: () => boolean,
  ok: (c: Credentials) => void,
  fail: (reason: string) => void,
  report: (err: TetherError) => void,
): void {
  const token = o.token;
  const data = o.data;
  if (typeof token !== 'function' && typeof data !== 'function') {
    let encoded: string | undefined;
    try {
      encoded = data === undefined ? undefined : encodeConnectData(data);
    } catch (e) {
      report(e as TetherError);
      fail(asError(e).message);
      return;
    }
    ok({ token, data: encoded });
    return;
  }
  let settled = false;
  const settle = (err: TetherError | null, c?: Credentials): void => {
    if (settled || !current()) return;
    settled = true;
    deadline.clear();
    if (err === null) {
      ok(c!);
      return;
    }
    report(err);
    fail(err.message);
  };
  const pending = { token: typeof token === 'function', data: typeof data === 'function' };
  deadline.set(o.handshakeTimeout, () => {
    const which = pending.token ? ['token', 'the token function'] : ['connect_data', 'the data function'];
    settle(new TetherError(which[0]!, `${which[1]} did not answer within ${o.handshakeTimeout} ms`));
  });
  const tokenAnswer = ask(token, 'token', 'the token function').finally(() => (pending.token = false));
  const dataAnswer = ask(data, 'connect_data', 'the data function')
    .then((d) => (d === undefined ? undefined : encodeConnectData(d)))
    .finally(() => (pending.data = false));
  Promise.all([tokenAnswer, dataAnswer]).then(
    ([t, d]) => settle(null, { token: t as string | undefined, data: d }),
    (e) => settle(e instanceof TetherError ? e : new TetherError('token', asError(e).message)),
  );
}

/** A source's value: its own, or its function's answer (a failure as a TetherError with `code`). */
function ask(src: TokenSource | ConnectDataSource | undefined, code: string, what: string): Promise<unknown> {
  if (typeof src !== 'function') return Promise.resolve(src);
  let p: Promise<unknown>;
  try {
    p = Promise.resolve(src());
  } catch (e) {
    p = Promise.reject(e);
  }
  return p.catch((e) => {
    throw new TetherError(code, `${what} failed: ${asError(e).message}`);
  });
}
