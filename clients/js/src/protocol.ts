// The Tether protocol messages (docs/protocol.md): encoding of what the
// client sends, lenient decoding of what the server sends. Like the Rust
// decoder, fields a message's type does not use are ignored whatever their
// names or types, so newer servers can add optional ones.

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
export type ClientMessage =
  | { type: 'subscribe'; id: number; channel: string; recover?: StreamPosition }
  | { type: 'unsubscribe'; id: number; channel: string }
  | { type: 'publish'; id: number; channel: string; data: unknown; key?: string }
  | { type: 'presence'; id: number; channel: string }
  | { type: 'presence_stats'; id: number; channel: string }
  /** A request answered by the backend's rpc hook (docs/hooks.md); `data` undefined is sent as null. */
  | { type: 'rpc'; id: number; method: string; data: unknown }
  | { type: 'ping' };

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
export type ServerMessage =
  | {
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
    }
  | { type: 'unsubscribed'; id: number; channel: string }
  | { type: 'message'; channel: string; offset: number; data: unknown }
  | { type: 'ack'; id: number; offset: number }
  /**
   * `channel`: on long polling, an id-less error for a channel the poll named
   * but the session could not hold (docs/longpoll.md).
   */
  | { type: 'error'; id?: number; code: string; message: string; channel?: string }
  | { type: 'pong' }
  | { type: 'close'; code: number; reason: string }
  | { type: 'presence'; id: number; channel: string; clients: PresenceEntry[] }
  | { type: 'presence_stats'; id: number; channel: string; clients: number; users: number }
  /** The backend's answer to an `rpc` (a missing `result` is null). */
  | { type: 'rpc'; id: number; result: unknown }
  /** A client became present in / stopped being present in a `join_leave` channel. */
  | ({ type: 'join' | 'leave'; channel: string } & PresenceChange);

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
export const RETRYABLE_ERRORS: readonly string[] = Object.freeze(['unavailable', 'internal', 'over_capacity']);

/** Whether a server error code asks to retry later (`RETRYABLE_ERRORS`). */
export function isRetryable(code: string): boolean {
  return RETRYABLE_ERRORS.includes(code);
}

/** Encodes a client message as one JSON text frame (field order fixed). */
export function encode(msg: ClientMessage): string {
  switch (msg.type) {
    case 'subscribe': {
      const out: Record<string, unknown> = { type: 'subscribe', id: msg.id, channel: msg.channel };
      if (msg.recover) out.recover = { epoch: msg.recover.epoch, offset: msg.recover.offset };
      return JSON.stringify(out);
    }
    case 'unsubscribe':
      return JSON.stringify({ type: 'unsubscribe', id: msg.id, channel: msg.channel });
    case 'publish': {
      // `data: undefined` would vanish from the JSON; the protocol needs it.
      const out: Record<string, unknown> = {
        type: 'publish',
        id: msg.id,
        channel: msg.channel,
        data: msg.data === undefined ? null : msg.data,
      };
      if (msg.key !== undefined) out.key = msg.key;
      return JSON.stringify(out);
    }
    case 'presence':
    case 'presence_stats':
      return JSON.stringify({ type: msg.type, id: msg.id, channel: msg.channel });
    case 'rpc':
      return JSON.stringify({ type: 'rpc', id: msg.id, method: msg.method, data: msg.data === undefined ? null : msg.data });
    case 'ping':
      return '{"type":"ping"}';
  }
}

/** The UTF-8 length of `s` (what is sent on the wire), without encoding it. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00 && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4; // a surrogate pair
      i++;
    } else n += 3;
  }
  return n;
}

/** Why a frame could not be decoded. */
export class DecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DecodeError';
  }
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A non-negative integer (ids, offsets, durations). */
function uint(o: Obj, field: string): number {
  const v = o[field];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new DecodeError(`${field}: expected a non-negative integer`);
  }
  return v;
}

function optUint(o: Obj, field: string): number | undefined {
  return o[field] === undefined || o[field] === null ? undefined : uint(o, field);
}

function str(o: Obj, field: string): string {
  const v = o[field];
  if (typeof v !== 'string') throw new DecodeError(`${field}: expected a string`);
  return v;
}

function bool(o: Obj, field: string): boolean {
  const v = o[field];
  if (typeof v !== 'boolean') throw new DecodeError(`${field}: expected a boolean`);
  return v;
}

