//! A refreshed long-polling token is held against the channels the session
//! already holds (docs/longpoll.md): a channel the new claims no longer
//! allow is left at once, and the next poll that names it answers an
//! id-less `forbidden` error for it — what another node, joining it afresh,
//! would answer — never its publications.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use tether_test_util::longpoll::{positions, Lp};
use tether_test_util::{http, TestServer};

const SECRET: &str = "lp-refresh-secret";

const FLAGS: &[(&str, &str)] = &[
    ("ping-interval", "5s"),
    ("pong-timeout", "5s"),
    ("long-poll-timeout", "300ms"),
    ("jwt-secret", SECRET),
];

/// `Authorization: Bearer` for subject `u` allowed to subscribe to `subscribe`.
fn bearer(subscribe: &[&str]) -> (String, String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "u", "exp": now + 600, "subscribe": subscribe}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    ("Authorization".into(), format!("Bearer {token}"))
}

fn with_token(lp: &Lp, header: (String, String)) -> Lp {
    Lp {
        headers: vec![header],
        ..lp.clone()
    }
}

/// Subscribes `channel` over `/lp/send`; its epoch.
async fn subscribe(lp: &Lp, id: u64, channel: &str) -> String {
    let reply = lp
        .send(json!([{"type": "subscribe", "id": id, "channel": channel}]))
        .await;
    assert_eq!(reply[0]["type"], "subscribed", "{reply:?}");
    reply[0]["epoch"].as_str().unwrap().to_owned()
}

#[track_caller]
fn forbidden_for(answer: &[Value], channel: &str) {
    assert!(
        !answer
            .iter()
            .any(|m| m["type"] == "message" && m["channel"] == channel),
        "no publication of {channel} after the refresh: {answer:?}"
    );
    let error = answer
        .iter()
        .find(|m| m["type"] == "error" && m["channel"] == channel)
        .unwrap_or_else(|| panic!("an error for {channel}: {answer:?}"));
    assert_eq!(error["code"], "forbidden", "{error}");
    assert!(error.get("id").is_none(), "id-less: {error}");
}

#[tokio::test]
async fn a_refreshed_token_without_a_held_channel_leaves_it() {
    let server = TestServer::start(FLAGS).await;
    let addr = server.addr;
    let (k, v) = bearer(&["x", "y"]);
    let (lp, _) = Lp::open_with(addr, &[(&k, &v)]).await;
    let x = subscribe(&lp, 1, "x").await;
    let y = subscribe(&lp, 2, "y").await;

    // The token is refreshed by a send: the new claims drop x.
    let refreshed = with_token(&lp, bearer(&["y"]));
    assert_eq!(
        refreshed.send(json!([{"type": "ping"}])).await,
        vec![json!({"type": "pong"})]
    );
    let stats = http::request(addr, "GET", "/api/stats", &[], "")
        .await
        .json();
    assert!(
        stats["subscribers"].get("x").is_none(),
        "x left at once: {stats}"
    );

    // A publication on x never reaches the session; the poll that still
    // names x is told it is forbidden.
    http::publish(addr, "x", json!("secret")).await;
    let answer = refreshed
        .poll(positions(&[("x", &x, 0), ("y", &y, 0)]))
        .await;
    forbidden_for(&answer, "x");
    // y is still held and served.
    http::publish(addr, "y", json!("news")).await;
    let answer = refreshed.poll(positions(&[("y", &y, 0)])).await;
    assert_eq!(
        (&answer[0]["channel"], &answer[0]["data"]),
        (&json!("y"), &json!("news")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_token_refreshed_by_the_poll_itself_is_held_against_its_channels() {
    let server = TestServer::start(FLAGS).await;
    let addr = server.addr;
    let (k, v) = bearer(&["x"]);
    let (lp, _) = Lp::open_with(addr, &[(&k, &v)]).await;
    let x = subscribe(&lp, 1, "x").await;
    http::publish(addr, "x", json!("secret")).await;
    let refreshed = with_token(&lp, bearer(&["other"]));
    let answer = refreshed.poll(positions(&[("x", &x, 0)])).await;
    forbidden_for(&answer, "x");
}
