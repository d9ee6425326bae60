//! The Tether wire protocol, with no I/O: the JSON messages exchanged on `/ws`
//! (and carried by the long-polling transport), the server's close codes with
//! what a client must do after each, and the backoff schedule both clients share.
//!
//! Server and Rust client depend on this crate; the JS client is checked
//! against the same test vectors (`vectors/*.json`).

pub mod backoff;
pub mod close;
pub mod message;

pub use backoff::Backoff;
pub use close::{CloseCode, Reconnect, RetryHint};
pub use message::{
    decode_publish_body, ClientMessage, DecodeError, ErrorCode, PublicationEntry, PublishBody,
    ServerMessage, StreamPosition, PROTOCOL_VERSION,
};
