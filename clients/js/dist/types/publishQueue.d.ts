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
/** A random per-client key prefix (16 hex digits). */
export declare function keyPrefix(random: () => number): string;
