import type { MessageEvent, PresenceEvent, SubscribedEvent } from './subscription.js';
export type StateName = 'connecting' | 'connected' | 'reconnecting' | 'offline' | 'disconnected';
export type TransportName = 'websocket' | 'longpoll';
/**
 * The client's connection state (`client.state`, and the `state` event,
 * emitted on changes only). `connecting` is the first attempt after
 * `connect()`; every later attempt is `reconnecting`.
 */
export interface ConnectionState {
    state: StateName;
    /** The transport in use, or the one the next attempt will use. */
    transport: TransportName;
    /** `reconnecting`: the retry (1-based) that starts at `nextRetryAt`. */
    attempt?: number;
    /**
     * `reconnecting`: when the retry starts (ms, the injected `now()` clock);
     * for a retry started early (`online`), when it started.
     */
    nextRetryAt?: number;
    /**
     * `disconnected` after a stop (absent before the first `connect()`): the
     * code that stopped the client (1000 after `disconnect()`, 1008, 4001, 4500-4999,
     * 4002 without a token function, the HTTP status of a long-poll request
     * refused with 400/401/403/404, or, when `maxAttempts` ran out, the last
     * failure's code with a reason starting "gave up after N attempts");
     * `reconnecting`, and `offline` after a failure: the code that ended the
     * last connection.
     */
    code?: number;
    reason?: string;
}
/**
 * Every error the client reports. `code` is one of `queue_full`,
 * `disconnected`, `idempotency_window_expired`, `already_subscribed`,
 * `token`, `connect_data` (the `data` option's value or function),
 * `timeout` (`ping()`), `message_too_big` (a publish or rpc larger than the
 * server accepts: the server closed with 1009, or answered its long-poll send
 * with 413; not resent, not retryable), `connection_lost` (an rpc sent, its
 * connection ended before the answer: it may have been carried out), or a
 * server error code (`forbidden`, `bad_request`, ...).
 */
export declare class TetherError extends Error {
    readonly code: string;
    /** The close code, for `code: 'disconnected'`. */
    readonly closeCode?: number;
    constructor(code: string, message: string, closeCode?: number);
}
export interface TetherEvents {
    state: ConnectionState;
    error: Error;
    /** A publication of a server-side subscription (one the backend's connect hook made). */
    publication: MessageEvent;
    /** A server-side subscription started, or was restored after a reconnect (`resync`: publications were missed). */
    subscribed: SubscribedEvent;
    /** Someone joined / left a server-side subscription's `join_leave` channel. */
    join: PresenceEvent;
    leave: PresenceEvent;
    /** A server-side subscription ended: its resubscribe after a reconnect was refused for good. */
    unsubscribed: {
        channel: string;
        error: TetherError;
    };
}
type Listener<T> = (value: T) => void;
export declare class Emitter<Events extends object> {
    private listeners;
    on<K extends keyof Events>(type: K, fn: Listener<Events[K]>): () => void;
    off<K extends keyof Events>(type: K, fn: Listener<Events[K]>): void;
    /** Calls every listener; one that throws does not stop the others. */
    emit<K extends keyof Events>(type: K, value: Events[K]): void;
}
export declare function asError(e: unknown): Error;
export {};