function publications(o: Obj): Publication[] {
  const v = o.publications;
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new DecodeError('publications: expected an array');
  return v.map((p) => {
    if (!isObj(p)) throw new DecodeError('publications: expected objects');
    if (!('data' in p)) throw new DecodeError('publications: data missing');
    return { offset: uint(p, 'offset'), data: p.data };
  });
}

/** `client`, `user` (null when absent) and `info` (omitted when absent) of a presence entry or a join/leave. */
function presenceChange(e: Obj): PresenceChange {
  const user = e.user === null || e.user === undefined ? null : str(e, 'user');
  const out: PresenceChange = { client: str(e, 'client'), user };
  if (e.info !== undefined && e.info !== null) {
    if (!isObj(e.info)) throw new DecodeError('info: expected an object');
    out.info = e.info;
  }
  return out;
}

function presenceEntries(o: Obj): PresenceEntry[] {
  const v = o.clients;
  if (!Array.isArray(v)) throw new DecodeError('clients: expected an array');
  return v.map((e) => {
    if (!isObj(e)) throw new DecodeError('clients: expected objects');
    const { client, user, info } = presenceChange(e);
    const entry: PresenceEntry = { client, user, joined_at_ms: uint(e, 'joined_at_ms') };
    if (info) entry.info = info;
    return entry;
  });
}

/**
 * Decodes one server message from a parsed JSON value. Returns `null` for a
 * message of an unknown type (a newer server's; ignored), throws
 * {@link DecodeError} for a known type with missing or mistyped fields.
 */
export function decodeValue(v: unknown): ServerMessage | null {
  if (!isObj(v)) throw new DecodeError('not a JSON object');
  const type = v.type;
  switch (type) {
    case 'welcome': {
      const msg: ServerMessage = {
        type,
        client: str(v, 'client'),
        ping_interval_ms: uint(v, 'ping_interval_ms'),
        pong_timeout_ms: uint(v, 'pong_timeout_ms'),
        version: uint(v, 'version'),
      };
      const poll = optUint(v, 'poll_timeout_ms');
      if (poll !== undefined) msg.poll_timeout_ms = poll;
      const pub = v.public_client;
      if (typeof pub === 'string') msg.public_client = pub;
      return msg;
    }
    case 'subscribed': {
      const id = optUint(v, 'id');
      return {
        type,
        ...(id === undefined ? {} : { id }),
        channel: str(v, 'channel'),
        epoch: str(v, 'epoch'),
        offset: uint(v, 'offset'),
        recovered: bool(v, 'recovered'),
        publications: publications(v),
      };
    }
    case 'unsubscribed':
      return { type, id: uint(v, 'id'), channel: str(v, 'channel') };
    case 'message':
      if (!('data' in v)) throw new DecodeError('data missing');
      return { type, channel: str(v, 'channel'), offset: uint(v, 'offset'), data: v.data };
    case 'ack':
      return { type, id: uint(v, 'id'), offset: uint(v, 'offset') };
    case 'error': {
      const id = optUint(v, 'id');
      return {
        type,
        ...(id === undefined ? {} : { id }),
        code: str(v, 'code'),
        message: typeof v.message === 'string' ? v.message : '',
        ...(typeof v.channel === 'string' ? { channel: v.channel } : {}),
      };
    }
    case 'presence':
      return { type, id: uint(v, 'id'), channel: str(v, 'channel'), clients: presenceEntries(v) };
    case 'presence_stats':
      return { type, id: uint(v, 'id'), channel: str(v, 'channel'), clients: uint(v, 'clients'), users: uint(v, 'users') };
    case 'join':
    case 'leave':
      return { type, channel: str(v, 'channel'), ...presenceChange(v) };
    case 'rpc':
      return { type, id: uint(v, 'id'), result: v.result === undefined ? null : v.result };
    case 'pong':
      return { type };
    case 'close':
      return {
        type,
        code: uint(v, 'code'),
        reason: typeof v.reason === 'string' ? v.reason : '',
      };
    default:
      return null;
  }
}

/** Decodes one text frame; see {@link decodeValue}. */
export function decode(frame: string): ServerMessage | null {
  let v: unknown;
  try {
    v = JSON.parse(frame);
  } catch {
    throw new DecodeError('malformed JSON');
  }
  return decodeValue(v);
}
