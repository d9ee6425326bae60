//! Many nodes on one Redis (`--broker redis`, docs/scaling.md): any node
//! publishes, every node delivers, a client recovers anywhere, and no Redis
//! failure gives a client wrong data. Each test starts its own
//! `redis-server` on a free port and its own `tether` processes.
//! Failures of Redis itself: `redis_failures.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

use serde_json::json;
use std::collections::BTreeSet;
use support::{data_of, node, offsets_in_order, publish, publish_key};
use tether_test_util::{longpoll::Lp, redis::RedisServer, ws::WsClient};

#[tokio::test]
async fn a_client_on_one_node_receives_what_another_node_publishes() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (mut sub, _) = WsClient::tether(&a.ws_url()).await;
    let reply = sub.subscribe(1, "news", None).await;
    assert_eq!(reply["offset"], 0);
    for i in 1..=5 {
        let answer = publish(&b, "news", json!({"n": i})).await;
        assert_eq!(answer["offset"], i);
        assert_eq!(answer["epoch"], reply["epoch"], "one epoch on every node");
    }
    let got = offsets_in_order(&mut sub, "news", 5).await;
    assert_eq!(got.iter().map(|m| m.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(got[0].1, json!({"n": 1}));
}

#[tokio::test]
async fn a_subscriber_whose_node_dies_recovers_on_another_with_every_offset_once() {
    let redis = RedisServer::start().await;
    let (mut a, b, publisher) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let (mut sub, _) = WsClient::tether(&a.ws_url()).await;
    let epoch = sub.subscribe(1, "feed", None).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    // Publishing runs on its own node through the kill.
    let publishing = tokio::spawn({
        let addr = publisher.addr();
        async move {
            for i in 1..=60u64 {
                support::publish_at(addr, "feed", json!({"n": i})).await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let m = sub.recv_type("message").await;
        seen.push(m["offset"].as_u64().unwrap());
    }
    a.kill().await;
    // Reconnect to B, recovering from the last offset seen.
    let (mut again, _) = WsClient::tether(&b.ws_url()).await;
    let last = *seen.last().unwrap();
    let reply = again.subscribe(1, "feed", Some((&epoch, last))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    for p in reply["publications"].as_array().unwrap() {
        seen.push(p["offset"].as_u64().unwrap());
    }
    publishing.await.unwrap();
    while *seen.last().unwrap() < 60 {
        let m = again.recv_type("message").await;
        seen.push(m["offset"].as_u64().unwrap());
    }
    assert_eq!(
        seen,
        (1..=60).collect::<Vec<_>>(),
        "every offset once, in order"
    );
}

#[tokio::test]
async fn two_nodes_publishing_at_once_make_gap_free_offsets() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let (mut sub, _) = WsClient::tether(&a.ws_url()).await;
    sub.subscribe(1, "race", None).await;
    let mut tasks = Vec::new();
    for n in [&a, &b] {
        for w in 0..4 {
            let addr = n.addr();
            tasks.push(tokio::spawn(async move {
                let mut offsets = Vec::new();
                for i in 0..25 {
                    let answer = support::publish_at(addr, "race", json!({"w": w, "i": i})).await;
                    offsets.push(answer["offset"].as_u64().unwrap());
                }
                offsets
            }));
        }
    }
    let mut all = BTreeSet::new();
    for t in tasks {
        for o in t.await.unwrap() {
            assert!(all.insert(o), "offset {o} given twice");
        }
    }
    assert_eq!(all, (1..=200).collect(), "no gaps");
    // And a subscriber sees them in offset order.
    let got = offsets_in_order(&mut sub, "race", 200).await;
    assert_eq!(got.len(), 200);
}

#[tokio::test]
async fn an_idempotent_retry_on_another_node_is_a_duplicate() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let first = publish_key(&a, "orders", json!({"id": 7}), "order-7").await;
    let retry = publish_key(&b, "orders", json!({"id": 7}), "order-7").await;
    assert_eq!(first["offset"], 1);
    assert_eq!(retry["offset"], 1, "the retry names the first publish");
    assert_eq!(retry["epoch"], first["epoch"]);
    let next = publish(&b, "orders", json!({"id": 8})).await;
    assert_eq!(next["offset"], 2, "the retry stored nothing");
    // Over WebSocket too.
    let (mut ws, _) = WsClient::tether(&b.ws_url()).await;
    ws.send(json!({"type": "publish", "id": 1, "channel": "orders", "data": {"id": 7}, "key": "order-7"}))
        .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "ack", "id": 1, "offset": 1})
    );
    // A long-polling publish without a key, its POST retried on the other
    // node (the first answer was lost): applied once, the server's key
    // (client and request id) is in Redis.
    let (lp, _) = Lp::open(a.addr()).await;
    let send = json!([{"type": "publish", "id": 4, "channel": "orders", "data": {"id": 9}}]);
    let first = lp.send(send.clone()).await;
    let again = Lp::with_client(b.addr(), &lp.client).send(send).await;
    assert_eq!(first[0]["type"], "ack", "{first:?}");
    assert_eq!(again, first, "the same ack, from the other node");
    let next = publish(&a, "orders", json!({"id": 10})).await;
    assert_eq!(
        next["offset"].as_u64(),
        first[0]["offset"].as_u64().map(|o| o + 1),
        "the retry stored nothing"
    );
}

