// Tether JS client. Generated from clients/js/src by `npm run build`: do not edit.

// src/backoff.ts
var Backoff = class {
  constructor(minDelay, maxDelay) {
    this.minDelay = minDelay;
    this.maxDelay = maxDelay;
  }
  /** The upper bound of the delay before retry `attempt` (0-based). */
  ceiling(attempt) {
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
  delay(attempt, unit, floor) {
    const u = Number.isNaN(unit) ? 0 : Math.min(1, Math.max(0, unit));
    const jittered = Math.floor(this.ceiling(attempt) * u);
    if (floor === void 0 || !(floor >= 0)) return jittered;
    const f = Math.min(floor, this.maxDelay);
    return Math.min(this.maxDelay, f + jittered);
  }
};
var HINT_KEY = "retry_after_ms=";
function parseRetryHint(reason) {
  const at = reason.lastIndexOf(HINT_KEY);
  if (at < 0) return void 0;
  const m = /^[0-9]+/.exec(reason.slice(at + HINT_KEY.length));
  if (!m) return void 0;
  const n = Number(m[0]);
  return Number.isFinite(n) ? n : Number.MAX_SAFE_INTEGER;
}
function parseRetryAfter(value, now) {
  if (value === null || value === void 0) return void 0;
  const v = value.trim();
  if (/^[0-9]+$/.test(v)) {
    const s = Number(v);
    return Number.isFinite(s) ? s * 1e3 : Number.MAX_SAFE_INTEGER;
  }
  const date = Date.parse(v);
  if (Number.isNaN(date)) return void 0;
  return Math.max(0, date - now);
}

// src/closeCodes.ts
var CLOSE_CODES = {
  1e3: { name: "normal", reconnect: "never" },
  1001: { name: "going_away", reconnect: "backoff" },
  1006: { name: "abnormal", reconnect: "backoff" },
  1008: { name: "policy_violation", reconnect: "never" },
  1009: { name: "message_too_big", reconnect: "backoff" },
  1011: { name: "internal_error", reconnect: "backoff" },
  1012: { name: "service_restart", reconnect: "backoff" },
  1013: { name: "try_again_later", reconnect: "backoff" },
  4001: { name: "unauthorized", reconnect: "never" },
  4002: { name: "token_expired", reconnect: "after_token_refresh" },
  4003: { name: "heartbeat_timeout", reconnect: "backoff" },
  4004: { name: "slow_consumer", reconnect: "backoff" },
  4005: { name: "rate_limited", reconnect: "backoff" }
};
var CLOSE_CODE_RANGES = [
  { from: 4e3, to: 4499, name: "app_refusal", reconnect: "backoff" },
  { from: 4500, to: 4999, name: "app_refusal_final", reconnect: "never" }
];
function reconnectFor(code) {
  return CLOSE_CODES[code]?.reconnect ?? CLOSE_CODE_RANGES.find((r) => code >= r.from && code <= r.to)?.reconnect ?? "backoff";
}
var PERMANENT_STATUSES = [400, 401, 403, 404];
function classify(ended) {
  switch (ended.kind) {
    case "closed": {
      const hint = parseRetryHint(ended.reason);
      return {
        code: ended.code,
        reason: `closed with ${ended.code}: ${ended.reason}`,
        reconnect: reconnectFor(ended.code),
        ...hint === void 0 ? {} : { hint }
      };
    }
    case "lost":
      return { code: 1006, reason: `connection lost: ${ended.reason}`, reconnect: "backoff" };
    case "refused":
      return {
        code: ended.status,
        reason: `refused with HTTP ${ended.status}: ${ended.reason}`,
        reconnect: PERMANENT_STATUSES.includes(ended.status) ? "never" : "backoff",
        ...ended.retryAfter === void 0 ? {} : { hint: ended.retryAfter }
      };
  }
}

// src/state.ts
var TetherError = class extends Error {
  constructor(code, message, closeCode) {
    super(message);
    this.code = code;
    this.name = "TetherError";
    if (closeCode !== void 0) this.closeCode = closeCode;
  }
};
var Emitter = class {
  constructor() {
    this.listeners = /* @__PURE__ */ new Map();
  }
  on(type, fn) {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, set = /* @__PURE__ */ new Set());
    set.add(fn);
    return () => this.off(type, fn);
  }
  off(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }
  /** Calls every listener; one that throws does not stop the others. */
  emit(type, value) {
    const set = this.listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(value);
      } catch (e) {
        if (type !== "error") this.emit("error", asError(e));
      }
    }
  }
};
function asError(e) {
  return e instanceof Error ? e : new Error(String(e));
}

// src/credentials.ts
var MAX_CONNECT_DATA_BYTES = 4096;
function encodeConnectData(data) {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    const kind = data === null ? "null" : Array.isArray(data) ? "an array" : `a ${typeof data}`;
    throw new TetherError("connect_data", `the connect data must be a JSON object, not ${kind}`);
  }
  let json;
  try {
    json = JSON.stringify(data);
  } catch (e) {
    throw new TetherError("connect_data", `the connect data is not JSON-serialisable: ${asError(e).message}`);
  }
  const encoded = encodeURIComponent(json);
  if (encoded.length > MAX_CONNECT_DATA_BYTES) {
    throw new TetherError(
      "connect_data",
      `the connect data is ${encoded.length} bytes URL-encoded; the server accepts at most ${MAX_CONNECT_DATA_BYTES}`
    );
  }
  return encoded;
}
function requestCredentials(o, deadline, current, ok, fail, report) {
  const token = o.token;
  const data = o.data;
  if (typeof token !== "function" && typeof data !== "function") {
    let encoded;
    try {
      encoded = data === void 0 ? void 0 : encodeConnectData(data);
    } catch (e) {
      report(e);
      fail(asError(e).message);
      return;
    }
    ok({ token, data: encoded });
    return;
  }
  let settled = false;
  const settle = (err, c) => {
    if (settled || !current()) return;
    settled = true;
    deadline.clear();
    if (err === null) {
      ok(c);
      return;
    }
    report(err);
    fail(err.message);
  };
  const pending = { token: typeof token === "function", data: typeof data === "function" };
  deadline.set(o.handshakeTimeout, () => {
    const which = pending.token ? ["token", "the token function"] : ["connect_data", "the data function"];
    settle(new TetherError(which[0], `${which[1]} did not answer within ${o.handshakeTimeout} ms`));
  });
  const tokenAnswer = ask(token, "token", "the token function").finally(() => pending.token = false);
  const dataAnswer = ask(data, "connect_data", "the data function").then((d) => d === void 0 ? void 0 : encodeConnectData(d)).finally(() => pending.data = false);
  Promise.all([tokenAnswer, dataAnswer]).then(
    ([t, d]) => settle(null, { token: t, data: d }),
    (e) => settle(e instanceof TetherError ? e : new TetherError("token", asError(e).message))
  );
}
function ask(src, code, what) {
  if (typeof src !== "function") return Promise.resolve(src);
  let p;
  try {
    p = Promise.resolve(src());
  } catch (e) {
    p = Promise.reject(e);
  }
  return p.catch((e) => {
    throw new TetherError(code, `${what} failed: ${asError(e).message}`);
  });
}

// src/liveness.ts
var WAKE_CHECK_TIMEOUT = 3e3;
var LATE_TIMER = 1e3;
var WATCH_EVERY = 2e3;
var SLEPT = 5e3;
var MAX_HEARTBEAT = 36e5;
function clampHeartbeat(ms) {
  return Math.min(MAX_HEARTBEAT, Math.max(1, ms));
}
var Liveness = class {
  constructor(clock, sendPing, dead) {
    this.clock = clock;
    this.sendPing = sendPing;
    this.dead = dead;
    this.pingInterval = 25e3;
    this.pongTimeout = 1e4;
    this.lastHeard = 0;
    this.timer = null;
    this.dueAt = 0;
    this.pinged = false;
    this.checkTimer = null;
    this.watchTimer = null;
    this.watchDue = 0;
    this.running = false;
  }
  start(pingInterval, pongTimeout) {
    this.pingInterval = clampHeartbeat(pingInterval);
    this.pongTimeout = clampHeartbeat(pongTimeout);
    this.running = true;
    this.heard();
    this.watch();
  }
  stop() {
    this.running = false;
    this.clear();
  }
  /** Anything from the server: the connection is alive. */
  heard() {
    if (!this.running) return;
    this.lastHeard = this.clock.now();
    this.pinged = false;
    if (this.checkTimer !== null) {
      this.clock.clearTimeout(this.checkTimer);
      this.checkTimer = null;
    }
    this.schedule(this.pingInterval);
  }
  /** Whether the wall clock is past the liveness deadline. */
  suspect() {
    return this.running && this.clock.now() > this.lastHeard + this.pingInterval + this.pongTimeout;
  }
  /** Pings now; unless anything is heard within `timeout` ms, the connection is dead. */
  check(why, timeout = WAKE_CHECK_TIMEOUT) {
    if (!this.running || this.checkTimer !== null) return;
    this.sendPing();
    this.checkTimer = this.clock.setTimeout(() => {
      this.checkTimer = null;
      if (this.running) this.dead(`no answer to a ping within ${timeout} ms (${why})`);
    }, timeout);
  }
  /** Before a send: a wall clock past the deadline makes the connection suspect. */
  verify(why) {
    if (this.suspect()) this.check(why);
  }
  schedule(ms) {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.dueAt = this.clock.now() + ms;
    this.timer = this.clock.setTimeout(() => this.fire(), ms);
  }
  clear() {
    for (const t of [this.timer, this.checkTimer, this.watchTimer]) if (t !== null) this.clock.clearTimeout(t);
    this.timer = this.checkTimer = this.watchTimer = null;
  }
  watch() {
    if (this.watchTimer !== null) this.clock.clearTimeout(this.watchTimer);
    this.watchDue = this.clock.now() + WATCH_EVERY;
    this.watchTimer = this.clock.setTimeout(() => {
      this.watchTimer = null;
      if (!this.running) return;
      const late = this.clock.now() - this.watchDue;
      if (late > SLEPT) this.check(`the wall clock jumped ${Math.round(late / 1e3)} s: woke from sleep?`);
      this.watch();
    }, WATCH_EVERY);
  }
  fire() {
    this.timer = null;
    if (!this.running) return;
    const now = this.clock.now();
    const deadline = this.lastHeard + this.pingInterval + this.pongTimeout;
    if (now - this.dueAt > LATE_TIMER && now > deadline) {
      this.check("the clock jumped past the deadline: woke from sleep?");
      return;
    }
    if (!this.pinged) {
      this.pinged = true;
      this.sendPing();
      this.schedule(Math.max(0, deadline - now));
      return;
    }
    this.dead(`nothing heard for ${this.pingInterval + this.pongTimeout} ms (ping_interval + pong_timeout)`);
  }
};

