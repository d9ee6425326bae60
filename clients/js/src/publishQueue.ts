// Publishes awaiting their ack: a bounded queue (full => rejected at once).
// Each publish carries a client-generated idempotency key that stays the same
// on every resend, so a publish resent after a reconnect is stored once.

import { encode, utf8Length, type ClientMessage } from './protocol.js';
import { TetherError } from './state.js';

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

export class PublishQueue {
  private items: Pending[] = [];

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.items.length;
  }

  /** Queues a publish; throws `queue_full` when `capacity` already wait. */
  add(p: Pending): void {
    if (this.items.length >= this.capacity) {
      throw new TetherError(
        'queue_full',
        `publish queue full: ${this.capacity} publishes already await their ack`,
      );
    }
    this.items.push(p);
  }

  /** Publishes not sent on the current connection, in order. */
  unsent(): Pending[] {
    return this.items.filter((p) => p.sentAs === null);
  }

  /** Removes and returns the publish sent as request `id`. */
  take(id: number): Pending | undefined {
    const i = this.items.findIndex((p) => p.sentAs === id);
    if (i < 0) return undefined;
    return this.items.splice(i, 1)[0];
  }

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
  takeLargestSent(): { p: Pending; bytes: number } | undefined {
    const largest = this.largestSent();
    if (largest) this.items.splice(this.items.indexOf(largest.p), 1);
    return largest;
  }

  /** The largest publish sent on the connection (the oldest among equals), with its encoded size. */
  largestSent(): { p: Pending; bytes: number } | undefined {
    let largest: { p: Pending; bytes: number } | undefined;
    for (const p of this.items) {
      if (p.sentAs === null) continue;
      const bytes = utf8Length(encode(publishMessage(p, p.sentAs)));
      if (!largest || bytes > largest.bytes) largest = { p, bytes };
    }
    return largest;
  }

  /** The connection ended: every publish is to be sent again. */
  resetSent(): void {
    for (const p of this.items) p.sentAs = null;
  }

  /**
   * Rejects the publishes first sent `window` ms ago or longer: the server
   * no longer remembers their key, so a resend could store them twice.
   */
  expire(now: number, window: number): void {
    const gone = this.items.filter((p) => p.firstSent !== null && now - p.firstSent >= window);
    if (gone.length === 0) return;
    this.items = this.items.filter((p) => !gone.includes(p));
    for (const p of gone) {
      p.reject(
        new TetherError(
          'idempotency_window_expired',
          `not resending a publish to ${JSON.stringify(p.channel)} first sent over ${window} ms ago: ` +
            'the server no longer remembers its key; it may or may not have been stored',
        ),
      );
    }
  }

  /** Rejects every publish (the client stopped). */
  failAll(err: Error): void {
    const items = this.items;
    this.items = [];
    for (const p of items) p.reject(err);
  }
}

/** The `publish` message for `p` sent as request `id` (always with its key). */
export function publishMessage(p: Pending, id: number): ClientMessage {
  return { type: 'publish', id, channel: p.channel, data: p.data, key: p.key };
}

/** A random per-client key prefix (16 hex digits). */
export function keyPrefix(random: () => number): string {
  const c = (globalThis as { crypto?: { getRandomValues?(a: Uint8Array): Uint8Array } }).crypto;
  const bytes = new Uint8Array(8);
  if (c?.getRandomValues) {
    c.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256) & 0xff;
  }
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
