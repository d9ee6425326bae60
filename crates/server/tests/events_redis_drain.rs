//! A clean drain with `--broker redis`: the node sends its sessions'
//! disconnects and leaves the node registry, so no other node reports them
//! lost; and when the backend does not acknowledge them before the drain
//! ends, the node leaves them registered and another node sends them as
//! `node_lost` — every session's end reaches the backend once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

mod events_support;

use events_support::{events_in, held_clients, received, unique, PATH, SECRET};
use serde_json::Value;
use std::{collections::BTreeSet, time::Duration};
use support::{node_with, Node};
use tether_test_util::{backend::Backend, redis::RedisServer, ws::WsClient};

async fn events_node(redis: &RedisServer, backend: &Backend, id: &str) -> Node {
    let url = backend.url(PATH);
    node_with(
        redis,
        &[
            "--node-id",
            id,
            "--events-url",
            &url,
            "--hook-secret",
            SECRET,
            "--node-ttl",
            "1s",
            "--events-retry-max",
            "300ms",
            "--drain-timeout",
            "2s",
            "--drain-jitter",
            "100ms",
        ],
    )
    .await
}

async fn clients(node: &Node, n: usize) -> (Vec<WsClient>, BTreeSet<String>) {
    held_clients(&node.ws_url(), "room", n).await
}

async fn subscribed(backend: &Backend, n: usize) {
    backend
        .wait_for(Duration::from_secs(20), |r| {
            unique(&events_in(r))
                .iter()
                .filter(|e| e["type"] == "subscribe")
                .count()
                >= n
        })
        .await;
}

fn disconnects<'a>(events: &'a [Value], client: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == "disconnect" && e["client"] == client)
        .collect()
}

async fn drain(node: &mut Node) {
    node.server.signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), node.server.child.wait())
        .await
        .expect("exits after draining")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_drained_node_leaves_the_registry_and_is_never_reported_lost() {
    let redis = RedisServer::start().await;
    let backend = Backend::start().await;
    let mut a = events_node(&redis, &backend, "node-a").await;
    let _b = events_node(&redis, &backend, "node-b").await;
    let (_held, ids) = clients(&a, 10).await;
    subscribed(&backend, ids.len()).await;
    assert_eq!(
        redis.keys("tether:{#nodes}:node-a:*").len(),
        2,
        "alive and sessions"
    );

    drain(&mut a).await;
    // Past the bound in which node-b would claim a lapsed node-a.
    tokio::time::sleep(Duration::from_millis(2 * 1300)).await;
    let events = unique(&received(&backend));
    for id in &ids {
        let d = disconnects(&events, id);
        assert_eq!(d.len(), 1, "{id}: {d:?}");
        assert_eq!(d[0]["code"], 1012);
    }
    assert!(redis.keys("tether:{#nodes}:node-a*").is_empty(), "left");
    let registered = redis.cli(&["HKEYS", "tether:{#nodes}"]);
    assert!(
        !registered.contains("node-a") && registered.contains("node-b"),
        "{registered}"
    );
}

#[tokio::test]
async fn disconnects_a_drain_could_not_deliver_are_sent_by_another_node() {
    let redis = RedisServer::start().await;
    let mut backend = Backend::start().await;
    let mut a = events_node(&redis, &backend, "node-a").await;
    let _b = events_node(&redis, &backend, "node-b").await;
    let (_held, ids) = clients(&a, 10).await;
    subscribed(&backend, ids.len()).await;

    backend.down().await;
    drain(&mut a).await;
    // Its liveness key is gone at once (the sessions it could not report
    // stay registered until node-b claims them, at its next check).
    assert!(redis.keys("tether:{#nodes}:node-a:a").is_empty());
    backend.up().await;
    backend
        .wait_for(Duration::from_secs(10), |r| {
            let events = unique(&events_in(r));
            ids.iter().all(|id| !disconnects(&events, id).is_empty())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(2 * 1300)).await;
    let events = unique(&received(&backend));
    for id in &ids {
        let d = disconnects(&events, id);
        assert_eq!(d.len(), 1, "{id}: {d:?}");
        assert_eq!(d[0]["reason"], "node_lost");
        assert_eq!(d[0]["node"], "node-a");
    }
}
