import { type TetherOptions } from './options.js';
import { type PublishResult } from './publishQueue.js';
import { type ConnectionState, type TetherEvents } from './state.js';
import { Subscription, type SubscriptionHandlers } from './subscription.js';
/**
 * A connection proves usable — and the backoff starts over — once the welcome
 * arrived and then either a request was answered (subscribed, ack) or it
 * stayed up this long. A server that accepts and at once closes again keeps
 * the client backing off instead of reconnecting in a tight loop.
 */
export declare const STABLE_AFTER = 5000;
export declare class Tether {
    /** Round-trip time (ms) of the last application ping; undefined until measured. */
    rtt: number | undefined;
    private readonly o;
    private readonly urls;
    private readonly emitter;
    private readonly backoff;
    private readonly subs;
    private readonly queue;
    private readonly keys;
    private keyCounter;
    private nextId;
    private current;
    private transport;
    private welcomed;
    private started;
    private terminal;
    private attempt;
    private generation;
    private wsFailures;
    private fallback;
    private forceFallback;
    private token;
    private probe;
    private pingSentAt;
    private readonly liveness;
    private readonly timers;
    private readonly listeners;
    private readonly owner;
    constructor(url: string, options?: TetherOptions);
    /** The connection state (a copy). */
    get state(): ConnectionState;
    on<K extends keyof TetherEvents>(type: K, fn: (v: TetherEvents[K]) => void): () => void;
    off<K extends keyof TetherEvents>(type: K, fn: (v: TetherEvents[K]) => void): void;
    /** Starts connecting (and reconnecting) until `disconnect()` or a terminal close. */
    connect(): void;
    /** Closes the connection (1000) and stays disconnected; pending publishes reject. */
    disconnect(): void;
    /** Subscribes to `channel`; throws `already_subscribed` when it is held. */
    subscribe(channel: string, handlers?: SubscriptionHandlers): Subscription;
    /** The subscription to `channel`, if any. */
    getSubscription(channel: string): Subscription | undefined;
    /**
     * Publishes `data` to `channel`; resolves with its offset once acked.
     * Waits in the bounded queue while disconnected; resent with the same
     * idempotency key after a reconnect. Rejects with `queue_full`, a server
     * error code, `idempotency_window_expired` or `disconnected`.
     */
    publish(channel: string, data: unknown): Promise<PublishResult>;
    private open;
    private start;
    private bind;
    private welcome;
    private message;
    /** The connection (or the attempt) ended; decide whether and when to retry. */
    private ended;
    /** Stops for good (until `connect()`). */
    private stop;
    /** Ends the current transport (silently) and forgets what was in flight on it. */
    private teardown;
    private usable;
    /** A publication skipped offsets: the WebSocket reconnects and recovers; long polling re-reads. */
    private gap;
    private drop;
    private resume;
    private wentOffline;
    private scheduleProbe;
    /** While on long polling: open a WebSocket; with a welcome, switch to it. */
    private runProbe;
    private switchTo;
    private cancelProbe;
    private send;
    private ping;
    private publishMessage;
    private removeSubscription;
    private positions;
    private canWebSocket;
    private canLongPoll;
    private useWebSocket;
    private preferred;
    private setState;
    private set;
    private clear;
    private log;
}
