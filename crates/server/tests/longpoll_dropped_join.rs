//! A long poll whose client hangs up while the node joins a channel for it
//! (docs/longpoll.md, "Requests a client abandons"): hyper drops the
//! request's future, and the engine's work must not stop halfway.
//!
//! Before the engine ran long-polling requests in tasks of their own, a poll
//! dropped while the node subscribed the channel at a slow Redis left its
//! cursor in the hub and the channel's broker interest marked failed: every
//! later join of that channel on that node answered `unavailable` until a
//! restart, and the channel gauge never went back to zero.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

use serde_json::json;
use std::time::Duration;
use tether_test_util::{
    eventually, http,
    longpoll::{positions, Lp},
    proxy::Proxy,
    redis::RedisServer,
    ws::WsClient,
    STEP,
};

#[tokio::test]
async fn a_poll_dropped_mid_join_leaves_the_channel_usable_and_nothing_behind() {
    if !RedisServer::available() {
        eprintln!("skipped: redis-server is not installed (scripts/setup installs it)");
        return;
    }
    let redis = RedisServer::start().await;
    let target = format!("127.0.0.1:{}", redis.port).parse().unwrap();
    let proxy = Proxy::start(target).await;
    let node = support::node_at_with(
        &RedisServer::url_of(proxy.addr),
        &["--ping-interval", "300ms", "--pong-timeout", "300ms"],
    )
    .await;
    let addr = node.addr();

    // Three polls abandoned while the node waits on Redis for the join.
    for round in 0..3 {
        let (lp, _) = Lp::open(addr).await;
        proxy.pause(true);
        let body = positions(&[("news", "", 0)]).to_string();
        // Without the fix, from the second round on the node answers at
        // once: the first abandoned join poisoned the channel here.
        if let Ok(answered) =
            tokio::time::timeout(Duration::from_millis(300), lp.poll_raw(&body)).await
        {
            panic!("round {round}: the poll was answered: {answered:?}");
        }
        proxy.pause(false);
    }

    // The channel is usable on this node: a WebSocket subscriber joins it
    // and receives a publication (without the fix: `unavailable`, forever).
    let (mut sub, _) = WsClient::tether(&node.ws_url()).await;
    let deadline = tokio::time::Instant::now() + STEP;
    for id in 1.. {
        sub.send(json!({"type": "subscribe", "id": id, "channel": "news"}))
            .await;
        let reply = sub.recv().await;
        if reply["type"] == "subscribed" {
            break;
        }
        // Retryable while the abandoned joins finish (Redis was paused).
        assert_eq!(reply["code"], "unavailable", "{reply}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the channel stays unusable on this node: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    support::publish(&node, "news", json!("after")).await;
    assert_eq!(sub.recv_type("message").await["data"], "after");

    // Nothing is left behind once everyone has gone: the abandoned polls'
    // sessions expire (no request for ping + pong timeout), the subscriber
    // leaves, the node holds no channel, no subscription place and no
    // connection place, and its interest at Redis went back as often as it
    // was taken (no pub/sub subscription is left).
    drop(sub);
    eventually(
        "no channel held, no session, no Redis subscription",
        || async {
            let stats = http::request(addr, "GET", "/api/stats", &[], "")
                .await
                .json();
            let sessions = http::metric(addr, "tether_longpoll_sessions", &[]).await;
            let subscribed = redis.cli(&["PUBSUB", "CHANNELS", "*"]);
            stats["channels"] == 0
                && stats["subscriptions"] == 0
                && stats["connections"] == 0
                && sessions == 0.0
                && subscribed.trim().is_empty()
        },
    )
    .await;
}
