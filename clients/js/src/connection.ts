// The connection life shared by every Tether client: one transport at a time
// (WebSocket, or long polling as the fallback, with a probe back), the
// handshake, the heartbeat, reconnection with backoff per the close-code
// table, offline/online and resume handling. What is restored on a new
// connection (subscriptions, publishes) is the subclass's (client.ts).

import { Backoff } from './backoff.js';
import type { SessionStorageLike } from './env.js';
import { classify, type Ended } from './closeCodes.js';
import { encodeConnectData, requestCredentials, type Credentials } from './credentials.js';
import { RttMeter } from './rtt.js';
import { Liveness } from './liveness.js';
import { endpoints, resolve, withData, withToken, type Endpoints, type Resolved, type TetherOptions } from './options.js';
import type { ClientMessage, ServerMessage, StreamPosition } from './protocol.js';
import { Emitter, TetherError, type ConnectionState, type TetherEvents, type TransportName } from './state.js';
import { LongPollTransport } from './transport/longpoll.js';
import type { Transport, TransportHandlers } from './transport/transport.js';
import { WebSocketTransport } from './transport/websocket.js';

/**
 * A connection proves usable — and the backoff starts over — once the welcome
 * arrived and then either a request was answered (subscribed, ack) or it
 * stayed up this long. A server that accepts and at once closes again keeps
 * the client backing off instead of reconnecting in a tight loop.
 */
export const STABLE_AFTER = 5_000;

const NO_HANDLERS: TransportHandlers = { onOpen() {}, onActivity() {}, onMessage() {}, onEnded() {} };
type Timer = 'retryTimer' | 'tokenTimer' | 'handshakeTimer' | 'stableTimer' | 'probeTimer' | 'probeDeadline';
type Welcome = Extract<ServerMessage, { type: 'welcome' }>;

export abstract class Connection {
  /**
   * Round-trip time (ms) of the last application ping (one follows every
   * welcome, then heartbeat, resume and `ping()` pings); undefined until measured.
   */
  get rtt(): number | undefined {
    return this.meter.last;
  }
  /**
   * The client id of the current connection's `welcome` (what presence and
   * join/leave show for this client); a new one on every connection,
   * undefined while not connected.
   */
  get clientId(): string | undefined {
    return this.welcomed ? this.clientName : undefined;
  }
  private clientName: string | undefined;
  protected readonly o: Resolved;
  protected readonly emitter = new Emitter<TetherEvents>();
  protected transport: Transport | null = null;
  protected welcomed = false;
  protected terminal = false;
  protected current: ConnectionState;
  protected readonly liveness: Liveness;
  private readonly urls: Endpoints;
  private readonly backoff: Backoff;
  private started = false;
  /** An attempt was started since connect(): later ones are `reconnecting`, not `connecting`. */
  private tried = false;
  private attempt = 0;
  private generation = 0;
  private wsFailures = 0;
  private lpFailures = 0;
  private fallback = false;
  /** A WebSocket was welcomed in this client's life: a later fallback is more likely an outage. */
  private wsWorked = false;
  /** When the next probe runs: after `probeInterval`, soon (`firstProbeDelay`) or at once. */
  private nextProbe: 'interval' | 'soon' | 'now' = 'interval';
  /** The sessionStorage key remembering a fallback for this endpoint. */
  private readonly fallbackKey: string;
  private forceFallback = false;
  /** A probe is under way (asking for its token, or its WebSocket open). */
  private probing = false;
  private probeSeq = 0;
  private probe: WebSocketTransport | null = null;
  private readonly meter: RttMeter;
  private readonly timers: Record<Timer, unknown> = {
    retryTimer: null, tokenTimer: null, handshakeTimer: null, stableTimer: null, probeTimer: null, probeDeadline: null,
  };
  private readonly listeners: Array<[string, () => void]>;

