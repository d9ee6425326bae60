import { type ClientMessage } from './protocol.js';
export interface PublishResult {
    offset: number;
}
export interface Pending {
    channel: string;
    data: unknown;
    key: string;
    resolve(r: PublishResult): void;
    reject(e: Error): void;
    /** The request id on the current connection, once sent. */
    sentAs: number | null;
    /** When it was first sent (ms, injected clock). */
    firstSent: number | null;
}
export declare class PublishQueue {
    readonly capacity: number;
    private items;
    constructor(capacity: number);
    get size(): number;
    /** Queues a publish; throws `queue_full` when `capacity` already wait. */
    add(p: Pending): void;
    /** Publishes not sent on the current connection, in order. */
    unsent(): Pending[];
    /** Removes and returns the publish sent as request `id`. */
    take(id: number): Pending | undefined;
    /**
     * The connection ended with 1009: a message was larger than the server's
     * `--max-message-bytes`. The client does not know that limit, but only a
     * publish can be that large (channel names are at most 255 bytes; pings
     * and subscribes are tiny), and the largest publish sent on the connection
     * (on long polling: handed to the session, in a send or its outbox) is at
     * least as large as the one that broke the limit, so it breaks it too. Removes and returns it (the oldest among equals) with its encoded
     * size, so it is rejected instead of resent into the same 1009; undefined
     * when none was sent on the connection. Several too big: each 1009 removes
     * the next largest.
     */
    takeLargestSent(): {
        p: Pending;
        bytes: number;
    } | undefined;
    /** The largest publish sent on the connection (the oldest among equals), with its encoded size. */
    largestSent(): {
        p: Pending;
        bytes: number;
    } | undefined;
    /** The connection ended: every publish is to be sent again. */
    resetSent(): void;
    /**
     * Rejects the publishes first sent `window` ms ago or longer: the server
     * no longer remembers their key, so a resend could store them twice.
     */
    expire(now: number, window: number): void;
    /** Rejects every publish (the client stopped). */
    failAll(err: Error): void;
}
/** The `publish` message for `p` sent as request `id` (always with its key). */
export declare function publishMessage(p: Pending, id: number): ClientMessage;
/** A random per-client key prefix (16 hex digits). */
export declare function keyPrefix(random: () => number): string;
