// One channel subscription: its position (epoch and last offset delivered),
// the subscribe request in flight, and the delivery rules: each publication
// reaches the application once and in order (duplicates dropped by offset),
// and a recovery the server could not satisfy is reported, never a silent gap.
// A subscribe refused with a retryable code (`unavailable`, ...) keeps the
// subscription; the client asks again after a backoff (client.ts). In a
// presence channel it asks who is present (`presence()`, `presenceStats()`)
// and, with `join_leave`, reports who joins and leaves (docs/presence.md).
// A server-side subscription (made by the backend's connect hook) is one of
// these too, its handlers the client's events; when the server makes it
// again while our own resubscribe is in flight, its messages are held back
// until that request is answered (`adoptRemade`).

import type { ClientMessage, PresenceChange, PresenceEntry, ServerMessage, StreamPosition } from './protocol.js';
import type { PresenceKind, PresenceStats } from './presenceRequests.js';
import { TetherError } from './state.js';

export interface MessageEvent {
  channel: string;
  offset: number;
  data: unknown;
}

export interface SubscribedEvent {
  channel: string;
  epoch: string;
  /** The position the subscribe brought the subscription to. */
  offset: number;
  /** True when missed publications were replayed (they follow as `onMessage`). */
  recovered: boolean;
  /**
   * True when a position was known but the gap since it could not be filled
   * (history expired or the epoch changed): publications were lost, resync
   * from your source of truth. False on a first subscribe.
   */
  resync: boolean;
}

/**
 * A client became present (`onJoin`) or stopped being present (`onLeave`) in
 * the channel: its presence entry without `joined_at_ms`. Not a publication:
 * no offset, not recovered after a reconnect (ask `presence()` again).
 */
export interface PresenceEvent extends PresenceChange {
  channel: string;
}

export interface SubscriptionHandlers {
  onMessage?(msg: MessageEvent): void;
  onSubscribed?(ev: SubscribedEvent): void;
  /**
   * The server refused the subscribe request. With a final code (`forbidden`,
   * `invalid_channel`, ...) the subscription is removed (`subscribed` is
   * false). With a retryable one (`unavailable`, `internal`, `over_capacity`:
   * `isRetryable(err.code)`) it stays: the client subscribes again after a
   * growing, jittered delay and calls this again for every refusal.
   */
  onError?(err: TetherError): void;
  /**
   * Someone's subscribe to the channel completed (a `join_leave` channel;
   * this client's own join comes too, right after its `subscribed`).
   */
  onJoin?(ev: PresenceEvent): void;
  /** Someone present left the channel (never this client itself). */
  onLeave?(ev: PresenceEvent): void;
}

/** What a subscription needs from its client. */
export interface SubscriptionOwner {
  removeSubscription(sub: Subscription): void;
  report(e: unknown): void;
  presence(sub: Subscription, kind: PresenceKind): Promise<unknown>;
}

/** What applying a frame found: `gap` means offsets were skipped. */
export type Applied = 'ok' | 'gap';

export class Subscription {
  /** The last position delivered; null before the first `subscribed`. */
  position: StreamPosition | null = null;
  /** @internal the subscribe in flight on this connection */
  request: { id: number; recovering: boolean } | null = null;
  /** @internal retryable refusals since the last successful subscribe (the retry backoff's attempt) */
  refusals = 0;
  /** @internal the pending resubscribe after a retryable refusal (a timer handle), or null */
  retryTimer: unknown = null;
  /**
   * @internal While our subscribe is in flight: the server made the
   * subscription itself at this position (raised by each message held back).
   */
  remade: StreamPosition | null = null;
  private active = true;

  /**
   * @internal created by `Tether.subscribe`, or by the client for a
   * server-side subscription (`serverSide`).
   */
  constructor(
    readonly channel: string,
    private readonly handlers: SubscriptionHandlers,
    private readonly owner: SubscriptionOwner,
    /** The server subscribed this client (its events are the client's `publication`, ... events). */
    readonly serverSide = false,
  ) {}

  /**
   * Whether the subscription is still registered with its client: false after
   * `unsubscribe()` or a final refusal; true while a retryable refusal waits
   * to be retried.
   */
  get subscribed(): boolean {
    return this.active;
  }

