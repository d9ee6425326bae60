//! Attack: one address floods `POST /api/publish`.
//!
//! Bound: a token bucket per client address (`--publish-rate-per-ip`,
//! `--publish-burst-per-ip`): past the burst, 429 + `Retry-After` with a
//! JSON error, counted in `tether_refusals_total{reason="publish_rate"}`;
//! a backend on another address (the bystander's, 127.0.0.2) keeps
//! publishing and its subscriber keeps receiving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tether_test_util::{attack::Bystander, http, TestServer};

#[tokio::test]
async fn publishes_past_the_burst_get_429_per_address() {
    let server =
        TestServer::start(&[("publish-rate-per-ip", "1"), ("publish-burst-per-ip", "10")]).await;
    let mut bystander = Bystander::join(server.addr).await;
    let body = json!({"channel": "flood", "data": {"x": 1}}).to_string();
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..30 {
        let res = http::request(
            server.addr,
            "POST",
            "/api/publish",
            &[("Content-Type", "application/json")],
            &body,
        )
        .await;
        match res.status {
            200 => ok += 1,
            429 => {
                limited += 1;
                let secs: u64 = res.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=2).contains(&secs), "{secs}");
                assert_eq!(res.json()["error"], "rate_limited");
            }
            other => panic!("unexpected {other}: {}", res.body),
        }
    }
    // The burst, plus at most what the rate refilled while the loop ran.
    assert!((10..=15).contains(&ok), "{ok} accepted");
    assert_eq!(ok + limited, 30);
    assert_eq!(
        http::metric(
            server.addr,
            "tether_refusals_total",
            &[("reason", "publish_rate")]
        )
        .await,
        limited as f64
    );
    // Another address has its own bucket; the server is alive.
    bystander.still_served().await;
}

#[tokio::test]
async fn the_api_uses_the_websocket_publish_validator() {
    let server = TestServer::start(&[("max-message-bytes", "1024")]).await;
    let post = |body: String| {
        let addr = server.addr;
        async move {
            http::request(
                addr,
                "POST",
                "/api/publish",
                &[("Content-Type", "application/json")],
                &body,
            )
            .await
        }
    };
    let res = post(json!({"channel": "bad channel!", "data": 1}).to_string()).await;
    assert_eq!(
        (res.status, res.json()["error"].clone()),
        (400, json!("invalid_channel"))
    );
    let big = "x".repeat(1100);
    let res = post(json!({"channel": "c", "data": big}).to_string()).await;
    assert_eq!(
        (res.status, res.json()["error"].clone()),
        (400, json!("bad_request")),
        "{}",
        res.body
    );
    let res = post(json!({"channel": "c", "data": 1, "key": ""}).to_string()).await;
    assert_eq!(
        (res.status, res.json()["error"].clone()),
        (400, json!("bad_request"))
    );
    let res = post(json!({"channel": "c", "data": 1, "key": "k1"}).to_string()).await;
    assert_eq!(res.status, 200, "{}", res.body);
}
