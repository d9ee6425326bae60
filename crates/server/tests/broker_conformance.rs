//! One conformance suite for every broker: the memory broker and the Redis
//! broker must answer the same requests the same way (offsets, epochs,
//! recovery, idempotency, history bounds, delivery). Each case runs once
//! per broker, through a real `tether serve`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

use serde_json::json;
use support::{data_of, publish, publish_key, Node};
use tether_test_util::{process::ServerProcess, redis::RedisServer, ws::WsClient};

/// A node on the broker under test (and its Redis, kept alive with it).
struct Under {
    node: Node,
    _redis: Option<RedisServer>,
}

async fn memory(extra: &[&str]) -> Under {
    let server = ServerProcess::start(extra).await;
    Under {
        node: Node { server },
        _redis: None,
    }
}

async fn redis(extra: &[&str]) -> Under {
    let redis = RedisServer::start().await;
    let node = support::node_with(&redis, extra).await;
    Under {
        node,
        _redis: Some(redis),
    }
}

/// Runs `$case(&Node)` against each broker, as two tests.
macro_rules! conformance {
    ($case:ident, $flags:expr) => {
        mod $case {
            #[tokio::test]
            async fn memory() {
                let under = super::memory($flags).await;
                super::$case(&under.node).await;
            }
            #[tokio::test]
            async fn redis() {
                let under = super::redis($flags).await;
                super::$case(&under.node).await;
            }
        }
    };
}

conformance!(offsets_count_from_one_in_one_epoch, &[]);
async fn offsets_count_from_one_in_one_epoch(n: &Node) {
    let first = publish(n, "c", json!(1)).await;
    assert_eq!(first["offset"], 1);
    for i in 2..=5 {
        let next = publish(n, "c", json!(i)).await;
        assert_eq!(next["offset"], i);
        assert_eq!(next["epoch"], first["epoch"]);
    }
    // Channels count apart.
    assert_eq!(publish(n, "other", json!(1)).await["offset"], 1);
}

conformance!(
    a_fresh_channel_is_at_zero_and_recovering_from_zero_is_exact,
    &[]
);
async fn a_fresh_channel_is_at_zero_and_recovering_from_zero_is_exact(n: &Node) {
    let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
    let reply = ws.subscribe(1, "fresh", None).await;
    assert_eq!(
        (reply["offset"].clone(), reply["recovered"].clone()),
        (json!(0), json!(false))
    );
    let epoch = reply["epoch"].as_str().unwrap().to_owned();
    let (mut again, _) = WsClient::tether(&n.ws_url()).await;
    let reply = again.subscribe(1, "fresh", Some((&epoch, 0))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["epoch"], epoch.as_str());
}

