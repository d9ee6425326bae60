import type { ClientMessage, PresenceEntry } from './protocol.js';
export type PresenceKind = 'presence' | 'presence_stats';
/** The answer of `presenceStats()`. */
export interface PresenceStats {
    /** Clients present (subscriptions, on every transport). */
    clients: number;
    /** Distinct non-null users among them (an anonymous client is not a user). */
    users: number;
}
export type PresenceAnswer = PresenceEntry[] | PresenceStats;
interface Waiter {
    resolve(v: PresenceAnswer): void;
    reject(e: Error): void;
}
export interface PresenceRequest {
    readonly channel: string;
    readonly kind: PresenceKind;
    readonly waiters: Waiter[];
    /** The request id on the current connection, once sent. */
    sentAs: number | null;
    /** `forbidden` answers asked again (long polling: see client.ts). */
    retries: number;
    /** The pending re-ask after such an answer (a timer handle), or null. */
    retryTimer: unknown;
}
export declare class PresenceRequests {
    private readonly clearTimeout;
    private items;
    constructor(clearTimeout: (handle: unknown) => void);
    /**
     * Adds a caller: to the unsent request for the same channel and kind when
     * there is one (returns null: nothing new to send), else to a new request
     * (returned, for the caller to send when it can).
     */
    add(channel: string, kind: PresenceKind, waiter: Waiter): PresenceRequest | null;
    /** Requests to send on a new connection, in the order they were made. */
    unsent(): PresenceRequest[];
    /** The request sent as `id` on the current connection. */
    byId(id: number): PresenceRequest | undefined;
    /** Whether `r` still awaits its answer. */
    has(r: PresenceRequest): boolean;
    /** Removes `r` and resolves its callers with `answer`. */
    resolve(r: PresenceRequest, answer: PresenceAnswer): void;
    /** Removes `r` and rejects its callers with `err`. */
    reject(r: PresenceRequest, err: Error): void;
    /** Rejects every request for `channel` (its subscription is gone). */
    rejectChannel(channel: string, err: Error): void;
    /** Rejects every request (the client stopped). */
    rejectAll(err: Error): void;
    /** The connection ended: every request is to be sent again on the next one. */
    resetSent(): void;
    cancelRetry(r: PresenceRequest): void;
    private remove;
}
/** The message for `r` sent as request `id`. */
export declare function presenceMessage(r: PresenceRequest, id: number): ClientMessage;
export {};
