// The WebSocket transport: one JSON text frame per message (docs/protocol.md).
// Browsers cannot set headers on a WebSocket handshake, so a token travels as
// `?token=` (the server accepts both).

import type { Ended } from '../closeCodes.js';
import { decode, encode, type ClientMessage } from '../protocol.js';
import type { Transport, TransportHandlers, WebSocketCtor, WebSocketLike } from './transport.js';

export class WebSocketTransport implements Transport {
  readonly name = 'websocket' as const;
  readonly repairsGaps = false;
  readonly announcing = true;
  opened = false;
  private ws: WebSocketLike | null = null;
  private closed = false;

  constructor(
    url: string,
    Impl: WebSocketCtor,
    public handlers: TransportHandlers,
    private readonly log: (msg: string) => void = () => {},
  ) {
    try {
      this.ws = new Impl(url);
    } catch (e) {
      // A bad URL or a blocked scheme: report it like any failed attempt.
      Promise.resolve().then(() => this.fail({ kind: 'lost', reason: `cannot open a WebSocket: ${String(e)}` }));
      return;
    }
    const ws = this.ws;
    ws.onopen = () => {
      if (this.closed) return;
      this.opened = true;
      this.handlers.onOpen();
    };
    ws.onmessage = (ev) => {
      if (this.closed || typeof ev.data !== 'string') return;
      this.handlers.onActivity();
      let msg;
      try {
        msg = decode(ev.data);
      } catch (e) {
        this.log(`ignoring an undecodable server message: ${String(e)}`);
        return;
      }
      if (msg) this.handlers.onMessage(msg);
    };
    ws.onclose = (ev) => {
      const code = typeof ev.code === 'number' ? ev.code : 1006;
      const reason = typeof ev.reason === 'string' ? ev.reason : '';
      this.fail(
        code === 1006 || code === 0
          ? { kind: 'lost', reason: this.opened ? 'closed without a close frame' : 'the WebSocket did not open' }
          : { kind: 'closed', code, reason },
      );
    };
    // Browsers follow an error with a close event (1006); some implementations
    // (Node 20's) do not after a failed connect. Either way the socket is done.
    ws.onerror = () =>
      this.fail({ kind: 'lost', reason: this.opened ? 'WebSocket error' : 'the WebSocket did not open' });
  }

  send(msgs: ClientMessage[]): void {
    if (this.closed || !this.ws) return;
    try {
      for (const m of msgs) this.ws.send(encode(m));
    } catch (e) {
      this.fail({ kind: 'lost', reason: `send failed: ${String(e)}` });
    }
  }

  positionsChanged(): void {}

  refresh(): void {}

  close(code = 1000, reason = ''): void {
    if (this.closed) return;
    this.closed = true;
    const ws = this.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
  }

  private fail(ended: Ended): void {
    if (this.closed) return;
    this.close();
    this.handlers.onEnded(ended);
  }
}
