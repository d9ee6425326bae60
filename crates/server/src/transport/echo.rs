//! `/echo`: a plain RFC 6455 echo (every text or binary message sent back
//! unchanged). Used by `tether doctor` and by the Autobahn conformance run.
//! It sends no pings of its own, answers the peer's, and closes a peer silent
//! for `ping_interval + pong_timeout` with 4003.
//!
//! Every frame, control frames included, takes a token from the same
//! per-connection message bucket as `/ws` (`--messages-per-second`,
//! `--messages-burst`): a message over the rate is not echoed, and
//! ten over-rate frames in a row (`MAX_STRIKES`) close the connection with 4005.

use super::{websocket::read_error, CLOSE_SEND_TIMEOUT};
use crate::session::drain_reason;
use crate::session::MAX_STRIKES;
use crate::{
    limits::{ConnectionPermit, TokenBucket},
    node::Node,
};
use futures_util::{SinkExt, StreamExt};
use std::{net::SocketAddr, pin::pin, sync::Arc};
use tether_protocol::CloseCode;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::{sleep_until, timeout, Instant},
};
use tokio_websockets::WebSocketStream;
use tracing::{debug, Instrument};

pub async fn run<S>(
    node: Arc<Node>,
    mut ws: WebSocketStream<S>,
    peer: SocketAddr,
    permit: ConnectionPermit,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let span = tracing::debug_span!("echo", %peer);
    async move {
        node.metrics.connections.inc();
        let hb = &node.config.heartbeat;
        let silence = hb.silence_limit();
        let limits = &node.config.limits;
        let write_timeout = limits.write_timeout;
        let mut bucket = TokenBucket::new(
            limits.messages_per_second,
            limits.messages_burst,
            tokio::time::Instant::now().into_std(),
        );
        let mut strikes = 0u32;
        // Created once and polled in place, like the session's: a timer per
        // message (and a drain waiter per turn) was a measurable share of
        // the echo path. The silence timer is re-aimed only when it fires.
        let mut last_seen = Instant::now();
        let mut cancelled = pin!(node.shutdown.cancelled());
        let mut silence_timer = pin!(sleep_until(last_seen + silence));
        let close: Option<(CloseCode, String)> = loop {
            tokio::select! {
                biased;
                () = &mut cancelled => {
                    break Some((CloseCode::ServiceRestart, drain_reason(&node.config.server)));
                }
                frame = ws.next() => {
                    last_seen = Instant::now();
                    match frame {
                        None => break None,
                        Some(Err(e)) => {
                            let (code, why) = read_error(e);
                            debug!(%why, "echo read error");
                            if let Some(code) = code {
                                // Send the close frame the library queued.
                                if let Ok(Ok(())) = timeout(CLOSE_SEND_TIMEOUT, ws.flush()).await {
                                    node.metrics.close(code);
                                    super::linger(ws.get_mut()).await;
                                }
                            }
                            break None;
                        }
                        Some(Ok(msg)) => {
                            if msg.is_close() {
                                // Let the library send its answer before the TCP close.
                                let _ = timeout(CLOSE_SEND_TIMEOUT, ws.flush()).await;
                                break None;
                            }
                            if bucket.take(last_seen.into_std()).is_err() {
                                node.metrics.refusal("message_rate");
                                strikes += 1;
                                if strikes >= MAX_STRIKES {
                                    break Some((CloseCode::RateLimited, "message rate limit exceeded repeatedly".into()));
                                }
                                continue;
                            }
                            strikes = 0;
                            if msg.is_text() || msg.is_binary() {
                                node.metrics.messages_in.inc();
                                if super::send_within(&mut ws, msg, write_timeout).await.is_err() {
                                    break None;
                                }
                                node.metrics.messages_out.inc();
                            }
                        }
                    }
                }
                () = &mut silence_timer => {
                    let deadline = last_seen + silence;
                    if Instant::now() >= deadline {
                        node.metrics.heartbeat_timeouts.inc();
                        break Some((CloseCode::HeartbeatTimeout, format!("silent for {} ms", silence.as_millis())));
                    }
                    silence_timer.as_mut().reset(deadline);
                }
            }
        };
        if let Some((code, reason)) = close {
            if super::close(&mut ws, code.as_u16(), &reason).await {
                node.metrics.close(code.as_u16());
            }
        }
        node.metrics.connections.dec();
        drop(permit);
    }
    .instrument(span)
    .await
}
