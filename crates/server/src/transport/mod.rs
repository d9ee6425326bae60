//! Transports: the ways a client holds a session with the node.
//! `websocket` runs the Tether protocol on `/ws`; `echo` is the plain RFC 6455
//! echo on `/echo` used for diagnosis and conformance.

pub mod echo;
pub mod websocket;

use std::time::Duration;
use tokio_websockets::{CloseCode as WsCloseCode, Message};

/// How long a close frame may take to go out before the socket is just dropped.
pub(crate) const CLOSE_SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long we wait for the peer to answer our close frame.
pub(crate) const CLOSE_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// A close frame for `code` (falling back to 1011 for codes the library refuses).
pub(crate) fn close_message(code: u16, reason: &str) -> Message {
    let code = WsCloseCode::try_from(code).unwrap_or(WsCloseCode::INTERNAL_SERVER_ERROR);
    Message::close(Some(code), reason)
}
