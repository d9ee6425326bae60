// Public API of the Tether JS client.

export { Tether, STABLE_AFTER, PRESENCE_RETRIES } from './client.js';
export { FIRST_PROBE_DELAY } from './options.js';
export type { TetherOptions, TokenSource, ConnectDataSource } from './options.js';
export { MAX_CONNECT_DATA_BYTES } from './credentials.js';
export { MAX_RPC_METHOD_BYTES } from './rpcCalls.js';
export type { Env, SessionStorageLike } from './env.js';
export { TetherError } from './state.js';
export type { ConnectionState, StateName, TransportName, TetherEvents } from './state.js';
export { Subscription } from './subscription.js';
export type { MessageEvent, SubscribedEvent, SubscriptionHandlers, PresenceEvent } from './subscription.js';
export type { PresenceStats } from './presenceRequests.js';
export type { PublishResult } from './publishQueue.js';
export { Backoff, parseRetryHint, parseRetryAfter } from './backoff.js';
export { CLOSE_CODES, CLOSE_CODE_RANGES, PERMANENT_STATUSES, reconnectFor, classify } from './closeCodes.js';
export type { Reconnect, Ended } from './closeCodes.js';
export { encode, decode, decodeValue, DecodeError, RETRYABLE_ERRORS, isRetryable } from './protocol.js';
export type { ClientMessage, ServerMessage, StreamPosition, Publication, PresenceEntry, PresenceChange } from './protocol.js';
export { WAKE_CHECK_TIMEOUT, WATCH_EVERY } from './liveness.js';
export { MAX_SEND_BATCH, MAX_SEND_BYTES } from './transport/longpoll.js';
export type { WebSocketLike, WebSocketCtor, FetchLike, ResponseLike } from './transport/transport.js';
