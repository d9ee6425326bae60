// What the client needs from a transport (WebSocket or long polling).

import type { Ended } from '../closeCodes.js';
import type { ClientMessage, ServerMessage } from '../protocol.js';
import type { TransportName } from '../state.js';

export interface TransportHandlers {
  /** The WebSocket opened (before the welcome). */
  onOpen(): void;
  /** Any sign of life from the server (a frame, an HTTP 200). */
  onActivity(): void;
  onMessage(msg: ServerMessage): void;
  /** The transport ended by itself (never after `close()`). */
  onEnded(ended: Ended): void;
}

export interface Transport {
  readonly name: TransportName;
  /** The WebSocket opened / the long-poll session was opened. */
  readonly opened: boolean;
  handlers: TransportHandlers;
  send(msgs: ClientMessage[]): void;
  /** Closes it; no handler is called afterwards. */
  close(code?: number, reason?: string): void;
  /** The set of subscribed channels or their positions changed (long polling re-polls). */
  positionsChanged(): void;
  /**
   * The page resumed (visible again, back from the back/forward cache, thawed,
   * online): a request made before may be a zombie on a dead TCP connection.
   * Long polling aborts the poll in flight and polls again from the current
   * positions; a WebSocket has nothing to redo (the liveness ping checks it).
   */
  refresh(): void;
  /** Whether the transport repairs a gap itself (long polling: the next poll re-reads). */
  readonly repairsGaps: boolean;
  /**
   * Whether a `subscribed` without id for a channel the client does not hold
   * announces a server-side subscription now: always on a WebSocket; on long
   * polling only in the `/lp/open` answer (in a poll answer it is a stale
   * resync for a channel just left).
   */
  readonly announcing: boolean;
}

/** Injected timers and clock. */
export interface Clock {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

/** The WebSocket API the client uses (the browser's, or a compatible one). */
export interface WebSocketLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketCtor = new (url: string) => WebSocketLike;

/** The part of a fetch `Response` the client reads. */
export interface ResponseLike {
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
}

export type FetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body: string; signal: AbortSignal; cache?: string },
) => Promise<ResponseLike>;
