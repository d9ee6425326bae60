//! A peer that goes silent is closed with 4003 within ping_interval +
//! pong_timeout, and everything it held is released.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::time::{Duration, Instant};
use tether_test_util::{eventually, http, ws::WsClient, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn silent_peer_is_closed_with_4003_and_freed() {
    let server = TestServer::start(&[("ping-interval", "300ms"), ("pong-timeout", "200ms")]).await;
    // A peer that completes the upgrade and then never reads or writes
    // again: the protocol pings go unanswered.
    let mut tcp = http::raw_websocket(server.addr, "/ws").await;
    let since = Instant::now();
    // Subscribe, then go silent: the hub entry must go away with the peer.
    tcp.write_all(&http::masked_text(
        r#"{"type":"subscribe","id":1,"channel":"x"}"#,
    ))
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

#[tokio::test]
async fn echo_closes_a_silent_peer_with_4003_and_keeps_a_talking_one() {
    let server = TestServer::start(&[("ping-interval", "200ms"), ("pong-timeout", "200ms")]).await;
    let mut silent = WsClient::connect(&server.ws_url("/echo")).await;
    let mut talking = WsClient::connect(&server.ws_url("/echo")).await;
    let since = Instant::now();
    // The talking peer sends (and reads back) a message every 100 ms for
    // 1 s, well past the 400 ms silence limit.
    for i in 0..10 {
        talking.send(json!({"n": i})).await;
        assert_eq!(talking.recv().await["n"], i);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match silent.ended(Duration::from_secs(5)).await {
        tether_test_util::ws::Ended::Closed(code, _) => assert_eq!(code, 4003),
        other => panic!("expected 4003, got {other:?}"),
    }
    assert!(since.elapsed() >= Duration::from_millis(400));
    talking.send(json!({"still": true})).await;
    assert_eq!(talking.recv().await["still"], true);
}