#[tokio::test]
async fn long_polling_round_robin_over_two_nodes_receives_a_contiguous_sequence() {
    let redis = RedisServer::start().await;
    // Polls with nothing new answer empty quickly.
    let flags = ["--long-poll-timeout", "300ms"];
    let (a, b) = (
        support::node_with(&redis, &flags).await,
        support::node_with(&redis, &flags).await,
    );
    let nodes = [a.addr(), b.addr()];
    let (opened, _) = Lp::open(nodes[0]).await;
    let client = opened.client.clone();
    let on = |i: usize| Lp::with_client(nodes[i % 2], &client);
    let reply = on(1)
        .send(json!([{"type": "subscribe", "id": 1, "channel": "lp"}]))
        .await;
    let epoch = reply[0]["epoch"].as_str().unwrap().to_owned();
    let mut position = reply[0]["offset"].as_u64().unwrap();
    let mut received = Vec::new();
    let mut published = 0u64;
    for turn in 0..40usize {
        // Publications land on either node, between polls.
        if published < 30 {
            for _ in 0..(turn % 3) {
                published += 1;
                support::publish_at(nodes[turn % 2], "lp", json!({"n": published})).await;
            }
        }
        let answer = on(turn)
            .poll(tether_test_util::longpoll::positions(&[(
                "lp", &epoch, position,
            )]))
            .await;
        for m in answer.iter().filter(|m| m["type"] == "message") {
            let o = m["offset"].as_u64().unwrap();
            received.push(o);
            position = o;
        }
        assert!(
            answer.iter().all(|m| m["type"] != "subscribed"),
            "no resync needed: {answer:?}"
        );
        if published >= 30 && position == published {
            break;
        }
    }
    assert_eq!(received, (1..=published).collect::<Vec<_>>());
    assert!(published >= 30);
}

#[tokio::test]
async fn history_is_shared_a_client_recovers_on_any_node() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut epoch = String::new();
    for i in 1..=4 {
        epoch = publish(&a, "shared", json!(i)).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let (mut ws, _) = WsClient::tether(&b.ws_url()).await;
    let reply = ws.subscribe(1, "shared", Some((&epoch, 1))).await;
    assert_eq!(reply["recovered"], true);
    assert_eq!(data_of(&reply), vec![json!(2), json!(3), json!(4)]);
    assert_eq!(reply["offset"], 4);
    // A position in an epoch that never was: recovered false, never data.
    let (mut other, _) = WsClient::tether(&a.ws_url()).await;
    let reply = other.subscribe(1, "shared", Some(("0000beef", 1))).await;
    assert_eq!(reply["recovered"], false);
    assert!(data_of(&reply).is_empty());
}
