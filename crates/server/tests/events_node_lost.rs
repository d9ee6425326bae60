//! A node that dies (SIGKILL) does not take its clients' disconnects with
//! it: with `--broker redis` a surviving node claims it once its liveness
//! lapses and sends `disconnect` (`node_lost`) for each of its sessions —
//! exactly one per session, within `--node-ttl` + `--redis-check-interval`
//! (docs/events.md), and nothing for the survivors' own clients; with two
//! survivors racing, one claims.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

mod events_support;

use events_support::{events_in, held_clients, received, unique, visit, PATH, SECRET};
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};
use support::{node_with, Node, CHECK};
use tether_test_util::{backend::Backend, http, longpoll::Lp, redis::RedisServer, ws::WsClient};
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(1);
/// `CHECK` (the nodes' --redis-check-interval).
const CHECK_EVERY: Duration = Duration::from_millis(300);
/// What the survivor's queue and POST may add to the claim's bound on a
/// busy test machine.
const DELIVERY: Duration = Duration::from_secs(2);

async fn events_node(redis: &RedisServer, backend: &Backend, id: &str) -> Node {
    events_node_with(redis, backend, id, &[]).await
}

/// [`events_node`] with `extra` flags.
async fn events_node_with(
    redis: &RedisServer,
    backend: &Backend,
    id: &str,
    extra: &[&str],
) -> Node {
    assert_eq!(CHECK, "300ms");
    let url = backend.url(PATH);
    let mut flags = vec![
        "--node-id",
        id,
        "--events-url",
        &url,
        "--hook-secret",
        SECRET,
        "--node-ttl",
        "1s",
        "--handshake-rate-per-ip",
        "100000",
        "--handshake-burst-per-ip",
        "100000",
    ];
    flags.extend_from_slice(extra);
    node_with(redis, &flags).await
}

/// `n` clients of `node`, each subscribed to `room`, held open.
async fn clients(node: &Node, n: usize) -> (Vec<WsClient>, BTreeSet<String>) {
    held_clients(&node.ws_url(), "room", n).await
}

fn lost(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["type"] == "disconnect" && e["reason"] == "node_lost")
        .collect()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_sessions_each_get_one_node_lost_within_the_bound() {
    let redis = RedisServer::start().await;
    let backend = Backend::start().await;
    let mut a = events_node(&redis, &backend, "node-a").await;
    let b = events_node(&redis, &backend, "node-b").await;
    let (_a_clients, mut a_ids) = clients(&a, 500).await;
    let (lp, _) = Lp::open(a.addr()).await;
    let answer = lp
        .send(json!([{"type": "subscribe", "id": 1, "channel": "room"}]))
        .await;
    assert_eq!(answer[0]["type"], "subscribed");
    a_ids.insert(lp.public_client.clone());
    let (_b_clients, b_ids) = clients(&b, 20).await;
    // One of b's clients leaves normally: its own disconnect, not node_lost.
    let gone = visit(&b.ws_url(), "room").await;
    let connects = a_ids.len() + b_ids.len() + 1;
    backend
        .wait_for(Duration::from_secs(20), |r| {
            unique(&events_in(r))
                .iter()
                .filter(|e| e["type"] == "subscribe")
                .count()
                >= connects
        })
        .await;

    a.kill().await;
    let killed = Instant::now();
    let expected = a_ids.len();
    backend
        .wait_for(TTL + CHECK_EVERY + DELIVERY, |r| {
            lost(&unique(&events_in(r))).len() >= expected
        })
        .await;
    let took = killed.elapsed();
    assert!(
        took <= TTL + CHECK_EVERY + DELIVERY,
        "node_lost after {took:?}"
    );
    // Past the bound again: nothing more comes.
    tokio::time::sleep(2 * (TTL + CHECK_EVERY)).await;

    let all = received(&backend);
    let events = unique(&all);
    let lost = lost(&events);
    let mut per_client: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &lost {
        *per_client.entry(e["client"].as_str().unwrap()).or_default() += 1;
        assert_eq!(e["node"], "node-a", "the session's node: {e}");
        assert_eq!(e["code"], 1006, "{e}");
        assert!(
            e["id"].as_str().unwrap().starts_with("node-b-"),
            "sent by the claimer: {e}"
        );
        assert!(e["duration_ms"].as_u64().is_some(), "{e}");
    }
    assert_eq!(per_client.len(), a_ids.len(), "one per session of node-a");
    assert!(per_client.values().all(|n| *n == 1), "exactly one each");
    assert!(per_client.keys().all(|c| a_ids.contains(*c)));
    // The survivor's clients: no node_lost, and only the one that left has
    // a disconnect, its own.
    let disconnects: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "disconnect" && e["node"] == "node-b")
        .collect();
    assert_eq!(disconnects.len(), 1, "{disconnects:?}");
    assert_eq!(disconnects[0]["client"], gone.as_str());
    assert_eq!(disconnects[0]["code"], 1000);
    assert!(!b_ids.contains(&gone));
    let m = http::request(b.addr(), "GET", "/metrics", &[], "")
        .await
        .body;
    assert_eq!(metric(&m, "tether_nodes_lost_total"), 1);
    // node-a is gone from the registry: nothing of it is left in Redis.
    assert!(
        redis.keys("tether:{#nodes}:node-a:s").is_empty(),
        "the claimed registry is deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_survivors_racing_claim_a_dead_node_once() {
    let redis = RedisServer::start().await;
    let backend = Backend::start().await;
    let mut dead = events_node(&redis, &backend, "node-x").await;
    let survivors = [
        events_node(&redis, &backend, "node-y").await,
        events_node(&redis, &backend, "node-z").await,
    ];
    let (_held, ids) = clients(&dead, 100).await;
    backend
        .wait_for(Duration::from_secs(20), |r| {
            unique(&events_in(r))
                .iter()
                .filter(|e| e["type"] == "subscribe")
                .count()
                >= ids.len()
        })
        .await;
    dead.kill().await;
    backend
        .wait_for(TTL + CHECK_EVERY + DELIVERY, |r| {
            lost(&unique(&events_in(r))).len() >= ids.len()
        })
        .await;
    tokio::time::sleep(2 * (TTL + CHECK_EVERY)).await;

    let events = unique(&received(&backend));
    let lost = lost(&events);
    assert_eq!(lost.len(), ids.len(), "exactly one per session");
    let clients: BTreeSet<&str> = lost.iter().map(|e| e["client"].as_str().unwrap()).collect();
    assert_eq!(clients.len(), ids.len());
    let claimers: BTreeSet<&str> = lost
        .iter()
        .map(|e| {
            let id = e["id"].as_str().unwrap();
            &id[..id.rfind('-').unwrap()]
        })
        .collect();
    assert_eq!(claimers.len(), 1, "one claimer: {claimers:?}");
    let mut claims = 0;
    for s in &survivors {
        let m = http::request(s.addr(), "GET", "/metrics", &[], "")
            .await
            .body;
        claims += metric(&m, "tether_nodes_lost_total");
    }
    assert_eq!(claims, 1);
}

