// The long-polling transport (docs/longpoll.md): `POST /lp/open` for the
// welcome (with the connect data as `data=`; a connect hook's refusal comes
// as a `close` instead, and its server-side subscriptions after the welcome), `POST /lp/send?client=ID` for client messages (a JSON array, at
// most 64 messages and 256 KiB), `POST /lp/poll?client=ID` naming every held
// channel with its position. Bodies are `text/plain` (no CORS preflight), the
// token is an `Authorization: Bearer` header and the client URL's query
// parameters (`?token=X`, ...) are added on every request, and every request is
// aborted after its timeout. One poll at a time; positions only advance when
// a response is processed, so a lost poll response is read again by the next
// poll — once: two failed requests in a row (`MAX_FAILURES`) end the session
// and the client reconnects.

import { parseRetryAfter } from '../backoff.js';
import type { Ended } from '../closeCodes.js';
import { decodeValue, encode, utf8Length, type ClientMessage, type ServerMessage, type StreamPosition } from '../protocol.js';
import type { Clock, FetchLike, ResponseLike, Transport, TransportHandlers } from './transport.js';

/** At most this many messages in one `/lp/send` body. */
export const MAX_SEND_BATCH = 64;
/**
 * A `/lp/send` body stops before its encoded size (UTF-8 bytes) passes this:
 * the server refuses a body over 4 × `--max-message-bytes` + 1 KiB (263,168
 * bytes by default) with 413, and resending the same batch would be refused
 * forever. A single larger message is sent alone (the server closes with
 * 1009 for a message over its limit, as on `/ws`; a 413 to a publish sent
 * alone rejects it with `message_too_big`, and a 413 to several messages
 * halves the bodies that follow: see `tooLarge`).
 */
export const MAX_SEND_BYTES = 256 * 1024;
/** The poll timeout assumed when the welcome does not name one. */
export const DEFAULT_POLL_TIMEOUT = 25_000;
/** Failed requests in a row (network error, timeout) before the session is given up. */
const MAX_FAILURES = 2;
/** After a poll refused for the message rate: the wait when the error names none, and the longest. */
const RATE_LIMIT_WAIT = 1_000;
const MAX_RATE_LIMIT_WAIT = 10_000;

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

interface Answer {
  status: number;
  retryAfter: number | undefined;
  body: string;
}

class Refused extends Error {
  constructor(readonly ended: Ended) {
    super('refused');
  }
}

export class LongPollTransport implements Transport {
  readonly name = 'longpoll' as const;
  readonly repairsGaps = true;
  /** True while the `/lp/open` answer's messages after the welcome are applied. */
  announcing = false;
  opened = false;
  private client: string | null = null;
  private closed = false;
  private pollTimeout = DEFAULT_POLL_TIMEOUT;
  private outbox: ClientMessage[] = [];
  private sending = false;
  private sendFailures = 0;
  /** A send body stops before this many bytes: MAX_SEND_BYTES, halved by each 413 to a body of several messages. */
  private maxBody = MAX_SEND_BYTES;
  private poll: AbortController | null = null;
  private pollFailures = 0;
  /** The timer before the next poll after a poll refused for the message rate (no poll until it fires). */
  private pollWait: unknown = null;
  /** While a response is being applied (a re-poll waits for its end). */
  private processing = false;
  private repollWanted = false;
  private readonly inflight = new Set<AbortController>();

  constructor(
    private readonly opts: LongPollOptions,
    public handlers: TransportHandlers,
  ) {
    this.request('open', '{}', opts.requestTimeout).then(
      (answer) => {
        const msgs = this.answer(answer);
        if (!msgs) return;
        const welcome = msgs[0];
        // A refusal before the session exists (the connect hook's) is a `close`.
        if (welcome?.type === 'close') {
          this.fail({ kind: 'closed', code: welcome.code, reason: welcome.reason });
          return;
        }
        if (!welcome || welcome.type !== 'welcome') {
          this.fail({ kind: 'lost', reason: 'the /lp/open answer is not a welcome' });
          return;
        }
        this.client = welcome.client;
        if (welcome.poll_timeout_ms !== undefined) this.pollTimeout = Math.min(welcome.poll_timeout_ms, 3_600_000);
        this.opened = true;
        this.handlers.onOpen();
        this.handlers.onMessage(welcome);
        // What follows the welcome (the server-side subscriptions' `subscribed`)
        // is applied as any answer; one for a channel this client already holds
        // is left out: the polls name its position, and recover it from there.
        const held = this.opts.positions();
        this.announcing = true;
        try {
          this.apply(msgs.slice(1).filter((m) => !(m.type === 'subscribed' && m.id === undefined && m.channel in held)));
        } finally {
          this.announcing = false;
        }
        this.startPoll();
        this.flush();
      },
      (e) => this.failed(e, 'open'),
    );
  }

