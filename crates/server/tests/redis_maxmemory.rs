//! A full Redis (`maxmemory` with `noeviction`) bounds what Tether stores in
//! it: past the limit every publish, and the first subscribe to a channel
//! Redis holds nothing for, is refused loudly (`over_capacity`) with nothing
//! stored, Redis's memory stops growing, and channels that exist keep being
//! read (docs/scaling.md, "When Redis is full").
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

use serde_json::json;
use support::{node, publish};
use tether_test_util::{attack::Bystander, http, redis::RedisServer, ws::WsClient};

/// Redis's `INFO memory` field `name`, in bytes.
fn memory(redis: &RedisServer, name: &str) -> u64 {
    let info = redis.cli(&["INFO", "memory"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in INFO memory:\n{info}"))
}

#[tokio::test]
async fn a_full_redis_refuses_publishes_to_new_channels_with_nothing_stored() {
    let redis = RedisServer::start().await;
    let n = node(&redis).await;
    let mut bystander = Bystander::join(n.addr()).await;
    // A channel that exists before Redis fills up.
    let mut epoch = String::new();
    for i in 1..=3 {
        epoch = publish(&n, "kept", json!(i)).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let limit = memory(&redis, "used_memory") + 1024 * 1024;
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", &limit.to_string()]);

    // New channels, 8 KiB each, until Redis has refused 50 of them
    // (bounded: 1 MiB is about 128 publications). Memory is counted at the
    // start of each command, so once full it hovers at the limit: some
    // later publishes may fit, and none may push it further.
    let data = json!("x".repeat(8 * 1024));
    let (mut stored, mut refused) = (0, Vec::new());
    for i in 0..1000 {
        let channel = format!("new-{i}");
        let (status, answer) =
            http::try_publish(n.addr(), &json!({"channel": channel, "data": data})).await;
        if status == 200 {
            stored += 1;
        } else {
            assert_eq!(status, 503, "{answer}");
            assert_eq!(answer["error"], "over_capacity", "{answer}");
            assert!(
                answer["message"]
                    .as_str()
                    .unwrap()
                    .contains("Redis is full"),
                "{answer}"
            );
            // Refused before the script's first write: nothing of it stays.
            assert!(
                redis.keys(&format!("tether:{{{channel}}}*")).is_empty(),
                "the refused {channel} left keys"
            );
            refused.push(channel);
            if refused.len() == 50 {
                break;
            }
        }
        let used = memory(&redis, "used_memory");
        assert!(
            used <= limit + 64 * 1024,
            "used_memory {used} grew past maxmemory {limit} + 64 KiB after {stored} publishes"
        );
    }
    assert_eq!(refused.len(), 50, "Redis refused publishes past maxmemory");
    assert!(stored < 200, "{stored} publications of 8 KiB fit in 1 MiB");
    let counted = http::metric(
        n.addr(),
        "tether_refusals_total",
        &[("reason", "redis_full")],
    )
    .await;
    assert_eq!(counted, 50.0, "refusals counted as redis_full");

    // The first subscribe to a channel Redis holds nothing for would write
    // its meta hash: refused over_capacity with nothing stored, and the
    // connection stays usable.
    assert!(n.ready().await, "a full Redis is not a dead one");
    let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
    let reply = ws.subscribe(1, "fresh", None).await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("over_capacity")),
        "{reply}"
    );
    assert!(
        reply["message"].as_str().unwrap().contains("Redis is full"),
        "{reply}"
    );
    assert!(
        redis.keys("tether:{fresh}*").is_empty(),
        "the refused subscribe left keys"
    );
    assert_eq!(
        http::metric(
            n.addr(),
            "tether_refusals_total",
            &[("reason", "redis_full")]
        )
        .await,
        51.0,
        "the subscribe counted as redis_full"
    );
    // On the same connection, a channel that exists is still read.
    let reply = ws.subscribe(2, "kept", Some((&epoch, 0))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(support::data_of(&reply), [json!(1), json!(2), json!(3)]);

    // Room made: publishing works again, for everyone.
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    publish(&n, &refused[0], json!("now")).await;
    bystander.still_served().await;
}
