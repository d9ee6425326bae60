//! `/echo`: a plain RFC 6455 echo (every text or binary message sent back
//! unchanged). Used by `tether doctor` and by the Autobahn conformance run.
//! It sends no pings of its own, answers the peer's, and closes a peer silent
//! for `ping_interval + pong_timeout` with 4003.

use super::{drain_reason, CLOSE_SEND_TIMEOUT};
use crate::{limits::ConnectionPermit, node::Node};
use futures_util::{SinkExt, StreamExt};
use std::{net::SocketAddr, sync::Arc};
use tether_protocol::CloseCode;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::timeout,
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
        let silence = hb.ping_interval + hb.pong_timeout;
        let write_timeout = node.config.limits.write_timeout;
        let close: Option<(CloseCode, String)> = loop {
            tokio::select! {
                () = node.shutdown.cancelled() => {
                    break Some((CloseCode::ServiceRestart, drain_reason(&node.config.server)));
                }
                frame = timeout(silence, ws.next()) => match frame {
                    Err(_) => {
                        node.metrics.heartbeat_timeouts.inc();
                        break Some((CloseCode::HeartbeatTimeout, format!("silent for {} ms", silence.as_millis())));
                    }
                    Ok(None) => break None,
                    Ok(Some(Err(e))) => {
                        let (code, why) = super::websocket::read_error(e);
                        debug!(%why, "echo read error");
                        if let Some(code) = code {
                            node.metrics.close(code);
                            // Send the close frame the library queued.
                            let _ = timeout(CLOSE_SEND_TIMEOUT, ws.flush()).await;
                        }
                        break None;
                    }
                    Ok(Some(Ok(msg))) => {
                        if msg.is_text() || msg.is_binary() {
                            node.metrics.messages_in.inc();
                            match timeout(write_timeout, ws.send(msg)).await {
                                Ok(Ok(())) => {
                                    node.metrics.messages_out.inc();
                                }
                                _ => break None,
                            }
                        }
                    }
                }
            }
        };
        if let Some((code, reason)) = close {
            node.metrics.close(code.as_u16());
            super::close(&mut ws, code.as_u16(), &reason).await;
        }
        node.metrics.connections.dec();
        drop(permit);
    }
    .instrument(span)
    .await
}
