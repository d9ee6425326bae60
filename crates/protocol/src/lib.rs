//! The Tether wire protocol, with no I/O: the JSON messages exchanged on `/ws`
//! (and carried by the long-polling transport), the server's close codes with
//! what a client must do after each, and the backoff schedule both clients share.
//!
//! Server and Rust client depend on this crate; the JS client is checked
//! against the same test vectors (`vectors/*.json`).

pub mod backoff;
pub mod close;
pub mod message;

/// How long a server honours a publish's idempotency key by default
/// (`--idempotency-window`); the Rust client's default matches it, since a
/// resend after the window would be stored twice.
pub const DEFAULT_IDEMPOTENCY_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

pub use backoff::Backoff;
pub use close::{CloseCode, Reconnect, RetryHint, FINAL_REFUSALS, RETRY_REFUSALS};
pub use message::{
    decode_publish_body, ClientMessage, DecodeError, ErrorCode, PresenceEntry, PublicationEntry,
    PublishBody, ServerMessage, StreamPosition, MAX_CONNECT_DATA_BYTES, MAX_RPC_METHOD_LEN,
    PROTOCOL_VERSION,
};
