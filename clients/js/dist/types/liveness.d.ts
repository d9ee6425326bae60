import type { Clock } from './transport/transport.js';
/** The deadline for the answer to a ping sent on wake or resume. */
export declare const WAKE_CHECK_TIMEOUT = 3000;
/**
 * While connected, the wall clock is compared with the timers' clock this
 * often. Where timers stop during a sleep (Linux's monotonic clock does not
 * count a suspend), a heartbeat timer fires long after the wake — up to
 * ping_interval — on time by its own clock; this watch notices the wall
 * clock's jump within WATCH_EVERY of the wake and checks at once.
 */
export declare const WATCH_EVERY = 2000;
export declare function clampHeartbeat(ms: number): number;
export declare class Liveness {
    private readonly clock;
    private readonly sendPing;
    private readonly dead;
    private pingInterval;
    private pongTimeout;
    private lastHeard;
    private timer;
    private dueAt;
    private pinged;
    private checkTimer;
    private watchTimer;
    private watchDue;
    private running;
    constructor(clock: Clock, sendPing: () => void, dead: (reason: string) => void);
    start(pingInterval: number, pongTimeout: number): void;
    stop(): void;
    /** Anything from the server: the connection is alive. */
    heard(): void;
    /** Whether the wall clock is past the liveness deadline. */
    suspect(): boolean;
    /** Pings now; unless anything is heard within `timeout` ms, the connection is dead. */
    check(why: string, timeout?: number): void;
    /** Before a send: a wall clock past the deadline makes the connection suspect. */
    verify(why: string): void;
    private schedule;
    private clear;
    private watch;
    private fire;
}
