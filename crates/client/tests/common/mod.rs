//! Helpers shared by this crate's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use futures_util::StreamExt;
use std::time::Duration;
use tether_client::{Client, Event, State, Subscription};
use tether_test_util::STEP;
use tokio::{net::TcpListener, sync::watch, time::timeout};

/// A client that retries fast, so tests are quick.
pub fn fast_client(url: &str) -> Client {
    Client::builder(url)
        .min_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(200))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// Waits (at most `STEP`) for a state matching `pred`; returns it.
pub async fn wait_state(
    state: &mut watch::Receiver<State>,
    what: &str,
    pred: impl FnMut(&State) -> bool,
) -> State {
    timeout(STEP, state.wait_for(pred))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for state: {what}"))
        .map(|s| s.clone())
        .expect("client task alive")
}

/// The next event from a subscription (at most `STEP`).
pub async fn next_event(sub: &mut Subscription) -> Event {
    timeout(STEP, sub.next())
        .await
        .expect("an event in time")
        .expect("subscription still open")
}

/// Collects publication offsets until `last` has arrived; panics on an
/// unrecovered gap. Returns every offset received, in arrival order.
pub async fn offsets_until(sub: &mut Subscription, last: u64) -> Vec<u64> {
    let mut got = Vec::new();
    while got.last() != Some(&last) {
        match next_event(sub).await {
            Event::Publication(p) => got.push(p.offset),
            Event::Unrecovered { epoch, offset } => {
                panic!("recovery failed (epoch {epoch}, offset {offset}) after {got:?}")
            }
            _ => {}
        }
    }
    got
}

/// A loopback address with a port that was free a moment ago.
pub async fn free_addr() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

/// A scripted WebSocket server for close codes a real server does not
/// produce on demand. Each accepted connection gets a welcome, then
/// `script(n)` for the n-th connection (0-based) says how to close it:
/// `Some((code, reason))` closes at once, `None` keeps it open.
/// Returns the address and a receiver of accept times.
pub async fn scripted_server(
    script: impl Fn(usize) -> Option<(u16, String)> + Send + Sync + 'static,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<std::time::Instant>,
) {
    use futures_util::SinkExt;
    use tokio_websockets::{CloseCode, Message, ServerBuilder};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Unbounded is fine here: the test itself is the only producer.
    let (accepted, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = accepted.send(std::time::Instant::now());
            let step = script(n);
            n += 1;
            tokio::spawn(async move {
                let Ok((_req, mut ws)) = ServerBuilder::new().accept(tcp).await else {
                    return;
                };
                let welcome = r#"{"type":"welcome","client":"scripted","ping_interval_ms":25000,"pong_timeout_ms":10000,"version":1}"#;
                let _ = ws.send(Message::text(welcome)).await;
                match step {
                    Some((code, reason)) => {
                        let code = CloseCode::try_from(code).expect("valid close code");
                        let _ = ws.send(Message::close(Some(code), &reason)).await;
                        while ws.next().await.is_some() {}
                    }
                    None => while ws.next().await.is_some() {},
                }
            });
        }
    });
    (addr, rx)
}

/// The server side of one connection to [`fake_server`].
pub type ServerWs = tokio_websockets::WebSocketStream<tokio::net::TcpStream>;

/// A `welcome` with the default heartbeat.
pub const WELCOME: &str = r#"{"type":"welcome","client":"fake","ping_interval_ms":25000,"pong_timeout_ms":10000,"version":1}"#;

/// A hand-rolled server for behaviour no real server shows (hostile or
/// future ones): `conn(n, ws)` runs the n-th accepted connection (0-based)
/// after the upgrade and sends whatever it likes, welcome included.
pub async fn fake_server<F, Fut>(conn: F) -> std::net::SocketAddr
where
    F: Fn(usize, ServerWs) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tokio_websockets::ServerBuilder;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok((_req, ws)) = ServerBuilder::new().accept(tcp).await else {
                continue;
            };
            tokio::spawn(conn(n, ws));
            n += 1;
        }
    });
    addr
}

/// Sends one text frame.
pub async fn send_text(ws: &mut ServerWs, text: &str) {
    use futures_util::SinkExt;
    let _ = ws
        .send(tokio_websockets::Message::text(text.to_owned()))
        .await;
}

/// The next text frame from the client as JSON; `None` when it closed.
pub async fn recv_json(ws: &mut ServerWs) -> Option<serde_json::Value> {
    while let Some(Ok(msg)) = ws.next().await {
        if let Some(text) = msg.as_text() {
            return Some(serde_json::from_str(text).expect("client sends JSON"));
        }
    }
    None
}

/// Reads frames until one of type `kind` arrives; `None` when it closed.
pub async fn recv_type(ws: &mut ServerWs, kind: &str) -> Option<serde_json::Value> {
    loop {
        let v = recv_json(ws).await?;
        if v["type"] == kind {
            return Some(v);
        }
    }
}
