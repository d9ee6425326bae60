//! What each Redis failure does to a Tether cluster (docs/scaling.md): it
//! fails loudly while it lasts (not ready, publishes 503 / `unavailable`),
//! heals by itself, loses nothing the node could repair from history, and
//! never hands a client publications under an epoch they do not belong to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{node, publish, Node};
use tether_test_util::{
    http,
    proxy::{Cut, Proxy},
    redis::RedisServer,
    ws::Ended,
    ws::WsClient,
    STEP,
};

/// Publishes like a backend that retries while the cluster says 503.
async fn publish_retrying(node: &Node, channel: &str, data: Value) -> Value {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let (status, answer) =
            http::try_publish(node.addr(), &json!({"channel": channel, "data": data})).await;
        if status == 200 {
            return answer;
        }
        assert_eq!(status, 503, "{answer}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "still 503: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn redis_restarted_empty_fails_loudly_then_resumes_with_recovered_false() {
    let mut redis = RedisServer::start().await;
    let n = node(&redis).await;
    let (mut sub, _) = WsClient::tether(&n.ws_url()).await;
    let epoch = sub.subscribe(1, "news", None).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 1..=3 {
        publish(&n, "news", json!(i)).await;
    }
    for _ in 0..3 {
        sub.recv_type("message").await;
    }

    redis.kill();
    n.wait_ready(false).await;
    // Publishing fails loudly on both transports; so does subscribing.
    let (status, answer) =
        http::try_publish(n.addr(), &json!({"channel": "news", "data": 4})).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "unavailable");
    let (mut other, _) = WsClient::tether(&n.ws_url()).await;
    other
        .send(json!({"type": "publish", "id": 9, "channel": "news", "data": 4}))
        .await;
    let reply = other.recv().await;
    assert_eq!(
        (reply["id"].clone(), reply["code"].clone()),
        (json!(9), json!("unavailable")),
        "{reply}"
    );
    other
        .send(json!({"type": "subscribe", "id": 10, "channel": "elsewhere"}))
        .await;
    let reply = other.recv().await;
    assert_eq!(reply["code"], "unavailable", "{reply}");

    redis.restart_empty().await;
    n.wait_ready(true).await;
    // The subscriber's channel lost its history: it is told to resubscribe,
    // and recovering from its old position says so.
    match sub.ended(STEP).await {
        Ended::Closed(code, reason) => {
            assert_eq!(code, 4004, "{reason}");
            assert!(reason.contains("reset"), "{reason}");
        }
        other => panic!("expected a 4004 close, got {other:?}"),
    }
    let (mut again, _) = WsClient::tether(&n.ws_url()).await;
    let reply = again.subscribe(1, "news", Some((&epoch, 3))).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_ne!(reply["epoch"], epoch.as_str());
    let answer = publish(&n, "news", json!("after")).await;
    assert_eq!(answer["epoch"], reply["epoch"]);
    assert_eq!(again.recv_type("message").await["data"], "after");
}

#[tokio::test]
async fn an_older_snapshot_never_yields_recovered_true_with_wrong_data() {
    let mut redis = RedisServer::start().await;
    let n = node(&redis).await;
    let mut epoch = String::new();
    for i in 1..=5 {
        epoch = publish(&n, "ledger", json!(format!("a{i}"))).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    redis.save();
    for i in 6..=10 {
        publish(&n, "ledger", json!(format!("b{i}"))).await;
    }
    // Clients that saw up to 7 and up to 10 of epoch `epoch`.
    redis.kill();
    redis.restart().await; // back at offset 5 of the same epoch, on disk
    n.wait_ready(true).await;
    // New publications pass the old offsets.
    for i in 1..=12 {
        publish_retrying(&n, "ledger", json!(format!("c{i}"))).await;
    }
    for since in [3, 5, 7, 10] {
        let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
        let reply = ws.subscribe(1, "ledger", Some((&epoch, since))).await;
        assert_eq!(
            reply["recovered"], false,
            "recovering from {since} of the old epoch: {reply}"
        );
        assert!(support::data_of(&reply).is_empty());
        assert_ne!(reply["epoch"], epoch.as_str());
    }
}

#[tokio::test]
async fn killed_pubsub_connections_lose_no_offset_and_no_subscriber_reconnects() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut subs = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = WsClient::tether(&a.ws_url()).await;
        ws.subscribe(1, "live", None).await;
        subs.push(ws);
    }
    const N: u64 = 150;
    let publishing = tokio::spawn(async move {
        for i in 1..=N {
            publish_retrying(&b, "live", json!(i)).await;
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        b
    });
    // Every pub/sub connection (A's and B's) killed four times while the
    // publications flow; the subscribers' frames wait in their sockets.
    let mut killed = 0;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        killed += redis.kill_pubsub_clients();
    }
    assert!(killed >= 4, "pub/sub connections were killed: {killed}");
    for ws in &mut subs {
        let got = support::offsets_in_order(ws, "live", N as usize).await;
        assert_eq!(got.first().map(|g| g.0), Some(1));
        assert_eq!(got.last().map(|g| g.0), Some(N));
    }
    publishing.await.unwrap();
    assert!(
        http::metric(
            a.addr(),
            "tether_redis_reconnects_total",
            &[("kind", "pubsub")]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_quiet_channel_whose_last_message_was_lost_is_repaired_within_seconds() {
    let redis = RedisServer::start().await;
    let n = node(&redis).await;
    let (mut sub, _) = WsClient::tether(&n.ws_url()).await;
    sub.subscribe(1, "quiet", None).await;
    publish(&n, "quiet", json!("seen")).await;
    assert_eq!(sub.recv_type("message").await["offset"], 1);
    // A publication that reached Redis but whose pub/sub message was lost:
    // stored as the publish script stores it, and never published.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    assert_eq!(redis.cli(&["HINCRBY", "tether:{quiet}:m", "o", "1"]), "2");
    redis.cli(&[
        "XADD",
        "tether:{quiet}:h",
        "2-0",
        "d",
        "\"lost\"",
        "t",
        &now,
    ]);
    let m = sub.recv_type("message").await;
    assert_eq!(
        (m["offset"].clone(), m["data"].clone()),
        (json!(2), json!("lost"))
    );
    assert!(
        http::metric(
            n.addr(),
            "tether_redis_repairs_total",
            &[("cause", "check")]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_network_cut_between_a_node_and_redis_makes_it_unready_then_it_repairs() {
    let redis = RedisServer::start().await;
    let target = format!("127.0.0.1:{}", redis.port).parse().unwrap();
    let proxy = Proxy::start(target).await;
    let through = RedisServer::url_of(proxy.addr);
    let a = support::node_at(&through).await;
    let b = node(&redis).await;
    let (mut sub, _) = WsClient::tether(&a.ws_url()).await;
    sub.subscribe(1, "cut", None).await;
    publish(&b, "cut", json!(1)).await;
    assert_eq!(sub.recv_type("message").await["offset"], 1);

    // Silence, not an error: the pings notice it.
    proxy.pause(true);
    for i in 2..=4 {
        publish(&b, "cut", json!(i)).await;
    }
    a.wait_ready(false).await;
    let (status, answer) = http::try_publish(a.addr(), &json!({"channel": "cut", "data": 0})).await;
    assert_eq!(status, 503, "{answer}");

    proxy.pause(false);
    proxy.cut(Cut::Reset); // the stalled connections are dead to the node anyway
    a.wait_ready(true).await;
    publish(&b, "cut", json!(5)).await;
    // What was published during the cut arrives from history, then the rest,
    // on the same connection.
    let got = support::offsets_in_order(&mut sub, "cut", 4).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [2, 3, 4, 5]);
}

#[tokio::test]
async fn ready_after_a_redis_restart_means_the_very_next_publish_succeeds() {
    let mut redis = RedisServer::start().await;
    let n = node(&redis).await;
    for round in 0..2 {
        // The command connection is in use before Redis dies under it.
        publish(&n, "before", json!(round)).await;
        redis.kill();
        n.wait_ready(false).await;
        redis.restart().await;
        n.wait_ready(true).await;
        // Ready means every connection answered since the restart: the
        // first publish after it is not the one that finds a dead socket.
        let (status, answer) =
            http::try_publish(n.addr(), &json!({"channel": "after", "data": round})).await;
        assert_eq!(status, 200, "round {round}: {answer}");
    }
}
