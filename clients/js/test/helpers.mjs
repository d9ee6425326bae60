// Fakes for the unit tests: a clock (no test sleeps on real time), a
// WebSocket class, fetch, and the page environment.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tether } from '../.test-build/tether.js';

export * from '../.test-build/tether.js';

const here = dirname(fileURLToPath(import.meta.url));
export const vectors = (name) =>
  JSON.parse(readFileSync(join(here, '../../../crates/protocol/vectors', name), 'utf8'));

/** Lets promise callbacks (fake fetch answers, token functions) run. */
export async function flush(n = 5) {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

export class FakeClock {
  constructor(start = 1_000_000) {
    this.t = start;
    this.timers = new Map();
    this.seq = 0;
    this.setTimeout = (fn, ms) => {
      const id = ++this.seq;
      this.timers.set(id, { fn, at: this.t + Math.max(0, ms || 0), id });
      return id;
    };
    this.clearTimeout = (id) => this.timers.delete(id);
    this.now = () => this.t;
  }
  /** Moves time forward by `ms`, running every timer that falls due, in order. */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const tm of this.timers.values()) if (tm.at <= end && (!next || tm.at < next.at || (tm.at === next.at && tm.id < next.id))) next = tm;
      if (!next) break;
      this.timers.delete(next.id);
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = end;
  }
  /** The wall clock jumps (the machine slept): no timer fires. */
  jump(ms) {
    this.t += ms;
  }
  /**
   * The machine sleeps for `ms`: the wall clock moves on, the timers stop
   * (Linux's monotonic clock does not count a suspend) and fire afterwards
   * as late as they had left to run, "on time" by their own clock.
   */
  sleep(ms) {
    this.t += ms;
    for (const tm of this.timers.values()) tm.at += ms;
  }
  /** Runs the timers that are due now (after a jump: they fire late). */
  runDue() {
    this.advance(0);
  }
  pending() {
    return [...this.timers.values()].map((t) => t.at - this.t).sort((a, b) => a - b);
  }
}

export function fakeWebSocket() {
  const sockets = [];
  class FakeWS {
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.closed = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
    }
    send(text) {
      if (this.closed) throw new Error('send on a closed socket');
      this.sent.push(JSON.parse(text));
    }
    close(code, reason) {
      this.closed = { code, reason };
    }
    // test side
    open() {
      this.onopen?.({});
    }
    receive(msg) {
      this.onmessage?.({ data: typeof msg === 'string' ? msg : JSON.stringify(msg) });
    }
    welcome(ping = 25000, pong = 10000) {
      this.open();
      this.receive({ type: 'welcome', client: 'c1', ping_interval_ms: ping, pong_timeout_ms: pong, version: 1 });
    }
    serverClose(code, reason = '') {
      this.closed = { code, reason, byServer: true };
      this.onclose?.({ code, reason });
    }
    drop() {
      this.serverClose(1006);
    }
    sentOf(type) {
      return this.sent.filter((m) => m.type === type);
    }
  }
  return { FakeWS, sockets, last: () => sockets[sockets.length - 1] };
}

export function fakeFetch() {
  const requests = [];
  const fetch = (url, init) => {
    const u = new URL(url);
    const req = {
      url,
      route: u.pathname.split('/').pop(),
      client: u.searchParams.get('client'),
      headers: init.headers,
      body: init.body,
      json: init.body ? JSON.parse(init.body) : undefined,
      signal: init.signal,
      settled: false,
      aborted: false,
    };
    requests.push(req);
    return new Promise((resolve, reject) => {
      req.respond = (status, body, headers = {}) => {
        if (req.settled) return;
        req.settled = true;
        const text = typeof body === 'string' ? body : JSON.stringify(body);
        resolve({ status, headers: { get: (n) => headers[n] ?? headers[n.toLowerCase()] ?? null }, text: async () => text });
      };
      req.fail = (err = new TypeError('network error')) => {
        if (req.settled) return;
        req.settled = true;
        reject(err);
      };
      init.signal.addEventListener('abort', () => {
        req.aborted = true;
        req.fail(new DOMException('aborted', 'AbortError'));
      });
    });
  };
  const open = (route) => requests.filter((r) => r.route === route && !r.settled);
  return { fetch, requests, open, last: (route) => open(route).at(-1) };
}

export function fakeEnv() {
  const listeners = new Map();
  return {
    online: true,
    isVisible: true,
    onLine() {
      return this.online;
    },
    visible() {
      return this.isVisible;
    },
    addEventListener(type, fn) {
      if (!listeners.has(type)) listeners.set(type, new Set());
      listeners.get(type).add(fn);
    },
    removeEventListener(type, fn) {
      listeners.get(type)?.delete(fn);
    },
    fire(type) {
      for (const fn of [...(listeners.get(type) ?? [])]) fn();
    },
    count(type) {
      return listeners.get(type)?.size ?? 0;
    },
  };
}

export const WELCOME = { type: 'welcome', client: 'c1', ping_interval_ms: 25000, pong_timeout_ms: 10000, version: 1 };
export const LP_WELCOME = { ...WELCOME, client: 'lp-1', poll_timeout_ms: 25000 };

/** A client wired to fakes; `random` defaults to 0.5. */
export function setup(options = {}, url = 'ws://h:8080/ws') {
  const clock = new FakeClock();
  const ws = fakeWebSocket();
  const http = fakeFetch();
  const env = fakeEnv();
  const states = [];
  const errors = [];
  const client = new Tether(url, {
    WebSocket: ws.FakeWS,
    fetch: http.fetch,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: () => 0.5,
    env,
    ...options,
  });
  client.on('state', (s) => states.push(s));
  client.on('error', (e) => errors.push(e));
  return { client, clock, ws, http, env, states, errors };
}

/** A `sessionStorage` stand-in (a Map); `env.sessionStorage = () => storage`. */
export function fakeStorage() {
  const items = new Map();
  return {
    items,
    getItem: (k) => (items.has(k) ? items.get(k) : null),
    setItem: (k, v) => void items.set(k, String(v)),
    removeItem: (k) => void items.delete(k),
  };
}

/** Subscription handlers that record what they are given: offsets, `subscribed` infos, errors. */
export function recorder() {
  const log = { messages: [], subscribed: [], errors: [] };
  log.handlers = {
    onMessage: (m) => log.messages.push(m.offset),
    onSubscribed: (s) => log.subscribed.push(s),
    onError: (e) => log.errors.push(e),
  };
  return log;
}

/** Lets the fake clock run to the client's next retry (the `reconnecting` state's `nextRetryAt`). */
export const retry = ({ client, clock }) => clock.advance(client.state.nextRetryAt - clock.now());