  constructor(url: string, options: TetherOptions = {}) {
    this.o = resolve(options);
    this.urls = endpoints(url);
    // Fixed connect data that the server would refuse is refused here, now.
    if (this.o.data !== undefined && typeof this.o.data !== 'function') encodeConnectData(this.o.data);
    if (!this.canWebSocket() && !this.canLongPoll()) {
      throw new TypeError('no usable transport: neither a WebSocket implementation nor fetch is available');
    }
    this.backoff = new Backoff(this.o.minDelay, this.o.maxDelay);
    this.fallbackKey = `tether:fallback:${this.urls.ws}`;
    if (this.canWebSocket() && this.canLongPoll() && this.storage((st) => st.getItem(this.fallbackKey)) === '1') {
      // This tab fell back before (a reload): start on long polling instead of
      // paying the WebSocket failures again; probe after probeInterval.
      this.fallback = true;
      this.log('long polling (remembered for this tab)');
    }
    this.current = { state: 'disconnected', transport: this.preferred() };
    this.meter = new RttMeter(this.o.clock);
    this.liveness = new Liveness(this.o.clock, () => this.transport?.send([this.meter.message()]), (why) => this.drop(why));
    const resume = (why: string) => () => this.resume(why);
    this.listeners = [
      ['online', resume('online')],
      ['offline', () => this.wentOffline()],
      ['pageshow', resume('pageshow')],
      // Page Lifecycle: a frozen page (timers stopped, sockets possibly dead) runs again.
      ['resume', resume('resume')],
      ['visibilitychange', () => this.o.env.visible?.() !== false && this.resume('visibilitychange')],
    ];
  }

  /** The connection state (a copy). */
  get state(): ConnectionState {
    return { ...this.current };
  }

  on<K extends keyof TetherEvents>(type: K, fn: (v: TetherEvents[K]) => void): () => void {
    return this.emitter.on(type, fn);
  }

  off<K extends keyof TetherEvents>(type: K, fn: (v: TetherEvents[K]) => void): void {
    this.emitter.off(type, fn);
  }

  /** Starts connecting (and reconnecting) until `disconnect()` or a terminal close. */
  connect(): void {
    if (this.started) return;
    this.started = true;
    this.terminal = false;
    this.attempt = 0;
    this.tried = false;
    for (const [type, fn] of this.listeners) this.o.env.addEventListener(type, fn);
    this.open();
  }

  /** Closes the connection (1000) and stays disconnected; pending publishes reject. */
  disconnect(): void {
    if (this.started || !this.terminal) this.stop(1000, 'disconnected by the client');
  }

  /** A new connection got its welcome: what it must send to restore (subscribes, publishes). */
  protected abstract restore(t: Transport): ClientMessage[];
  /** A server message other than welcome, pong and close. */
  protected abstract dispatch(t: Transport, m: ServerMessage): void;
  /** The connection ended (how, when it ended by itself): requests in flight on it are void. */
  protected abstract connectionEnded(ended?: Ended): void;
  /** The client stopped for good with `err`. */
  protected abstract stopped(err: TetherError): void;
  /** Every held channel's position (named in each long poll). */
  protected abstract positions(): Record<string, StreamPosition>;

  // ---- connection life ----

  private open(): void {
    this.clear('retryTimer');
    if (!this.started || this.transport) return;
    if (!this.o.env.onLine()) {
      this.goOffline();
      return;
    }
    if (!this.tried) {
      this.tried = true;
      this.setState({ state: 'connecting', transport: this.preferred() });
    } else if (this.current.state !== 'reconnecting') {
      // A retry started early (online again, a due retry on resume): it is
      // still a reconnection, and it starts now.
      const { code, reason } = this.current;
      this.setState({
        state: 'reconnecting',
        transport: this.preferred(),
        attempt: Math.max(1, this.attempt),
        nextRetryAt: this.o.clock.now(),
        ...(code === undefined ? {} : { code }),
        ...(reason === undefined ? {} : { reason }),
      });
    }
    const gen = ++this.generation;
    this.requestCredentials(
      'tokenTimer',
      () => gen === this.generation && this.started,
      (c) => this.start(c),
      (reason) => this.ended(null, { kind: 'lost', reason }),
    );
  }

  /**
   * Gets the token and the connect data for an attempt (or a probe): see
   * `requestCredentials` (credentials.ts); failures are `error` events.
   */
  private requestCredentials(
    timer: 'tokenTimer' | 'probeDeadline',
    current: () => boolean,
    ok: (c: Credentials) => void,
    fail: (reason: string) => void,
  ): void {
    const deadline = { set: (ms: number, fn: () => void) => this.set(timer, ms, fn), clear: () => this.clear(timer) };
    requestCredentials(this.o, deadline, current, ok, fail, (err) => this.emitter.emit('error', err));
  }

