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
export declare class Subscription {
    readonly channel: string;
    private readonly handlers;
    private readonly owner;
    /** The server subscribed this client (its events are the client's `publication`, ... events). */
    readonly serverSide: boolean;
    /** The last position delivered; null before the first `subscribed`. */
    position: StreamPosition | null;
    /** @internal the subscribe in flight on this connection */
    request: {
        id: number;
        recovering: boolean;
    } | null;
    /** @internal retryable refusals since the last successful subscribe (the retry backoff's attempt) */
    refusals: number;
    /** @internal the pending resubscribe after a retryable refusal (a timer handle), or null */
    retryTimer: unknown;
    /**
     * @internal While our subscribe is in flight: the server made the
     * subscription itself at this position (raised by each message held back).
     */
    remade: StreamPosition | null;
    private active;
    /**
     * @internal created by `Tether.subscribe`, or by the client for a
     * server-side subscription (`serverSide`).
     */
    constructor(channel: string, handlers: SubscriptionHandlers, owner: SubscriptionOwner, 
    /** The server subscribed this client (its events are the client's `publication`, ... events). */
    serverSide?: boolean);
    /**
     * Whether the subscription is still registered with its client: false after
     * `unsubscribe()` or a final refusal; true while a retryable refusal waits
     * to be retried.
     */
    get subscribed(): boolean;
    /** Stops delivery and unsubscribes on the server. */
    unsubscribe(): void;
    /**
     * Who is present in the channel (a `presence = true` channel), oldest join
     * first. Sent when connected (waiting while not, like a publish; resent on
     * the next connection when the connection ends before the answer). Rejects
     * with the server's code (`bad_request` for a channel without presence or
     * with over 1,000 present, `forbidden`), `not_subscribed` after
     * `unsubscribe()` or a refusal, or `disconnected` when the client stops.
     */
    presence(): Promise<PresenceEntry[]>;
    /** How many clients and distinct users are present; settles as `presence()` does. */
    presenceStats(): Promise<PresenceStats>;
    /** @internal a `join` or `leave` for this channel */
    applyPresence(msg: Extract<ServerMessage, {
        type: 'join' | 'leave';
    }>): void;
    /** @internal the subscribe request for a new connection */
    subscribeMessage(id: number): ClientMessage;
    /**
     * @internal A `subscribed` for this channel. One with an `id` answers our
     * request (an older request's answer is ignored); one without (long
     * polling) is the server's resynchronisation signal.
     */
    applySubscribed(msg: Extract<ServerMessage, {
        type: 'subscribed';
    }>): Applied;
    /**
     * @internal A publication: delivered when it is the next offset, dropped
     * when already delivered, refused (`gap`, position unchanged) when offsets
     * were skipped.
     */
    applyPublication(offset: number, data: unknown): Applied;
    /**
     * @internal Our subscribe was answered `already_subscribed` after the
     * server made the subscription itself: continue from our position when its
     * stream starts no later (`recovered`), else report the gap (`resync`).
     * False when the server had not made it (a plain refusal).
     */
    adoptRemade(): boolean;
    /** @internal the server refused the subscribe request for good */
    refused(err: TetherError): void;
    /** @internal the server refused the subscribe request for now; the client retries it */
    refusedForNow(err: TetherError): void;
    private call;
}