// src/rtt.ts
var RttMeter = class {
  constructor(clock) {
    this.clock = clock;
    /** When the oldest unanswered ping was sent. */
    this.sentAt = null;
    this.waiters = /* @__PURE__ */ new Set();
  }
  /** A ping to send; the RTT is measured from the oldest one still unanswered. */
  message() {
    if (!this.outstanding()) this.sentAt = this.clock.now();
    return { type: "ping" };
  }
  /** A pong arrived: measures, and answers every waiting `measure()`. */
  pong() {
    if (this.sentAt !== null) this.last = Math.max(0, this.clock.now() - this.sentAt);
    this.sentAt = null;
    const rtt = this.last;
    if (rtt !== void 0) this.settle((w) => w.resolve(rtt));
  }
  /**
   * The RTT of the next pong; `send` sends a ping unless one already waits
   * for its pong. Rejects with `timeout` without a pong within
   * WAKE_CHECK_TIMEOUT.
   */
  measure(send) {
    return new Promise((resolve2, reject) => {
      const w = { resolve: resolve2, reject, timer: null };
      w.timer = this.clock.setTimeout(() => {
        this.waiters.delete(w);
        reject(new TetherError("timeout", `no pong within ${WAKE_CHECK_TIMEOUT} ms`));
      }, WAKE_CHECK_TIMEOUT);
      this.waiters.add(w);
      if (!this.outstanding()) send(this.message());
    });
  }
  /**
   * The connection ended: its pings are lost. Waiting calls reject, unless
   * `keepWaiters` (a switch to another transport, whose welcome ping answers
   * them).
   */
  reset(keepWaiters) {
    this.sentAt = null;
    if (!keepWaiters) this.settle((w) => w.reject(new TetherError("disconnected", "the connection ended before the pong")));
  }
  outstanding() {
    return this.sentAt !== null && this.clock.now() - this.sentAt < WAKE_CHECK_TIMEOUT;
  }
  settle(fn) {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) {
      this.clock.clearTimeout(w.timer);
      fn(w);
    }
  }
};

// src/env.ts
function target(v) {
  return v && typeof v.addEventListener === "function" ? v : void 0;
}
function defaultEnv() {
  const g = globalThis;
  const win = target(g.window);
  const doc = target(g.document);
  const on = (type) => type === "visibilitychange" || type === "resume" ? doc : win;
  return {
    onLine: () => g.navigator?.onLine !== false,
    visible: () => g.document?.visibilityState !== "hidden",
    // Reading it may throw (storage blocked for the page): the caller catches.
    sessionStorage: () => g.sessionStorage,
    addEventListener: (type, fn) => on(type)?.addEventListener(type, fn),
    removeEventListener: (type, fn) => on(type)?.removeEventListener(type, fn)
  };
}

