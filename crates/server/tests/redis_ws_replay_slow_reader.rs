//! A client that subscribes with a long recovery gap and then reads nothing
//! does not make the node read history ahead of it: each page of the replay
//! is read from Redis only once the last one was written, so what Redis
//! sends stops at about what the socket buffers hold, and the replay goes on,
//! every offset once and in order, when the client reads again
//! (docs/limits.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use support::{node_with, publish};
use tether_test_util::{attack::Bystander, redis::RedisServer};
use tokio::net::TcpSocket;
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message};

/// Publications of about 60 KiB in the channel's history: 24 MB.
const STORED: u64 = 400;
/// What Redis may send while the client reads nothing beyond the server's
/// socket send buffer: a page or two in hand, the first reply.
const PAGES: u64 = 2 * 1024 * 1024;

/// The most the kernel lets a socket's send buffer grow to (`tcp_wmem`).
fn send_buffer_max() -> u64 {
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap_or_default();
    wmem.split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(4 * 1024 * 1024)
}

#[tokio::test]
async fn a_client_that_does_not_read_stops_the_history_reads() {
    let redis = RedisServer::start().await;
    let n = node_with(
        &redis,
        &["--history-size", "1000", "--write-timeout", "60s"],
    )
    .await;
    let mut bystander = Bystander::join(n.addr()).await;
    let data = json!("s".repeat(60 * 1024));
    let mut epoch = String::new();
    for _ in 0..STORED {
        epoch = publish(&n, "deep", data.clone()).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }

    // A small receive buffer: what the client's kernel takes off the
    // server does not hide the read-ahead.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(32 * 1024).unwrap();
    let tcp = socket.connect(n.addr()).await.unwrap();
    let uri: http::Uri = n.ws_url().parse().unwrap();
    let (mut ws, _) = ClientBuilder::from_uri(uri)
        .connect_on(MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    let (sent_before, _) = redis.sent_and_scripts();
    let subscribe = json!({"type": "subscribe", "id": 1, "channel": "deep",
        "recover": {"epoch": epoch, "offset": 0}});
    ws.send(Message::text(subscribe.to_string())).await.unwrap();

    // Reads nothing until the node stops reading history: no script call
    // for a second (at most 30 s).
    let mut last = redis.sent_and_scripts().1;
    let mut still = 0;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = redis.sent_and_scripts().1;
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still >= 5 {
            break;
        }
    }
    assert!(still >= 5, "the node kept reading history for 30 s");
    let (sent, _) = redis.sent_and_scripts();
    println!("read ahead of the client: {} bytes", sent - sent_before);
    let read_ahead = send_buffer_max() + PAGES;
    assert!(
        read_ahead < STORED * 60 * 1024,
        "tcp_wmem lets the socket hold the whole history: this test proves nothing"
    );
    assert!(
        sent - sent_before <= read_ahead,
        "with nothing read by the client, Redis sent {} bytes of its 24 MB",
        sent - sent_before
    );
    bystander.still_served().await;

    // Reading again, the client gets the whole replay.
    let mut at = 0;
    while at < STORED {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the replay goes on")
            .expect("open")
            .expect("a frame");
        let Some(text) = frame.as_text() else {
            continue;
        };
        let m: Value = serde_json::from_str(text).unwrap();
        let offsets: Vec<u64> = match m["type"].as_str() {
            Some("subscribed") => m["publications"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["offset"].as_u64().unwrap())
                .collect(),
            Some("message") => vec![m["offset"].as_u64().unwrap()],
            _ => Vec::new(),
        };
        for o in offsets {
            assert_eq!(o, at + 1, "every offset once, in order");
            at = o;
        }
    }
}
