// The Tether client: subscriptions recovered from their last position and
// publishes resent with their idempotency keys over the connection that
// connection.ts keeps up. Same semantics as the Rust client (docs/client.md),
// plus: a subscribe refused with a retryable code is asked again on the same
// connection after a backoff (`retryLater`); on long polling, an id-less
// error naming a held channel (the poll named it, the server could not hold
// it) is such a refusal too; a close with 1009 rejects the largest publish
// sent on that connection (message_too_big) instead of resending it forever.
// Presence requests wait and are resent like publishes (presenceRequests.ts).
// Rpcs wait like publishes but are never sent twice (rpcCalls.ts). A
// `subscribed` without id for a channel not asked for is a server-side
// subscription (the backend's connect hook made it): a Subscription whose
// handlers are the client's events, restored after reconnects like the
// application's own (subscription.ts, `adoptRemade`).

import { Backoff } from './backoff.js';
import { classify, type Ended } from './closeCodes.js';
import { Connection } from './connection.js';
import type { TetherOptions } from './options.js';
import { isRetryable, type ClientMessage, type ServerMessage, type StreamPosition } from './protocol.js';
import { PresenceRequests, presenceMessage, type PresenceKind, type PresenceRequest } from './presenceRequests.js';
import { PublishQueue, keyPrefix, publishMessage, type Pending, type PublishResult } from './publishQueue.js';
import { RpcCalls, badMethod, rpcMessage, type RpcCall } from './rpcCalls.js';
import { TetherError, asError } from './state.js';
import { Subscription, type SubscriptionHandlers, type SubscriptionOwner } from './subscription.js';
import type { Transport } from './transport/transport.js';

export { STABLE_AFTER } from './connection.js';

/**
 * On long polling, a `forbidden` answer to a presence request for a channel
 * held by position is asked again (after the subscribe-retry backoff) up to
 * this many times: after a reconnect the channel is joined by the poll that
 * names it, which may reach the server after the `/lp/send` carrying the
 * request.
 */
export const PRESENCE_RETRIES = 3;

export class Tether extends Connection {
  private readonly subs = new Map<string, Subscription>();
  private readonly queue: PublishQueue;
  private readonly rpcs: RpcCalls;
  private readonly presenceRequests: PresenceRequests;
  /** The current connection's restore was sent: presence requests go out behind its resubscribes. */
  private restored = false;
  private readonly keys: string;
  /** The delay before resubscribing after a retryable refusal; its attempt is the subscription's `refusals`. */
  private readonly retryBackoff: Backoff;
  private keyCounter = 0;
  private nextId = 0;
  private readonly owner: SubscriptionOwner = {
    removeSubscription: (sub) => this.removeSubscription(sub),
    report: (e) => this.emitter.emit('error', asError(e)),
    presence: (sub, kind) => this.presence(sub, kind),
  };

