/** A stream position: the epoch of a channel's history and an offset in it. */
export interface StreamPosition {
    epoch: string;
    offset: number;
}
export interface Publication {
    offset: number;
    data: unknown;
}
/** Messages the client sends. */
export type ClientMessage = {
    type: 'subscribe';
    id: number;
    channel: string;
    recover?: StreamPosition;
} | {
    type: 'unsubscribe';
    id: number;
    channel: string;
} | {
    type: 'publish';
    id: number;
    channel: string;
    data: unknown;
    key?: string;
} | {
    type: 'presence';
    id: number;
    channel: string;
} | {
    type: 'presence_stats';
    id: number;
    channel: string;
}
/** A request answered by the backend's rpc hook (docs/hooks.md); `data` undefined is sent as null. */
 | {
    type: 'rpc';
    id: number;
    method: string;
    data: unknown;
} | {
    type: 'ping';
};
/** One present client of a channel (docs/presence.md). */
export interface PresenceEntry {
    client: string;
    /** The token's `sub`; `null` for an anonymous client. */
    user: string | null;
    /** The token's `info` claim, absent when none. */
    info?: Record<string, unknown>;
    joined_at_ms: number;
}
/** Messages the server sends (`close` only over long polling). */
export type ServerMessage = {
    type: 'welcome';
    client: string;
    ping_interval_ms: number;
    pong_timeout_ms: number;
    version: number;
    poll_timeout_ms?: number;
    /** Long polling: the id others see (`client` is the session's credential). */
    public_client?: string;
}
/**
 * `subscribed` answers a `subscribe` (with its `id`); without `id` it is a
 * subscription the server made for the client (the connect hook's
 * `channels`), or on long polling a resynchronisation.
 */
 | {
    type: 'subscribed';
    id?: number;
    channel: string;
    epoch: string;
    offset: number;
    recovered: boolean;
    publications: Publication[];
} | {
    type: 'unsubscribed';
    id: number;
    channel: string;
} | {
    type: 'message';
    channel: string;
    offset: number;
    data: unknown;
} | {
    type: 'ack';
    id: number;
    offset: number;
}
/**
 * `channel`: on long polling, an id-less error for a channel the poll named
 * but the session could not hold (docs/longpoll.md).
 */
 | {
    type: 'error';
    id?: number;
    code: string;
    message: string;
    channel?: string;
} | {
    type: 'pong';
} | {
    type: 'close';
    code: number;
    reason: string;
} | {
    type: 'presence';
    id: number;
    channel: string;
    clients: PresenceEntry[];
} | {
    type: 'presence_stats';
    id: number;
    channel: string;
    clients: number;
    users: number;
}
/** The backend's answer to an `rpc` (a missing `result` is null). */
 | {
    type: 'rpc';
    id: number;
    result: unknown;
}
/** A client became present in / stopped being present in a `join_leave` channel. */
 | ({
    type: 'join' | 'leave';
    channel: string;
} & PresenceChange);
/** Who joined or left: a presence entry without `joined_at_ms` (docs/presence.md). */
export interface PresenceChange {
    client: string;
    /** The token's `sub`; `null` for an anonymous client. */
    user: string | null;
    /** The token's `info` claim, absent when none. */
    info?: Record<string, unknown>;
}
/**
 * Server error codes that mean "nothing was done; retry with backoff"
 * (docs/protocol.md): the broker (Redis) is unreachable or reconnecting
 * (`unavailable`), the server could not complete the request (`internal`),
 * the node is at a capacity limit (`over_capacity`). The client retries a
 * subscribe refused with one of them by itself; every other code is final.
 */
export declare const RETRYABLE_ERRORS: readonly string[];
/** Whether a server error code asks to retry later (`RETRYABLE_ERRORS`). */
export declare function isRetryable(code: string): boolean;
/** Encodes a client message as one JSON text frame (field order fixed). */
export declare function encode(msg: ClientMessage): string;
/** The UTF-8 length of `s` (what is sent on the wire), without encoding it. */
export declare function utf8Length(s: string): number;
/** Why a frame could not be decoded. */
export declare class DecodeError extends Error {
    constructor(message: string);
}
/**
 * Decodes one server message from a parsed JSON value. Returns `null` for a
 * message of an unknown type (a newer server's; ignored), throws
 * {@link DecodeError} for a known type with missing or mistyped fields.
 */
export declare function decodeValue(v: unknown): ServerMessage | null;
/** Decodes one text frame; see {@link decodeValue}. */
export declare function decode(frame: string): ServerMessage | null;