conformance!(recovery_returns_exactly_the_missed_publications, &[]);
async fn recovery_returns_exactly_the_missed_publications(n: &Node) {
    let mut epoch = String::new();
    for i in 1..=6 {
        epoch = publish(n, "r", json!({"i": i})).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
    let reply = ws.subscribe(1, "r", Some((&epoch, 3))).await;
    assert_eq!(reply["recovered"], true);
    assert_eq!(reply["offset"], 6);
    assert_eq!(
        data_of(&reply),
        vec![json!({"i": 4}), json!({"i": 5}), json!({"i": 6})]
    );
    let offsets: Vec<_> = reply["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [4, 5, 6]);
    // At the top: recovered, nothing to replay.
    let (mut top, _) = WsClient::tether(&n.ws_url()).await;
    let reply = top.subscribe(1, "r", Some((&epoch, 6))).await;
    assert_eq!(reply["recovered"], true);
    assert!(data_of(&reply).is_empty());
}

conformance!(
    recovery_is_refused_for_another_epoch_or_a_future_offset,
    &[]
);
async fn recovery_is_refused_for_another_epoch_or_a_future_offset(n: &Node) {
    let epoch = publish(n, "x", json!(1)).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for (e, o) in [("not-the-epoch", 0), (epoch.as_str(), 5)] {
        let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
        let reply = ws.subscribe(1, "x", Some((e, o))).await;
        assert_eq!(reply["recovered"], false, "{e} {o}: {reply}");
        assert!(data_of(&reply).is_empty());
        assert_eq!(reply["offset"], 1);
        assert_eq!(reply["epoch"], epoch.as_str());
    }
}

conformance!(history_holds_at_most_history_size, &["--history-size", "3"]);
async fn history_holds_at_most_history_size(n: &Node) {
    let mut epoch = String::new();
    for i in 1..=6 {
        epoch = publish(n, "h", json!(i)).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
    let reply = ws.subscribe(1, "h", Some((&epoch, 1))).await;
    assert_eq!(
        reply["recovered"], false,
        "offsets 2 and 3 are gone: {reply}"
    );
    let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
    let reply = ws.subscribe(1, "h", Some((&epoch, 3))).await;
    assert_eq!(reply["recovered"], true, "the last three are held: {reply}");
    assert_eq!(data_of(&reply), vec![json!(4), json!(5), json!(6)]);
}

conformance!(an_idempotency_key_makes_a_retry_a_duplicate, &[]);
async fn an_idempotency_key_makes_a_retry_a_duplicate(n: &Node) {
    let first = publish_key(n, "k", json!("a"), "key-1").await;
    let again = publish_key(n, "k", json!("a"), "key-1").await;
    assert_eq!(again, first);
    let other = publish_key(n, "k", json!("b"), "key-2").await;
    assert_eq!(other["offset"], 2);
    // The duplicate stored nothing: history has two entries.
    let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
    let reply = ws
        .subscribe(1, "k", Some((first["epoch"].as_str().unwrap(), 0)))
        .await;
    assert_eq!(data_of(&reply), vec![json!("a"), json!("b")]);
}

conformance!(subscribers_receive_in_order_until_they_unsubscribe, &[]);
async fn subscribers_receive_in_order_until_they_unsubscribe(n: &Node) {
    let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
    ws.subscribe(1, "live", None).await;
    for i in 1..=20 {
        publish(n, "live", json!(i)).await;
    }
    let got = support::offsets_in_order(&mut ws, "live", 20).await;
    assert_eq!(got.last().unwrap().1, json!(20));
    ws.send(json!({"type": "unsubscribe", "id": 2, "channel": "live"}))
        .await;
    assert_eq!(ws.recv_type("unsubscribed").await["id"], 2);
    publish(n, "live", json!(21)).await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong", "nothing after unsubscribe");
}

conformance!(a_long_replay_comes_in_bounded_pieces, &[]);
async fn a_long_replay_comes_in_bounded_pieces(n: &Node) {
    use tether_test_util::longpoll::{positions, Lp};
    // 12 publications of 30 KiB: more than a `subscribed` reply (64 KiB)
    // and than a poll answer (256 KiB) carry.
    let data = json!("r".repeat(30 * 1024));
    let mut epoch = String::new();
    for _ in 0..12 {
        epoch = publish(n, "long", data.clone()).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let (lp, _) = Lp::open(n.addr()).await;
    let subscribe = json!([{"type": "subscribe", "id": 1, "channel": "long",
        "recover": {"epoch": epoch, "offset": 0}}]);
    let reply = lp.send(subscribe).await.remove(0);
    assert_eq!(reply["recovered"], true, "{reply}");
    let replayed = reply["publications"].as_array().unwrap();
    assert_eq!(replayed.len(), 2, "64 KiB hold two: {}", replayed.len());
    let mut at = reply["offset"].as_u64().unwrap();
    assert_eq!(at, 2, "the reply leaves the client after what it carries");
    let mut sizes = Vec::new();
    while at < 12 {
        let answer = lp.poll(positions(&[("long", &epoch, at)])).await;
        sizes.push(answer.len());
        for m in answer {
            assert_eq!(m["offset"], at + 1, "every offset once, in order: {m}");
            at += 1;
        }
    }
    // 256 KiB hold eight 30 KiB frames.
    assert_eq!(sizes, [8, 2]);
}

/// `[[channels]]` rules for the case below: per-channel history size and
/// TTL, beside the node's default (`--history-size 100`, `--history-ttl 10m`).
const RULES: &str = "
[[channels]]
pattern = \"short:*\"
history_size = 2

[[channels]]
pattern = \"none\"
history_size = 0

[[channels]]
pattern = \"brief:*\"
history_ttl = \"3s\"
";

/// The rules in a file of this test process, for `--config`.
static RULES_FILE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let path = std::env::temp_dir().join(format!("tether-rules-{}.toml", std::process::id()));
    std::fs::write(&path, RULES).unwrap();
    path.to_str().unwrap().to_owned()
});

/// A fresh subscription to `channel` recovering from `offset` of `epoch`.
async fn recover_from(n: &Node, channel: &str, epoch: &str, offset: u64) -> serde_json::Value {
    let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
    ws.subscribe(1, channel, Some((epoch, offset))).await
}

conformance!(
    a_channel_rule_sets_the_history_size_and_ttl_of_its_channels,
    &["--config", super::RULES_FILE.as_str()]
);
async fn a_channel_rule_sets_the_history_size_and_ttl_of_its_channels(n: &Node) {
    let mut epochs = std::collections::HashMap::new();
    for channel in ["short:a", "plain", "none", "brief:a"] {
        for i in 1..=5 {
            let answer = publish(n, channel, json!(i)).await;
            epochs.insert(channel, answer["epoch"].as_str().unwrap().to_owned());
        }
    }
    let reply = recover_from(n, "short:a", &epochs["short:a"], 2).await;
    assert_eq!(reply["recovered"], false, "short:* keeps two: {reply}");
    let reply = recover_from(n, "short:a", &epochs["short:a"], 3).await;
    assert_eq!(data_of(&reply), vec![json!(4), json!(5)], "{reply}");
    let reply = recover_from(n, "none", &epochs["none"], 4).await;
    assert_eq!(reply["recovered"], false, "none keeps nothing: {reply}");
    let reply = recover_from(n, "plain", &epochs["plain"], 0).await;
    assert_eq!(
        data_of(&reply).len(),
        5,
        "no rule: the node's size: {reply}"
    );
    let reply = recover_from(n, "brief:a", &epochs["brief:a"], 0).await;
    assert_eq!(data_of(&reply).len(), 5, "brief:* within its TTL: {reply}");

    // brief:*'s history expires after its rule's 3s; checked every 200 ms
    // (a connection each: well inside the handshake rate) until it has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let reply = recover_from(n, "brief:a", &epochs["brief:a"], 0).await;
        if reply["recovered"] == false {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "brief:a never expired: {reply}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let reply = recover_from(n, "plain", &epochs["plain"], 0).await;
    assert_eq!(
        data_of(&reply).len(),
        5,
        "the node's 10m still holds: {reply}"
    );
}

conformance!(
    only_a_publish_that_creates_a_channel_pays_for_it,
    &[
        "--new-channel-rate-per-ip",
        "0.01",
        "--new-channel-burst-per-ip",
        "3"
    ]
);
async fn only_a_publish_that_creates_a_channel_pays_for_it(n: &Node) {
    use tether_test_util::http;
    for c in ["n1", "n2", "n3"] {
        assert_eq!(publish(n, c, json!(1)).await["offset"], 1);
    }
    // The fourth new channel finds the broker told not to create it.
    let (status, answer) = http::try_publish(n.addr(), &json!({"channel": "n4", "data": 1})).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (429, Some("rate_limited")),
        "{answer}"
    );
    // Existing channels are not charged, however often.
    for round in 2..=5 {
        for c in ["n1", "n2", "n3"] {
            assert_eq!(publish(n, c, json!(round)).await["offset"], round);
        }
    }
    let (status, _) = http::try_publish(n.addr(), &json!({"channel": "n4", "data": 1})).await;
    assert_eq!(status, 429, "still no new channel for this address");
}

conformance!(
    a_long_replay_on_a_connection_arrives_whole_then_live,
    &[
        "--history-size",
        "200",
        "--history-max-channel-bytes",
        "16777216"
    ]
);
/// A `/ws` subscribe recovering 100 × 60 KiB: the reply carries what fits,
/// the rest follows as messages read from history a page per turn, every
/// offset once and in order, then what was published meanwhile, from the log.
async fn a_long_replay_on_a_connection_arrives_whole_then_live(n: &Node) {
    let data = json!("r".repeat(60 * 1024));
    let mut epoch = String::new();
    for _ in 0..100 {
        epoch = publish(n, "long", data.clone()).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
    let reply = ws.subscribe(1, "long", Some((&epoch, 0))).await;
    assert_eq!(reply["recovered"], true, "{}", reply["offset"]);
    let mut at = reply["offset"].as_u64().unwrap();
    let carried = reply["publications"].as_array().unwrap();
    assert!(
        carried.len() < 100,
        "the reply is bounded: {}",
        carried.len()
    );
    for (i, p) in carried.iter().enumerate() {
        assert_eq!(p["offset"], i as u64 + 1);
    }
    assert_eq!(at, carried.len() as u64);
    let mut published_meanwhile = false;
    while at < 103 {
        let m = ws.recv_type("message").await;
        assert_eq!(m["channel"], "long");
        assert_eq!(m["offset"], at + 1, "every offset once, in order");
        at += 1;
        if !published_meanwhile {
            // Live publications during the replay come after it, no gap.
            published_meanwhile = true;
            for i in 0..3 {
                publish(n, "long", json!(i)).await;
            }
        }
        if at > 100 {
            assert_eq!(m["data"], json!(at - 101));
        }
    }
    assert!(ws
        .try_recv(std::time::Duration::from_millis(200))
        .await
        .is_none());
}

/// Presence with join/leave on `chat:*` (docs/presence.md), tokens signed
/// with [`SECRET`] (no API key: the API is open on loopback).
const PRESENCE_RULES: &str = "
[[channels]]
pattern = \"chat:*\"
presence = true
join_leave = true
";
const SECRET: &str = "conformance-secret";

static PRESENCE_FILE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let path = std::env::temp_dir().join(format!("tether-presence-{}.toml", std::process::id()));
    std::fs::write(&path, PRESENCE_RULES).unwrap();
    path.to_str().unwrap().to_owned()
});

/// The flags of the presence cases: the rules, JWT, and a 1s + 1s
/// heartbeat (a long poll that stops expires within 2s).
macro_rules! presence_flags {
    () => {
        &[
            "--config",
            super::PRESENCE_FILE.as_str(),
            "--jwt-secret",
            super::SECRET,
            "--ping-interval",
            "1s",
            "--pong-timeout",
            "1s",
        ]
    };
}

fn token(sub: &str) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"sub": sub, "info": {"name": sub}, "publish": ["chat:*"], "exp": exp});
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

