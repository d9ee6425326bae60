// Rpcs (answered by the backend's rpc hook, docs/hooks.md) awaiting their
// answer: a bounded queue, like the publish queue. While disconnected they
// wait and are sent on the next connection. Unlike a publish an rpc has no
// idempotency key: once sent it may have had its effect, so one whose
// connection ends before the answer is not sent again but rejected with
// `connection_lost`, and the application decides whether to call again.

import { encode, utf8Length, type ClientMessage } from './protocol.js';
import { TetherError } from './state.js';

/** An rpc method is 1 to this many bytes (UTF-8). */
export const MAX_RPC_METHOD_BYTES = 256;

export interface RpcCall {
  method: string;
  data: unknown;
  resolve(result: unknown): void;
  reject(e: Error): void;
  /** The request id on the current connection, once sent. */
  sentAs: number | null;
}

export class RpcCalls {
  private items: RpcCall[] = [];

  constructor(readonly capacity: number) {}

  /** Queues a call; throws `queue_full` when `capacity` already wait. */
  add(c: RpcCall): void {
    if (this.items.length >= this.capacity) {
      throw new TetherError('queue_full', `rpc queue full: ${this.capacity} rpcs already await their answer`);
    }
    this.items.push(c);
  }

  /** Calls not sent on the current connection, in order. */
  unsent(): RpcCall[] {
    return this.items.filter((c) => c.sentAs === null);
  }

  /** Removes and returns the call sent as request `id`. */
  take(id: number): RpcCall | undefined {
    const i = this.items.findIndex((c) => c.sentAs === id);
    if (i < 0) return undefined;
    return this.items.splice(i, 1)[0];
  }

  /** The largest call sent on the connection, with its encoded size (after a 1009). */
  largestSent(): { c: RpcCall; bytes: number } | undefined {
    let largest: { c: RpcCall; bytes: number } | undefined;
    for (const c of this.items) {
      if (c.sentAs === null) continue;
      const bytes = utf8Length(encode(rpcMessage(c, c.sentAs)));
      if (!largest || bytes > largest.bytes) largest = { c, bytes };
    }
    return largest;
  }

  remove(c: RpcCall): void {
    this.items = this.items.filter((x) => x !== c);
  }

  /**
   * The connection ended: every call sent on it is rejected with
   * `connection_lost` (it may or may not have been carried out); the others
   * wait for the next connection.
   */
  lost(reason: string): void {
    const sent = this.items.filter((c) => c.sentAs !== null);
    if (sent.length === 0) return;
    this.items = this.items.filter((c) => c.sentAs === null);
    for (const c of sent) {
      c.reject(
        new TetherError(
          'connection_lost',
          `the connection ended before the answer to rpc ${JSON.stringify(c.method)} ` +
            `(it may or may not have been carried out; not sent again): ${reason}`,
        ),
      );
    }
  }

  /** Rejects every call (the client stopped). */
  failAll(err: Error): void {
    const items = this.items;
    this.items = [];
    for (const c of items) c.reject(err);
  }
}

/** The `rpc` message for `c` sent as request `id`. */
export function rpcMessage(c: RpcCall, id: number): ClientMessage {
  return { type: 'rpc', id, method: c.method, data: c.data };
}

/** Why `method` is not a usable rpc method, or null. */
export function badMethod(method: unknown): string | null {
  if (typeof method !== 'string') return 'an rpc method must be a string';
  const bytes = utf8Length(method);
  if (bytes < 1 || bytes > MAX_RPC_METHOD_BYTES) {
    return `an rpc method must be 1 to ${MAX_RPC_METHOD_BYTES} bytes (this one is ${bytes})`;
  }
  return null;
}
