//! Presence across nodes on a real Redis (docs/presence.md, "Across
//! nodes"): two `tether serve --broker redis` processes answer the union of
//! their clients; joins and leaves cross nodes in their place among the
//! publications; a SIGKILLed node's clients are gone within the TTL and the
//! survivor's subscribers get exactly one `leave` each; while Redis is down
//! presence answers `unavailable` (503 on the API), never an empty list,
//! and after a restart it is whole again; a drained node's leaves are
//! written before it exits; a bystander on 127.0.0.2 is served throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};
use support::{node_with, publish, Node};
use tether_test_util::{
    attack::Bystander, eventually, http, longpoll::Lp, redis::RedisServer, ws::WsClient,
};

const SECRET: &str = "presence-redis-secret";
/// The presence TTL of these tests: entries refreshed every 333 ms.
const TTL: Duration = Duration::from_secs(1);

static RULES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let rules = "[[channels]]\npattern = \"chat:*\"\npresence = true\njoin_leave = true\n";
    let path =
        std::env::temp_dir().join(format!("tether-presence-redis-{}.toml", std::process::id()));
    std::fs::write(&path, rules).unwrap();
    path.to_str().unwrap().to_owned()
});

/// A node on `redis` with the rules above and a 1 s presence TTL.
async fn start(redis: &RedisServer) -> Node {
    node_with(
        redis,
        &[
            "--config",
            RULES.as_str(),
            "--jwt-secret",
            SECRET,
            "--presence-ttl",
            "1s",
        ],
    )
    .await
}

fn token(sub: &str) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"sub": sub, "publish": ["chat:*"], "presence": ["chat:*"], "exp": exp});
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

fn event(kind: &str, channel: &str, client: &str, user: &str) -> Value {
    json!({"type": kind, "channel": channel, "client": client, "user": user})
}

/// A connection of `sub` to `n`, and its client id.
async fn connect(n: &Node, sub: &str) -> (WsClient, String) {
    let url = format!("{}?token={}", n.ws_url(), token(sub));
    let (ws, welcome) = WsClient::tether(&url).await;
    let id = welcome["client"].as_str().unwrap().to_owned();
    (ws, id)
}

/// `sub` on `n`, subscribed to `channel` (its own join read).
async fn present(n: &Node, sub: &str, channel: &str) -> (WsClient, String) {
    let (mut ws, id) = connect(n, sub).await;
    assert_eq!(ws.subscribe(1, channel, None).await["type"], "subscribed");
    assert_eq!(ws.recv().await, event("join", channel, &id, sub));
    (ws, id)
}

/// `GET /api/presence` on `n`: status and body.
async fn api_presence(n: &Node, channel: &str) -> (u16, Value) {
    let path = format!("/api/presence?channel={channel}");
    let res = http::request(n.addr(), "GET", &path, &[], "").await;
    (res.status, res.json())
}