  private start({ token, data }: Credentials): void {
    const t: Transport = this.useWebSocket()
      ? new WebSocketTransport(withData(withToken(this.urls.ws, token), data), this.o.WebSocket!, NO_HANDLERS, (m) => this.log(m))
      : new LongPollTransport(
          {
            base: this.urls.lp,
            query: this.urls.lpQuery,
            ...(data === undefined ? {} : { openQuery: `data=${data}` }),
            token,
            fetch: this.o.fetch!,
            clock: this.o.clock,
            requestTimeout: this.o.requestTimeout,
            positions: () => this.positions(),
            log: (m) => this.log(m),
          },
          NO_HANDLERS,
        );
    t.handlers = this.bind(t);
    this.transport = t;
    this.welcomed = false;
    this.log(`opening ${t.name}`);
    this.set('handshakeTimer', this.o.handshakeTimeout, () => {
      if (this.transport !== t || this.welcomed) return;
      this.forceFallback = t.name === 'websocket' && t.opened;
      this.ended(t, { kind: 'lost', reason: `no welcome within ${this.o.handshakeTimeout} ms` });
    });
  }

  private bind(t: Transport): TransportHandlers {
    return {
      onOpen: () => {},
      onActivity: () => this.transport === t && this.welcomed && this.liveness.heard(),
      onMessage: (m) => this.transport === t && this.message(t, m),
      onEnded: (e) => this.ended(t, e),
    };
  }

  private welcome(t: Transport, m: Welcome): void {
    this.clear('handshakeTimer');
    this.welcomed = true;
    // What presence and join/leave show for this client; on long polling the
    // welcome's `client` is the session's credential, never shown to others.
    this.clientName = m.public_client ?? m.client;
    if (t.name === 'websocket') {
      this.wsFailures = 0;
      this.wsWorked = true;
      this.storage((st) => st.removeItem(this.fallbackKey));
    } else {
      this.lpFailures = 0;
    }
    this.liveness.start(m.ping_interval_ms, m.pong_timeout_ms);
    this.setState({ state: 'connected', transport: t.name });
    if (this.transport !== t) return; // a state listener called disconnect()
    this.set('stableTimer', STABLE_AFTER, () => this.usable());
    // A ping first, so that the RTT is known at connect even on a channel too
    // busy for heartbeat pings; the same send as the restore (one /lp/send).
    t.send([this.meter.message(), ...this.restore(t)]);
    if (t.name === 'longpoll') this.scheduleProbe();
  }

  private message(t: Transport, m: ServerMessage): void {
    if (!this.welcomed) {
      if (m.type === 'welcome') this.welcome(t, m);
      else this.ended(t, { kind: 'lost', reason: `expected a welcome, got ${m.type}` });
      return;
    }
    this.liveness.heard();
    if (m.type === 'pong') {
      this.meter.pong();
    } else if (m.type === 'close') {
      this.ended(t, { kind: 'closed', code: m.code, reason: m.reason });
    } else {
      this.dispatch(t, m);
    }
  }

  /** The connection (or the attempt) ended; decide whether and when to retry. */
  private ended(t: Transport | null, e: Ended): void {
    if (t !== this.transport || !this.started) return;
    const wasWs = t?.name === 'websocket';
    const welcomed = this.welcomed;
    const force = this.forceFallback;
    this.forceFallback = false;
    this.teardown(false, e);
    if (wasWs && !welcomed && e.kind === 'lost' && this.canLongPoll()) {
      this.wsFailures++;
      if (!this.fallback && (force || this.wsFailures >= this.o.fallbackAfter)) {
        this.fallback = true;
        this.lpFailures = 0;
        // WebSocket worked before: the server is more likely down, restarting
        // or refusing handshakes (429) than WebSocket blocked: probe back soon.
        this.nextProbe = this.wsWorked ? 'soon' : 'interval';
        this.storage((st) => st.setItem(this.fallbackKey, '1'));
        this.log(`WebSocket failed ${this.wsFailures} time(s)${force ? ' (opened, no welcome)' : ''}: long polling from now on`);
      }
    } else if (t && !wasWs && !welcomed && e.kind === 'lost' && this.fallback && this.canWebSocket()) {
      // Long polling fails as well: try WebSocket again rather than insist.
      if (++this.lpFailures >= this.o.fallbackAfter) {
        this.fallback = false;
        this.wsFailures = 0;
        this.log(`long polling failed ${this.lpFailures} time(s): trying WebSocket again`);
      }
    }
    const c = classify(e);
    this.log(`${c.reason}`);
    if (c.reconnect === 'never') return this.stop(c.code, c.reason);
    // 4002 with no token at all: the session came from the server's connect
    // hook (a cookie), which decides again on the next connection.
    if (c.reconnect === 'after_token_refresh' && typeof this.o.token !== 'function' && this.o.token !== undefined) {
      return this.stop(c.code, `${c.reason} (no token function to refresh the token with)`);
    }
    if (this.attempt >= this.o.maxAttempts) {
      return this.stop(c.code, `gave up after ${this.attempt} attempts; last: ${c.reason}`);
    }
    const delay = this.backoff.delay(this.attempt, this.o.random(), c.hint);
    this.attempt++;
    if (!this.o.env.onLine()) {
      this.setState({ state: 'offline', transport: this.preferred(), code: c.code, reason: c.reason });
      return;
    }
    this.setState({
      state: 'reconnecting',
      transport: this.preferred(),
      attempt: this.attempt,
      nextRetryAt: this.o.clock.now() + delay,
      code: c.code,
      reason: c.reason,
    });
    this.set('retryTimer', delay, () => this.open());
  }

