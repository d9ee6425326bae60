//! Presence on one node (docs/presence.md): every session subscribed to a
//! channel whose rule says `presence = true` is listed with its client id,
//! user and `info`, from the join to the leave — unsubscribe, disconnect,
//! a long-polling session's expiry; subscribers and tokens whose `presence`
//! claim names the channel may ask, others are `forbidden`; the API answers
//! the same; answers are bounded (1,000 entries, 1 KiB of `info`) and a
//! bystander on 127.0.0.2 is served throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use tether_server::{config, Config};
use tether_test_util::{
    attack::Bystander, eventually, http, longpoll::Lp, ws::WsClient, TestServer, STEP,
};

const SECRET: &str = "presence-test-secret";
const API_KEY: &str = "presence-api-key";

/// The rule docs/presence.md shows, read from that file.
fn rules() -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/presence.md"
    ))
    .unwrap();
    let start = doc
        .find("```toml\n")
        .expect("a toml block in docs/presence.md")
        + 8;
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_owned()
}

/// The rules above in a file, as `tether serve --config` reads them. The
/// API key is left out where a bystander publishes through the API.
fn config(flags: &[(&str, &str)]) -> Config {
    let dir = std::env::temp_dir().join(format!("tether-presence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("presence.toml");
    std::fs::write(&file, rules()).unwrap();
    let mut all = vec![("listen", "127.0.0.1:0"), ("jwt-secret", SECRET)];
    all.extend_from_slice(flags);
    let flags: Vec<(String, String)> = all
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config::load(Some(&file), |_| None, &flags).unwrap()
}

fn token(claims: Value) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let mut claims = claims;
    claims["exp"] = json!(exp);
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

async fn ws(server: &TestServer, token: &str) -> (WsClient, String) {
    let (ws, welcome) = WsClient::tether(&server.ws_url(&format!("/ws?token={token}"))).await;
    (ws, welcome["client"].as_str().unwrap().to_owned())
}

async fn api(server: &TestServer, route: &str, channel: &str, key: Option<&str>) -> (u16, Value) {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("Authorization", b.as_str()))
        .collect();
    let path = format!("/api/{route}?channel={channel}");
    let res = http::request(server.addr, "GET", &path, &headers, "").await;
    (res.status, res.json())
}

async fn stats(server: &TestServer, channel: &str) -> (u64, u64) {
    let (status, body) = api(server, "presence_stats", channel, Some(API_KEY)).await;
    assert_eq!(status, 200, "{body}");
    (
        body["clients"].as_u64().unwrap(),
        body["users"].as_u64().unwrap(),
    )
}

async fn entries_gauge(server: &TestServer) -> f64 {
    http::metric(server.addr, "tether_presence_entries", &[]).await
}

async fn upgrade(server: &TestServer, token: &str) -> http::HttpResponse {
    let path = format!("/ws?token={token}");
    let local = std::net::IpAddr::from([127, 0, 0, 1]);
    http::upgrade_with(local, server.addr, &path, &[]).await.0
}

#[track_caller]
fn error(reply: &Value, id: u64, code: &str) -> String {
    assert_eq!(
        (&reply["type"], &reply["id"], &reply["code"]),
        (&json!("error"), &json!(id), &json!(code)),
        "{reply}"
    );
    reply["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn present_clients_are_listed_counted_and_removed_when_they_leave() {
    let server = TestServer::start_with(config(&[("api-key", API_KEY)])).await;
    let ann = token(json!({"sub": "ann", "info": {"name": "Ann"}}));
    let bob = token(json!({"sub": "bob"}));

    // Three clients of ann (two WebSockets, one long poll), one of bob.
    let (mut a1, a1_id) = ws(&server, &ann).await;
    let (mut a2, a2_id) = ws(&server, &ann).await;
    let (mut b1, b1_id) = ws(&server, &bob).await;
    let ann_bearer = format!("Bearer {ann}");
    let (lp, _) = Lp::open_with(server.addr, &[("Authorization", &ann_bearer)]).await;
    for c in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(c.subscribe(1, "room:1", None).await["type"], "subscribed");
    }
    let replies = lp
        .send(json!([{"type": "subscribe", "id": 1, "channel": "room:1"}]))
        .await;
    assert_eq!(replies[0]["type"], "subscribed", "{replies:?}");

    a1.send(json!({"type": "presence", "id": 2, "channel": "room:1"}))
        .await;
    let list = a1.recv().await;
    assert_eq!(
        (&list["type"], &list["id"], &list["channel"]),
        (&json!("presence"), &json!(2), &json!("room:1")),
        "{list}"
    );
    let clients = list["clients"].as_array().unwrap();
    let ids: BTreeSet<&str> = clients
        .iter()
        .map(|c| c["client"].as_str().unwrap())
        .collect();
    let want: BTreeSet<&str> = [&a1_id, &a2_id, &b1_id, &lp.public_client]
        .into_iter()
        .map(String::as_str)
        .collect();
    assert_eq!(ids, want, "every welcome's client id, /ws and /lp/ alike");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for c in clients {
        let joined = c["joined_at_ms"].as_u64().unwrap();
        assert!(
            now_ms - STEP.as_millis() as u64 <= joined && joined <= now_ms,
            "{c}"
        );
        if c["client"] == b1_id.as_str() {
            assert_eq!(c["user"], "bob");
            assert!(c.get("info").is_none(), "no info claim, no info: {c}");
        } else {
            assert_eq!(
                (&c["user"], &c["info"]),
                (&json!("ann"), &json!({"name": "Ann"})),
                "{c}"
            );
        }
    }
    b1.send(json!({"type": "presence_stats", "id": 3, "channel": "room:1"}))
        .await;
    assert_eq!(
        b1.recv().await,
        json!({"type": "presence_stats", "id": 3, "channel": "room:1", "clients": 4, "users": 2})
    );
    assert_eq!(entries_gauge(&server).await, 4.0);

    // The API answers the same, with the API key only.
    let (status, body) = api(&server, "presence", "room:1", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = api(&server, "presence_stats", "room:1", Some("wrong")).await;
    assert_eq!(status, 401);
    let (status, body) = api(&server, "presence", "room:1", Some(API_KEY)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["channel"], "room:1");
    assert_eq!(body["clients"].as_array().unwrap().len(), 4, "{body}");
    assert!(
        body.get("type").is_none() && body.get("id").is_none(),
        "{body}"
    );
    assert_eq!(stats(&server, "room:1").await, (4, 2));
    let (status, body) = api(&server, "presence", "lobby", Some(API_KEY)).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("presence is not enabled for channel \"lobby\""),
        "{body}"
    );
    let (status, body) = api(&server, "presence", "bad%20name", Some(API_KEY)).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_channel")),
        "{body}"
    );

    // An unsubscribe removes the entry at once.
    a1.send(json!({"type": "unsubscribe", "id": 4, "channel": "room:1"}))
        .await;
    assert_eq!(a1.recv().await["type"], "unsubscribed");
    assert_eq!(stats(&server, "room:1").await, (3, 2));
    // A disconnect removes it once the session has ended.
    drop(a2);
    eventually("the disconnected client leaves presence", || async {
        stats(&server, "room:1").await == (2, 2)
    })
    .await;
    // A long-polling unsubscribe, then bob's: nobody is left, nothing is held.
    let replies = lp
        .send(json!([{"type": "unsubscribe", "id": 2, "channel": "room:1"}]))
        .await;
    assert_eq!(replies[0]["type"], "unsubscribed", "{replies:?}");
    assert_eq!(stats(&server, "room:1").await, (1, 1));
    b1.send(json!({"type": "unsubscribe", "id": 5, "channel": "room:1"}))
        .await;
    assert_eq!(b1.recv().await["type"], "unsubscribed");
    assert_eq!(stats(&server, "room:1").await, (0, 0));
    assert_eq!(entries_gauge(&server).await, 0.0);
    server.shutdown().await;
}

