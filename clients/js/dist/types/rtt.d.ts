import type { ClientMessage } from './protocol.js';
import type { Clock } from './transport/transport.js';
export declare class RttMeter {
    private readonly clock;
    /** The last measured round-trip time (ms); undefined until measured. */
    last: number | undefined;
    /** When the oldest unanswered ping was sent. */
    private sentAt;
    private readonly waiters;
    constructor(clock: Clock);
    /** A ping to send; the RTT is measured from the oldest one still unanswered. */
    message(): ClientMessage;
    /** A pong arrived: measures, and answers every waiting `measure()`. */
    pong(): void;
    /**
     * The RTT of the next pong; `send` sends a ping unless one already waits
     * for its pong. Rejects with `timeout` without a pong within
     * WAKE_CHECK_TIMEOUT.
     */
    measure(send: (m: ClientMessage) => void): Promise<number>;
    /**
     * The connection ended: its pings are lost. Waiting calls reject, unless
     * `keepWaiters` (a switch to another transport, whose welcome ping answers
     * them).
     */
    reset(keepWaiters: boolean): void;
    private outstanding;
    private settle;
}