  /** Stops delivery and unsubscribes on the server. */
  unsubscribe(): void {
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
  presence(): Promise<PresenceEntry[]> {
    return this.owner.presence(this, 'presence') as Promise<PresenceEntry[]>;
  }

  /** How many clients and distinct users are present; settles as `presence()` does. */
  presenceStats(): Promise<PresenceStats> {
    return this.owner.presence(this, 'presence_stats') as Promise<PresenceStats>;
  }

  /** @internal a `join` or `leave` for this channel */
  applyPresence(msg: Extract<ServerMessage, { type: 'join' | 'leave' }>): void {
    if (!this.active) return;
    const ev: PresenceEvent = { channel: this.channel, client: msg.client, user: msg.user };
    if (msg.info) ev.info = msg.info;
    if (msg.type === 'join') this.call(() => this.handlers.onJoin?.(ev));
    else this.call(() => this.handlers.onLeave?.(ev));
  }

  /** @internal the subscribe request for a new connection */
  subscribeMessage(id: number): ClientMessage {
    const recovering = this.position !== null;
    this.request = { id, recovering };
    return this.position
      ? { type: 'subscribe', id, channel: this.channel, recover: { ...this.position } }
      : { type: 'subscribe', id, channel: this.channel };
  }

  /**
   * @internal A `subscribed` for this channel. One with an `id` answers our
   * request (an older request's answer is ignored); one without (long
   * polling) is the server's resynchronisation signal.
   */
  applySubscribed(msg: Extract<ServerMessage, { type: 'subscribed' }>): Applied {
    let recovering: boolean;
    if (msg.id === undefined) {
      // The server made it (again) while our own request is in flight: that
      // request's answer decides (`adoptRemade`).
      if (this.request) {
        this.remade = { epoch: msg.epoch, offset: msg.offset };
        return 'ok';
      }
      const pos = this.position;
      // Made again where we already are: nothing was missed.
      if (pos && pos.epoch === msg.epoch && pos.offset >= msg.offset) return 'ok';
      recovering = pos !== null;
    } else {
      if (!this.request || this.request.id !== msg.id) return 'ok';
      recovering = this.request.recovering;
      this.request = null;
      this.remade = null;
      this.refusals = 0;
    }
    const { epoch, offset, recovered } = msg;
    if (recovering && !recovered) {
      this.position = { epoch, offset };
      this.call(() => this.handlers.onSubscribed?.({ channel: this.channel, epoch, offset, recovered, resync: true }));
      return 'ok';
    }
    const last = this.position?.offset ?? 0;
    this.position = { epoch, offset: recovering ? last : offset };
    this.call(() => this.handlers.onSubscribed?.({ channel: this.channel, epoch, offset, recovered, resync: false }));
    let result: Applied = 'ok';
    for (const p of msg.publications) {
      if (this.applyPublication(p.offset, p.data) === 'gap') {
        result = 'gap';
        break;
      }
    }
    if (result === 'ok' && this.position && this.position.offset < offset) {
      this.position.offset = offset;
    }
    return result;
  }

  /**
   * @internal A publication: delivered when it is the next offset, dropped
   * when already delivered, refused (`gap`, position unchanged) when offsets
   * were skipped.
   */
  applyPublication(offset: number, data: unknown): Applied {
    if (this.request && this.remade) {
      // Held back: our request's answer replays it, or `adoptRemade` says it was missed.
      this.remade.offset = Math.max(this.remade.offset, offset);
      return 'ok';
    }
    const pos = this.position;
    if (!pos || !this.active) return 'ok';
    if (offset <= pos.offset) return 'ok';
    if (offset > pos.offset + 1) return 'gap';
    pos.offset = offset;
    this.call(() => this.handlers.onMessage?.({ channel: this.channel, offset, data }));
    return 'ok';
  }

  /**
   * @internal Our subscribe was answered `already_subscribed` after the
   * server made the subscription itself: continue from our position when its
   * stream starts no later (`recovered`), else report the gap (`resync`).
   * False when the server had not made it (a plain refusal).
   */
  adoptRemade(): boolean {
    const remade = this.remade;
    if (!remade) return false;
    this.remade = null;
    this.request = null;
    this.refusals = 0;
    const pos = this.position;
    let ev: SubscribedEvent;
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
  refused(err: TetherError): void {
    this.active = false;
    this.request = null;
    this.call(() => this.handlers.onError?.(err));
  }

  /** @internal the server refused the subscribe request for now; the client retries it */
  refusedForNow(err: TetherError): void {
    this.request = null;
    this.call(() => this.handlers.onError?.(err));
  }

  private call(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.owner.report(e);
    }
  }
}
