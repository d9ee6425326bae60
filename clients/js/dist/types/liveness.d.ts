import type { Clock } from './transport/transport.js';
/** The deadline for the answer to a ping sent on wake or resume. */
export declare const WAKE_CHECK_TIMEOUT = 3000;
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
    private fire;
}
