//! Delivery from the channel log: a subscriber that stalls and then reads
//! again receives every offset exactly once without reconnecting; one that
//! stalls past the log's window is closed with 4004 and, reconnecting,
//! gets `recovered:false` through the ordinary recovery path and continues.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::time::Duration;
use tether_test_util::{
    attack::Bystander,
    http,
    ws::{Ended, WsClient},
    TestServer,
};

/// 4 KiB payloads: a couple of thousand of them fill the kernel's socket
/// buffers, so the server really has to wait for the stalled reader.
fn payload() -> serde_json::Value {
    json!("s".repeat(4096))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_catches_up_without_reconnecting() {
    const N: u64 = 3000;
    let server = TestServer::start(&[
        ("send-queue", "4096"),
        ("history-max-channel-bytes", "33554432"),
        ("history-max-bytes", "33554432"),
        ("history-size", "10"),
    ])
    .await;
    let mut bystander = Bystander::join(server.addr).await;
    let (mut stalled, _) = WsClient::tether(&server.ws_url("/ws")).await;
    stalled.subscribe(1, "feed", None).await;
    // 12 MB while the subscriber reads nothing.
    for _ in 0..N {
        http::publish(server.addr, "feed", payload()).await;
    }
    bystander.still_served().await;
    for expected in 1..=N {
        let m = stalled.recv_type("message").await;
        assert_eq!(m["offset"], expected, "every offset once, in order");
    }
    assert!(stalled.try_recv(Duration::from_millis(200)).await.is_none());
    assert_eq!(
        http::metric(server.addr, "tether_slow_consumers_total", &[]).await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_past_the_log_recovers_through_the_normal_path() {
    const N: u64 = 3000;
    let server = TestServer::start(&[("send-queue", "32"), ("history-size", "5")]).await;
    let mut bystander = Bystander::join(server.addr).await;
    let (mut stalled, _) = WsClient::tether(&server.ws_url("/ws")).await;
    let epoch = stalled.subscribe(1, "feed", None).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..N {
        http::publish(server.addr, "feed", payload()).await;
    }
    bystander.still_served().await;
    // It reads what reached it, then learns it fell behind.
    let mut last = 0;
    let ended = loop {
        match stalled.ws_next_json(Duration::from_secs(10)).await {
            Ok(m) if m["type"] == "message" => {
                let offset = m["offset"].as_u64().unwrap();
                assert_eq!(offset, last + 1, "no gap before the close");
                last = offset;
            }
            Ok(_) => {}
            Err(ended) => break ended,
        }
    };
    assert!(matches!(ended, Ended::Closed(4004, _)), "{ended:?}");
    assert!(last < N);
    assert_eq!(
        http::metric(server.addr, "tether_slow_consumers_total", &[]).await,
        1.0
    );
    // Reconnecting with its position: history (5) cannot cover the gap.
    let (mut again, _) = WsClient::tether(&server.ws_url("/ws")).await;
    let reply = again.subscribe(1, "feed", Some((&epoch, last))).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["offset"], N);
    http::publish(server.addr, "feed", json!("after")).await;
    assert_eq!(again.recv_type("message").await["offset"], N + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_written_for_a_channel_after_unsubscribed() {
    const N: u64 = 2000;
    let server = TestServer::start(&[
        ("send-queue", "4096"),
        ("history-max-channel-bytes", "33554432"),
        ("history-max-bytes", "33554432"),
    ])
    .await;
    let (mut c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    c.subscribe(1, "big", None).await;
    c.subscribe(2, "a", None).await;
    // The session is stuck writing "big" to a client that is not reading...
    for _ in 0..N {
        http::publish(server.addr, "big", payload()).await;
    }
    // ...when "a" gets a publication (its doorbell rings) and, before the
    // session gets to it, the client unsubscribes from "a".
    http::publish(server.addr, "a", json!("ring")).await;
    c.send(json!({"type": "unsubscribe", "id": 3, "channel": "a"}))
        .await;
    let (mut big, mut unsubscribed) = (0, false);
    while big < N || !unsubscribed {
        let m = c.recv().await;
        match m["type"].as_str() {
            Some("unsubscribed") => unsubscribed = true,
            Some("message") if m["channel"] == "big" => big += 1,
            Some("message") => assert!(
                !unsubscribed,
                "a message for {} after unsubscribed",
                m["channel"]
            ),
            _ => {}
        }
    }
    assert!(c.try_recv(Duration::from_millis(200)).await.is_none());
}