#[tokio::test]
async fn only_subscribers_and_the_presence_claim_may_ask_and_only_where_presence_is_on() {
    let server = TestServer::start_with(config(&[])).await;
    let (mut member, _) = ws(&server, &token(json!({"sub": "m"}))).await;
    assert_eq!(
        member.subscribe(1, "room:2", None).await["type"],
        "subscribed"
    );
    assert_eq!(
        member.subscribe(2, "lobby", None).await["type"],
        "subscribed"
    );

    // A subscriber of a channel without presence: the documented refusal.
    member
        .send(json!({"type": "presence", "id": 3, "channel": "lobby"}))
        .await;
    let message = error(&member.recv().await, 3, "bad_request");
    assert_eq!(message, "presence is not enabled for channel \"lobby\" (a [[channels]] rule with presence = true; docs/presence.md)");
    member
        .send(json!({"type": "presence_stats", "id": 4, "channel": "lobby"}))
        .await;
    error(&member.recv().await, 4, "bad_request");

    // Not subscribed, no claim: forbidden, both questions.
    let (mut outsider, _) = ws(&server, &token(json!({"sub": "o"}))).await;
    outsider
        .send(json!({"type": "presence", "id": 1, "channel": "room:2"}))
        .await;
    assert!(error(&outsider.recv().await, 1, "forbidden").contains("presence claim"));
    outsider
        .send(json!({"type": "presence_stats", "id": 2, "channel": "room:2"}))
        .await;
    error(&outsider.recv().await, 2, "forbidden");
    // Still connected: a refusal is an answer, not a cut.
    outsider.send(json!({"type": "ping"})).await;
    assert_eq!(outsider.recv().await["type"], "pong");

    // Not subscribed, but the claim names the channel's pattern.
    let (mut watcher, _) = ws(&server, &token(json!({"sub": "w", "presence": ["room:*"]}))).await;
    watcher
        .send(json!({"type": "presence", "id": 1, "channel": "room:2"}))
        .await;
    let list = watcher.recv().await;
    assert_eq!(list["type"], "presence", "{list}");
    assert_eq!(
        list["clients"].as_array().unwrap().len(),
        1,
        "the watcher is not present: {list}"
    );
    watcher
        .send(json!({"type": "presence_stats", "id": 2, "channel": "room:2"}))
        .await;
    assert_eq!(watcher.recv().await["clients"], 1);
    // The claim does not reach other channels.
    watcher
        .send(json!({"type": "presence", "id": 3, "channel": "roomy"}))
        .await;
    error(&watcher.recv().await, 3, "bad_request");

    // Long polling: the same engine, the same answers.
    let bearer = format!("Bearer {}", token(json!({"sub": "o"})));
    let (lp, _) = Lp::open_with(server.addr, &[("Authorization", &bearer)]).await;
    let replies = lp
        .send(json!([
            {"type": "presence", "id": 1, "channel": "room:2"},
            {"type": "subscribe", "id": 2, "channel": "room:2"},
            {"type": "presence_stats", "id": 3, "channel": "room:2"},
        ]))
        .await;
    error(&replies[0], 1, "forbidden");
    assert_eq!(
        replies[2],
        json!({"type": "presence_stats", "id": 3, "channel": "room:2", "clients": 2, "users": 2})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_long_polling_session_that_stops_polling_leaves_presence() {
    let server = TestServer::start_with(config(&[
        ("ping-interval", "200ms"),
        ("pong-timeout", "200ms"),
    ]))
    .await;
    let bearer = format!("Bearer {}", token(json!({"sub": "p"})));
    let (lp, _) = Lp::open_with(server.addr, &[("Authorization", &bearer)]).await;
    let replies = lp
        .send(json!([{"type": "subscribe", "id": 1, "channel": "room:3"}]))
        .await;
    assert_eq!(replies[0]["type"], "subscribed", "{replies:?}");
    assert_eq!(stats(&server, "room:3").await, (1, 1));
    eventually(
        "the silent long-polling session expires out of presence",
        || async {
            stats(&server, "room:3").await == (0, 0) && entries_gauge(&server).await == 0.0
        },
    )
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_token_with_an_info_claim_over_1_kib_is_refused_at_the_gate() {
    let server = TestServer::start_with(config(&[])).await;
    let ok = token(json!({"sub": "b"}));
    let mut bystander =
        Bystander::join_path(server.addr, &format!("/ws?token={ok}"), "room:bystander").await;
    let big = token(json!({"sub": "x", "info": {"bio": "x".repeat(1100)}}));
    let res = upgrade(&server, &big).await;
    assert_eq!(res.status, 401, "{res:?}");
    assert!(
        res.body
            .contains("`info` claim is 1110 bytes as JSON; at most 1024"),
        "{}",
        res.body
    );
    let res = http::request(
        server.addr,
        "POST",
        &format!("/lp/open?token={big}"),
        &[],
        "",
    )
    .await;
    assert_eq!(res.status, 401, "{res:?}");
    assert!(res.body.contains("at most 1024"), "{}", res.body);
    let not_object = token(json!({"sub": "x", "info": "Ann"}));
    let res = upgrade(&server, &not_object).await;
    assert_eq!(res.status, 401, "{res:?}");
    assert!(res.body.contains("must be a JSON object"), "{}", res.body);
    // At the bound exactly: accepted.
    let fits = token(json!({"sub": "x", "info": {"bio": "x".repeat(1014)}}));
    let (_ws, _) = ws(&server, &fits).await;
    bystander.still_served().await;
    server.shutdown().await;
}

/// More than `PRESENCE_ANSWER_MAX` present: `presence` is refused with the
/// count, `presence_stats` still answers. 1,000 long-polling sessions and
/// one WebSocket, in bounded batches.
#[tokio::test]
async fn over_1000_present_answers_the_count_and_stats_still_work() {
    let server = TestServer::start_with(config(&[
        ("max-long-poll-sessions-per-ip", "2000"),
        ("max-connections-per-ip", "2000"),
        ("max-subscriptions-per-ip", "2000"),
        ("handshake-rate-per-ip", "100000"),
        ("handshake-burst-per-ip", "100000"),
    ]))
    .await;
    let user = token(json!({"sub": "crowd"}));
    let mut bystander =
        Bystander::join_path(server.addr, &format!("/ws?token={user}"), "room:bystander").await;
    let bearer = format!("Bearer {user}");
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (addr, bearer) = (server.addr, bearer.clone());
            batch.spawn(async move {
                let (lp, _) = Lp::open_with(addr, &[("Authorization", &bearer)]).await;
                let r = lp
                    .send(json!([{"type": "subscribe", "id": 1, "channel": "room:big"}]))
                    .await;
                assert_eq!(r[0]["type"], "subscribed", "{r:?}");
                lp
            });
        }
        while let Some(joined) = batch.join_next().await {
            joined.unwrap();
        }
        assert!(started.elapsed() < 6 * STEP, "1,000 joins took too long");
    }
    let (mut ws, _) = ws(&server, &user).await;
    assert_eq!(
        ws.subscribe(1, "room:big", None).await["type"],
        "subscribed"
    );
    ws.send(json!({"type": "presence", "id": 2, "channel": "room:big"}))
        .await;
    let message = error(&ws.recv().await, 2, "bad_request");
    assert_eq!(
        message,
        "1001 clients are present in \"room:big\"; ask presence_stats"
    );
    ws.send(json!({"type": "presence_stats", "id": 3, "channel": "room:big"}))
        .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "presence_stats", "id": 3, "channel": "room:big", "clients": 1001, "users": 1})
    );
    let (status, body) = api(&server, "presence", "room:big", Some(API_KEY)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "1001 clients are present in \"room:big\"; ask presence_stats"
    );
    assert_eq!(stats(&server, "room:big").await, (1001, 1));
    // One fewer fits the cap: the list is answered again.
    ws.send(json!({"type": "unsubscribe", "id": 4, "channel": "room:big"}))
        .await;
    assert_eq!(ws.recv().await["type"], "unsubscribed");
    let (status, body) = api(&server, "presence", "room:big", Some(API_KEY)).await;
    assert_eq!(
        (status, body["clients"].as_array().map(Vec::len)),
        (200, Some(1000))
    );
    bystander.still_served().await;
    server.shutdown().await;
}

