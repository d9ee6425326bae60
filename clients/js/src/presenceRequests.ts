// Presence requests (`presence`, `presence_stats`: docs/presence.md) awaiting
// their answer. They are reads: one whose connection ended before the answer
// is sent again on the next connection, and while disconnected they wait (as
// publishes do). Calls for the same channel and kind made while an earlier one
// is still unsent share its request and its answer: a page that asks every
// second while offline sends one request when it is back, not hundreds.

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

export class PresenceRequests {
  private items: PresenceRequest[] = [];

  constructor(private readonly clearTimeout: (handle: unknown) => void) {}

  /**
   * Adds a caller: to the unsent request for the same channel and kind when
   * there is one (returns null: nothing new to send), else to a new request
   * (returned, for the caller to send when it can).
   */
  add(channel: string, kind: PresenceKind, waiter: Waiter): PresenceRequest | null {
    const unsent = this.items.find((r) => r.channel === channel && r.kind === kind && r.sentAs === null);
    if (unsent) {
      unsent.waiters.push(waiter);
      return null;
    }
    const r: PresenceRequest = { channel, kind, waiters: [waiter], sentAs: null, retries: 0, retryTimer: null };
    this.items.push(r);
    return r;
  }

  /** Requests to send on a new connection, in the order they were made. */
  unsent(): PresenceRequest[] {
    return this.items.filter((r) => r.sentAs === null && r.retryTimer === null);
  }

  /** The request sent as `id` on the current connection. */
  byId(id: number): PresenceRequest | undefined {
    return this.items.find((r) => r.sentAs === id);
  }

  /** Whether `r` still awaits its answer. */
  has(r: PresenceRequest): boolean {
    return this.items.includes(r);
  }

  /** Removes `r` and resolves its callers with `answer`. */
  resolve(r: PresenceRequest, answer: PresenceAnswer): void {
    if (!this.remove(r)) return;
    for (const w of r.waiters) w.resolve(answer);
  }

  /** Removes `r` and rejects its callers with `err`. */
  reject(r: PresenceRequest, err: Error): void {
    if (!this.remove(r)) return;
    for (const w of r.waiters) w.reject(err);
  }

  /** Rejects every request for `channel` (its subscription is gone). */
  rejectChannel(channel: string, err: Error): void {
    for (const r of this.items.filter((r) => r.channel === channel)) this.reject(r, err);
  }

  /** Rejects every request (the client stopped). */
  rejectAll(err: Error): void {
    for (const r of [...this.items]) this.reject(r, err);
  }

  /** The connection ended: every request is to be sent again on the next one. */
  resetSent(): void {
    for (const r of this.items) {
      r.sentAs = null;
      this.cancelRetry(r);
    }
  }

  cancelRetry(r: PresenceRequest): void {
    if (r.retryTimer === null) return;
    this.clearTimeout(r.retryTimer);
    r.retryTimer = null;
  }

  private remove(r: PresenceRequest): boolean {
    const i = this.items.indexOf(r);
    if (i < 0) return false;
    this.items.splice(i, 1);
    this.cancelRetry(r);
    return true;
  }
}

/** The message for `r` sent as request `id`. */
export function presenceMessage(r: PresenceRequest, id: number): ClientMessage {
  return { type: r.kind, id, channel: r.channel };
}
