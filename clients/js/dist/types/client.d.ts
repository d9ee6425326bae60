import { type Ended } from './closeCodes.js';
import { Connection } from './connection.js';
import type { TetherOptions } from './options.js';
import { type ClientMessage, type ServerMessage, type StreamPosition } from './protocol.js';
import { type PublishResult } from './publishQueue.js';
import { TetherError } from './state.js';
import { Subscription, type SubscriptionHandlers } from './subscription.js';
import type { Transport } from './transport/transport.js';
export { STABLE_AFTER } from './connection.js';
/**
 * On long polling, a `forbidden` answer to a presence request for a channel
 * held by position is asked again (after the subscribe-retry backoff) up to
 * this many times: after a reconnect the channel is joined by the poll that
 * names it, which may reach the server after the `/lp/send` carrying the
 * request.
 */
export declare const PRESENCE_RETRIES = 3;
export declare class Tether extends Connection {
    private readonly subs;
    private readonly queue;
    private readonly rpcs;
    private readonly presenceRequests;
    /** The current connection's restore was sent: presence requests go out behind its resubscribes. */
    private restored;
    private readonly keys;
    /** The delay before resubscribing after a retryable refusal; its attempt is the subscription's `refusals`. */
    private readonly retryBackoff;
    private keyCounter;
    private nextId;
    private readonly owner;
    /**
     * `url`: `ws(s)://host[:port][/prefix]/ws`, or an `http(s)://host[:port][/prefix]`
     * base; `/ws` and `/lp` are derived from it. Call `connect()` to start.
     */
    constructor(url: string, options?: TetherOptions);
    /**
     * Subscribes to `channel`; throws `already_subscribed` when it is held (by
     * the application, or by the server: a server-side subscription).
     */
    subscribe(channel: string, handlers?: SubscriptionHandlers): Subscription;
    /** The subscription to `channel`, if any (`serverSide` for one the server made). */
    getSubscription(channel: string): Subscription | undefined;
    /** The channels of the server-side subscriptions (made by the backend's connect hook). */
    get serverChannels(): string[];
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
    rpc(method: string, data?: unknown): Promise<unknown>;
    /**
     * Publishes `data` to `channel`; resolves with its offset once acked.
     * Waits in the bounded queue while disconnected; resent with the same
     * idempotency key after a reconnect. Rejects with `queue_full`, a server
     * error code, `idempotency_window_expired`, `message_too_big` (larger than
     * the server accepts: not resent), `disconnected`, or at once with
     * `bad_request` when `data` is not JSON-serialisable (a cycle, a BigInt).
     */
    publish(channel: string, data: unknown): Promise<PublishResult>;
    /** Subscription.presence() and presenceStats(): sent behind the restore; waits while disconnected. */
    private presence;
    private stoppedError;
    protected restore(t: Transport): ClientMessage[];
    protected dispatch(t: Transport, m: ServerMessage): void;
    protected connectionEnded(ended?: Ended): void;
    protected stopped(err: TetherError): void;
    private send;
    private publishMessage;
    private rpcMessage;
    /** A server-side subscription to `channel`, registered; its handlers are the client's events. */
    private serverSubscription;
    private presenceMessage;
    /**
     * A presence request answered with an error: rejects its callers, except a
     * `forbidden` on long polling for a channel held by position (the poll that
     * joins it may not have reached the server yet): asked again after the
     * subscribe-retry backoff, at most `PRESENCE_RETRIES` times.
     */
    private presenceRefused;
    /**
     * The connection ended with 1009 (message too big): rejects the largest
     * publish sent on it with `message_too_big` (`PublishQueue.takeLargestSent`);
     * resent, it would get the same 1009 on every reconnect, and the publishes
     * behind it would wait forever.
     */
    private rejectTooBig;
    /**
     * The server refused `sub`'s subscribe with a retryable code (nothing was
     * done): keep the subscription, tell the app, and subscribe again (with its
     * recovery position, as usual) on this connection after a backoff that
     * grows with each refusal in a row and starts over once one succeeds.
     */
    private retryLater;
    private cancelRetry;
    private removeSubscription;
    /** Held positions; a channel whose retry waits is left out (the server refused to hold it). */
    protected positions(): Record<string, StreamPosition>;
}
