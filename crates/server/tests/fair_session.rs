//! A fair session loop: a connection receiving a steady stream of
//! publications still reads its inbound frames (pongs, pings, unsubscribe)
//! every turn, so a healthy client is never closed with 4003 because the
//! server was busy writing. Heartbeat deadlines run on tokio's clock, so the
//! 35 s default can be tested on paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::StreamExt;
use serde_json::{json, value::RawValue};
use std::time::Duration;
use tether_test_util::{http, ws::WsClient, TestServer};
use tokio::{io::AsyncReadExt, time::Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_connection_still_reads_its_pongs() {
    // Silence is fatal after 500 ms.
    let server = TestServer::start(&[
        ("ping-interval", "250ms"),
        ("pong-timeout", "250ms"),
        ("history-size", "0"),
        // A channel log long enough for the whole backlog.
        ("send-queue", "10000000"),
        ("history-max-channel-bytes", "268435456"),
        ("history-max-bytes", "268435456"),
    ])
    .await;
    let (mut c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    c.subscribe(1, "firehose", None).await;
    // A backlog: the client stops reading while N publications arrive, so
    // the channel's log holds most of them; then it reads as fast as it
    // can. Writing the backlog takes longer than the silence limit, and all
    // the while the client's pongs wait to be read.
    const N: u64 = 500_000;
    let node = server.node.clone();
    let publisher = tokio::spawn(async move {
        let data = RawValue::from_string("{\"n\":1}".into()).unwrap();
        for n in 1..=N {
            node.broker
                .publish("firehose", &data, None, true)
                .await
                .expect("publish");
            if n % 1024 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    // Not reading, but alive: an application ping every 100 ms.
    while !publisher.is_finished() {
        c.send(json!({"type": "ping"})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publisher.await.expect("publisher");
    // Read, counting frames without parsing them so that no ping waits
    // behind a backlog in the kernel buffers (the library answers pings).
    let mut received = 0u64;
    let mut last = String::new();
    while received < N {
        match tokio::time::timeout(Duration::from_secs(5), c.ws.next()).await {
            Ok(Some(Ok(m))) => {
                if let Some(text) = m.as_text() {
                    if text.starts_with("{\"type\":\"message\"") {
                        received += 1;
                        if received == N {
                            last = text.to_owned();
                        }
                    }
                } else if m.is_close() {
                    panic!(
                        "closed while busy after {received} messages: {:?}",
                        m.as_close()
                    );
                }
            }
            other => panic!("connection ended while busy after {received} messages: {other:?}"),
        }
    }
    let last: serde_json::Value = serde_json::from_str(&last).expect("json");
    assert_eq!(last["offset"], N, "every publication, in order");
    assert_eq!(
        http::metric(server.addr, "tether_heartbeat_timeouts_total", &[]).await,
        0.0
    );
    c.send(json!({"type": "ping"})).await;
    c.recv_type("pong").await;
}

#[tokio::test(start_paused = true)]
async fn the_heartbeat_runs_on_tokio_clock() {
    // Default intervals: ping every 25 s, closed after 35 s of silence.
    let server = TestServer::start(&[]).await;
    let mut raw = http::raw_websocket(server.addr, "/ws").await;
    let start = Instant::now();
    // Read server frames until the close frame; never answer anything.
    let mut buf = Vec::new();
    let code = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(60), raw.read(&mut chunk))
            .await
            .expect("the server closes within 60 s of virtual time")
            .expect("read");
        assert!(n > 0, "closed without a close frame");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(code) = close_code(&buf) {
            break code;
        }
    };
    assert_eq!(code, 4003);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(35) && waited < Duration::from_secs(40),
        "closed after {waited:?} of virtual time"
    );
}

/// The code of the first close frame in a stream of unmasked server frames.
fn close_code(mut buf: &[u8]) -> Option<u16> {
    while buf.len() >= 2 {
        let (opcode, len) = (buf[0] & 0x0F, usize::from(buf[1] & 0x7F));
        let (head, len) = match len {
            126 if buf.len() >= 4 => (4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
            126 | 127 => return None,
            n => (2, n),
        };
        if buf.len() < head + len {
            return None;
        }
        if opcode == 8 && len >= 2 {
            return Some(u16::from_be_bytes([buf[head], buf[head + 1]]));
        }
        buf = &buf[head + len..];
    }
    None
}
