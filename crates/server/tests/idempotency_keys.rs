//! An honest idempotency window: a key is honoured for `--idempotency-window`
//! up to `--idempotency-max-keys`; a key the cap forces out early is counted
//! in `tether_idempotency_evictions_total`, and after either the retry is
//! stored as new (documented), never silently dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::net::SocketAddr;
use tether_test_util::{attack::Bystander, http, ws::WsClient, TestServer};

async fn publish_keyed(addr: SocketAddr, key: &str) -> Value {
    let body = json!({"channel": "orders", "data": {"key": key}, "key": key}).to_string();
    let res = http::request(
        addr,
        "POST",
        "/api/publish",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.json()
}

#[tokio::test]
async fn keys_are_honoured_for_the_window_and_capped() {
    let server =
        TestServer::start(&[("idempotency-window", "2s"), ("idempotency-max-keys", "5")]).await;
    let addr = server.addr;
    let mut bystander = Bystander::join(addr).await;
    let (mut sub, _) = WsClient::tether(&server.ws_url("/ws")).await;
    sub.subscribe(1, "orders", None).await;

    assert_eq!(publish_keyed(addr, "k1").await["offset"], 1);
    assert_eq!(
        publish_keyed(addr, "k1").await["offset"],
        1,
        "a retry inside the window is stored once"
    );
    assert_eq!(sub.recv_type("message").await["offset"], 1);
    for (i, k) in ["k2", "k3", "k4", "k5"].iter().enumerate() {
        assert_eq!(publish_keyed(addr, k).await["offset"], i as u64 + 2);
    }
    assert_eq!(
        http::metric(addr, "tether_idempotency_evictions_total", &[]).await,
        0.0
    );
    // A sixth key: the node holds five, so the oldest (k1) goes early.
    assert_eq!(publish_keyed(addr, "k6").await["offset"], 6);
    assert_eq!(
        http::metric(addr, "tether_idempotency_evictions_total", &[]).await,
        1.0
    );
    assert_eq!(
        http::metric(addr, "tether_idempotency_keys", &[]).await,
        5.0
    );
    // k6 is still honoured; k1 was forced out, so its retry is new.
    assert_eq!(publish_keyed(addr, "k6").await["offset"], 6);
    assert_eq!(publish_keyed(addr, "k1").await["offset"], 7);
    // Once the window has passed, k6 is forgotten too (and that is not an
    // early eviction).
    tether_test_util::eventually("k6 expires with its window", || async {
        publish_keyed(addr, "k6").await["offset"] != 6
    })
    .await;
    assert_eq!(
        http::metric(addr, "tether_idempotency_evictions_total", &[]).await,
        2.0,
        "k2 went early to make room for k1 again"
    );
    bystander.still_served().await;
}
