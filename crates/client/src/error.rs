//! What can go wrong when using the client, and what to do about each.

use tether_protocol::ErrorCode;

/// Errors returned by [`Client`](crate::Client) methods.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a usable `ws://` or `wss://` URL. Fix the URL; nothing was started.
    #[error("invalid URL {url:?}: {why}")]
    InvalidUrl { url: String, why: String },
    /// A root certificate given to the builder is not PEM.
    #[error("invalid root certificate: {0}")]
    InvalidCertificate(String),
    /// The channel name breaks the protocol's rules; the message says which.
    #[error("invalid channel name: {0}")]
    InvalidChannel(String),
    /// `data` could not be turned into JSON.
    #[error("data is not valid JSON: {0}")]
    InvalidData(String),
    /// The connect data ([`ClientBuilder::connect_data`](crate::ClientBuilder::connect_data))
    /// is not a JSON object, or is larger than the server accepts (4 KiB
    /// URL-encoded). Nothing was sent.
    #[error("invalid connect data: {0}")]
    InvalidConnectData(String),
    /// An rpc method name must be 1 to 256 bytes. Nothing was sent.
    #[error("invalid rpc method: {0}")]
    InvalidMethod(String),
    /// Too many publishes are waiting for their ack (the queue holds
    /// `capacity`). Nothing was queued: slow down, await earlier publishes, or
    /// build the client with a larger `publish_queue`.
    #[error("publish queue is full ({capacity} publishes await their ack); retry later or raise publish_queue")]
    QueueFull { capacity: usize },
    /// Too many rpcs are waiting to be sent or answered (the queue holds
    /// `capacity`, the builder's `publish_queue`). Nothing was queued.
    #[error("rpc queue is full ({capacity} rpcs await their answer); retry later or raise publish_queue")]
    RpcQueueFull { capacity: usize },
    /// The rpc was sent, and its connection ended before the answer: the
    /// backend may or may not have acted on it. The client does not send an
    /// rpc twice on its own; call it again if the method is safe to repeat
    /// (after the reconnect, which the client makes by itself).
    #[error("the connection ended before the rpc's answer (it may or may not have been carried out): {reason}")]
    ConnectionLost { reason: String },
    /// This client already has a live [`Subscription`](crate::Subscription)
    /// to the channel; drop it before subscribing again. Also for a channel
    /// the server subscribed this client to (its events come on
    /// [`Client::server_subscriptions`](crate::Client::server_subscriptions)).
    #[error("already subscribed to {0:?} on this client; drop the other Subscription first")]
    AlreadySubscribed(String),
    /// The server answered the request with an `error` reply; the client does
    /// not retry a publish. `Forbidden` needs other credentials. After the
    /// [retryable](crate::is_retryable) codes (`Unavailable`: the broker is
    /// unreachable; `Internal`, `OverCapacity`) nothing was stored: publish
    /// again with backoff. `RateLimited`: slow down, then retry.
    #[error("the server refused: {code}: {message}")]
    Server { code: ErrorCode, message: String },
    /// The client stopped reconnecting (a close code or HTTP status that
    /// forbids it, or the attempt limit). Build a new client to try again.
    #[error("disconnected for good ({code}): {reason}")]
    Disconnected { code: u16, reason: String },
    /// The publish was sent, its connection died before the ack, and by the
    /// reconnect more than `window` (the client's `idempotency_window`) had
    /// passed since it was first sent. The server remembers idempotency keys
    /// only that long, so a resend could be stored twice: the client did not
    /// resend it. It may or may not have been stored; check (e.g. read the
    /// channel) before publishing it again.
    #[error("publish not resent: its ack was lost and more than {} ms (the idempotency window) passed since it was sent, so the server could store a resend twice; it may or may not have been stored", window.as_millis())]
    IdempotencyWindowExpired { window: std::time::Duration },
    /// The server closed the connection with 1009 (message too big) while
    /// this publish (or rpc), the largest sent on it, waited for its answer:
    /// it is larger than the server's `--max-message-bytes`. It was not
    /// stored and is not resent (it would close every connection the same
    /// way); send something smaller.
    #[error("a request of {bytes} bytes not resent: the server closed with 1009 (message too big); it is larger than the server's --max-message-bytes")]
    MessageTooBig { bytes: usize },
    /// The client was closed with [`Client::close`](crate::Client::close)
    /// (or every handle was dropped).
    #[error("the client is closed")]
    Closed,
}
