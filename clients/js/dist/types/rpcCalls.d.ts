import { type ClientMessage } from './protocol.js';
/** An rpc method is 1 to this many bytes (UTF-8). */
export declare const MAX_RPC_METHOD_BYTES = 256;
export interface RpcCall {
    method: string;
    data: unknown;
    resolve(result: unknown): void;
    reject(e: Error): void;
    /** The request id on the current connection, once sent. */
    sentAs: number | null;
}
export declare class RpcCalls {
    readonly capacity: number;
    private items;
    constructor(capacity: number);
    /** Queues a call; throws `queue_full` when `capacity` already wait. */
    add(c: RpcCall): void;
    /** Calls not sent on the current connection, in order. */
    unsent(): RpcCall[];
    /** Removes and returns the call sent as request `id`. */
    take(id: number): RpcCall | undefined;
    /** The largest call sent on the connection, with its encoded size (after a 1009). */
    largestSent(): {
        c: RpcCall;
        bytes: number;
    } | undefined;
    remove(c: RpcCall): void;
    /**
     * The connection ended: every call sent on it is rejected with
     * `connection_lost` (it may or may not have been carried out); the others
     * wait for the next connection.
     */
    lost(reason: string): void;
    /** Rejects every call (the client stopped). */
    failAll(err: Error): void;
}
/** The `rpc` message for `c` sent as request `id`. */
export declare function rpcMessage(c: RpcCall, id: number): ClientMessage;
/** Why `method` is not a usable rpc method, or null. */
export declare function badMethod(method: unknown): string | null;
