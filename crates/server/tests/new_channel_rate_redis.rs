//! With `--broker redis`, one address cannot fill Redis with channels of
//! its own (each a meta hash living `--history-meta-ttl`, plus history)
//! until `maxmemory` refuses every publish from anyone: a publish that
//! would create a channel in Redis takes a token from its address's bucket
//! of new channels (`--new-channel-rate-per-ip`, `--new-channel-burst-per-ip`),
//! decided inside the publish script, and past the bucket nothing of the
//! channel is written. Publishes to channels that exist are never charged,
//! and a bystander on 127.0.0.2 keeps creating channels.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

use serde_json::json;
use tether_test_util::{
    attack::{Bystander, BYSTANDER_IP},
    http,
    redis::RedisServer,
    ws::WsClient,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_past_its_new_channels_writes_nothing_to_redis() {
    let redis = RedisServer::start().await;
    let n = support::node_with(
        &redis,
        &[
            "--new-channel-rate-per-ip",
            "0.01",
            "--new-channel-burst-per-ip",
            "10",
        ],
    )
    .await;
    let addr = n.addr();
    let mut bystander = Bystander::join(addr).await;

    // The attacker publishes to ever new channels over the API; every
    // fifth attempt the bystander makes a channel of its own meanwhile.
    let (mut accepted, mut limited) = (0, 0);
    for i in 0..40 {
        let channel = format!("flood-{i}");
        let (status, answer) =
            http::try_publish(addr, &json!({"channel": channel, "data": i})).await;
        match status {
            200 => accepted += 1,
            429 => {
                assert_eq!(answer["error"], "rate_limited", "{answer}");
                assert!(
                    redis.keys(&format!("tether:{{{channel}}}*")).is_empty(),
                    "the refused {channel} left keys in Redis"
                );
                limited += 1;
            }
            other => panic!("unexpected {other}: {answer}"),
        }
        if i % 5 == 0 {
            let made = format!("bystander-{i}");
            let answer = http::publish_from(BYSTANDER_IP, addr, &made, json!(i)).await;
            assert_eq!(answer["offset"], 1, "{answer}");
        }
    }
    assert_eq!((accepted, limited), (10, 30), "the burst, then refusals");
    let made = redis.keys("tether:{flood-*}:m");
    assert_eq!(made.len(), 10, "only the paid-for channels exist: {made:?}");

    // Channels that exist take every publish: many of them, from one
    // address that has no new channel left.
    for round in 2..=4 {
        for i in 0..10 {
            let answer = http::publish(addr, &format!("flood-{i}"), json!(round)).await;
            assert_eq!(answer["offset"], round, "{answer}");
        }
    }
    // A hash another Redis run wrote is no creation: the fence starts its
    // new epoch, and the publish is not charged.
    redis.cli(&[
        "HSET",
        "tether:{old}:m",
        "e",
        "gone",
        "o",
        "7",
        "r",
        "another-run",
    ]);
    let answer = http::publish(addr, "old", json!(1)).await;
    assert_eq!(answer["offset"], 1, "{answer}");
    assert_ne!(answer["epoch"], "gone", "{answer}");

    // On a connection: a publish that would create is over_capacity, one
    // to an existing channel is acknowledged.
    let (mut c, _) = WsClient::tether(&n.ws_url()).await;
    c.send(json!({"type": "publish", "id": 1, "channel": "ws-new", "data": 1}))
        .await;
    let reply = c.recv().await;
    assert_eq!(
        (reply["id"].as_u64(), reply["code"].as_str()),
        (Some(1), Some("over_capacity")),
        "{reply}"
    );
    assert!(redis.keys("tether:{ws-new}*").is_empty());
    c.send(json!({"type": "publish", "id": 2, "channel": "flood-0", "data": 5}))
        .await;
    let reply = c.recv().await;
    assert_eq!(
        (reply["type"].as_str(), reply["offset"].as_u64()),
        (Some("ack"), Some(5)),
        "{reply}"
    );
    assert!(
        http::metric(
            addr,
            "tether_refusals_total",
            &[("reason", "new_channel_rate")]
        )
        .await
            >= 31.0
    );

    // The bystander still creates channels and is served.
    let answer = http::publish_from(BYSTANDER_IP, addr, "bystander-after", json!(1)).await;
    assert_eq!(answer["offset"], 1, "{answer}");
    assert_eq!(redis.keys("tether:{bystander-after}:m").len(), 1);
    bystander.still_served().await;
}
