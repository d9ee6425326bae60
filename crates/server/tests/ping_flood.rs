//! Control frames are bounded: a peer that floods pings and never reads
//! holds at most one pending pong (not a queue of them), and pings count
//! against the message rate on `/ws` and `/echo`, so a flood is closed with
//! 4005 like any other. Meanwhile a well-behaved client on 127.0.0.2 is
//! served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::SinkExt;
use serde_json::json;
use std::{net::SocketAddr, time::Duration};
use tether_test_util::{
    attack::{rss_kib, Bystander},
    http,
    process::ServerProcess,
    ws::{Ended, WsClient},
};
use tokio::io::AsyncWriteExt;
use tokio_websockets::Message;

/// Writes `n` pings with a full 125-byte payload and never reads; then a
/// subscribe to `marker`, which the server handles only after every ping.
async fn flood_without_reading(addr: SocketAddr, path: &str, n: usize) -> tokio::net::TcpStream {
    // A small receive window, so the kernel cannot absorb what the server
    // would queue: the pongs stay in the server's memory or nowhere.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = socket.connect(addr).await.expect("connect");
    let (res, mut tcp) = http::upgrade_on(tcp, addr, path, &[]).await;
    assert_eq!(res.status, 101);
    let ping = http::masked_frame(9, true, &[b'p'; 125]);
    let chunk: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 1000)
        .collect();
    for _ in 0..n / 1000 {
        tcp.write_all(&chunk).await.expect("flood");
    }
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_that_never_reads_holds_one_pong() {
    // A rate high enough that only the pong bound can protect the server.
    let server = ServerProcess::start(&[
        "--messages-per-second",
        "10000000",
        "--messages-burst",
        "10000000",
    ])
    .await;
    let pid = server.child.id().expect("pid");
    let addr = server.addr;
    let mut bystander = Bystander::join(addr).await;
    let before = rss_kib(pid);
    // 400,000 pings x 127-byte pongs: 51 MB if every pong were queued.
    let mut tcp = flood_without_reading(addr, "/ws", 400_000).await;
    let sub = json!({"type": "subscribe", "id": 1, "channel": "marker"}).to_string();
    tcp.write_all(&http::masked_text(&sub))
        .await
        .expect("marker");
    tether_test_util::eventually("every ping read", || async {
        http::request(addr, "GET", "/api/stats", &[], "")
            .await
            .json()["subscribers"]["marker"]
            == 1
    })
    .await;
    let after = rss_kib(pid);
    assert!(
        after < before + 4 * 1024,
        "server RSS grew from {before} KiB to {after} KiB under a ping flood"
    );
    bystander.still_served().await;
    // The same on /echo.
    let before = rss_kib(pid);
    let _echo = flood_without_reading(addr, "/echo", 100_000).await;
    bystander.still_served().await;
    let after = rss_kib(pid);
    assert!(
        after < before + 4 * 1024,
        "server RSS grew from {before} KiB to {after} KiB under an /echo ping flood"
    );
    drop(tcp);
}

/// Sends pings as fast as it can while reading; returns how the server ended it.
async fn ping_until_closed(url: &str) -> Ended {
    let mut c = WsClient::connect(url).await;
    for _ in 0..2_000 {
        if c.ws
            .send(Message::ping(bytes::Bytes::from_static(b"x")))
            .await
            .is_err()
        {
            break;
        }
    }
    c.ended(Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_count_against_the_message_rate_on_ws_and_echo() {
    let server =
        ServerProcess::start(&["--messages-per-second", "10", "--messages-burst", "20"]).await;
    let addr = server.addr;
    let mut bystander = Bystander::join(addr).await;
    for path in ["/ws", "/echo"] {
        match ping_until_closed(&format!("ws://{addr}{path}")).await {
            Ended::Closed(code, _) => {
                assert_eq!(code, 4005, "{path}: a ping flood is rate limited")
            }
            Ended::Abnormal => panic!("{path}: closed without a close frame"),
        }
        bystander.still_served().await;
    }
    assert!(
        http::metric(addr, "tether_refusals_total", &[("reason", "message_rate")]).await >= 20.0
    );
    assert_eq!(
        http::metric(addr, "tether_closes_total", &[("code", "4005")]).await,
        2.0
    );
}