  /**
   * `url`: `ws(s)://host[:port][/prefix]/ws`, or an `http(s)://host[:port][/prefix]`
   * base; `/ws` and `/lp` are derived from it. Call `connect()` to start.
   */
  constructor(url: string, options: TetherOptions = {}) {
    super(url, options);
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
  subscribe(channel: string, handlers: SubscriptionHandlers = {}): Subscription {
    const held = this.subs.get(channel);
    if (held) {
      const by = held.serverSide ? ' (a server-side subscription: its events are the client\'s)' : '';
      throw new TetherError('already_subscribed', `already subscribed to ${JSON.stringify(channel)}${by}`);
    }
    const sub = new Subscription(channel, handlers, this.owner);
    this.subs.set(channel, sub);
    if (this.transport && this.welcomed) this.send([sub.subscribeMessage(++this.nextId)]);
    return sub;
  }

  /** The subscription to `channel`, if any (`serverSide` for one the server made). */
  getSubscription(channel: string): Subscription | undefined {
    return this.subs.get(channel);
  }

  /** The channels of the server-side subscriptions (made by the backend's connect hook). */
  get serverChannels(): string[] {
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
  rpc(method: string, data?: unknown): Promise<unknown> {
    if (this.terminal) return Promise.reject(this.stoppedError());
    const bad = badMethod(method);
    if (bad !== null) return Promise.reject(new TetherError('bad_request', bad));
    try {
      if (JSON.stringify(data) === undefined && data !== undefined) throw new TypeError('not JSON');
    } catch (e) {
      return Promise.reject(new TetherError('bad_request', `rpc data is not JSON-serialisable: ${asError(e).message}`));
    }
    return new Promise<unknown>((resolve, reject) => {
      const c: RpcCall = { method, data, resolve, reject, sentAs: null };
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
  publish(channel: string, data: unknown): Promise<PublishResult> {
    if (this.terminal) return Promise.reject(this.stoppedError());
    try {
      if (JSON.stringify(data) === undefined && data !== undefined) throw new TypeError('not JSON');
    } catch (e) {
      return Promise.reject(new TetherError('bad_request', `publish data is not JSON-serialisable: ${asError(e).message}`));
    }
    return new Promise<PublishResult>((resolve, reject) => {
      const key = `${this.keys}-${++this.keyCounter}`;
      const p: Pending = { channel, data, key, resolve, reject, sentAs: null, firstSent: null };
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
  private presence(sub: Subscription, kind: PresenceKind): Promise<unknown> {
    if (this.terminal) return Promise.reject(this.stoppedError());
    if (this.subs.get(sub.channel) !== sub) return Promise.reject(notSubscribed(sub.channel));
    return new Promise((resolve, reject) => {
      const r = this.presenceRequests.add(sub.channel, kind, { resolve, reject });
      if (r && this.restored) this.send([this.presenceMessage(r)]);
    });
  }

  private stoppedError(): TetherError {
    const { code, reason } = this.current;
    return new TetherError('disconnected', `the client is disconnected: ${reason ?? ''}`, code);
  }

  // ---- what a connection restores and receives ----

  protected restore(t: Transport): ClientMessage[] {
    // Resubscribe with recover (long polling names known positions in its
    // polls instead), then resend unacked publishes with their keys.
    this.queue.expire(this.o.clock.now(), this.o.idempotencyWindow);
    const msgs: ClientMessage[] = [];
    for (const sub of this.subs.values()) {
      if (t.name === 'longpoll' && sub.position) continue;
      msgs.push(sub.subscribeMessage(++this.nextId));
    }
    for (const p of this.queue.unsent()) msgs.push(this.publishMessage(p));
    for (const r of this.presenceRequests.unsent()) msgs.push(this.presenceMessage(r));
    for (const c of this.rpcs.unsent()) msgs.push(this.rpcMessage(c));
    this.restored = true;
    return msgs;
  }

  protected dispatch(t: Transport, m: ServerMessage): void {
    switch (m.type) {
      case 'subscribed': {
        // Without id for a channel not held: the server subscribed this client.
        const sub = this.subs.get(m.channel) ?? (m.id === undefined && t.announcing ? this.serverSubscription(m.channel) : undefined);
        if (!sub) return;
        if (m.id !== undefined && sub.request?.id === m.id) this.usable();
        if (sub.applySubscribed(m) === 'gap') this.gap(t, m.channel);
        else t.positionsChanged();
        return;
      }
      case 'message':
        if (this.subs.get(m.channel)?.applyPublication(m.offset, m.data) === 'gap') this.gap(t, m.channel);
        return;
      case 'ack': {
        const p = this.queue.take(m.id);
        if (!p) return;
        this.usable();
        p.resolve({ offset: m.offset });
        return;
      }
      case 'presence':
      case 'presence_stats': {
        const r = this.presenceRequests.byId(m.id);
        if (!r) return;
        this.presenceRequests.resolve(r, m.type === 'presence' ? m.clients : { clients: m.clients, users: m.users });
        return;
      }
      case 'join':
      case 'leave':
        this.subs.get(m.channel)?.applyPresence(m);
        return;
      case 'rpc':
        this.rpcs.take(m.id)?.resolve(m.result);
        return;
      case 'error': {
        const err = new TetherError(m.code, m.message);
        const p = m.id === undefined ? undefined : this.queue.take(m.id);
        if (p) return p.reject(err);
        const r = m.id === undefined ? undefined : this.presenceRequests.byId(m.id);
        if (r) return this.presenceRefused(t, r, err);
        const c = m.id === undefined ? undefined : this.rpcs.take(m.id);
        if (c) return c.reject(err);
        // An id-less error naming a channel (long polling: the poll named it,
        // the session could not hold it) refuses that channel's subscription
        // as a refused subscribe would: naming it again at once would loop.
        const sub =
          m.id === undefined
            ? m.channel === undefined ? undefined : this.subs.get(m.channel)
            : [...this.subs.values()].find((s) => s.request?.id === m.id);
        // The server made the subscription itself while our request was on its way.
        if (sub && m.code === 'already_subscribed' && sub.adoptRemade()) {
          t.positionsChanged();
        } else if (sub && isRetryable(m.code)) {
          this.retryLater(t, sub, err);
          t.positionsChanged(); // not named in polls while its retry waits
        } else if (sub) {
          this.subs.delete(sub.channel);
          this.presenceRequests.rejectChannel(sub.channel, err);
          sub.refused(err);
          t.positionsChanged();
        } else {
          this.emitter.emit('error', err);
        }
        return;
      }
      default:
        return; // welcome again, unsubscribed
    }
  }

  protected connectionEnded(ended?: Ended): void {
    // 1009: something this client sent was over the server's limit, and only
    // a publish can be: the largest sent on the connection is not resent.
    if (ended?.kind === 'closed' && ended.code === 1009) this.rejectTooBig();
    // Sent rpcs are lost with their connection; on a stop they reject with it (`stopped`).
    if (!this.terminal) this.rpcs.lost(ended ? classify(ended).reason : 'the transport changed');
    this.queue.resetSent();
    this.restored = false;
    this.presenceRequests.resetSent();
    // A pending retry is void too: restore() resubscribes on the next connection.
    for (const s of this.subs.values()) {
      s.request = null;
      s.remade = null;
      this.cancelRetry(s);
    }
  }

  protected stopped(err: TetherError): void {
    this.queue.failAll(err);
    this.rpcs.failAll(err);
    this.presenceRequests.rejectAll(err);
  }

  private send(msgs: ClientMessage[]): void {
    this.liveness.verify('the clock jumped past the liveness deadline');
    this.transport?.send(msgs);
  }

  private publishMessage(p: Pending): ClientMessage {
    p.sentAs = ++this.nextId;
    if (p.firstSent === null) p.firstSent = this.o.clock.now();
    return publishMessage(p, p.sentAs);
  }

  private rpcMessage(c: RpcCall): ClientMessage {
    c.sentAs = ++this.nextId;
    return rpcMessage(c, c.sentAs);
  }

  /** A server-side subscription to `channel`, registered; its handlers are the client's events. */
  private serverSubscription(channel: string): Subscription {
    const sub: Subscription = new Subscription(
      channel,
      {
        onMessage: (ev) => this.emitter.emit('publication', ev),
        onSubscribed: (ev) => this.emitter.emit('subscribed', ev),
        onJoin: (ev) => this.emitter.emit('join', ev),
        onLeave: (ev) => this.emitter.emit('leave', ev),
        onError: (error) => {
          this.emitter.emit('error', error);
          if (!sub.subscribed) this.emitter.emit('unsubscribed', { channel, error });
        },
      },
      this.owner,
      true,
    );
    this.subs.set(channel, sub);
    this.log(`server-side subscription to ${JSON.stringify(channel)}`);
    return sub;
  }

  private presenceMessage(r: PresenceRequest): ClientMessage {
    r.sentAs = ++this.nextId;
    return presenceMessage(r, r.sentAs);
  }

  /**
   * A presence request answered with an error: rejects its callers, except a
   * `forbidden` on long polling for a channel held by position (the poll that
   * joins it may not have reached the server yet): asked again after the
   * subscribe-retry backoff, at most `PRESENCE_RETRIES` times.
   */
  private presenceRefused(t: Transport, r: PresenceRequest, err: TetherError): void {
    const sub = this.subs.get(r.channel);
    const held = sub !== undefined && sub.position !== null && sub.retryTimer === null;
    if (err.code !== 'forbidden' || t.name !== 'longpoll' || !held || r.retries >= PRESENCE_RETRIES) {
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
  private rejectTooBig(): void {
    // An rpc can be that big too: the larger of the two takes the blame.
    const rpc = this.rpcs.largestSent();
    if (rpc && rpc.bytes > (this.queue.largestSent()?.bytes ?? 0)) {
      this.rpcs.remove(rpc.c);
      this.log(`1009: rejecting the largest rpc sent (${rpc.bytes} bytes, ${JSON.stringify(rpc.c.method)})`);
      rpc.c.reject(
        new TetherError('message_too_big', `the server closed with 1009: this rpc (${rpc.bytes} bytes) is larger than its --max-message-bytes`),
      );
      return;
    }
    const big = this.queue.takeLargestSent();
    if (!big) return;
    this.log(`1009: not resending the largest publish sent (${big.bytes} bytes, to ${JSON.stringify(big.p.channel)})`);
    big.p.reject(
      new TetherError(
        'message_too_big',
        `the server closed with 1009: this publish (${big.bytes} bytes) is larger than its --max-message-bytes`,
      ),
    );
  }

  /**
   * The server refused `sub`'s subscribe with a retryable code (nothing was
   * done): keep the subscription, tell the app, and subscribe again (with its
   * recovery position, as usual) on this connection after a backoff that
   * grows with each refusal in a row and starts over once one succeeds.
   */
  private retryLater(t: Transport, sub: Subscription, err: TetherError): void {
    this.cancelRetry(sub);
    const delay = this.retryBackoff.delay(sub.refusals, this.o.random());
    sub.refusals++;
    this.log(`subscribe to ${JSON.stringify(sub.channel)} refused (${err.code}): retrying in ${delay} ms`);
    // Armed before onError runs: a handler that unsubscribes or disconnects cancels it.
    sub.retryTimer = this.o.clock.setTimeout(() => {
      sub.retryTimer = null;
      if (this.subs.get(sub.channel) !== sub || this.transport !== t || !this.welcomed) return;
      this.send([sub.subscribeMessage(++this.nextId)]);
    }, delay);
    sub.refusedForNow(err);
  }

  private cancelRetry(sub: Subscription): void {
    if (sub.retryTimer === null) return;
    this.o.clock.clearTimeout(sub.retryTimer);
    sub.retryTimer = null;
  }

  private removeSubscription(sub: Subscription): void {
    if (this.subs.get(sub.channel) !== sub) return;
    this.subs.delete(sub.channel);
    this.presenceRequests.rejectChannel(sub.channel, notSubscribed(sub.channel));
    // While a retry waits, the server holds no subscription to end.
    const waiting = sub.retryTimer !== null;
    this.cancelRetry(sub);
    const t = this.transport;
    if (!t || !this.welcomed) return;
    if (sub.request || (sub.position && !waiting)) this.send([{ type: 'unsubscribe', id: ++this.nextId, channel: sub.channel }]);
    t.positionsChanged();
  }

  /** Held positions; a channel whose retry waits is left out (the server refused to hold it). */
  protected positions(): Record<string, StreamPosition> {
    const out: Array<[string, StreamPosition]> = [];
    for (const s of this.subs.values()) if (s.position && s.retryTimer === null) out.push([s.channel, { ...s.position }]);
    return Object.fromEntries(out);
  }
}

function notSubscribed(channel: string): TetherError {
  return new TetherError('not_subscribed', `not subscribed to ${JSON.stringify(channel)}`);
}