/// A long-polling session whose refreshed token no longer allows a held
/// presence channel leaves it at once, and so leaves its presence.
#[tokio::test]
async fn a_refreshed_token_that_revokes_the_channel_removes_the_entry() {
    let server = TestServer::start_with(config(&[])).await;
    let open = format!("Bearer {}", token(json!({"sub": "r"})));
    let (lp, _) = Lp::open_with(server.addr, &[("Authorization", &open)]).await;
    let replies = lp
        .send(json!([
            {"type": "subscribe", "id": 1, "channel": "room:4"},
            {"type": "subscribe", "id": 2, "channel": "room:5"},
        ]))
        .await;
    assert!(
        replies.iter().all(|r| r["type"] == "subscribed"),
        "{replies:?}"
    );
    assert_eq!(stats(&server, "room:4").await, (1, 1));

    let narrower = format!(
        "Bearer {}",
        token(json!({"sub": "r", "subscribe": ["room:5"]}))
    );
    let refreshed = Lp {
        headers: vec![("Authorization".into(), narrower)],
        ..lp.clone()
    };
    assert_eq!(
        refreshed.send(json!([{"type": "ping"}])).await,
        vec![json!({"type": "pong"})]
    );
    assert_eq!(
        stats(&server, "room:4").await,
        (0, 0),
        "revoked: gone at once"
    );
    assert_eq!(
        stats(&server, "room:5").await,
        (1, 1),
        "still allowed: kept"
    );
    assert_eq!(entries_gauge(&server).await, 1.0);
    server.shutdown().await;
}