  send(msgs: ClientMessage[]): void {
    if (this.closed) return;
    this.outbox.push(...msgs);
    this.flush();
  }

  positionsChanged(): void {
    if (this.closed || !this.client) return;
    if (this.processing) {
      this.repollWanted = true;
      return;
    }
    this.poll?.abort();
    this.poll = null;
    this.startPoll();
  }

  refresh(): void {
    // The same as a changed subscription set: nothing is lost, as positions
    // only advance when an answer is processed.
    this.positionsChanged();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pollWait !== null) this.opts.clock.clearTimeout(this.pollWait);
    this.pollWait = null;
    for (const c of this.inflight) c.abort();
    this.inflight.clear();
    this.poll = null;
    this.outbox = [];
  }

  private flush(): void {
    if (this.closed || this.sending || !this.client || this.outbox.length === 0) return;
    const { count, body, bytes } = sendBody(this.outbox, this.maxBody);
    this.sending = true;
    this.request('send', body, this.opts.requestTimeout).then(
      (answer) => {
        this.sending = false;
        if (answer.status === 413 && !this.closed && this.tooLarge(count, bytes)) return;
        const msgs = this.answer(answer);
        if (!msgs) return;
        this.sendFailures = 0;
        this.outbox.splice(0, count);
        this.apply(msgs);
        this.flush();
      },
      (e) => {
        this.sending = false;
        if (this.closed) return;
        // A retried POST is applied once by the server: send the same batch again.
        if (e instanceof Refused || ++this.sendFailures >= MAX_FAILURES) this.failed(e, 'send');
        else this.flush();
      },
    );
  }

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
  private tooLarge(count: number, bytes: number): boolean {
    const head = this.outbox[0];
    const big = head?.type === 'publish' || head?.type === 'rpc';
    if (count === 1 && !big) return false;
    this.handlers.onActivity();
    this.sendFailures = 0;
    if (count > 1) {
      this.maxBody = Math.floor(bytes / 2);
      this.opts.log?.(`a send of ${count} messages (${bytes} bytes) answered 413: bodies of at most ${this.maxBody} bytes from now on`);
    } else if (big) {
      this.outbox.shift();
      const message = `this ${head.type} (${bytes - 2} bytes) is larger than the server accepts (HTTP 413)`;
      this.apply([{ type: 'error', id: head.id, code: 'message_too_big', message }]);
    }
    this.flush();
    return true;
  }

  private startPoll(): void {
    if (this.closed || this.poll || this.pollWait !== null || !this.client) return;
    const ctrl = new AbortController();
    this.poll = ctrl;
    const body = JSON.stringify({ channels: this.opts.positions() });
    this.request('poll', body, this.pollTimeout + this.opts.requestTimeout, ctrl).then(
      (answer) => {
        if (this.poll !== ctrl) return; // superseded by a newer poll
        this.poll = null;
        const msgs = this.answer(answer);
        if (!msgs) return;
        this.pollFailures = 0;
        // Every poll takes a token from the session's message bucket: one
        // refused for the rate is followed by a wait, not by another refusal
        // at once (ten in a row end the session with 4005). Armed before the
        // answer is applied, so a re-poll it asks for waits too.
        const wait = rateLimitWait(msgs);
        if (wait !== undefined) {
          this.opts.log?.(`poll refused for the message rate: polling again in ${wait} ms`);
          this.pollWait = this.opts.clock.setTimeout(() => {
            this.pollWait = null;
            this.startPoll();
          }, wait);
        }
        this.apply(msgs);
        this.startPoll();
      },
      (e) => {
        if (this.poll !== ctrl) return;
        this.poll = null;
        // The positions did not move: the next poll reads the same again.
        if (e instanceof Refused || ++this.pollFailures >= MAX_FAILURES) this.failed(e, 'poll');
        else this.startPoll();
      },
    );
  }

  /** Hands a response's messages over, in order; a `close` ends the session. */
  private apply(msgs: ServerMessage[]): void {
    this.processing = true;
    try {
      for (const m of msgs) {
        if (this.closed) return;
        if (m.type === 'close') {
          this.fail({ kind: 'closed', code: m.code, reason: m.reason });
          return;
        }
        this.handlers.onMessage(m);
      }
    } finally {
      this.processing = false;
    }
    if (this.repollWanted) {
      this.repollWanted = false;
      this.positionsChanged();
    }
  }

  /** Checks an answer: its messages, or null after failing the transport. */
  private answer(a: Answer): ServerMessage[] | null {
    if (this.closed) return null;
    if (a.status !== 200) {
      this.failed(new Refused(refusal(a)), '');
      return null;
    }
    this.handlers.onActivity();
    let v: unknown;
    try {
      v = JSON.parse(a.body);
    } catch {
      this.fail({ kind: 'lost', reason: 'a long-poll answer is not JSON' });
      return null;
    }
    const list = Array.isArray(v) ? v : [v];
    const out: ServerMessage[] = [];
    for (const item of list) {
      try {
        const m = decodeValue(item);
        if (m) out.push(m);
      } catch (e) {
        this.opts.log?.(`ignoring an undecodable server message: ${String(e)}`);
      }
    }
    return out;
  }

  private failed(e: unknown, what: string): void {
    if (e instanceof Refused) this.fail(e.ended);
    else this.fail({ kind: 'lost', reason: `/lp/${what} failed: ${errorText(e)}` });
  }

  private fail(ended: Ended): void {
    if (this.closed) return;
    this.close();
    this.handlers.onEnded(ended);
  }

  private request(route: string, body: string, timeout: number, ctrl = new AbortController()): Promise<Answer> {
    const { clock, token } = this.opts;
    const params = [
      this.opts.query ?? '',
      route === 'open' ? (this.opts.openQuery ?? '') : '',
      this.client === null ? '' : `client=${encodeURIComponent(this.client)}`,
    ];
    const query = params.filter((p) => p !== '').join('&');
    const headers: Record<string, string> = { 'Content-Type': 'text/plain;charset=UTF-8' };
    if (token) headers.Authorization = `Bearer ${token}`;
    this.inflight.add(ctrl);
    const timer = clock.setTimeout(() => ctrl.abort(), timeout);
    const done = (): void => {
      clock.clearTimeout(timer);
      this.inflight.delete(ctrl);
    };
    let p: Promise<ResponseLike>;
    try {
      p = this.opts.fetch(`${this.opts.base}/${route}${query === '' ? '' : `?${query}`}`, {
        method: 'POST',
        headers,
        body,
        signal: ctrl.signal,
        cache: 'no-store',
      });
    } catch (e) {
      p = Promise.reject(e);
    }
    return p
      .then(async (res) => ({
        status: res.status,
        retryAfter: parseRetryAfter(res.headers.get('Retry-After'), clock.now()),
        body: await res.text(),
      }))
      .then(
        (a) => {
          done();
          if (ctrl.signal.aborted) throw new Error(`timed out after ${timeout} ms`);
          return a;
        },
        (e) => {
          done();
          throw ctrl.signal.aborted && !this.closed ? new Error(`timed out after ${timeout} ms`) : e;
        },
      );
  }
}

