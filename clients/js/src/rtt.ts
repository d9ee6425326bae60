// The round-trip time, from application pings. Pongs carry no id: the next
// pong answers the oldest unanswered ping, and every `ping()` call waiting
// shares it. A ping older than WAKE_CHECK_TIMEOUT counts as lost.

import { WAKE_CHECK_TIMEOUT } from './liveness.js';
import type { ClientMessage } from './protocol.js';
import { TetherError } from './state.js';
import type { Clock } from './transport/transport.js';

interface Waiter {
  resolve(rtt: number): void;
  reject(err: Error): void;
  timer: unknown;
}

export class RttMeter {
  /** The last measured round-trip time (ms); undefined until measured. */
  last: number | undefined;
  /** When the oldest unanswered ping was sent. */
  private sentAt: number | null = null;
  private readonly waiters = new Set<Waiter>();

  constructor(private readonly clock: Clock) {}

  /** A ping to send; the RTT is measured from the oldest one still unanswered. */
  message(): ClientMessage {
    if (!this.outstanding()) this.sentAt = this.clock.now();
    return { type: 'ping' };
  }

  /** A pong arrived: measures, and answers every waiting `measure()`. */
  pong(): void {
    if (this.sentAt !== null) this.last = Math.max(0, this.clock.now() - this.sentAt);
    this.sentAt = null;
    const rtt = this.last;
    if (rtt !== undefined) this.settle((w) => w.resolve(rtt));
  }

  /**
   * The RTT of the next pong; `send` sends a ping unless one already waits
   * for its pong. Rejects with `timeout` without a pong within
   * WAKE_CHECK_TIMEOUT.
   */
  measure(send: (m: ClientMessage) => void): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const w: Waiter = { resolve, reject, timer: null };
      w.timer = this.clock.setTimeout(() => {
        this.waiters.delete(w);
        reject(new TetherError('timeout', `no pong within ${WAKE_CHECK_TIMEOUT} ms`));
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
  reset(keepWaiters: boolean): void {
    this.sentAt = null;
    if (!keepWaiters) this.settle((w) => w.reject(new TetherError('disconnected', 'the connection ended before the pong')));
  }

  private outstanding(): boolean {
    return this.sentAt !== null && this.clock.now() - this.sentAt < WAKE_CHECK_TIMEOUT;
  }

  private settle(fn: (w: Waiter) => void): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) {
      this.clock.clearTimeout(w.timer);
      fn(w);
    }
  }
}
