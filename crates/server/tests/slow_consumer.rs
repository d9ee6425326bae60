//! A client that stops reading costs the server nothing per connection —
//! publications stay in the channel's shared log, bounded by its window —
//! and is cut at the write timeout, while a reading client on the same
//! channel gets every message and the server's memory stays flat.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::time::Duration;
use tether_test_util::{attack::rss_kib, http, process::ServerProcess, ws::WsClient};
use tokio::io::AsyncWriteExt;

/// Upgrades, subscribes to `channel`, then never reads again.
async fn non_reader(addr: std::net::SocketAddr, channel: &str) -> tokio::net::TcpStream {
    let mut tcp = http::raw_websocket(addr, "/ws").await;
    let sub = json!({"type": "subscribe", "id": 1, "channel": channel}).to_string();
    tcp.write_all(&http::masked_text(&sub))
        .await
        .expect("subscribe");
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_reading_client_holds_nothing_and_others_get_everything() {
    let server = ServerProcess::start(&[
        "--send-queue",
        "64",
        "--write-timeout",
        "3s",
        "--history-size",
        "10",
    ])
    .await;
    let pid = server.child.id().expect("pid");
    let addr = server.addr;
    let (mut reader, _) = WsClient::tether(&format!("ws://{addr}/ws")).await;
    reader.subscribe(1, "firehose", None).await;
    let _stuck = non_reader(addr, "firehose").await;
    tether_test_util::eventually("both subscribed", || async {
        http::request(addr, "GET", "/api/stats", &[], "")
            .await
            .json()["subscribers"]["firehose"]
            == 2
    })
    .await;

    const N: u64 = 1500;
    let payload = "x".repeat(16 * 1024);
    let reading = tokio::spawn(async move {
        for expected in 1..=N {
            let m = reader.recv_type("message").await;
            assert_eq!(
                m["offset"], expected,
                "the reading client gets every message in order"
            );
        }
        reader
    });
    let before = rss_kib(pid);
    for _ in 0..N {
        http::publish(addr, "firehose", json!(payload)).await;
    }
    let _reader = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("reader done")
        .expect("reader ok");
    // 1500 x 16 KiB = 24 MiB went out; none of it may pile up for the stuck client.
    let after = rss_kib(pid);
    assert!(
        after < before + 12 * 1024,
        "server RSS grew from {before} KiB to {after} KiB"
    );

    // Stuck in a write that never finishes, it is cut at the write timeout
    // (no close frame can reach it, and none is counted as sent).
    tether_test_util::eventually("the stuck client is cut", || async {
        http::metric(
            addr,
            "tether_refusals_total",
            &[("reason", "write_timeout")],
        )
        .await
            == 1.0
    })
    .await;
    assert_eq!(
        http::metric(addr, "tether_closes_total", &[("code", "4004")]).await,
        0.0
    );
    tether_test_util::eventually("stuck client released", || async {
        http::metric(addr, "tether_connections", &[]).await == 1.0
    })
    .await;
    let stats = http::request(addr, "GET", "/api/stats", &[], "")
        .await
        .json();
    assert_eq!(stats["subscribers"]["firehose"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_never_finishes_is_cut_at_the_write_timeout() {
    // A queue large enough never to overflow: only the write timeout can act.
    let server = ServerProcess::start(&["--send-queue", "100000", "--write-timeout", "1s"]).await;
    let addr = server.addr;
    let _stuck = non_reader(addr, "big").await;
    tether_test_util::eventually("subscribed", || async {
        http::request(addr, "GET", "/api/stats", &[], "")
            .await
            .json()["subscribers"]["big"]
            == 1
    })
    .await;
    let payload = "y".repeat(60 * 1024);
    // Enough to fill the socket buffers on both sides many times over.
    for _ in 0..300 {
        http::publish(addr, "big", json!(payload)).await;
    }
    tether_test_util::eventually("the stuck connection is dropped", || async {
        http::metric(addr, "tether_connections", &[]).await == 0.0
    })
    .await;
    assert_eq!(
        http::metric(
            addr,
            "tether_refusals_total",
            &[("reason", "write_timeout")]
        )
        .await,
        1.0
    );
}