/**
 * How long to wait before the next poll when an answer holds an id-less
 * `rate_limited` error: the delay it names ("too many messages; retry in N
 * ms"), else `RATE_LIMIT_WAIT`, at most `MAX_RATE_LIMIT_WAIT`; undefined
 * when it holds none.
 */
function rateLimitWait(msgs: readonly ServerMessage[]): number | undefined {
  const m = msgs.find((m) => m.type === 'error' && m.id === undefined && m.code === 'rate_limited');
  if (!m || m.type !== 'error') return undefined;
  const named = /retry in ([0-9]+) ms/.exec(m.message);
  const ms = named ? Number(named[1]) : RATE_LIMIT_WAIT;
  return Math.min(ms, MAX_RATE_LIMIT_WAIT);
}

/**
 * The body for the head of `outbox`: at most `MAX_SEND_BATCH` messages and
 * `maxBytes` (`MAX_SEND_BYTES`, less after a 413), but always at least one
 * message; `bytes` is its UTF-8 size. A retry after a failed send builds the
 * same body again (the outbox only shrinks on an answer).
 */
function sendBody(outbox: readonly ClientMessage[], maxBytes: number): { count: number; body: string; bytes: number } {
  const parts: string[] = [];
  let bytes = 2; // the brackets
  for (const m of outbox) {
    if (parts.length === MAX_SEND_BATCH) break;
    const text = encode(m);
    const size = utf8Length(text) + (parts.length > 0 ? 1 : 0);
    if (parts.length > 0 && bytes + size > maxBytes) break;
    parts.push(text);
    bytes += size;
  }
  return { count: parts.length, body: `[${parts.join(',')}]`, bytes };
}

function refusal(a: Answer): Ended {
  const reason = a.body.split('\n')[0]?.slice(0, 200) ?? '';
  return a.retryAfter === undefined
    ? { kind: 'refused', status: a.status, reason }
    : { kind: 'refused', status: a.status, reason, retryAfter: a.retryAfter };
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
