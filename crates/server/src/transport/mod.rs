//! Transports: the ways a client holds a session with the node.
//! `websocket` runs the Tether protocol on `/ws`; `echo` is the plain RFC 6455
//! echo on `/echo` used for diagnosis and conformance.

pub mod echo;
pub mod longpoll;
pub mod websocket;

use futures_util::{SinkExt, StreamExt};
use std::{future::Future, pin::pin, task::Poll, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::timeout,
};
use tokio_websockets::{CloseCode as WsCloseCode, Message, WebSocketStream};

/// How long a close frame may take to go out before the socket is just dropped.
pub(crate) const CLOSE_SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long we wait for the peer to answer our close frame.
const CLOSE_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// A close frame for `code` (falling back to 1011 for codes the library refuses).
fn close_message(code: u16, reason: &str) -> Message {
    let code = WsCloseCode::try_from(code).unwrap_or(WsCloseCode::INTERNAL_SERVER_ERROR);
    Message::close(Some(code), reason)
}

/// Sends a close frame and lets the peer answer it, so it sees a clean
/// closure; gives up (and the socket is dropped) after the close timeouts.
/// A peer closed for silence (4003) is not waited for: it has not answered
/// anything for the whole heartbeat bound, and its socket is released at
/// once. Returns whether the close frame went out (only those are counted).
pub(crate) async fn close<S>(ws: &mut WebSocketStream<S>, code: u16, reason: &str) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let sent = matches!(
        timeout(CLOSE_SEND_TIMEOUT, ws.send(close_message(code, reason))).await,
        Ok(Ok(()))
    );
    let silent = code == tether_protocol::CloseCode::HeartbeatTimeout.as_u16();
    if sent && !silent {
        let _ = timeout(CLOSE_ACK_TIMEOUT, async {
            while ws.next().await.is_some() {}
        })
        .await;
    }
    sent
}

/// After a close frame sent for a broken rule (1009, 1002): the peer may
/// still be sending the message that broke it, and a socket dropped with
/// unread input answers with an RST, which can destroy the close frame
/// before the peer reads it (it then sees 1006 and cannot know why — a
/// client would resend its too-big publish). So the write side is shut
/// (a FIN after the close frame) and whatever arrives is read and dropped
/// until the peer closes, for at most [`CLOSE_ACK_TIMEOUT`].
pub(crate) async fn linger<S>(io: &mut S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = timeout(CLOSE_ACK_TIMEOUT, async {
        let _ = io.shutdown().await;
        let mut sink = [0u8; 512];
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Why [`send_within`] failed.
pub(crate) enum SendError {
    Write(tokio_websockets::Error),
    TimedOut,
}

/// Sends one message within `write_timeout` (see [`within`]).
pub(crate) async fn send_within<S>(
    ws: &mut WebSocketStream<S>,
    msg: Message,
    write_timeout: Duration,
) -> Result<(), SendError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    within(write_timeout, ws.send(msg))
        .await
        .map_err(|_| SendError::TimedOut)?
        .map_err(SendError::Write)
}

/// `timeout(wait, work)`, except that only work which does not finish at
/// once gets a timer: on the common path of a write (the socket has room)
/// it costs no timer registration at all.
pub(crate) async fn within<F: Future>(
    wait: Duration,
    work: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut work = pin!(work);
    match std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
        Poll::Ready(r) => Ok(r),
        Poll::Pending => timeout(wait, work).await,
    }
}
