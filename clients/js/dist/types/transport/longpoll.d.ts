import { type ClientMessage, type StreamPosition } from '../protocol.js';
import type { Clock, FetchLike, Transport, TransportHandlers } from './transport.js';
/** At most this many messages in one `/lp/send` body. */
export declare const MAX_SEND_BATCH = 64;
/**
 * A `/lp/send` body stops before its encoded size (UTF-8 bytes) passes this:
 * the server refuses a body over 4 × `--max-message-bytes` + 1 KiB (263,168
 * bytes by default) with 413, and resending the same batch would be refused
 * forever. A single larger message is sent alone (the server closes with
 * 1009 for a message over its limit, as on `/ws`; a 413 to a publish sent
 * alone rejects it with `message_too_big`, and a 413 to several messages
 * halves the bodies that follow: see `tooLarge`).
 */
export declare const MAX_SEND_BYTES: number;
/** The poll timeout assumed when the welcome does not name one. */
export declare const DEFAULT_POLL_TIMEOUT = 25000;
export interface LongPollOptions {
    /** `http(s)://host[:port][/prefix]/lp` */
    base: string;
    /** Query parameters for every request (the client URL's, e.g. `token=X`), beside `client=`. */
    query?: string;
    /** Query parameters for `/lp/open` only (the connect data: `data=...`). */
    openQuery?: string;
    token?: string | undefined;
    fetch: FetchLike;
    clock: Clock;
    /** Every request is aborted after this (a poll: after poll_timeout_ms + this). */
    requestTimeout: number;
    /** The position of every channel to name in a poll. */
    positions(): Record<string, StreamPosition>;
    log?(msg: string): void;
}
export declare class LongPollTransport implements Transport {
    private readonly opts;
    handlers: TransportHandlers;
    readonly name: "longpoll";
    readonly repairsGaps = true;
    /** True while the `/lp/open` answer's messages after the welcome are applied. */
    announcing: boolean;
    opened: boolean;
    private client;
    private closed;
    private pollTimeout;
    private outbox;
    private sending;
    private sendFailures;
    /** A send body stops before this many bytes: MAX_SEND_BYTES, halved by each 413 to a body of several messages. */
    private maxBody;
    private poll;
    private pollFailures;
    /** The timer before the next poll after a poll refused for the message rate (no poll until it fires). */
    private pollWait;
    /** While a response is being applied (a re-poll waits for its end). */
    private processing;
    private repollWanted;
    private readonly inflight;
    constructor(opts: LongPollOptions, handlers: TransportHandlers);
    send(msgs: ClientMessage[]): void;
    positionsChanged(): void;
    refresh(): void;
    close(): void;
    private flush;
    /**
     * A send answered 413: the body passed the server's bound (4 ×
     * `--max-message-bytes` + 1 KiB), and the same body would be refused
     * forever. A body of one publish: that publish is too big for the server;
     * it is answered as a refused request is (an `error` with its id, code
     * `message_too_big`) and the session goes on with the rest of the outbox.
     * A body of several messages (a server whose `--max-message-bytes` is under
     * 65,280 has a bound under MAX_SEND_BYTES): the next bodies stop at half
     * its size, down to one message each. False for one message that is not a
     * publish (nothing the client sends can be that big): a refusal as before.
     */
    private tooLarge;
    private startPoll;
    /** Hands a response's messages over, in order; a `close` ends the session. */
    private apply;
    /** Checks an answer: its messages, or null after failing the transport. */
    private answer;
    private failed;
    private fail;
    private request;
}