  /** Stops for good (until `connect()`). */
  private stop(code: number, reason: string): void {
    this.started = false;
    this.terminal = true;
    this.generation++;
    this.teardown();
    this.clear('retryTimer');
    for (const [type, fn] of this.listeners) this.o.env.removeEventListener?.(type, fn);
    this.setState({ state: 'disconnected', transport: this.preferred(), code, reason });
    this.stopped(new TetherError('disconnected', reason, code));
  }

  /**
   * Ends the current transport (silently) and forgets what was in flight on
   * it (`connectionEnded`, told how it `ended`); `ping()` calls waiting reject,
   * unless `keepPings` (a switch to another transport, whose welcome ping answers them).
   */
  private teardown(keepPings = false, ended?: Ended): void {
    for (const k of ['tokenTimer', 'handshakeTimer', 'stableTimer', 'probeTimer'] as const) this.clear(k);
    this.cancelProbe();
    this.liveness.stop();
    const t = this.transport;
    this.transport = null;
    this.welcomed = false;
    this.meter.reset(keepPings);
    t?.close(1000, 'client closing');
    this.connectionEnded(ended);
  }

  protected usable(): void {
    this.clear('stableTimer');
    this.attempt = 0;
  }

  /** A publication skipped offsets: the WebSocket reconnects and recovers; long polling re-reads. */
  protected gap(t: Transport, channel: string): void {
    if (t.repairsGaps) return;
    this.ended(t, { kind: 'lost', reason: `gap in ${JSON.stringify(channel)}; reconnecting to recover` });
  }

  private drop(why: string): void {
    if (this.transport) this.ended(this.transport, { kind: 'lost', reason: why });
  }

  // ---- environment: offline/online, resume from sleep or a hidden tab ----

  private resume(why: string): void {
    if (!this.started) return;
    // The network may have changed: WebSocket may pass where it was blocked.
    if (why === 'online' && this.fallback) this.probeNow();
    if (this.transport) {
      if (this.welcomed) {
        // Ping first: the ping takes an idle (possibly dead) pooled connection
        // before the new poll does, so a dead one is found within the check.
        this.liveness.check(why);
        this.transport.refresh();
      }
      return;
    }
    if (this.timers.tokenTimer !== null) return; // an attempt is under way, waiting for its token
    const due = this.current.nextRetryAt ?? 0;
    if (this.current.state === 'offline' || why === 'online' || this.o.clock.now() >= due) this.open();
  }

  private wentOffline(): void {
    if (!this.started) return;
    if (this.welcomed) this.liveness.check('offline event');
    else if (!this.transport) {
      this.generation++; // a token request under way is not followed by an attempt
      this.clear('tokenTimer');
      this.clear('retryTimer');
      this.goOffline();
    }
  }

  /** State `offline`, keeping the last ending's code and reason; no event when already offline. */
  private goOffline(): void {
    if (this.current.state === 'offline') return;
    const { code, reason } = this.current;
    this.setState({
      state: 'offline',
      transport: this.preferred(),
      ...(code === undefined ? {} : { code }),
      ...(reason === undefined ? {} : { reason }),
    });
  }

  // ---- long polling <-> WebSocket ----

  private scheduleProbe(): void {
    if (!this.fallback || !this.canWebSocket() || this.timers.probeTimer !== null || this.probing) return;
    const [min, max] = this.o.firstProbeDelay;
    const delay =
      this.nextProbe === 'now' ? 0 : this.nextProbe === 'soon' ? Math.round(min + this.o.random() * (max - min)) : this.o.probeInterval;
    this.set('probeTimer', delay, () => this.runProbe());
  }