/// A claimed node's sessions leave presence at the claim, long before their
/// entries would expire (`--presence-ttl` here is a minute): the survivor's
/// subscribers get their `leave` within the node-loss bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_nodes_clients_leave_presence_at_the_claim() {
    let redis = RedisServer::start().await;
    let backend = Backend::start().await;
    let dir = std::env::temp_dir().join(format!("tether-lost-presence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.toml");
    std::fs::write(
        &file,
        "[[channels]]\npattern = \"room:*\"\npresence = true\njoin_leave = true\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let extra = ["--presence-ttl", "60s", "--config", file];
    let mut a = events_node_with(&redis, &backend, "node-a", &extra).await;
    let b = events_node_with(&redis, &backend, "node-b", &extra).await;
    let mut lost_ids = BTreeSet::new();
    let mut held = Vec::new();
    for _ in 0..3 {
        let (mut ws, welcome) = WsClient::tether(&a.ws_url()).await;
        assert_eq!(ws.subscribe(1, "room:p", None).await["type"], "subscribed");
        lost_ids.insert(welcome["client"].as_str().unwrap().to_owned());
        held.push(ws);
    }
    let (mut watcher, welcome) = WsClient::tether(&b.ws_url()).await;
    assert_eq!(
        watcher.subscribe(1, "room:p", None).await["type"],
        "subscribed"
    );
    let watcher_id = welcome["client"].as_str().unwrap().to_owned();
    // Its own join first.
    assert_eq!(
        watcher.recv_type("join").await["client"],
        watcher_id.as_str()
    );

    // The registry (written in batches) knows where A's sessions are
    // present before A dies: a crash before that write leaves their entries
    // to expire instead.
    tether_test_util::eventually("node-a's registry names room:p for its 3 sessions", || {
        let listed = redis.cli(&["HGETALL", "tether:{#nodes}:node-a:s"]);
        async move { listed.matches("room:p").count() == 3 }
    })
    .await;
    a.kill().await;
    let killed = Instant::now();
    let mut left = BTreeSet::new();
    while left.len() < lost_ids.len() {
        let m = tokio::time::timeout(TTL + CHECK_EVERY + DELIVERY, watcher.recv_type("leave"))
            .await
            .expect("a leave within the node-loss bound, not the presence TTL");
        left.insert(m["client"].as_str().unwrap().to_owned());
    }
    assert_eq!(left, lost_ids);
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "well before the 60s TTL"
    );
    watcher
        .send(json!({"type": "presence", "id": 2, "channel": "room:p"}))
        .await;
    let answer = watcher.recv_type("presence").await;
    let clients: Vec<&str> = answer["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client"].as_str().unwrap())
        .collect();
    assert_eq!(clients, [watcher_id.as_str()], "{answer}");
    let _ = std::fs::remove_dir_all(&dir);
}
