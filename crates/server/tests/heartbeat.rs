//! A peer that goes silent is closed with 4003 within ping_interval +
//! pong_timeout, and everything it held is released.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::time::{Duration, Instant};
use tether_test_util::{eventually, http, ws::WsClient, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw TCP "client" that completes the upgrade and then never reads or
/// writes again: the protocol pings go unanswered.
async fn silent_peer(addr: std::net::SocketAddr) -> (tokio::net::TcpStream, Instant) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 512];
    let n = tcp.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    (tcp, Instant::now())
}

#[tokio::test]
async fn silent_peer_is_closed_with_4003_and_freed() {
    let server = TestServer::start(&[("ping-interval", "300ms"), ("pong-timeout", "200ms")]).await;
    let (mut tcp, since) = silent_peer(server.addr).await;
    // Subscribe, then go silent: the hub entry must go away with the peer.
    tcp.write_all(&masked_text(r#"{"type":"subscribe","id":1,"channel":"x"}"#))
        .await
        .expect("write");
    eventually("subscription registered", || async {
        server.node.hub.channel_count() == 1
    })
    .await;

    // Read what the server sends to the silent peer until it closes: welcome,
    // pings, then a close frame with 4003.
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("server acts within 5 s")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        if contains_close_4003(&all) {
            break;
        }
    }
    let elapsed = since.elapsed();
    assert!(
        contains_close_4003(&all),
        "expected a 4003 close frame, got {all:?}"
    );
    // ping_interval + pong_timeout = 500 ms, plus scheduling slack.
    assert!(
        elapsed >= Duration::from_millis(450),
        "closed too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1500),
        "closed too late: {elapsed:?}"
    );

    drop(tcp);
    eventually("connections gauge back to zero", || async {
        http::metric(server.addr, "tether_connections", &[]).await == 0.0
    })
    .await;
    assert_eq!(
        http::metric(server.addr, "tether_heartbeat_timeouts_total", &[]).await,
        1.0
    );
    assert_eq!(
        http::metric(server.addr, "tether_closes_total", &[("code", "4003")]).await,
        1.0
    );
    assert_eq!(server.node.admission.connections(), 0);
    assert_eq!(server.node.hub.channel_count(), 0);
}

/// A client text frame; the all-zero mask leaves the payload as it is.
fn masked_text(text: &str) -> Vec<u8> {
    assert!(text.len() < 126);
    let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// A server close frame: 0x88, length, then the code big-endian.
fn contains_close_4003(bytes: &[u8]) -> bool {
    bytes
        .windows(4)
        .any(|w| w[0] == 0x88 && w[2] == 0x0f && w[3] == 0xa3)
}

#[tokio::test]
async fn application_ping_gets_a_pong_and_keeps_the_connection() {
    let server = TestServer::start(&[("ping-interval", "300ms"), ("pong-timeout", "200ms")]).await;
    let (mut c, welcome) = WsClient::tether(&server.ws_url("/ws")).await;
    assert_eq!(welcome["ping_interval_ms"], 300);
    assert_eq!(welcome["pong_timeout_ms"], 200);
    // Over 3x the silence limit, the client keeps the connection alive.
    for _ in 0..8 {
        c.send(json!({"type": "ping"})).await;
        assert_eq!(c.recv().await, json!({"type": "pong"}));
        tokio::time::sleep(Duration::from_millis(200)).await; // pacing the client, not synchronising
    }
}