fn event(kind: &str, channel: &str, client: &str, user: &str) -> serde_json::Value {
    json!({"type": kind, "channel": channel, "client": client, "user": user, "info": {"name": user}})
}

/// A connection of `sub`, subscribed to `channel` (its own join read).
async fn present(n: &Node, sub: &str, channel: &str) -> (WsClient, String) {
    let url = format!("{}?token={}", n.ws_url(), token(sub));
    let (mut ws, welcome) = WsClient::tether(&url).await;
    let id = welcome["client"].as_str().unwrap().to_owned();
    assert_eq!(ws.subscribe(1, channel, None).await["type"], "subscribed");
    assert_eq!(ws.recv().await, event("join", channel, &id, sub));
    (ws, id)
}

/// `GET /api/presence_stats`: (clients, users).
async fn api_stats(n: &Node, channel: &str) -> (u64, u64) {
    let path = format!("/api/presence_stats?channel={channel}");
    let res = tether_test_util::http::request(n.addr(), "GET", &path, &[], "").await;
    let body = res.json();
    assert_eq!(res.status, 200, "{body}");
    (
        body["clients"].as_u64().unwrap(),
        body["users"].as_u64().unwrap(),
    )
}

conformance!(
    presence_lists_and_counts_whoever_is_subscribed,
    presence_flags!()
);
async fn presence_lists_and_counts_whoever_is_subscribed(n: &Node) {
    let (mut a1, a1_id) = present(n, "ann", "chat:p").await;
    let (a2, a2_id) = present(n, "ann", "chat:p").await;
    let (mut b, b_id) = present(n, "bob", "chat:p").await;
    a1.send(json!({"type": "presence", "id": 2, "channel": "chat:p"}))
        .await;
    let reply = a1.recv_type("presence").await;
    let mut clients: Vec<(String, String)> = reply["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["client"].as_str().unwrap().into(),
                c["user"].as_str().unwrap().into(),
            )
        })
        .collect();
    clients.sort();
    let mut want = vec![
        (a1_id.clone(), "ann".to_owned()),
        (a2_id, "ann".into()),
        (b_id, "bob".into()),
    ];
    want.sort();
    assert_eq!(clients, want, "{reply}");
    assert_eq!(
        reply["clients"][0]["info"],
        json!({"name": "ann"}),
        "{reply}"
    );
    a1.send(json!({"type": "presence_stats", "id": 3, "channel": "chat:p"}))
        .await;
    let stats = a1.recv_type("presence_stats").await;
    assert_eq!((&stats["clients"], &stats["users"]), (&json!(3), &json!(2)));
    assert_eq!(api_stats(n, "chat:p").await, (3, 2));

    // An unsubscribe is reflected by the next answer on the node.
    b.send(json!({"type": "unsubscribe", "id": 2, "channel": "chat:p"}))
        .await;
    b.recv_type("unsubscribed").await;
    assert_eq!(api_stats(n, "chat:p").await, (2, 1));
    // A closed connection leaves too.
    drop(a2);
    tether_test_util::eventually("a2 gone", || async {
        api_stats(n, "chat:p").await == (1, 1)
    })
    .await;
    a1.send(json!({"type": "presence", "id": 4, "channel": "chat:p"}))
        .await;
    let reply = a1.recv_type("presence").await;
    assert_eq!(reply["clients"][0]["client"], a1_id.as_str(), "{reply}");
    assert_eq!(reply["clients"].as_array().unwrap().len(), 1);
}

