// Dead-connection detection (docs/protocol.md, "Heartbeat"). Any sign of life
// from the server resets a deadline of ping_interval + pong_timeout; after
// ping_interval of silence the client sends `{"type":"ping"}`. Timers stop
// while a laptop sleeps and fire about once a minute in hidden tabs, so the
// wall clock is checked too: a timer that fires late past the deadline, a
// send, or a resume (visible, pageshow, resume, online) with the wall clock
// past the deadline makes the connection suspect: it is pinged with a short
// deadline instead of being trusted. A watch every WATCH_EVERY compares the
// wall clock with the timers' clock, so a wake is noticed within 2 s even
// where timers stop during a sleep and fire "on time" long after the wake.

import type { Clock } from './transport/transport.js';

/** The deadline for the answer to a ping sent on wake or resume. */
export const WAKE_CHECK_TIMEOUT = 3_000;
/** A timer that fires this much after it was due means the clock jumped. */
const LATE_TIMER = 1_000;
/**
 * While connected, the wall clock is compared with the timers' clock this
 * often. Where timers stop during a sleep (Linux's monotonic clock does not
 * count a suspend), a heartbeat timer fires long after the wake — up to
 * ping_interval — on time by its own clock; this watch notices the wall
 * clock's jump within WATCH_EVERY of the wake and checks at once.
 */
export const WATCH_EVERY = 2_000;
/** A watch tick this much late: the page slept, was frozen, or is throttled. */
const SLEPT = 5_000;
/** Heartbeat timings from a welcome are clamped to 1 ms ..= 1 hour. */
const MAX_HEARTBEAT = 3_600_000;

export function clampHeartbeat(ms: number): number {
  return Math.min(MAX_HEARTBEAT, Math.max(1, ms));
}

export class Liveness {
  private pingInterval = 25_000;
  private pongTimeout = 10_000;
  private lastHeard = 0;
  private timer: unknown = null;
  private dueAt = 0;
  private pinged = false;
  private checkTimer: unknown = null;
  private watchTimer: unknown = null;
  private watchDue = 0;
  private running = false;

  constructor(
    private readonly clock: Clock,
    private readonly sendPing: () => void,
    private readonly dead: (reason: string) => void,
  ) {}

  start(pingInterval: number, pongTimeout: number): void {
    this.pingInterval = clampHeartbeat(pingInterval);
    this.pongTimeout = clampHeartbeat(pongTimeout);
    this.running = true;
    this.heard();
    this.watch();
  }

  stop(): void {
    this.running = false;
    this.clear();
  }

  /** Anything from the server: the connection is alive. */
  heard(): void {
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
  suspect(): boolean {
    return this.running && this.clock.now() > this.lastHeard + this.pingInterval + this.pongTimeout;
  }

  /** Pings now; unless anything is heard within `timeout` ms, the connection is dead. */
  check(why: string, timeout = WAKE_CHECK_TIMEOUT): void {
    if (!this.running || this.checkTimer !== null) return;
    this.sendPing();
    this.checkTimer = this.clock.setTimeout(() => {
      this.checkTimer = null;
      if (this.running) this.dead(`no answer to a ping within ${timeout} ms (${why})`);
    }, timeout);
  }

  /** Before a send: a wall clock past the deadline makes the connection suspect. */
  verify(why: string): void {
    if (this.suspect()) this.check(why);
  }

  private schedule(ms: number): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.dueAt = this.clock.now() + ms;
    this.timer = this.clock.setTimeout(() => this.fire(), ms);
  }

  private clear(): void {
    for (const t of [this.timer, this.checkTimer, this.watchTimer]) if (t !== null) this.clock.clearTimeout(t);
    this.timer = this.checkTimer = this.watchTimer = null;
  }

  private watch(): void {
    if (this.watchTimer !== null) this.clock.clearTimeout(this.watchTimer);
    this.watchDue = this.clock.now() + WATCH_EVERY;
    this.watchTimer = this.clock.setTimeout(() => {
      this.watchTimer = null;
      if (!this.running) return;
      const late = this.clock.now() - this.watchDue;
      if (late > SLEPT) this.check(`the wall clock jumped ${Math.round(late / 1000)} s: woke from sleep?`);
      this.watch();
    }, WATCH_EVERY);
  }

  private fire(): void {
    this.timer = null;
    if (!this.running) return;
    const now = this.clock.now();
    const deadline = this.lastHeard + this.pingInterval + this.pongTimeout;
    if (now - this.dueAt > LATE_TIMER && now > deadline) {
      this.check('the clock jumped past the deadline: woke from sleep?');
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
}