  /** Probes at once when connected over long polling, else right after the next long-poll welcome. */
  private probeNow(): void {
    this.nextProbe = 'now';
    if (this.transport?.name !== 'longpoll' || !this.welcomed || this.probing) return;
    this.clear('probeTimer');
    this.runProbe();
  }

  /**
   * While on long polling: ask for a token (the token function is called
   * before every attempt, probes included), open a WebSocket, and switch to
   * it once it is welcomed. A probe that fails in any way is tried again later.
   */
  private runProbe(): void {
    if (this.transport?.name !== 'longpoll' || !this.welcomed || this.probing) return;
    this.probing = true;
    this.nextProbe = 'interval';
    const seq = ++this.probeSeq;
    const current = () => this.probing && this.probeSeq === seq;
    this.log('probing WebSocket');
    this.requestCredentials(
      'probeDeadline',
      current,
      (c) => this.openProbe(c),
      (reason) => {
        this.log(`probe: ${reason}`);
        this.cancelProbe();
        this.scheduleProbe();
      },
    );
  }

  private openProbe({ token, data }: Credentials): void {
    const again = (p: WebSocketTransport) => {
      if (this.probe !== p) return;
      this.cancelProbe();
      this.scheduleProbe();
    };
    const p = new WebSocketTransport(withData(withToken(this.urls.ws, token), data), this.o.WebSocket!, NO_HANDLERS);
    p.handlers = {
      ...NO_HANDLERS,
      onMessage: (m) => (m.type === 'welcome' && this.probe === p ? this.switchTo(p, m) : again(p)),
      onEnded: () => again(p),
    };
    this.probe = p;
    this.set('probeDeadline', this.o.handshakeTimeout, () => again(p));
  }

  private switchTo(p: WebSocketTransport, m: Welcome): void {
    this.probe = null;
    this.probing = false;
    this.log('WebSocket works again: leaving long polling');
    this.fallback = false;
    this.teardown(true); // the poll in flight is aborted; its positions are recovered over the WebSocket
    p.handlers = this.bind(p);
    this.transport = p;
    this.welcome(p, m);
  }

  private cancelProbe(): void {
    this.probing = false;
    this.clear('probeDeadline');
    const p = this.probe;
    this.probe = null;
    p?.close(1000, 'probe done');
  }

  // ---- helpers ----

  /**
   * Measures the round-trip time: sends `{"type":"ping"}` (unless one is
   * already waiting for its pong: pongs carry no id, so concurrent calls share
   * the next one) and resolves with the RTT in ms, also left in `rtt`. Rejects
   * with `disconnected` when not connected or when the connection ends first,
   * and with `timeout` without a pong within `WAKE_CHECK_TIMEOUT` (3 s).
   */
  ping(): Promise<number> {
    const t = this.transport;
    if (!t || !this.welcomed) return Promise.reject(new TetherError('disconnected', 'not connected'));
    return this.meter.measure((m) => t.send([m]));
  }

  /** Uses sessionStorage when there is one; any exception from it is ignored. */
  private storage<T>(use: (st: SessionStorageLike) => T): T | undefined {
    try {
      const st = this.o.env.sessionStorage?.();
      return st ? use(st) : undefined;
    } catch {
      return undefined; // blocked (sandboxed iframe, privacy settings) or full
    }
  }

  private canWebSocket(): boolean {
    return this.o.WebSocket !== null && this.o.transports.includes('websocket');
  }

  private canLongPoll(): boolean {
    return this.o.fetch !== null && this.o.transports.includes('longpoll');
  }

  private useWebSocket(): boolean {
    return this.canWebSocket() && !(this.fallback && this.canLongPoll());
  }

  private preferred(): TransportName {
    return this.transport?.name ?? (this.useWebSocket() ? 'websocket' : 'longpoll');
  }

  private setState(s: ConnectionState): void {
    this.current = s;
    this.log(`state ${JSON.stringify(s)}`);
    this.emitter.emit('state', { ...s });
  }

  private set(k: Timer, ms: number, fn: () => void): void {
    this.clear(k);
    this.timers[k] = this.o.clock.setTimeout(() => {
      this.timers[k] = null;
      fn();
    }, ms);
  }

  private clear(k: Timer): void {
    if (this.timers[k] !== null) this.o.clock.clearTimeout(this.timers[k]);
    this.timers[k] = null;
  }

  protected log(msg: string): void {
    if (this.o.debug) console.debug(`[tether] ${msg}`);
  }
}