/// The client ids `n` lists as present in `channel`, if it answers.
async fn listed(n: &Node, channel: &str) -> Option<BTreeSet<String>> {
    let (status, body) = api_presence(n, channel).await;
    (status == 200).then(|| {
        body["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["client"].as_str().unwrap().to_owned())
            .collect()
    })
}

fn set(ids: &[&str]) -> Option<BTreeSet<String>> {
    Some(ids.iter().map(|s| s.to_string()).collect())
}

#[tokio::test]
async fn two_nodes_share_presence_and_a_killed_nodes_clients_leave_once() {
    let redis = RedisServer::start().await;
    let a = start(&redis).await;
    let mut b = start(&redis).await;
    let c = "chat:room";
    let path = format!("/ws?token={}", token("bystander"));
    let mut bystander = Bystander::join_path(a.addr(), &path, "bystander").await;
    let (mut ann, ann_id) = present(&a, "ann", c).await;

    // bob on B subscribes and publishes at once: ann on A gets the join,
    // then the message.
    let (mut bob, bob_id) = connect(&b, "bob").await;
    bob.send(json!({"type": "subscribe", "id": 1, "channel": c}))
        .await;
    bob.send(json!({"type": "publish", "id": 2, "channel": c, "data": "hi"}))
        .await;
    assert_eq!(ann.recv().await, event("join", c, &bob_id, "bob"));
    assert_eq!(ann.recv().await["data"], "hi");
    bob.recv_type("ack").await;

    // dan on B publishes, then leaves: the message, then the leave.
    let (mut dan, dan_id) = present(&b, "dan", c).await;
    assert_eq!(ann.recv().await, event("join", c, &dan_id, "dan"));
    dan.send(json!({"type": "publish", "id": 2, "channel": c, "data": "bye"}))
        .await;
    dan.recv_type("ack").await;
    drop(dan);
    assert_eq!(ann.recv().await["data"], "bye");
    assert_eq!(ann.recv().await, event("leave", c, &dan_id, "dan"));

    // Presence is the union of both nodes, asked on either.
    let (_cat, cat_id) = present(&b, "cat", c).await;
    assert_eq!(ann.recv().await, event("join", c, &cat_id, "cat"));
    let all = set(&[&ann_id, &bob_id, &cat_id]);
    assert_eq!(listed(&a, c).await, all);
    assert_eq!(listed(&b, c).await, all);
    ann.send(json!({"type": "presence_stats", "id": 2, "channel": c}))
        .await;
    let stats = ann.recv_type("presence_stats").await;
    assert_eq!((&stats["clients"], &stats["users"]), (&json!(3), &json!(3)));

    // B dies without a word: its clients are gone within the TTL...
    b.kill().await;
    let killed = Instant::now();
    let only_ann = set(&[&ann_id]);
    eventually("B's clients gone from presence", || async {
        listed(&a, c).await == only_ann
    })
    .await;
    let gone_after = killed.elapsed();
    // (the TTL, and scheduling on a busy test machine)
    assert!(gone_after < TTL + Duration::from_secs(1), "{gone_after:?}");

    // ...and ann gets exactly one leave for each, within a refresh period
    // more, and nothing else well past the bound.
    let mut left = BTreeSet::new();
    for _ in 0..2 {
        let m = ann.recv().await;
        assert_eq!(m["type"], "leave", "{m}");
        left.insert(m["client"].as_str().unwrap().to_owned());
    }
    let leaves_after = killed.elapsed();
    assert!(
        leaves_after < TTL + TTL / 3 + Duration::from_millis(1500),
        "{leaves_after:?}"
    );
    assert_eq!(Some(left), set(&[&bob_id, &cat_id]));
    let more = ann.try_recv(2 * TTL).await;
    assert!(more.is_none(), "a second leave: {more:?}");
    assert_eq!(listed(&a, c).await, only_ann);
    bystander.still_served().await;
}

#[tokio::test]
async fn a_redis_outage_answers_unavailable_and_a_restart_is_whole_again() {
    let mut redis = RedisServer::start().await;
    let a = start(&redis).await;
    let b = start(&redis).await;
    let c = "chat:outage";
    // Long-polling clients, one per node: a Redis restart resets the
    // channel's epoch, which closes WebSocket subscribers (4004) but keeps
    // long-polling sessions, present throughout.
    let mut lps = Vec::new();
    for (n, sub) in [(&a, "lou"), (&b, "liz")] {
        let bearer = format!("Bearer {}", token(sub));
        let (lp, _) = Lp::open_with(n.addr(), &[("Authorization", &bearer)]).await;
        let replies = lp
            .send(json!([{"type": "subscribe", "id": 1, "channel": c}]))
            .await;
        assert_eq!(replies[0]["type"], "subscribed", "{replies:?}");
        lps.push(lp);
    }
    let both = set(&[&lps[0].public_client, &lps[1].public_client]);
    assert_eq!(listed(&a, c).await, both);
    // One who may ask without subscribing (its token's presence claim).
    let (mut asker, _) = connect(&a, "ask").await;

    redis.kill();
    a.wait_ready(false).await;
    let (status, body) = api_presence(&a, c).await;
    assert_eq!(
        (status, &body["error"]),
        (503, &json!("unavailable")),
        "{body}"
    );
    asker
        .send(json!({"type": "presence", "id": 1, "channel": c}))
        .await;
    let reply = asker.recv().await;
    assert_eq!(
        (&reply["type"], &reply["code"]),
        (&json!("error"), &json!("unavailable")),
        "{reply}"
    );
    asker
        .send(json!({"type": "presence_stats", "id": 2, "channel": c}))
        .await;
    assert_eq!(asker.recv().await["code"], "unavailable");

    // Back, empty: every node adds its clients again; until they have, the
    // answer is `unavailable` rather than a partial list.
    redis.restart_empty().await;
    for n in [&a, &b] {
        eventually("presence whole again", || async {
            let (status, body) = api_presence(n, c).await;
            assert!(
                status == 200 || (status == 503 && body["error"] == "unavailable"),
                "{status} {body}"
            );
            listed(n, c).await == both
        })
        .await;
    }
    assert_eq!(publish(&a, c, json!("after")).await["offset"], 1);
}

#[tokio::test]
async fn a_drained_node_writes_its_clients_leaves_before_it_exits() {
    let redis = RedisServer::start().await;
    // A TTL far longer than the test: the leave cannot come from expiry.
    let long = [
        "--config",
        RULES.as_str(),
        "--jwt-secret",
        SECRET,
        "--presence-ttl",
        "1h",
    ];
    let a = node_with(&redis, &long).await;
    let mut b = node_with(&redis, &long).await;
    let c = "chat:drain";
    let (mut ann, ann_id) = present(&a, "ann", c).await;
    // A long-polling client: the drain drops it at once, so B exits right
    // after queueing its leave.
    let bearer = format!("Bearer {}", token("bob"));
    let (lp, _) = Lp::open_with(b.addr(), &[("Authorization", &bearer)]).await;
    let replies = lp
        .send(json!([{"type": "subscribe", "id": 1, "channel": c}]))
        .await;
    assert_eq!(replies[0]["type"], "subscribed", "{replies:?}");
    let bob_id = lp.public_client.clone();
    assert_eq!(ann.recv().await, event("join", c, &bob_id, "bob"));

    b.server.signal("TERM");
    let status = tokio::time::timeout(tether_test_util::STEP, b.server.child.wait())
        .await
        .expect("B exits after its drain")
        .unwrap();
    assert!(status.success(), "{status}");
    // The leave was written before B exited: it is there already.
    assert_eq!(listed(&a, c).await, set(&[&ann_id]));
    assert_eq!(ann.recv().await, event("leave", c, &bob_id, "bob"));
}
