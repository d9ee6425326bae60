//! `--protocol socketio`: just enough of Engine.IO v4 / Socket.IO v5 over a
//! plain WebSocket to put the Socket.IO baseline (`benches/socketio`) under
//! the same load as the others. No long-polling, no upgrade, no binary
//! attachments, no acks, default namespace only.
//!
//! - the upgrade goes to `/socket.io/?EIO=4&transport=websocket`;
//! - the server opens with `0{"sid":…,"pingInterval":…}`; the client sends
//!   `40` (connect to "/") and waits for `40{"sid":…}` (`44…` is a refusal);
//! - events are `42["name",payload]`: the publisher sends `pub`, subscribers
//!   receive `msg`, echo sends and receives `echo`;
//! - the server pings with `2` every `pingInterval`; the client answers `3`,
//!   or the server drops it after `pingTimeout`.

use super::conn::Ws;
use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use tokio_websockets::Message;

/// Path and query of the websocket transport, used when a URL gives none.
pub const DEFAULT_PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// An event packet: `42["name",payload]`, `payload` being JSON already.
pub fn event(name: &str, payload: &str) -> String {
    format!("42[\"{name}\",{payload}]")
}

/// After the upgrade: reads the Engine.IO open packet, then connects to the
/// default namespace.
pub async fn handshake(ws: &mut Ws) -> anyhow::Result<()> {
    let open = next_text(ws, "the Engine.IO open packet").await?;
    if !open.starts_with("0{") {
        bail!("expected the Engine.IO open packet `0{{...}}`, got {open:?}");
    }
    ws.send(Message::text("40")).await?;
    loop {
        let text = next_text(ws, "the Socket.IO connect packet").await?;
        if text.starts_with("40") {
            return Ok(());
        }
        if text.starts_with("44") {
            bail!("namespace refused: {text}");
        }
        // A ping can arrive first with a very short pingInterval.
        control(ws, &text).await?;
    }
}

/// Handles what is not an event: answers a ping (`2`) with a pong (`3`).
/// Returns true when `text` was such a packet, which the caller skips.
pub async fn control(ws: &mut Ws, text: &str) -> Result<bool, tokio_websockets::Error> {
    if text == "2" {
        ws.send(Message::text("3")).await?;
        return Ok(true);
    }
    Ok(!text.starts_with("42"))
}

async fn next_text(ws: &mut Ws, what: &str) -> anyhow::Result<String> {
    while let Some(m) = ws.next().await {
        let m = m?;
        if let Some((code, reason)) = m.as_close() {
            bail!(
                "closed with {} {reason} while waiting for {what}",
                u16::from(code)
            );
        }
        if let Some(text) = m.as_text() {
            return Ok(text.to_owned());
        }
    }
    bail!("connection closed while waiting for {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_events() {
        assert_eq!(event("pub", "{\"seq\":1}"), "42[\"pub\",{\"seq\":1}]");
        assert_eq!(event("echo", "\"ee\""), "42[\"echo\",\"ee\"]");
    }
}
