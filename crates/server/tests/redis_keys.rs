//! What a channel that was only subscribed leaves in Redis: nothing, once
//! its last subscriber anywhere has left (within `10 × --redis-check-interval`,
//! docs/scaling.md, "What is in Redis"), however many names a client churns
//! through; and while subscribers are there, every node keeps the epoch they
//! were given, so the first publication reaches them all without a reset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use support::{node_with, publish};
use tether_test_util::{
    attack::Bystander,
    eventually,
    longpoll::{positions, Lp},
    redis::RedisServer,
    ws::WsClient,
};

/// Subscribe/unsubscribe cycles on distinct names, and names in one poll.
const CYCLES: u64 = 300;
const POLLED: usize = 1024;

#[tokio::test]
async fn channels_that_were_only_subscribed_leave_no_key_behind() {
    let redis = RedisServer::start().await;
    let n = node_with(
        &redis,
        &[
            "--long-poll-timeout",
            "200ms",
            // The churn is the client's own: not slowed by the message rate.
            "--messages-per-second",
            "100000",
            "--messages-burst",
            "100000",
        ],
    )
    .await;
    let mut bystander = Bystander::join(n.addr()).await;
    bystander.still_served().await; // its channel has a publication: kept

    let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
    for i in 0..CYCLES {
        let channel = format!("churn-{i}");
        let reply = ws.subscribe(2 * i + 1, &channel, None).await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        ws.send(json!({"type": "unsubscribe", "id": 2 * i + 2, "channel": channel}))
            .await;
        assert_eq!(ws.recv_type("unsubscribed").await["id"], 2 * i + 2);
    }
    eventually("only the bystander's channel is left", || async {
        redis.keys("tether:*") == ["tether:{bystander}:h", "tether:{bystander}:m"]
    })
    .await;

    // One poll naming 1,024 new channels, then one naming none (the session
    // leaves them all).
    let (lp, _) = Lp::open(n.addr()).await;
    let names: Vec<String> = (0..POLLED).map(|i| format!("polled-{i}")).collect();
    let named: Vec<(&str, &str, u64)> = names.iter().map(|c| (c.as_str(), "x", 0)).collect();
    let answer = lp.poll(positions(&named)).await;
    assert_eq!(answer.len(), POLLED, "a resync per channel");
    assert!(answer.iter().all(|m| m["type"] == "subscribed"));
    assert!(!redis.keys("tether:{polled-*").is_empty());
    assert_eq!(lp.poll(positions(&[])).await, Vec::<Value>::new());
    eventually("only the bystander's channel is left", || async {
        redis.keys("tether:*") == ["tether:{bystander}:h", "tether:{bystander}:m"]
    })
    .await;
    bystander.still_served().await;
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn subscribers_on_two_nodes_of_a_never_published_channel_get_its_first_publication() {
    let redis = RedisServer::start().await;
    let (a, b) = (node_with(&redis, &[]).await, node_with(&redis, &[]).await);
    let (mut on_a, _) = WsClient::tether(&a.ws_url()).await;
    let (mut on_b, _) = WsClient::tether(&b.ws_url()).await;
    let epoch = on_a.subscribe(1, "first", None).await["epoch"].clone();
    assert_eq!(on_b.subscribe(1, "first", None).await["epoch"], epoch);

    // The hash that holds the epoch outlives its first expiry while the
    // subscribers are there: their nodes refresh it.
    let expires: u64 = redis
        .cli(&["PEXPIRETIME", "tether:{first}:m"])
        .parse()
        .unwrap();
    eventually("the first expiry has passed", || async {
        now_ms() > expires + 300
    })
    .await;
    assert_eq!(redis.cli(&["HGET", "tether:{first}:m", "e"]), epoch);

    let answer = publish(&b, "first", json!("hello")).await;
    assert_eq!(
        (answer["epoch"].clone(), answer["offset"].clone()),
        (epoch, json!(1))
    );
    for ws in [&mut on_a, &mut on_b] {
        // No 4004 reset: the message is the next frame on both nodes.
        let m = ws.recv().await;
        assert_eq!(
            (m["type"].clone(), m["offset"].clone(), m["data"].clone()),
            (json!("message"), json!(1), json!("hello")),
            "{m}"
        );
    }
}
