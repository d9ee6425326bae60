import { type ClientMessage } from '../protocol.js';
import type { Transport, TransportHandlers, WebSocketCtor } from './transport.js';
export declare class WebSocketTransport implements Transport {
    handlers: TransportHandlers;
    private readonly log;
    readonly name: "websocket";
    readonly repairsGaps = false;
    readonly announcing = true;
    opened: boolean;
    private ws;
    private closed;
    constructor(url: string, Impl: WebSocketCtor, handlers: TransportHandlers, log?: (msg: string) => void);
    send(msgs: ClientMessage[]): void;
    positionsChanged(): void;
    refresh(): void;
    close(code?: number, reason?: string): void;
    private fail;
}
