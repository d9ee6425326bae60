//! Join and leave on one node (docs/presence.md, "Join and leave"): the
//! subscribers of a channel whose rule says `join_leave = true` receive a
//! `join` when someone becomes present and a `leave` when they stop — by
//! unsubscribing, closing, or a long-polling session's expiry — each in its
//! place among the publications; they are not in history.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::Duration;
use tether_server::{config, Config};
use tether_test_util::{longpoll::Lp, ws::WsClient, TestServer};

const SECRET: &str = "join-leave-test-secret";

/// The join/leave rule docs/presence.md shows (its second toml block).
fn rules() -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/presence.md"
    ))
    .unwrap();
    let block = doc
        .split("```toml\n")
        .nth(2)
        .expect("a second toml block in docs/presence.md");
    let rules = block[..block.find("```").unwrap()].to_owned();
    assert!(rules.contains("join_leave = true"), "{rules}");
    rules
}

fn config(flags: &[(&str, &str)]) -> Config {
    let dir = std::env::temp_dir().join(format!("tether-join-leave-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("join_leave.toml");
    std::fs::write(&file, rules()).unwrap();
    let mut all = vec![
        ("listen", "127.0.0.1:0"),
        ("jwt-secret", SECRET),
        ("ping-interval", "1s"),
        ("pong-timeout", "1s"),
    ];
    all.extend_from_slice(flags);
    let flags: Vec<(String, String)> = all
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config::load(Some(&file), |_| None, &flags).unwrap()
}

fn token(sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"sub": sub, "info": {"name": sub}, "publish": ["chat:*"], "exp": exp});
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

async fn ws(server: &TestServer, sub: &str) -> (WsClient, String) {
    let url = server.ws_url(&format!("/ws?token={}", token(sub)));
    let (ws, welcome) = WsClient::tether(&url).await;
    (ws, welcome["client"].as_str().unwrap().to_owned())
}

fn event(kind: &str, client: &str, user: &str) -> Value {
    json!({"type": kind, "channel": "chat:1", "client": client, "user": user, "info": {"name": user}})
}

/// Subscribes and reads the reply and the joiner's own join.
async fn join(c: &mut WsClient, id: u64, client: &str, user: &str) -> Value {
    let reply = c.subscribe(id, "chat:1", None).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(c.recv().await, event("join", client, user));
    reply
}

#[tokio::test]
async fn subscribers_see_joins_and_leaves_in_their_place_among_publications() {
    let server = TestServer::start_with(config(&[])).await;
    let (mut ann, ann_id) = ws(&server, "ann").await;
    join(&mut ann, 1, &ann_id, "ann").await;

    // bob joins and publishes at once: ann gets the join first.
    let (mut bob, bob_id) = ws(&server, "bob").await;
    bob.send(json!({"type": "subscribe", "id": 1, "channel": "chat:1"}))
        .await;
    bob.send(json!({"type": "publish", "id": 2, "channel": "chat:1", "data": "hi"}))
        .await;
    assert_eq!(ann.recv().await, event("join", &bob_id, "bob"));
    let message = ann.recv().await;
    assert_eq!(
        (&message["type"], &message["data"]),
        (&json!("message"), &json!("hi"))
    );
    assert_eq!(bob.recv().await["type"], "subscribed");
    assert_eq!(bob.recv().await, event("join", &bob_id, "bob"));
    // Its own publication and the ack, in whichever order the session wrote them.
    let mut kinds = vec![
        bob.recv().await["type"].clone(),
        bob.recv().await["type"].clone(),
    ];
    kinds.sort_by_key(|k| k.to_string());
    assert_eq!(kinds, [json!("ack"), json!("message")]);

    // bob unsubscribes: ann gets its leave; bob gets none of its own.
    bob.send(json!({"type": "unsubscribe", "id": 3, "channel": "chat:1"}))
        .await;
    assert_eq!(bob.recv().await["type"], "unsubscribed");
    assert_eq!(ann.recv().await, event("leave", &bob_id, "bob"));
    assert!(bob.try_recv(Duration::from_millis(200)).await.is_none());

    // cat publishes and closes: ann gets the publication, then the leave.
    let (mut cat, cat_id) = ws(&server, "cat").await;
    join(&mut cat, 1, &cat_id, "cat").await;
    assert_eq!(ann.recv().await, event("join", &cat_id, "cat"));
    cat.send(json!({"type": "publish", "id": 2, "channel": "chat:1", "data": "bye"}))
        .await;
    cat.recv_type("ack").await;
    drop(cat);
    let message = ann.recv().await;
    assert_eq!(message["data"], "bye", "{message}");
    assert_eq!(ann.recv().await, event("leave", &cat_id, "cat"));

    // Not publications: a recovery from offset 0 replays the two messages only.
    let (mut dan, dan_id) = ws(&server, "dan").await;
    let reply = dan.subscribe(1, "chat:1", None).await;
    let epoch = reply["epoch"].as_str().unwrap().to_owned();
    assert_eq!(dan.recv().await, event("join", &dan_id, "dan"));
    dan.send(json!({"type": "unsubscribe", "id": 2, "channel": "chat:1"}))
        .await;
    dan.recv_type("unsubscribed").await;
    assert_eq!(ann.recv().await, event("join", &dan_id, "dan"));
    assert_eq!(ann.recv().await, event("leave", &dan_id, "dan"));
    let reply = dan.subscribe(3, "chat:1", Some((&epoch, 0))).await;
    let replayed: Vec<&Value> = reply["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["data"])
        .collect();
    assert_eq!(replayed, [&json!("hi"), &json!("bye")], "{reply}");
    assert_eq!(dan.recv().await, event("join", &dan_id, "dan"));
}

#[tokio::test]
async fn a_long_polling_client_joins_and_its_expiry_is_a_leave() {
    let server = TestServer::start_with(config(&[])).await;
    let (mut ann, ann_id) = ws(&server, "ann").await;
    join(&mut ann, 1, &ann_id, "ann").await;

    let bearer = format!("Bearer {}", token("lou"));
    let (lp, _) = Lp::open_with(server.addr, &[("Authorization", &bearer)]).await;
    let replies = lp
        .send(json!([{"type": "subscribe", "id": 1, "channel": "chat:1"}]))
        .await;
    assert_eq!(replies[0]["type"], "subscribed", "{replies:?}");
    let joined = ann.recv().await;
    assert_eq!(joined, event("join", &lp.public_client, "lou"));
    // Others see its public id, never its credential.
    assert!(!joined.to_string().contains(&lp.client), "{joined}");
    assert_eq!(
        lp.public_client,
        tether_server::session::public_id(&lp.client)
    );
    // The long-polling client reads its own join with its next poll.
    let epoch = replies[0]["epoch"].as_str().unwrap();
    let polled = lp
        .poll(tether_test_util::longpoll::positions(&[(
            "chat:1", epoch, 0,
        )]))
        .await;
    assert!(
        polled.contains(&event("join", &lp.public_client, "lou")),
        "{polled:?}"
    );
    // It stops polling: after ping_interval + pong_timeout it is gone.
    let left = ann.recv().await;
    assert_eq!(left, event("leave", &lp.public_client, "lou"));
}

#[tokio::test]
async fn a_channel_without_join_leave_sends_none() {
    let server = TestServer::start_with(config(&[])).await;
    let (mut ann, _) = ws(&server, "ann").await;
    assert_eq!(ann.subscribe(1, "news", None).await["type"], "subscribed");
    let (mut bob, _) = ws(&server, "bob").await;
    assert_eq!(bob.subscribe(1, "news", None).await["type"], "subscribed");
    drop(bob);
    assert!(ann.try_recv(Duration::from_millis(300)).await.is_none());
}