// src/options.ts
var FIRST_PROBE_DELAY = [1e3, 3e3];
function resolve(o) {
  const g = globalThis;
  const st = o.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
  const ct = o.clearTimeout ?? ((h) => globalThis.clearTimeout(h));
  const fetchImpl = o.fetch ?? (typeof g.fetch === "function" ? g.fetch.bind(globalThis) : null);
  return {
    token: o.token,
    data: o.data,
    minDelay: o.minDelay ?? 500,
    maxDelay: o.maxDelay ?? 3e4,
    maxAttempts: o.maxAttempts ?? Infinity,
    handshakeTimeout: o.handshakeTimeout ?? 1e4,
    publishQueue: o.publishQueue ?? 1024,
    idempotencyWindow: o.idempotencyWindow ?? 3e5,
    transports: o.transports && o.transports.length > 0 ? [...o.transports] : ["websocket", "longpoll"],
    fallbackAfter: Math.max(1, o.fallbackAfter ?? 2),
    probeInterval: o.probeInterval ?? 6e4,
    firstProbeDelay: o.firstProbeDelay ?? FIRST_PROBE_DELAY,
    requestTimeout: o.requestTimeout ?? 1e4,
    debug: o.debug ?? false,
    WebSocket: o.WebSocket === void 0 ? typeof g.WebSocket === "function" ? g.WebSocket : null : o.WebSocket,
    fetch: fetchImpl,
    random: o.random ?? Math.random,
    clock: { setTimeout: st, clearTimeout: ct, now: o.now ?? Date.now },
    env: o.env ?? defaultEnv()
  };
}
function endpoints(url) {
  const loc = globalThis.location?.href;
  const u = loc ? new URL(url, loc) : new URL(url);
  const secure = u.protocol === "wss:" || u.protocol === "https:";
  if (!["ws:", "wss:", "http:", "https:"].includes(u.protocol)) {
    throw new TypeError(`unsupported URL scheme ${u.protocol} (use ws, wss, http or https)`);
  }
  let prefix = u.pathname.replace(/\/+$/, "");
  if (prefix.endsWith("/ws")) prefix = prefix.slice(0, -3);
  const query = u.search;
  const lpQuery = query.slice(1).split("&").filter((p) => p !== "" && p.split("=")[0] !== "client").join("&");
  return {
    ws: `${secure ? "wss" : "ws"}://${u.host}${prefix}/ws${query}`,
    lp: `${secure ? "https" : "http"}://${u.host}${prefix}/lp`,
    lpQuery
  };
}
function withToken(url, token) {
  if (!token) return url;
  return `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}
function withData(url, data) {
  if (data === void 0) return url;
  return `${url}${url.includes("?") ? "&" : "?"}data=${data}`;
}

// src/protocol.ts
var RETRYABLE_ERRORS = Object.freeze(["unavailable", "internal", "over_capacity"]);
function isRetryable(code) {
  return RETRYABLE_ERRORS.includes(code);
}
function encode(msg) {
  switch (msg.type) {
    case "subscribe": {
      const out = { type: "subscribe", id: msg.id, channel: msg.channel };
      if (msg.recover) out.recover = { epoch: msg.recover.epoch, offset: msg.recover.offset };
      return JSON.stringify(out);
    }
    case "unsubscribe":
      return JSON.stringify({ type: "unsubscribe", id: msg.id, channel: msg.channel });
    case "publish": {
      const out = {
        type: "publish",
        id: msg.id,
        channel: msg.channel,
        data: msg.data === void 0 ? null : msg.data
      };
      if (msg.key !== void 0) out.key = msg.key;
      return JSON.stringify(out);
    }
    case "presence":
    case "presence_stats":
      return JSON.stringify({ type: msg.type, id: msg.id, channel: msg.channel });
    case "rpc":
      return JSON.stringify({ type: "rpc", id: msg.id, method: msg.method, data: msg.data === void 0 ? null : msg.data });
    case "ping":
      return '{"type":"ping"}';
  }
}
function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 128) n += 1;
    else if (c < 2048) n += 2;
    else if (c >= 55296 && c < 56320 && (s.charCodeAt(i + 1) & 64512) === 56320) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
var DecodeError = class extends Error {
  constructor(message) {
    super(message);
    this.name = "DecodeError";
  }
};
function isObj(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
function uint(o, field) {
  const v = o[field];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw new DecodeError(`${field}: expected a non-negative integer`);
  }
  return v;
}
function optUint(o, field) {
  return o[field] === void 0 || o[field] === null ? void 0 : uint(o, field);
}
function str(o, field) {
  const v = o[field];
  if (typeof v !== "string") throw new DecodeError(`${field}: expected a string`);
  return v;
}
function bool(o, field) {
  const v = o[field];
  if (typeof v !== "boolean") throw new DecodeError(`${field}: expected a boolean`);
  return v;
}
function publications(o) {
  const v = o.publications;
  if (v === void 0 || v === null) return [];
  if (!Array.isArray(v)) throw new DecodeError("publications: expected an array");
  return v.map((p) => {
    if (!isObj(p)) throw new DecodeError("publications: expected objects");
    if (!("data" in p)) throw new DecodeError("publications: data missing");
    return { offset: uint(p, "offset"), data: p.data };
  });
}
function presenceChange(e) {
  const user = e.user === null || e.user === void 0 ? null : str(e, "user");
  const out = { client: str(e, "client"), user };
  if (e.info !== void 0 && e.info !== null) {
    if (!isObj(e.info)) throw new DecodeError("info: expected an object");
    out.info = e.info;
  }
  return out;
}
function presenceEntries(o) {
  const v = o.clients;
  if (!Array.isArray(v)) throw new DecodeError("clients: expected an array");
  return v.map((e) => {
    if (!isObj(e)) throw new DecodeError("clients: expected objects");
    const { client, user, info } = presenceChange(e);
    const entry = { client, user, joined_at_ms: uint(e, "joined_at_ms") };
    if (info) entry.info = info;
    return entry;
  });
}
function decodeValue(v) {
  if (!isObj(v)) throw new DecodeError("not a JSON object");
  const type = v.type;
  switch (type) {
    case "welcome": {
      const msg = {
        type,
        client: str(v, "client"),
        ping_interval_ms: uint(v, "ping_interval_ms"),
        pong_timeout_ms: uint(v, "pong_timeout_ms"),
        version: uint(v, "version")
      };
      const poll = optUint(v, "poll_timeout_ms");
      if (poll !== void 0) msg.poll_timeout_ms = poll;
      const pub = v.public_client;
      if (typeof pub === "string") msg.public_client = pub;
      return msg;
    }
    case "subscribed": {
      const id = optUint(v, "id");
      return {
        type,
        ...id === void 0 ? {} : { id },
        channel: str(v, "channel"),
        epoch: str(v, "epoch"),
        offset: uint(v, "offset"),
        recovered: bool(v, "recovered"),
        publications: publications(v)
      };
    }
    case "unsubscribed":
      return { type, id: uint(v, "id"), channel: str(v, "channel") };
    case "message":
      if (!("data" in v)) throw new DecodeError("data missing");
      return { type, channel: str(v, "channel"), offset: uint(v, "offset"), data: v.data };
    case "ack":
      return { type, id: uint(v, "id"), offset: uint(v, "offset") };
    case "error": {
      const id = optUint(v, "id");
      return {
        type,
        ...id === void 0 ? {} : { id },
        code: str(v, "code"),
        message: typeof v.message === "string" ? v.message : "",
        ...typeof v.channel === "string" ? { channel: v.channel } : {}
      };
    }
    case "presence":
      return { type, id: uint(v, "id"), channel: str(v, "channel"), clients: presenceEntries(v) };
    case "presence_stats":
      return { type, id: uint(v, "id"), channel: str(v, "channel"), clients: uint(v, "clients"), users: uint(v, "users") };
    case "join":
    case "leave":
      return { type, channel: str(v, "channel"), ...presenceChange(v) };
    case "rpc":
      return { type, id: uint(v, "id"), result: v.result === void 0 ? null : v.result };
    case "pong":
      return { type };
    case "close":
      return {
        type,
        code: uint(v, "code"),
        reason: typeof v.reason === "string" ? v.reason : ""
      };
    default:
      return null;
  }
}
function decode(frame) {
  let v;
  try {
    v = JSON.parse(frame);
  } catch {
    throw new DecodeError("malformed JSON");
  }
  return decodeValue(v);
}

// src/transport/longpoll.ts
var MAX_SEND_BATCH = 64;
var MAX_SEND_BYTES = 256 * 1024;
var DEFAULT_POLL_TIMEOUT = 25e3;
var MAX_FAILURES = 2;
var RATE_LIMIT_WAIT = 1e3;
var MAX_RATE_LIMIT_WAIT = 1e4;
var Refused = class extends Error {
  constructor(ended) {
    super("refused");
    this.ended = ended;
  }
};
var LongPollTransport = class {
  constructor(opts, handlers) {
    this.opts = opts;
    this.handlers = handlers;
    this.name = "longpoll";
    this.repairsGaps = true;
    /** True while the `/lp/open` answer's messages after the welcome are applied. */
    this.announcing = false;
    this.opened = false;
    this.client = null;
    this.closed = false;
    this.pollTimeout = DEFAULT_POLL_TIMEOUT;
    this.outbox = [];
    this.sending = false;
    this.sendFailures = 0;
    /** A send body stops before this many bytes: MAX_SEND_BYTES, halved by each 413 to a body of several messages. */
    this.maxBody = MAX_SEND_BYTES;
    this.poll = null;
    this.pollFailures = 0;
    /** The timer before the next poll after a poll refused for the message rate (no poll until it fires). */
    this.pollWait = null;
    /** While a response is being applied (a re-poll waits for its end). */
    this.processing = false;
    this.repollWanted = false;
    this.inflight = /* @__PURE__ */ new Set();
    this.request("open", "{}", opts.requestTimeout).then(
      (answer) => {
        const msgs = this.answer(answer);
        if (!msgs) return;
        const welcome = msgs[0];
        if (welcome?.type === "close") {
          this.fail({ kind: "closed", code: welcome.code, reason: welcome.reason });
          return;
        }
        if (!welcome || welcome.type !== "welcome") {
          this.fail({ kind: "lost", reason: "the /lp/open answer is not a welcome" });
          return;
        }
        this.client = welcome.client;
        if (welcome.poll_timeout_ms !== void 0) this.pollTimeout = Math.min(welcome.poll_timeout_ms, 36e5);
        this.opened = true;
        this.handlers.onOpen();
        this.handlers.onMessage(welcome);
        const held = this.opts.positions();
        this.announcing = true;
        try {
          this.apply(msgs.slice(1).filter((m) => !(m.type === "subscribed" && m.id === void 0 && m.channel in held)));
        } finally {
          this.announcing = false;
        }
        this.startPoll();
        this.flush();
      },
      (e) => this.failed(e, "open")
    );
  }
  send(msgs) {
    if (this.closed) return;
    this.outbox.push(...msgs);
    this.flush();
  }
  positionsChanged() {
    if (this.closed || !this.client) return;
    if (this.processing) {
      this.repollWanted = true;
      return;
    }
    this.poll?.abort();
    this.poll = null;
    this.startPoll();
  }
  refresh() {
    this.positionsChanged();
  }
  close() {
    if (this.closed) return;
    this.closed = true;
    if (this.pollWait !== null) this.opts.clock.clearTimeout(this.pollWait);
    this.pollWait = null;
    for (const c of this.inflight) c.abort();
    this.inflight.clear();
    this.poll = null;
    this.outbox = [];
  }
  flush() {
    if (this.closed || this.sending || !this.client || this.outbox.length === 0) return;
    const { count, body, bytes } = sendBody(this.outbox, this.maxBody);
    this.sending = true;
    this.request("send", body, this.opts.requestTimeout).then(
      (answer) => {
        this.sending = false;
        if (answer.status === 413 && !this.closed && this.tooLarge(count, bytes)) return;
        const msgs = this.answer(answer);
        if (!msgs) return;
        this.sendFailures = 0;
        this.outbox.splice(0, count);
        this.apply(msgs);
        this.flush();
      },
      (e) => {
        this.sending = false;
        if (this.closed) return;
        if (e instanceof Refused || ++this.sendFailures >= MAX_FAILURES) this.failed(e, "send");
        else this.flush();
      }
    );
  }
  /**
   * A send answered 413: the body passed the server's bound (4 ×
   * `--max-message-bytes` + 1 KiB), and the same body would be refused
   * forever. A body of one publish: that publish is too big for the server;
   * it is answered as a refused request is (an `error` with its id, code
   * `message_too_big`) and the session goes on with the rest of the outbox.
   * A body of several messages (a server whose `--max-message-bytes` is under
   * 65,280 has a bound under MAX_SEND_BYTES): the next bodies stop at half
   * its size, down to one message each. False for one message that is not a
   * publish (nothing the client sends can be that big): a refusal as before.
   */
  tooLarge(count, bytes) {
    const head = this.outbox[0];
    const big = head?.type === "publish" || head?.type === "rpc";
    if (count === 1 && !big) return false;
    this.handlers.onActivity();
    this.sendFailures = 0;
    if (count > 1) {
      this.maxBody = Math.floor(bytes / 2);
      this.opts.log?.(`a send of ${count} messages (${bytes} bytes) answered 413: bodies of at most ${this.maxBody} bytes from now on`);
    } else if (big) {
      this.outbox.shift();
      const message = `this ${head.type} (${bytes - 2} bytes) is larger than the server accepts (HTTP 413)`;
      this.apply([{ type: "error", id: head.id, code: "message_too_big", message }]);
    }
    this.flush();
    return true;
  }
  startPoll() {
    if (this.closed || this.poll || this.pollWait !== null || !this.client) return;
    const ctrl = new AbortController();
    this.poll = ctrl;
    const body = JSON.stringify({ channels: this.opts.positions() });
    this.request("poll", body, this.pollTimeout + this.opts.requestTimeout, ctrl).then(
      (answer) => {
        if (this.poll !== ctrl) return;
        this.poll = null;
        const msgs = this.answer(answer);
        if (!msgs) return;
        this.pollFailures = 0;
        const wait = rateLimitWait(msgs);
        if (wait !== void 0) {
          this.opts.log?.(`poll refused for the message rate: polling again in ${wait} ms`);
          this.pollWait = this.opts.clock.setTimeout(() => {
            this.pollWait = null;
            this.startPoll();
          }, wait);
        }
        this.apply(msgs);
        this.startPoll();
      },
      (e) => {
        if (this.poll !== ctrl) return;
        this.poll = null;
        if (e instanceof Refused || ++this.pollFailures >= MAX_FAILURES) this.failed(e, "poll");
        else this.startPoll();
      }
    );
  }
  /** Hands a response's messages over, in order; a `close` ends the session. */
  apply(msgs) {
    this.processing = true;
    try {
      for (const m of msgs) {
        if (this.closed) return;
        if (m.type === "close") {
          this.fail({ kind: "closed", code: m.code, reason: m.reason });
          return;
        }
        this.handlers.onMessage(m);
      }
    } finally {
      this.processing = false;
    }
    if (this.repollWanted) {
      this.repollWanted = false;
      this.positionsChanged();
    }
  }
  /** Checks an answer: its messages, or null after failing the transport. */
  answer(a) {
    if (this.closed) return null;
    if (a.status !== 200) {
      this.failed(new Refused(refusal(a)), "");
      return null;
    }
    this.handlers.onActivity();
    let v;
    try {
      v = JSON.parse(a.body);
    } catch {
      this.fail({ kind: "lost", reason: "a long-poll answer is not JSON" });
      return null;
    }
    const list = Array.isArray(v) ? v : [v];
    const out = [];
    for (const item of list) {
      try {
        const m = decodeValue(item);
        if (m) out.push(m);
      } catch (e) {
        this.opts.log?.(`ignoring an undecodable server message: ${String(e)}`);
      }
    }
    return out;
  }
  failed(e, what) {
    if (e instanceof Refused) this.fail(e.ended);
    else this.fail({ kind: "lost", reason: `/lp/${what} failed: ${errorText(e)}` });
  }
  fail(ended) {
    if (this.closed) return;
    this.close();
    this.handlers.onEnded(ended);
  }
  request(route, body, timeout, ctrl = new AbortController()) {
    const { clock, token } = this.opts;
    const params = [
      this.opts.query ?? "",
      route === "open" ? this.opts.openQuery ?? "" : "",
      this.client === null ? "" : `client=${encodeURIComponent(this.client)}`
    ];
    const query = params.filter((p2) => p2 !== "").join("&");
    const headers = { "Content-Type": "text/plain;charset=UTF-8" };
    if (token) headers.Authorization = `Bearer ${token}`;
    this.inflight.add(ctrl);
    const timer = clock.setTimeout(() => ctrl.abort(), timeout);
    const done = () => {
      clock.clearTimeout(timer);
      this.inflight.delete(ctrl);
    };
    let p;
    try {
      p = this.opts.fetch(`${this.opts.base}/${route}${query === "" ? "" : `?${query}`}`, {
        method: "POST",
        headers,
        body,
        signal: ctrl.signal,
        cache: "no-store"
      });
    } catch (e) {
      p = Promise.reject(e);
    }
    return p.then(async (res) => ({
      status: res.status,
      retryAfter: parseRetryAfter(res.headers.get("Retry-After"), clock.now()),
      body: await res.text()
    })).then(
      (a) => {
        done();
        if (ctrl.signal.aborted) throw new Error(`timed out after ${timeout} ms`);
        return a;
      },
      (e) => {
        done();
        throw ctrl.signal.aborted && !this.closed ? new Error(`timed out after ${timeout} ms`) : e;
      }
    );
  }
};
function rateLimitWait(msgs) {
  const m = msgs.find((m2) => m2.type === "error" && m2.id === void 0 && m2.code === "rate_limited");
  if (!m || m.type !== "error") return void 0;
  const named = /retry in ([0-9]+) ms/.exec(m.message);
  const ms = named ? Number(named[1]) : RATE_LIMIT_WAIT;
  return Math.min(ms, MAX_RATE_LIMIT_WAIT);
}
function sendBody(outbox, maxBytes) {
  const parts = [];
  let bytes = 2;
  for (const m of outbox) {
    if (parts.length === MAX_SEND_BATCH) break;
    const text = encode(m);
    const size = utf8Length(text) + (parts.length > 0 ? 1 : 0);
    if (parts.length > 0 && bytes + size > maxBytes) break;
    parts.push(text);
    bytes += size;
  }
  return { count: parts.length, body: `[${parts.join(",")}]`, bytes };
}
function refusal(a) {
  const reason = a.body.split("\n")[0]?.slice(0, 200) ?? "";
  return a.retryAfter === void 0 ? { kind: "refused", status: a.status, reason } : { kind: "refused", status: a.status, reason, retryAfter: a.retryAfter };
}
function errorText(e) {
  return e instanceof Error ? e.message : String(e);
}

// src/transport/websocket.ts
var WebSocketTransport = class {
  constructor(url, Impl, handlers, log = () => {
  }) {
    this.handlers = handlers;
    this.log = log;
    this.name = "websocket";
    this.repairsGaps = false;
    this.announcing = true;
    this.opened = false;
    this.ws = null;
    this.closed = false;
    try {
      this.ws = new Impl(url);
    } catch (e) {
      Promise.resolve().then(() => this.fail({ kind: "lost", reason: `cannot open a WebSocket: ${String(e)}` }));
      return;
    }
    const ws = this.ws;
    ws.onopen = () => {
      if (this.closed) return;
      this.opened = true;
      this.handlers.onOpen();
    };
    ws.onmessage = (ev) => {
      if (this.closed || typeof ev.data !== "string") return;
      this.handlers.onActivity();
      let msg;
      try {
        msg = decode(ev.data);
      } catch (e) {
        this.log(`ignoring an undecodable server message: ${String(e)}`);
        return;
      }
      if (msg) this.handlers.onMessage(msg);
    };
    ws.onclose = (ev) => {
      const code = typeof ev.code === "number" ? ev.code : 1006;
      const reason = typeof ev.reason === "string" ? ev.reason : "";
      this.fail(
        code === 1006 || code === 0 ? { kind: "lost", reason: this.opened ? "closed without a close frame" : "the WebSocket did not open" } : { kind: "closed", code, reason }
      );
    };
    ws.onerror = () => this.fail({ kind: "lost", reason: this.opened ? "WebSocket error" : "the WebSocket did not open" });
  }
  send(msgs) {
    if (this.closed || !this.ws) return;
    try {
      for (const m of msgs) this.ws.send(encode(m));
    } catch (e) {
      this.fail({ kind: "lost", reason: `send failed: ${String(e)}` });
    }
  }
  positionsChanged() {
  }
  refresh() {
  }
  close(code = 1e3, reason = "") {
    if (this.closed) return;
    this.closed = true;
    const ws = this.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason);
    } catch {
    }
  }
  fail(ended) {
    if (this.closed) return;
    this.close();
    this.handlers.onEnded(ended);
  }
};

// src/connection.ts
var STABLE_AFTER = 5e3;
var NO_HANDLERS = { onOpen() {
}, onActivity() {
}, onMessage() {
}, onEnded() {
} };
var Connection = class {
  constructor(url, options = {}) {
    this.emitter = new Emitter();
    this.transport = null;
    this.welcomed = false;
    this.terminal = false;
    this.started = false;
    /** An attempt was started since connect(): later ones are `reconnecting`, not `connecting`. */
    this.tried = false;
    this.attempt = 0;
    this.generation = 0;
    this.wsFailures = 0;
    this.lpFailures = 0;
    this.fallback = false;
    /** A WebSocket was welcomed in this client's life: a later fallback is more likely an outage. */
    this.wsWorked = false;
    /** When the next probe runs: after `probeInterval`, soon (`firstProbeDelay`) or at once. */
    this.nextProbe = "interval";
    this.forceFallback = false;
    /** A probe is under way (asking for its token, or its WebSocket open). */
    this.probing = false;
    this.probeSeq = 0;
    this.probe = null;
    this.timers = {
      retryTimer: null,
      tokenTimer: null,
      handshakeTimer: null,
      stableTimer: null,
      probeTimer: null,
      probeDeadline: null
    };
    this.o = resolve(options);
    this.urls = endpoints(url);
    if (this.o.data !== void 0 && typeof this.o.data !== "function") encodeConnectData(this.o.data);
    if (!this.canWebSocket() && !this.canLongPoll()) {
      throw new TypeError("no usable transport: neither a WebSocket implementation nor fetch is available");
    }
    this.backoff = new Backoff(this.o.minDelay, this.o.maxDelay);
    this.fallbackKey = `tether:fallback:${this.urls.ws}`;
    if (this.canWebSocket() && this.canLongPoll() && this.storage((st) => st.getItem(this.fallbackKey)) === "1") {
      this.fallback = true;
      this.log("long polling (remembered for this tab)");
    }
    this.current = { state: "disconnected", transport: this.preferred() };
    this.meter = new RttMeter(this.o.clock);
    this.liveness = new Liveness(this.o.clock, () => this.transport?.send([this.meter.message()]), (why) => this.drop(why));
    const resume = (why) => () => this.resume(why);
    this.listeners = [
      ["online", resume("online")],
      ["offline", () => this.wentOffline()],
      ["pageshow", resume("pageshow")],
      // Page Lifecycle: a frozen page (timers stopped, sockets possibly dead) runs again.
      ["resume", resume("resume")],
      ["visibilitychange", () => this.o.env.visible?.() !== false && this.resume("visibilitychange")]
    ];
  }
  /**
   * Round-trip time (ms) of the last application ping (one follows every
   * welcome, then heartbeat, resume and `ping()` pings); undefined until measured.
   */
  get rtt() {
    return this.meter.last;
  }
  /**
   * The client id of the current connection's `welcome` (what presence and
   * join/leave show for this client); a new one on every connection,
   * undefined while not connected.
   */
  get clientId() {
    return this.welcomed ? this.clientName : void 0;
  }
  /** The connection state (a copy). */
  get state() {
    return { ...this.current };
  }
  on(type, fn) {
    return this.emitter.on(type, fn);
  }
  off(type, fn) {
    this.emitter.off(type, fn);
  }
  /** Starts connecting (and reconnecting) until `disconnect()` or a terminal close. */
  connect() {
    if (this.started) return;
    this.started = true;
    this.terminal = false;
    this.attempt = 0;
    this.tried = false;
    for (const [type, fn] of this.listeners) this.o.env.addEventListener(type, fn);
    this.open();
  }
  /** Closes the connection (1000) and stays disconnected; pending publishes reject. */
  disconnect() {
    if (this.started || !this.terminal) this.stop(1e3, "disconnected by the client");
  }
  // ---- connection life ----
  open() {
    this.clear("retryTimer");
    if (!this.started || this.transport) return;
    if (!this.o.env.onLine()) {
      this.goOffline();
      return;
    }
    if (!this.tried) {
      this.tried = true;
      this.setState({ state: "connecting", transport: this.preferred() });
    } else if (this.current.state !== "reconnecting") {
      const { code, reason } = this.current;
      this.setState({
        state: "reconnecting",
        transport: this.preferred(),
        attempt: Math.max(1, this.attempt),
        nextRetryAt: this.o.clock.now(),
        ...code === void 0 ? {} : { code },
        ...reason === void 0 ? {} : { reason }
      });
    }
    const gen = ++this.generation;
    this.requestCredentials(
      "tokenTimer",
      () => gen === this.generation && this.started,
      (c) => this.start(c),
      (reason) => this.ended(null, { kind: "lost", reason })
    );
  }
  /**
   * Gets the token and the connect data for an attempt (or a probe): see
   * `requestCredentials` (credentials.ts); failures are `error` events.
   */
  requestCredentials(timer, current, ok, fail) {
    const deadline = { set: (ms, fn) => this.set(timer, ms, fn), clear: () => this.clear(timer) };
    requestCredentials(this.o, deadline, current, ok, fail, (err) => this.emitter.emit("error", err));
  }
  start({ token, data }) {
    const t = this.useWebSocket() ? new WebSocketTransport(withData(withToken(this.urls.ws, token), data), this.o.WebSocket, NO_HANDLERS, (m) => this.log(m)) : new LongPollTransport(
      {
        base: this.urls.lp,
        query: this.urls.lpQuery,
        ...data === void 0 ? {} : { openQuery: `data=${data}` },
        token,
        fetch: this.o.fetch,
        clock: this.o.clock,
        requestTimeout: this.o.requestTimeout,
        positions: () => this.positions(),
        log: (m) => this.log(m)
      },
      NO_HANDLERS
    );
    t.handlers = this.bind(t);
    this.transport = t;
    this.welcomed = false;
    this.log(`opening ${t.name}`);
    this.set("handshakeTimer", this.o.handshakeTimeout, () => {
      if (this.transport !== t || this.welcomed) return;
      this.forceFallback = t.name === "websocket" && t.opened;
      this.ended(t, { kind: "lost", reason: `no welcome within ${this.o.handshakeTimeout} ms` });
    });
  }
  bind(t) {
    return {
      onOpen: () => {
      },
      onActivity: () => this.transport === t && this.welcomed && this.liveness.heard(),
      onMessage: (m) => this.transport === t && this.message(t, m),
      onEnded: (e) => this.ended(t, e)
    };
  }
  welcome(t, m) {
    this.clear("handshakeTimer");
    this.welcomed = true;
    this.clientName = m.public_client ?? m.client;
    if (t.name === "websocket") {
      this.wsFailures = 0;
      this.wsWorked = true;
      this.storage((st) => st.removeItem(this.fallbackKey));
    } else {
      this.lpFailures = 0;
    }
    this.liveness.start(m.ping_interval_ms, m.pong_timeout_ms);
    this.setState({ state: "connected", transport: t.name });
    if (this.transport !== t) return;
    this.set("stableTimer", STABLE_AFTER, () => this.usable());
    t.send([this.meter.message(), ...this.restore(t)]);
    if (t.name === "longpoll") this.scheduleProbe();
  }
  message(t, m) {
    if (!this.welcomed) {
      if (m.type === "welcome") this.welcome(t, m);
      else this.ended(t, { kind: "lost", reason: `expected a welcome, got ${m.type}` });
      return;
    }
    this.liveness.heard();
    if (m.type === "pong") {
      this.meter.pong();
    } else if (m.type === "close") {
      this.ended(t, { kind: "closed", code: m.code, reason: m.reason });
    } else {
      this.dispatch(t, m);
    }
  }
  /** The connection (or the attempt) ended; decide whether and when to retry. */
  ended(t, e) {
    if (t !== this.transport || !this.started) return;
    const wasWs = t?.name === "websocket";
    const welcomed = this.welcomed;
    const force = this.forceFallback;
    this.forceFallback = false;
    this.teardown(false, e);
    if (wasWs && !welcomed && e.kind === "lost" && this.canLongPoll()) {
      this.wsFailures++;
      if (!this.fallback && (force || this.wsFailures >= this.o.fallbackAfter)) {
        this.fallback = true;
        this.lpFailures = 0;
        this.nextProbe = this.wsWorked ? "soon" : "interval";
        this.storage((st) => st.setItem(this.fallbackKey, "1"));
        this.log(`WebSocket failed ${this.wsFailures} time(s)${force ? " (opened, no welcome)" : ""}: long polling from now on`);
      }
    } else if (t && !wasWs && !welcomed && e.kind === "lost" && this.fallback && this.canWebSocket()) {
      if (++this.lpFailures >= this.o.fallbackAfter) {
        this.fallback = false;
        this.wsFailures = 0;
        this.log(`long polling failed ${this.lpFailures} time(s): trying WebSocket again`);
      }
    }
    const c = classify(e);
    this.log(`${c.reason}`);
    if (c.reconnect === "never") return this.stop(c.code, c.reason);
    if (c.reconnect === "after_token_refresh" && typeof this.o.token !== "function" && this.o.token !== void 0) {
      return this.stop(c.code, `${c.reason} (no token function to refresh the token with)`);
    }
    if (this.attempt >= this.o.maxAttempts) {
      return this.stop(c.code, `gave up after ${this.attempt} attempts; last: ${c.reason}`);
    }
    const delay = this.backoff.delay(this.attempt, this.o.random(), c.hint);
    this.attempt++;
    if (!this.o.env.onLine()) {
      this.setState({ state: "offline", transport: this.preferred(), code: c.code, reason: c.reason });
      return;
    }
    this.setState({
      state: "reconnecting",
      transport: this.preferred(),
      attempt: this.attempt,
      nextRetryAt: this.o.clock.now() + delay,
      code: c.code,
      reason: c.reason
    });
    this.set("retryTimer", delay, () => this.open());
  }
  /** Stops for good (until `connect()`). */
  stop(code, reason) {
    this.started = false;
    this.terminal = true;
    this.generation++;
    this.teardown();
    this.clear("retryTimer");
    for (const [type, fn] of this.listeners) this.o.env.removeEventListener?.(type, fn);
    this.setState({ state: "disconnected", transport: this.preferred(), code, reason });
    this.stopped(new TetherError("disconnected", reason, code));
  }
  /**
   * Ends the current transport (silently) and forgets what was in flight on
   * it (`connectionEnded`, told how it `ended`); `ping()` calls waiting reject,
   * unless `keepPings` (a switch to another transport, whose welcome ping answers them).
   */
  teardown(keepPings = false, ended) {
    for (const k of ["tokenTimer", "handshakeTimer", "stableTimer", "probeTimer"]) this.clear(k);
    this.cancelProbe();
    this.liveness.stop();
    const t = this.transport;
    this.transport = null;
    this.welcomed = false;
    this.meter.reset(keepPings);
    t?.close(1e3, "client closing");
    this.connectionEnded(ended);
  }
  usable() {
    this.clear("stableTimer");
    this.attempt = 0;
  }
  /** A publication skipped offsets: the WebSocket reconnects and recovers; long polling re-reads. */
  gap(t, channel) {
    if (t.repairsGaps) return;
    this.ended(t, { kind: "lost", reason: `gap in ${JSON.stringify(channel)}; reconnecting to recover` });
  }
  drop(why) {
    if (this.transport) this.ended(this.transport, { kind: "lost", reason: why });
  }
  // ---- environment: offline/online, resume from sleep or a hidden tab ----
  resume(why) {
    if (!this.started) return;
    if (why === "online" && this.fallback) this.probeNow();
    if (this.transport) {
      if (this.welcomed) {
        this.liveness.check(why);
        this.transport.refresh();
      }
      return;
    }
    if (this.timers.tokenTimer !== null) return;
    const due = this.current.nextRetryAt ?? 0;
    if (this.current.state === "offline" || why === "online" || this.o.clock.now() >= due) this.open();
  }
  wentOffline() {
    if (!this.started) return;
    if (this.welcomed) this.liveness.check("offline event");
    else if (!this.transport) {
      this.generation++;
      this.clear("tokenTimer");
      this.clear("retryTimer");
      this.goOffline();
    }
  }
  /** State `offline`, keeping the last ending's code and reason; no event when already offline. */
  goOffline() {
    if (this.current.state === "offline") return;
    const { code, reason } = this.current;
    this.setState({
      state: "offline",
      transport: this.preferred(),
      ...code === void 0 ? {} : { code },
      ...reason === void 0 ? {} : { reason }
    });
  }
  // ---- long polling <-> WebSocket ----
  scheduleProbe() {
    if (!this.fallback || !this.canWebSocket() || this.timers.probeTimer !== null || this.probing) return;
    const [min, max] = this.o.firstProbeDelay;
    const delay = this.nextProbe === "now" ? 0 : this.nextProbe === "soon" ? Math.round(min + this.o.random() * (max - min)) : this.o.probeInterval;
    this.set("probeTimer", delay, () => this.runProbe());
  }
  /** Probes at once when connected over long polling, else right after the next long-poll welcome. */
  probeNow() {
    this.nextProbe = "now";
    if (this.transport?.name !== "longpoll" || !this.welcomed || this.probing) return;
    this.clear("probeTimer");
    this.runProbe();
  }
  /**
   * While on long polling: ask for a token (the token function is called
   * before every attempt, probes included), open a WebSocket, and switch to
   * it once it is welcomed. A probe that fails in any way is tried again later.
   */
  runProbe() {
    if (this.transport?.name !== "longpoll" || !this.welcomed || this.probing) return;
    this.probing = true;
    this.nextProbe = "interval";
    const seq = ++this.probeSeq;
    const current = () => this.probing && this.probeSeq === seq;
    this.log("probing WebSocket");
    this.requestCredentials(
      "probeDeadline",
      current,
      (c) => this.openProbe(c),
      (reason) => {
        this.log(`probe: ${reason}`);
        this.cancelProbe();
        this.scheduleProbe();
      }
    );
  }
  openProbe({ token, data }) {
    const again = (p2) => {
      if (this.probe !== p2) return;
      this.cancelProbe();
      this.scheduleProbe();
    };
    const p = new WebSocketTransport(withData(withToken(this.urls.ws, token), data), this.o.WebSocket, NO_HANDLERS);
    p.handlers = {
      ...NO_HANDLERS,
      onMessage: (m) => m.type === "welcome" && this.probe === p ? this.switchTo(p, m) : again(p),
      onEnded: () => again(p)
    };
    this.probe = p;
    this.set("probeDeadline", this.o.handshakeTimeout, () => again(p));
  }
  switchTo(p, m) {
    this.probe = null;
    this.probing = false;
    this.log("WebSocket works again: leaving long polling");
    this.fallback = false;
    this.teardown(true);
    p.handlers = this.bind(p);
    this.transport = p;
    this.welcome(p, m);
  }
  cancelProbe() {
    this.probing = false;
    this.clear("probeDeadline");
    const p = this.probe;
    this.probe = null;
    p?.close(1e3, "probe done");
  }
  // ---- helpers ----
  /**
   * Measures the round-trip time: sends `{"type":"ping"}` (unless one is
   * already waiting for its pong: pongs carry no id, so concurrent calls share
   * the next one) and resolves with the RTT in ms, also left in `rtt`. Rejects
   * with `disconnected` when not connected or when the connection ends first,
   * and with `timeout` without a pong within `WAKE_CHECK_TIMEOUT` (3 s).
   */
  ping() {
    const t = this.transport;
    if (!t || !this.welcomed) return Promise.reject(new TetherError("disconnected", "not connected"));
    return this.meter.measure((m) => t.send([m]));
  }
  /** Uses sessionStorage when there is one; any exception from it is ignored. */
  storage(use) {
    try {
      const st = this.o.env.sessionStorage?.();
      return st ? use(st) : void 0;
    } catch {
      return void 0;
    }
  }
  canWebSocket() {
    return this.o.WebSocket !== null && this.o.transports.includes("websocket");
  }
  canLongPoll() {
    return this.o.fetch !== null && this.o.transports.includes("longpoll");
  }
  useWebSocket() {
    return this.canWebSocket() && !(this.fallback && this.canLongPoll());
  }
  preferred() {
    return this.transport?.name ?? (this.useWebSocket() ? "websocket" : "longpoll");
  }
  setState(s) {
    this.current = s;
    this.log(`state ${JSON.stringify(s)}`);
    this.emitter.emit("state", { ...s });
  }
  set(k, ms, fn) {
    this.clear(k);
    this.timers[k] = this.o.clock.setTimeout(() => {
      this.timers[k] = null;
      fn();
    }, ms);
  }
  clear(k) {
    if (this.timers[k] !== null) this.o.clock.clearTimeout(this.timers[k]);
    this.timers[k] = null;
  }
  log(msg) {
    if (this.o.debug) console.debug(`[tether] ${msg}`);
  }
};

// src/presenceRequests.ts
var PresenceRequests = class {
  constructor(clearTimeout) {
    this.clearTimeout = clearTimeout;
    this.items = [];
  }
  /**
   * Adds a caller: to the unsent request for the same channel and kind when
   * there is one (returns null: nothing new to send), else to a new request
   * (returned, for the caller to send when it can).
   */
  add(channel, kind, waiter) {
    const unsent = this.items.find((r2) => r2.channel === channel && r2.kind === kind && r2.sentAs === null);
    if (unsent) {
      unsent.waiters.push(waiter);
      return null;
    }
    const r = { channel, kind, waiters: [waiter], sentAs: null, retries: 0, retryTimer: null };
    this.items.push(r);
    return r;
  }
  /** Requests to send on a new connection, in the order they were made. */
  unsent() {
    return this.items.filter((r) => r.sentAs === null && r.retryTimer === null);
  }
  /** The request sent as `id` on the current connection. */
  byId(id) {
    return this.items.find((r) => r.sentAs === id);
  }
  /** Whether `r` still awaits its answer. */
  has(r) {
    return this.items.includes(r);
  }
  /** Removes `r` and resolves its callers with `answer`. */
  resolve(r, answer) {
    if (!this.remove(r)) return;
    for (const w of r.waiters) w.resolve(answer);
  }
  /** Removes `r` and rejects its callers with `err`. */
  reject(r, err) {
    if (!this.remove(r)) return;
    for (const w of r.waiters) w.reject(err);
  }
  /** Rejects every request for `channel` (its subscription is gone). */
  rejectChannel(channel, err) {
    for (const r of this.items.filter((r2) => r2.channel === channel)) this.reject(r, err);
  }
  /** Rejects every request (the client stopped). */
  rejectAll(err) {
    for (const r of [...this.items]) this.reject(r, err);
  }
  /** The connection ended: every request is to be sent again on the next one. */
  resetSent() {
    for (const r of this.items) {
      r.sentAs = null;
      this.cancelRetry(r);
    }
  }
  cancelRetry(r) {
    if (r.retryTimer === null) return;
    this.clearTimeout(r.retryTimer);
    r.retryTimer = null;
  }
  remove(r) {
    const i = this.items.indexOf(r);
    if (i < 0) return false;
    this.items.splice(i, 1);
    this.cancelRetry(r);
    return true;
  }
};
function presenceMessage(r, id) {
  return { type: r.kind, id, channel: r.channel };
}

// src/publishQueue.ts
var PublishQueue = class {
  constructor(capacity) {
    this.capacity = capacity;
    this.items = [];
  }
  get size() {
    return this.items.length;
  }
  /** Queues a publish; throws `queue_full` when `capacity` already wait. */
  add(p) {
    if (this.items.length >= this.capacity) {
      throw new TetherError(
        "queue_full",
        `publish queue full: ${this.capacity} publishes already await their ack`
      );
    }
    this.items.push(p);
  }
  /** Publishes not sent on the current connection, in order. */
  unsent() {
    return this.items.filter((p) => p.sentAs === null);
  }
  /** Removes and returns the publish sent as request `id`. */
  take(id) {
    const i = this.items.findIndex((p) => p.sentAs === id);
    if (i < 0) return void 0;
    return this.items.splice(i, 1)[0];
  }
  /**
   * The connection ended with 1009: a message was larger than the server's
   * `--max-message-bytes`. The client does not know that limit, but only a
   * publish can be that large (channel names are at most 255 bytes; pings
   * and subscribes are tiny), and the largest publish sent on the connection
   * (on long polling: handed to the session, in a send or its outbox) is at
   * least as large as the one that broke the limit, so it breaks it too. Removes and returns it (the oldest among equals) with its encoded
   * size, so it is rejected instead of resent into the same 1009; undefined
   * when none was sent on the connection. Several too big: each 1009 removes
   * the next largest.
   */
  takeLargestSent() {
    const largest = this.largestSent();
    if (largest) this.items.splice(this.items.indexOf(largest.p), 1);
    return largest;
  }
  /** The largest publish sent on the connection (the oldest among equals), with its encoded size. */
  largestSent() {
    let largest;
    for (const p of this.items) {
      if (p.sentAs === null) continue;
      const bytes = utf8Length(encode(publishMessage(p, p.sentAs)));
      if (!largest || bytes > largest.bytes) largest = { p, bytes };
    }
    return largest;
  }
  /** The connection ended: every publish is to be sent again. */
  resetSent() {
    for (const p of this.items) p.sentAs = null;
  }
  /**
   * Rejects the publishes first sent `window` ms ago or longer: the server
   * no longer remembers their key, so a resend could store them twice.
   */
  expire(now, window) {
    const gone = this.items.filter((p) => p.firstSent !== null && now - p.firstSent >= window);
    if (gone.length === 0) return;
    this.items = this.items.filter((p) => !gone.includes(p));
    for (const p of gone) {
      p.reject(
        new TetherError(
          "idempotency_window_expired",
          `not resending a publish to ${JSON.stringify(p.channel)} first sent over ${window} ms ago: the server no longer remembers its key; it may or may not have been stored`
        )
      );
    }
  }
  /** Rejects every publish (the client stopped). */
  failAll(err) {
    const items = this.items;
    this.items = [];
    for (const p of items) p.reject(err);
  }
};
function publishMessage(p, id) {
  return { type: "publish", id, channel: p.channel, data: p.data, key: p.key };
}
function keyPrefix(random) {
  const c = globalThis.crypto;
  const bytes = new Uint8Array(8);
  if (c?.getRandomValues) {
    c.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256) & 255;
  }
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// src/rpcCalls.ts
var MAX_RPC_METHOD_BYTES = 256;
var RpcCalls = class {
  constructor(capacity) {
    this.capacity = capacity;
    this.items = [];
  }
  /** Queues a call; throws `queue_full` when `capacity` already wait. */
  add(c) {
    if (this.items.length >= this.capacity) {
      throw new TetherError("queue_full", `rpc queue full: ${this.capacity} rpcs already await their answer`);
    }
    this.items.push(c);
  }
  /** Calls not sent on the current connection, in order. */
  unsent() {
    return this.items.filter((c) => c.sentAs === null);
  }
  /** Removes and returns the call sent as request `id`. */
  take(id) {
    const i = this.items.findIndex((c) => c.sentAs === id);
    if (i < 0) return void 0;
    return this.items.splice(i, 1)[0];
  }
  /** The largest call sent on the connection, with its encoded size (after a 1009). */
  largestSent() {
    let largest;
    for (const c of this.items) {
      if (c.sentAs === null) continue;
      const bytes = utf8Length(encode(rpcMessage(c, c.sentAs)));
      if (!largest || bytes > largest.bytes) largest = { c, bytes };
    }
    return largest;
  }
  remove(c) {
    this.items = this.items.filter((x) => x !== c);
  }
  /**
   * The connection ended: every call sent on it is rejected with
   * `connection_lost` (it may or may not have been carried out); the others
   * wait for the next connection.
   */
  lost(reason) {
    const sent = this.items.filter((c) => c.sentAs !== null);
    if (sent.length === 0) return;
    this.items = this.items.filter((c) => c.sentAs === null);
    for (const c of sent) {
      c.reject(
        new TetherError(
          "connection_lost",
          `the connection ended before the answer to rpc ${JSON.stringify(c.method)} (it may or may not have been carried out; not sent again): ${reason}`
        )
      );
    }
  }
  /** Rejects every call (the client stopped). */
  failAll(err) {
    const items = this.items;
    this.items = [];
    for (const c of items) c.reject(err);
  }
};
function rpcMessage(c, id) {
  return { type: "rpc", id, method: c.method, data: c.data };
}
function badMethod(method) {
  if (typeof method !== "string") return "an rpc method must be a string";
  const bytes = utf8Length(method);
  if (bytes < 1 || bytes > MAX_RPC_METHOD_BYTES) {
    return `an rpc method must be 1 to ${MAX_RPC_METHOD_BYTES} bytes (this one is ${bytes})`;
  }
  return null;
}

// src/subscription.ts
var Subscription = class {
  /**
   * @internal created by `Tether.subscribe`, or by the client for a
   * server-side subscription (`serverSide`).
   */
  constructor(channel, handlers, owner, serverSide = false) {
    this.channel = channel;
    this.handlers = handlers;
    this.owner = owner;
    this.serverSide = serverSide;
    /** The last position delivered; null before the first `subscribed`. */
    this.position = null;
    /** @internal the subscribe in flight on this connection */
    this.request = null;
    /** @internal retryable refusals since the last successful subscribe (the retry backoff's attempt) */
    this.refusals = 0;
    /** @internal the pending resubscribe after a retryable refusal (a timer handle), or null */
    this.retryTimer = null;
    /**
     * @internal While our subscribe is in flight: the server made the
     * subscription itself at this position (raised by each message held back).
     */
    this.remade = null;
    this.active = true;
  }
  /**
   * Whether the subscription is still registered with its client: false after
   * `unsubscribe()` or a final refusal; true while a retryable refusal waits
   * to be retried.
   */
  get subscribed() {
    return this.active;
  }
  /** Stops delivery and unsubscribes on the server. */
  unsubscribe() {
    if (!this.active) return;
    this.active = false;
    this.owner.removeSubscription(this);
  }
  /**
   * Who is present in the channel (a `presence = true` channel), oldest join
   * first. Sent when connected (waiting while not, like a publish; resent on
   * the next connection when the connection ends before the answer). Rejects
   * with the server's code (`bad_request` for a channel without presence or
   * with over 1,000 present, `forbidden`), `not_subscribed` after
   * `unsubscribe()` or a refusal, or `disconnected` when the client stops.
   */
  presence() {
    return this.owner.presence(this, "presence");
  }
  /** How many clients and distinct users are present; settles as `presence()` does. */
  presenceStats() {
    return this.owner.presence(this, "presence_stats");
  }
  /** @internal a `join` or `leave` for this channel */
  applyPresence(msg) {
    if (!this.active) return;
    const ev = { channel: this.channel, client: msg.client, user: msg.user };
    if (msg.info) ev.info = msg.info;
    if (msg.type === "join") this.call(() => this.handlers.onJoin?.(ev));
    else this.call(() => this.handlers.onLeave?.(ev));
  }
  /** @internal the subscribe request for a new connection */
  subscribeMessage(id) {
    const recovering = this.position !== null;
    this.request = { id, recovering };
    return this.position ? { type: "subscribe", id, channel: this.channel, recover: { ...this.position } } : { type: "subscribe", id, channel: this.channel };
  }
  /**
   * @internal A `subscribed` for this channel. One with an `id` answers our
   * request (an older request's answer is ignored); one without (long
   * polling) is the server's resynchronisation signal.
   */
  applySubscribed(msg) {
    let recovering;
    if (msg.id === void 0) {
      if (this.request) {
        this.remade = { epoch: msg.epoch, offset: msg.offset };
        return "ok";
      }
      const pos = this.position;
      if (pos && pos.epoch === msg.epoch && pos.offset >= msg.offset) return "ok";
      recovering = pos !== null;
    } else {
      if (!this.request || this.request.id !== msg.id) return "ok";
      recovering = this.request.recovering;
      this.request = null;
      this.remade = null;
      this.refusals = 0;
    }
    const { epoch, offset, recovered } = msg;
    if (recovering && !recovered) {
      this.position = { epoch, offset };
      this.call(() => this.handlers.onSubscribed?.({ channel: this.channel, epoch, offset, recovered, resync: true }));
      return "ok";
    }
    const last = this.position?.offset ?? 0;
    this.position = { epoch, offset: recovering ? last : offset };
    this.call(() => this.handlers.onSubscribed?.({ channel: this.channel, epoch, offset, recovered, resync: false }));
    let result = "ok";
    for (const p of msg.publications) {
      if (this.applyPublication(p.offset, p.data) === "gap") {
        result = "gap";
        break;
      }
    }
    if (result === "ok" && this.position && this.position.offset < offset) {
      this.position.offset = offset;
    }
    return result;
  }
  /**
   * @internal A publication: delivered when it is the next offset, dropped
   * when already delivered, refused (`gap`, position unchanged) when offsets
   * were skipped.
   */
  applyPublication(offset, data) {
    if (this.request && this.remade) {
      this.remade.offset = Math.max(this.remade.offset, offset);
      return "ok";
    }
    const pos = this.position;
    if (!pos || !this.active) return "ok";
    if (offset <= pos.offset) return "ok";
    if (offset > pos.offset + 1) return "gap";
    pos.offset = offset;
    this.call(() => this.handlers.onMessage?.({ channel: this.channel, offset, data }));
    return "ok";
  }
  /**
   * @internal Our subscribe was answered `already_subscribed` after the
   * server made the subscription itself: continue from our position when its
   * stream starts no later (`recovered`), else report the gap (`resync`).
   * False when the server had not made it (a plain refusal).
   */
  adoptRemade() {
    const remade = this.remade;
    if (!remade) return false;
    this.remade = null;
    this.request = null;
    this.refusals = 0;
    const pos = this.position;
    let ev;
    if (!pos) {
      this.position = { ...remade };
      ev = { channel: this.channel, ...remade, recovered: false, resync: false };
    } else if (pos.epoch === remade.epoch && pos.offset >= remade.offset) {
      ev = { channel: this.channel, ...pos, recovered: true, resync: false };
    } else {
      this.position = { ...remade };
      ev = { channel: this.channel, ...remade, recovered: false, resync: true };
    }
    this.call(() => this.handlers.onSubscribed?.(ev));
    return true;
  }
  /** @internal the server refused the subscribe request for good */
  refused(err) {
    this.active = false;
    this.request = null;
    this.call(() => this.handlers.onError?.(err));
  }
  /** @internal the server refused the subscribe request for now; the client retries it */
  refusedForNow(err) {
    this.request = null;
    this.call(() => this.handlers.onError?.(err));
  }
  call(fn) {
    try {
      fn();
    } catch (e) {
      this.owner.report(e);
    }
  }
};

// src/client.ts
var PRESENCE_RETRIES = 3;
var Tether = class extends Connection {
  /**
   * `url`: `ws(s)://host[:port][/prefix]/ws`, or an `http(s)://host[:port][/prefix]`
   * base; `/ws` and `/lp` are derived from it. Call `connect()` to start.
   */
  constructor(url, options = {}) {
    super(url, options);
    this.subs = /* @__PURE__ */ new Map();
    /** The current connection's restore was sent: presence requests go out behind its resubscribes. */
    this.restored = false;
    this.keyCounter = 0;
    this.nextId = 0;
    this.owner = {
      removeSubscription: (sub) => this.removeSubscription(sub),
      report: (e) => this.emitter.emit("error", asError(e)),
      presence: (sub, kind) => this.presence(sub, kind)
    };
    this.queue = new PublishQueue(this.o.publishQueue);
    this.rpcs = new RpcCalls(this.o.publishQueue);
    this.presenceRequests = new PresenceRequests((h) => this.o.clock.clearTimeout(h));
    this.keys = keyPrefix(this.o.random);
    this.retryBackoff = new Backoff(this.o.minDelay, this.o.maxDelay);
  }
  /**
   * Subscribes to `channel`; throws `already_subscribed` when it is held (by
   * the application, or by the server: a server-side subscription).
   */
  subscribe(channel, handlers = {}) {
    const held = this.subs.get(channel);
    if (held) {
      const by = held.serverSide ? " (a server-side subscription: its events are the client's)" : "";
      throw new TetherError("already_subscribed", `already subscribed to ${JSON.stringify(channel)}${by}`);
    }
    const sub = new Subscription(channel, handlers, this.owner);
    this.subs.set(channel, sub);
    if (this.transport && this.welcomed) this.send([sub.subscribeMessage(++this.nextId)]);
    return sub;
  }
  /** The subscription to `channel`, if any (`serverSide` for one the server made). */
  getSubscription(channel) {
    return this.subs.get(channel);
  }
  /** The channels of the server-side subscriptions (made by the backend's connect hook). */
  get serverChannels() {
    return [...this.subs.values()].filter((s) => s.serverSide).map((s) => s.channel);
  }
  /**
   * Calls `method` on the backend's rpc hook with `data` (undefined: null)
   * and resolves with its `result`. Waits in a bounded queue (`publishQueue`
   * calls) while disconnected and is sent on the next connection; never sent
   * twice: rejects with `connection_lost` when its connection ends before the
   * answer (it may or may not have been carried out). Rejects with the
   * server's error code (the backend's refusal; `unavailable`, `internal`,
   * `over_capacity` when the hook is slow, down or wrong: retryable),
   * `queue_full`, `message_too_big`, `disconnected`, or at once with
   * `bad_request` for a method outside 1-256 bytes or data that is not JSON.
   */
  rpc(method, data) {
    if (this.terminal) return Promise.reject(this.stoppedError());
    const bad = badMethod(method);
    if (bad !== null) return Promise.reject(new TetherError("bad_request", bad));
    try {
      if (JSON.stringify(data) === void 0 && data !== void 0) throw new TypeError("not JSON");
    } catch (e) {
      return Promise.reject(new TetherError("bad_request", `rpc data is not JSON-serialisable: ${asError(e).message}`));
    }
    return new Promise((resolve2, reject) => {
      const c = { method, data, resolve: resolve2, reject, sentAs: null };
      try {
        this.rpcs.add(c);
      } catch (e) {
        reject(e);
        return;
      }
      if (this.transport && this.welcomed) this.send([this.rpcMessage(c)]);
    });
  }
  /**
   * Publishes `data` to `channel`; resolves with its offset once acked.
   * Waits in the bounded queue while disconnected; resent with the same
   * idempotency key after a reconnect. Rejects with `queue_full`, a server
   * error code, `idempotency_window_expired`, `message_too_big` (larger than
   * the server accepts: not resent), `disconnected`, or at once with
   * `bad_request` when `data` is not JSON-serialisable (a cycle, a BigInt).
   */
  publish(channel, data) {
    if (this.terminal) return Promise.reject(this.stoppedError());
    try {
      if (JSON.stringify(data) === void 0 && data !== void 0) throw new TypeError("not JSON");
    } catch (e) {
      return Promise.reject(new TetherError("bad_request", `publish data is not JSON-serialisable: ${asError(e).message}`));
    }
    return new Promise((resolve2, reject) => {
      const key = `${this.keys}-${++this.keyCounter}`;
      const p = { channel, data, key, resolve: resolve2, reject, sentAs: null, firstSent: null };
      try {
        this.queue.add(p);
      } catch (e) {
        reject(e);
        return;
      }
      if (this.transport && this.welcomed) this.send([this.publishMessage(p)]);
    });
  }
  /** Subscription.presence() and presenceStats(): sent behind the restore; waits while disconnected. */
  presence(sub, kind) {
    if (this.terminal) return Promise.reject(this.stoppedError());
    if (this.subs.get(sub.channel) !== sub) return Promise.reject(notSubscribed(sub.channel));
    return new Promise((resolve2, reject) => {
      const r = this.presenceRequests.add(sub.channel, kind, { resolve: resolve2, reject });
      if (r && this.restored) this.send([this.presenceMessage(r)]);
    });
  }
  stoppedError() {
    const { code, reason } = this.current;
    return new TetherError("disconnected", `the client is disconnected: ${reason ?? ""}`, code);
  }
  // ---- what a connection restores and receives ----
  restore(t) {
    this.queue.expire(this.o.clock.now(), this.o.idempotencyWindow);
    const msgs = [];
    for (const sub of this.subs.values()) {
      if (t.name === "longpoll" && sub.position) continue;
      msgs.push(sub.subscribeMessage(++this.nextId));
    }
    for (const p of this.queue.unsent()) msgs.push(this.publishMessage(p));
    for (const r of this.presenceRequests.unsent()) msgs.push(this.presenceMessage(r));
    for (const c of this.rpcs.unsent()) msgs.push(this.rpcMessage(c));
    this.restored = true;
    return msgs;
  }
  dispatch(t, m) {
    switch (m.type) {
      case "subscribed": {
        const sub = this.subs.get(m.channel) ?? (m.id === void 0 && t.announcing ? this.serverSubscription(m.channel) : void 0);
        if (!sub) return;
        if (m.id !== void 0 && sub.request?.id === m.id) this.usable();
        if (sub.applySubscribed(m) === "gap") this.gap(t, m.channel);
        else t.positionsChanged();
        return;
      }
      case "message":
        if (this.subs.get(m.channel)?.applyPublication(m.offset, m.data) === "gap") this.gap(t, m.channel);
        return;
      case "ack": {
        const p = this.queue.take(m.id);
        if (!p) return;
        this.usable();
        p.resolve({ offset: m.offset });
        return;
      }
      case "presence":
      case "presence_stats": {
        const r = this.presenceRequests.byId(m.id);
        if (!r) return;
        this.presenceRequests.resolve(r, m.type === "presence" ? m.clients : { clients: m.clients, users: m.users });
        return;
      }
      case "join":
      case "leave":
        this.subs.get(m.channel)?.applyPresence(m);
        return;
      case "rpc":
        this.rpcs.take(m.id)?.resolve(m.result);
        return;
      case "error": {
        const err = new TetherError(m.code, m.message);
        const p = m.id === void 0 ? void 0 : this.queue.take(m.id);
        if (p) return p.reject(err);
        const r = m.id === void 0 ? void 0 : this.presenceRequests.byId(m.id);
        if (r) return this.presenceRefused(t, r, err);
        const c = m.id === void 0 ? void 0 : this.rpcs.take(m.id);
        if (c) return c.reject(err);
        const sub = m.id === void 0 ? m.channel === void 0 ? void 0 : this.subs.get(m.channel) : [...this.subs.values()].find((s) => s.request?.id === m.id);
        if (sub && m.code === "already_subscribed" && sub.adoptRemade()) {
          t.positionsChanged();
        } else if (sub && isRetryable(m.code)) {
          this.retryLater(t, sub, err);
          t.positionsChanged();
        } else if (sub) {
          this.subs.delete(sub.channel);
          this.presenceRequests.rejectChannel(sub.channel, err);
          sub.refused(err);
          t.positionsChanged();
        } else {
          this.emitter.emit("error", err);
        }
        return;
      }
      default:
        return;
    }
  }
  connectionEnded(ended) {
    if (ended?.kind === "closed" && ended.code === 1009) this.rejectTooBig();
    if (!this.terminal) this.rpcs.lost(ended ? classify(ended).reason : "the transport changed");
    this.queue.resetSent();
    this.restored = false;
    this.presenceRequests.resetSent();
    for (const s of this.subs.values()) {
      s.request = null;
      s.remade = null;
      this.cancelRetry(s);
    }
  }
  stopped(err) {
    this.queue.failAll(err);
    this.rpcs.failAll(err);
    this.presenceRequests.rejectAll(err);
  }
  send(msgs) {
    this.liveness.verify("the clock jumped past the liveness deadline");
    this.transport?.send(msgs);
  }
  publishMessage(p) {
    p.sentAs = ++this.nextId;
    if (p.firstSent === null) p.firstSent = this.o.clock.now();
    return publishMessage(p, p.sentAs);
  }
  rpcMessage(c) {
    c.sentAs = ++this.nextId;
    return rpcMessage(c, c.sentAs);
  }
  /** A server-side subscription to `channel`, registered; its handlers are the client's events. */
  serverSubscription(channel) {
    const sub = new Subscription(
      channel,
      {
        onMessage: (ev) => this.emitter.emit("publication", ev),
        onSubscribed: (ev) => this.emitter.emit("subscribed", ev),
        onJoin: (ev) => this.emitter.emit("join", ev),
        onLeave: (ev) => this.emitter.emit("leave", ev),
        onError: (error) => {
          this.emitter.emit("error", error);
          if (!sub.subscribed) this.emitter.emit("unsubscribed", { channel, error });
        }
      },
      this.owner,
      true
    );
    this.subs.set(channel, sub);
    this.log(`server-side subscription to ${JSON.stringify(channel)}`);
    return sub;
  }
  presenceMessage(r) {
    r.sentAs = ++this.nextId;
    return presenceMessage(r, r.sentAs);
  }
  /**
   * A presence request answered with an error: rejects its callers, except a
   * `forbidden` on long polling for a channel held by position (the poll that
   * joins it may not have reached the server yet): asked again after the
   * subscribe-retry backoff, at most `PRESENCE_RETRIES` times.
   */
  presenceRefused(t, r, err) {
    const sub = this.subs.get(r.channel);
    const held = sub !== void 0 && sub.position !== null && sub.retryTimer === null;
    if (err.code !== "forbidden" || t.name !== "longpoll" || !held || r.retries >= PRESENCE_RETRIES) {
      this.presenceRequests.reject(r, err);
      return;
    }
    const delay = this.retryBackoff.delay(r.retries, this.o.random());
    r.retries++;
    r.sentAs = null;
    this.log(`presence of ${JSON.stringify(r.channel)} forbidden (the poll naming it may not have arrived): asking again in ${delay} ms`);
    r.retryTimer = this.o.clock.setTimeout(() => {
      r.retryTimer = null;
      if (this.presenceRequests.has(r) && this.transport === t && this.restored) this.send([this.presenceMessage(r)]);
    }, delay);
  }
  /**
   * The connection ended with 1009 (message too big): rejects the largest
   * publish sent on it with `message_too_big` (`PublishQueue.takeLargestSent`);
   * resent, it would get the same 1009 on every reconnect, and the publishes
   * behind it would wait forever.
   */
  rejectTooBig() {
    const rpc = this.rpcs.largestSent();
    if (rpc && rpc.bytes > (this.queue.largestSent()?.bytes ?? 0)) {
      this.rpcs.remove(rpc.c);
      this.log(`1009: rejecting the largest rpc sent (${rpc.bytes} bytes, ${JSON.stringify(rpc.c.method)})`);
      rpc.c.reject(
        new TetherError("message_too_big", `the server closed with 1009: this rpc (${rpc.bytes} bytes) is larger than its --max-message-bytes`)
      );
      return;
    }
    const big = this.queue.takeLargestSent();
    if (!big) return;
    this.log(`1009: not resending the largest publish sent (${big.bytes} bytes, to ${JSON.stringify(big.p.channel)})`);
    big.p.reject(
      new TetherError(
        "message_too_big",
        `the server closed with 1009: this publish (${big.bytes} bytes) is larger than its --max-message-bytes`
      )
    );
  }
  /**
   * The server refused `sub`'s subscribe with a retryable code (nothing was
   * done): keep the subscription, tell the app, and subscribe again (with its
   * recovery position, as usual) on this connection after a backoff that
   * grows with each refusal in a row and starts over once one succeeds.
   */
  retryLater(t, sub, err) {
    this.cancelRetry(sub);
    const delay = this.retryBackoff.delay(sub.refusals, this.o.random());
    sub.refusals++;
    this.log(`subscribe to ${JSON.stringify(sub.channel)} refused (${err.code}): retrying in ${delay} ms`);
    sub.retryTimer = this.o.clock.setTimeout(() => {
      sub.retryTimer = null;
      if (this.subs.get(sub.channel) !== sub || this.transport !== t || !this.welcomed) return;
      this.send([sub.subscribeMessage(++this.nextId)]);
    }, delay);
    sub.refusedForNow(err);
  }
  cancelRetry(sub) {
    if (sub.retryTimer === null) return;
    this.o.clock.clearTimeout(sub.retryTimer);
    sub.retryTimer = null;
  }
  removeSubscription(sub) {
    if (this.subs.get(sub.channel) !== sub) return;
    this.subs.delete(sub.channel);
    this.presenceRequests.rejectChannel(sub.channel, notSubscribed(sub.channel));
    const waiting = sub.retryTimer !== null;
    this.cancelRetry(sub);
    const t = this.transport;
    if (!t || !this.welcomed) return;
    if (sub.request || sub.position && !waiting) this.send([{ type: "unsubscribe", id: ++this.nextId, channel: sub.channel }]);
    t.positionsChanged();
  }
  /** Held positions; a channel whose retry waits is left out (the server refused to hold it). */
  positions() {
    const out = [];
    for (const s of this.subs.values()) if (s.position && s.retryTimer === null) out.push([s.channel, { ...s.position }]);
    return Object.fromEntries(out);
  }
};
function notSubscribed(channel) {
  return new TetherError("not_subscribed", `not subscribed to ${JSON.stringify(channel)}`);
}
export {
  Backoff,
  CLOSE_CODES,
  CLOSE_CODE_RANGES,
  DecodeError,
  FIRST_PROBE_DELAY,
  MAX_CONNECT_DATA_BYTES,
  MAX_RPC_METHOD_BYTES,
  MAX_SEND_BATCH,
  MAX_SEND_BYTES,
  PERMANENT_STATUSES,
  PRESENCE_RETRIES,
  RETRYABLE_ERRORS,
  STABLE_AFTER,
  Subscription,
  Tether,
  TetherError,
  WAKE_CHECK_TIMEOUT,
  WATCH_EVERY,
  classify,
  decode,
  decodeValue,
  encode,
  isRetryable,
  parseRetryAfter,
  parseRetryHint,
  reconnectFor
};
