import { type Ended } from './closeCodes.js';
import { Liveness } from './liveness.js';
import { type Resolved, type TetherOptions } from './options.js';
import type { ClientMessage, ServerMessage, StreamPosition } from './protocol.js';
import { Emitter, TetherError, type ConnectionState, type TetherEvents } from './state.js';
import type { Transport } from './transport/transport.js';
/**
 * A connection proves usable — and the backoff starts over — once the welcome
 * arrived and then either a request was answered (subscribed, ack) or it
 * stayed up this long. A server that accepts and at once closes again keeps
 * the client backing off instead of reconnecting in a tight loop.
 */
export declare const STABLE_AFTER = 5000;
export declare abstract class Connection {
    /**
     * Round-trip time (ms) of the last application ping (one follows every
     * welcome, then heartbeat, resume and `ping()` pings); undefined until measured.
     */
    get rtt(): number | undefined;
    /**
     * The client id of the current connection's `welcome` (what presence and
     * join/leave show for this client); a new one on every connection,
     * undefined while not connected.
     */
    get clientId(): string | undefined;
    private clientName;
    protected readonly o: Resolved;
    protected readonly emitter: Emitter<TetherEvents>;
    protected transport: Transport | null;
    protected welcomed: boolean;
    protected terminal: boolean;
    protected current: ConnectionState;
    protected readonly liveness: Liveness;
    private readonly urls;
    private readonly backoff;
    private started;
    /** An attempt was started since connect(): later ones are `reconnecting`, not `connecting`. */
    private tried;
    private attempt;
    private generation;
    private wsFailures;
    private lpFailures;
    private fallback;
    /** A WebSocket was welcomed in this client's life: a later fallback is more likely an outage. */
    private wsWorked;
    /** When the next probe runs: after `probeInterval`, soon (`firstProbeDelay`) or at once. */
    private nextProbe;
    /** The sessionStorage key remembering a fallback for this endpoint. */
    private readonly fallbackKey;
    private forceFallback;
    /** A probe is under way (asking for its token, or its WebSocket open). */
    private probing;
    private probeSeq;
    private probe;
    private readonly meter;
    private readonly timers;
    private readonly listeners;
    constructor(url: string, options?: TetherOptions);
    /** The connection state (a copy). */
    get state(): ConnectionState;
    on<K extends keyof TetherEvents>(type: K, fn: (v: TetherEvents[K]) => void): () => void;
    off<K extends keyof TetherEvents>(type: K, fn: (v: TetherEvents[K]) => void): void;
    /** Starts connecting (and reconnecting) until `disconnect()` or a terminal close. */
    connect(): void;
    /** Closes the connection (1000) and stays disconnected; pending publishes reject. */
    disconnect(): void;
    /** A new connection got its welcome: what it must send to restore (subscribes, publishes). */
    protected abstract restore(t: Transport): ClientMessage[];
    /** A server message other than welcome, pong and close. */
    protected abstract dispatch(t: Transport, m: ServerMessage): void;
    /** The connection ended (how, when it ended by itself): requests in flight on it are void. */
    protected abstract connectionEnded(ended?: Ended): void;
    /** The client stopped for good with `err`. */
    protected abstract stopped(err: TetherError): void;
    /** Every held channel's position (named in each long poll). */
    protected abstract positions(): Record<string, StreamPosition>;
    private open;
    /**
     * Gets the token and the connect data for an attempt (or a probe): see
     * `requestCredentials` (credentials.ts); failures are `error` events.
     */
    private requestCredentials;
    private start;
    private bind;
    private welcome;
    private message;
    /** The connection (or the attempt) ended; decide whether and when to retry. */
    private ended;
    /** Stops for good (until `connect()`). */
    private stop;
    /**
     * Ends the current transport (silently) and forgets what was in flight on
     * it (`connectionEnded`, told how it `ended`); `ping()` calls waiting reject,
     * unless `keepPings` (a switch to another transport, whose welcome ping answers them).
     */
    private teardown;
    protected usable(): void;
    /** A publication skipped offsets: the WebSocket reconnects and recovers; long polling re-reads. */
    protected gap(t: Transport, channel: string): void;
    private drop;
    private resume;
    private wentOffline;
    /** State `offline`, keeping the last ending's code and reason; no event when already offline. */
    private goOffline;
    private scheduleProbe;
    /** Probes at once when connected over long polling, else right after the next long-poll welcome. */
    private probeNow;
    /**
     * While on long polling: ask for a token (the token function is called
     * before every attempt, probes included), open a WebSocket, and switch to
     * it once it is welcomed. A probe that fails in any way is tried again later.
     */
    private runProbe;
    private openProbe;
    private switchTo;
    private cancelProbe;
    /**
     * Measures the round-trip time: sends `{"type":"ping"}` (unless one is
     * already waiting for its pong: pongs carry no id, so concurrent calls share
     * the next one) and resolves with the RTT in ms, also left in `rtt`. Rejects
     * with `disconnected` when not connected or when the connection ends first,
     * and with `timeout` without a pong within `WAKE_CHECK_TIMEOUT` (3 s).
     */
    ping(): Promise<number>;
    /** Uses sessionStorage when there is one; any exception from it is ignored. */
    private storage;
    private canWebSocket;
    private canLongPoll;
    private useWebSocket;
    private preferred;
    private setState;
    private set;
    private clear;
    protected log(msg: string): void;
}