conformance!(
    joins_and_leaves_come_in_their_place_among_publications,
    presence_flags!()
);
async fn joins_and_leaves_come_in_their_place_among_publications(n: &Node) {
    let c = "chat:j";
    let (mut ann, _) = present(n, "ann", c).await;
    // bob subscribes and publishes at once: ann gets its join first.
    let url = format!("{}?token={}", n.ws_url(), token("bob"));
    let (mut bob, welcome) = WsClient::tether(&url).await;
    let bob_id = welcome["client"].as_str().unwrap().to_owned();
    bob.send(json!({"type": "subscribe", "id": 1, "channel": c}))
        .await;
    bob.send(json!({"type": "publish", "id": 2, "channel": c, "data": "hi"}))
        .await;
    assert_eq!(ann.recv().await, event("join", c, &bob_id, "bob"));
    assert_eq!(ann.recv().await["data"], "hi");
    bob.recv_type("ack").await;
    // bob publishes, then unsubscribes: the message, then the leave, and
    // bob gets no leave of its own.
    bob.send(json!({"type": "publish", "id": 3, "channel": c, "data": "bye"}))
        .await;
    bob.recv_type("ack").await;
    bob.send(json!({"type": "unsubscribe", "id": 4, "channel": c}))
        .await;
    bob.recv_type("unsubscribed").await;
    assert_eq!(ann.recv().await["data"], "bye");
    assert_eq!(ann.recv().await, event("leave", c, &bob_id, "bob"));
    assert!(bob
        .try_recv(std::time::Duration::from_millis(300))
        .await
        .is_none());
    // A backend publication after the leave comes after it, and nothing
    // else was sent.
    publish(n, c, json!("after")).await;
    assert_eq!(ann.recv().await["data"], "after");
    assert!(ann
        .try_recv(std::time::Duration::from_millis(300))
        .await
        .is_none());
}

conformance!(
    a_long_polling_client_that_stops_polling_leaves,
    presence_flags!()
);
async fn a_long_polling_client_that_stops_polling_leaves(n: &Node) {
    use tether_test_util::longpoll::Lp;
    let c = "chat:lp";
    let (mut ann, _) = present(n, "ann", c).await;
    let bearer = format!("Bearer {}", token("lou"));
    let (lp, _) = Lp::open_with(n.addr(), &[("Authorization", &bearer)]).await;
    let replies = lp
        .send(json!([{"type": "subscribe", "id": 1, "channel": c}]))
        .await;
    assert_eq!(replies[0]["type"], "subscribed", "{replies:?}");
    assert_eq!(ann.recv().await, event("join", c, &lp.public_client, "lou"));
    assert_eq!(api_stats(n, c).await, (2, 2));
    // It stops polling: expired after ping_interval + pong_timeout (2s).
    assert_eq!(
        ann.recv().await,
        event("leave", c, &lp.public_client, "lou")
    );
    assert_eq!(api_stats(n, c).await, (1, 1));
}
