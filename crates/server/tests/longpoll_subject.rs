//! A long-polling session belongs to its token's subject, so long polling
//! refuses tokens without `sub` (docs/longpoll.md): otherwise every
//! sub-less token, and a tokenless request, would be the owner of every
//! sub-less session — drive it, take its publish keys, end it with 4002.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use tether_test_util::longpoll::{positions, uncached, Lp};
use tether_test_util::{http, TestServer};

const SECRET: &str = "lp-subject-secret";

const FLAGS: &[(&str, &str)] = &[
    ("ping-interval", "5s"),
    ("pong-timeout", "5s"),
    ("long-poll-timeout", "300ms"),
    ("jwt-secret", SECRET),
    // Tokenless clients may subscribe: the sessions a sub-less token would
    // otherwise share an owner with.
    ("allow-anonymous", ""),
];

/// `Authorization: Bearer` for `claims`, expiring `secs` from now.
fn bearer(mut claims: Value, secs: i64) -> (String, String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    claims["exp"] = json!(now + secs);
    claims["publish"] = json!(["mine"]);
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    ("Authorization".into(), format!("Bearer {token}"))
}

fn as_client(lp: &Lp, header: (String, String)) -> Lp {
    Lp {
        headers: vec![header],
        ..lp.clone()
    }
}

#[track_caller]
fn refused_for_no_subject(res: &http::HttpResponse) {
    assert_eq!(res.status, 401, "{res:?}");
    uncached(res);
    assert!(res.body.contains("`sub` claim"), "{res:?}");
}

#[tokio::test]
async fn a_token_without_sub_opens_nothing_and_drives_no_session() {
    let server = TestServer::start(FLAGS).await;
    let addr = server.addr;
    // Opening with a sub-less (or empty `sub`) token is refused: there is no
    // sub-less session for a tokenless request or another token to drive.
    let (_, welcome) = Lp::open_with(addr, &[]).await;
    assert_eq!(welcome["type"], "welcome", "tokenless is anonymous");
    for claims in [json!({}), json!({"sub": ""})] {
        let (k, v) = bearer(claims, 600);
        let lp = Lp {
            headers: vec![(k, v)],
            ..Lp::with_client(addr, "")
        };
        refused_for_no_subject(&lp.post("/lp/open", &[], "").await);
        // Nor is a session re-created for it on a node that has not seen it.
        let elsewhere = Lp {
            client: "n2-00112233445566778899aabbccddeeff".into(),
            ..lp.clone()
        };
        refused_for_no_subject(&elsewhere.poll_raw("{}").await);
    }
}

#[tokio::test]
async fn a_token_without_sub_cannot_take_a_sessions_publish_key() {
    let server = TestServer::start(FLAGS).await;
    let (k, v) = bearer(json!({"sub": "alice"}), 600);
    let (alice, _) = Lp::open_with(server.addr, &[(&k, &v)]).await;
    let subscribed = alice
        .send(json!([{"type": "subscribe", "id": 1, "channel": "mine"}]))
        .await;
    let epoch = subscribed[0]["epoch"].as_str().unwrap().to_owned();
    // alice's client id, learned by someone holding a sub-less token: their
    // keyless publish with alice's next id would have taken her key.
    let mallory = as_client(&alice, bearer(json!({}), 600));
    let publish = |data: &str| {
        json!([{"type": "publish", "id": 2, "channel": "mine", "data": data}]).to_string()
    };
    refused_for_no_subject(&mallory.send_raw(&publish("mallory's")).await);
    // alice's own publish with that id is stored, with her data.
    let answer = alice.send_raw(&publish("alice's")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()[0]["type"], "ack", "{answer:?}");
    let news = alice.poll(positions(&[("mine", &epoch, 0)])).await;
    let data: Vec<&Value> = news.iter().map(|m| &m["data"]).collect();
    assert_eq!(data, vec![&json!("alice's")], "{news:?}");
}

#[tokio::test]
async fn an_expired_token_without_sub_ends_no_session() {
    let server = TestServer::start(FLAGS).await;
    let addr = server.addr;
    // A tokenless (anonymous) session: its owner is "no subject".
    let (victim, _) = Lp::open_with(addr, &[]).await;
    let subscribed = victim
        .send(json!([{"type": "subscribe", "id": 1, "channel": "news"}]))
        .await;
    assert_eq!(subscribed[0]["type"], "subscribed");
    // Anyone's expired sub-less token on the victim's id: they are told
    // 4002 (refresh your token), the victim's session lives on.
    let outsider = as_client(&victim, bearer(json!({}), -5));
    let answer = outsider.poll(json!({})).await;
    assert_eq!(
        (&answer[0]["type"], &answer[0]["code"]),
        (&json!("close"), &json!(4002))
    );
    assert_eq!(
        http::metric(addr, "tether_longpoll_sessions", &[]).await,
        1.0
    );
    let answer = victim.send(json!([{"type": "ping"}])).await;
    assert_eq!(answer, vec![json!({"type": "pong"})]);
    let stats = http::request(addr, "GET", "/api/stats", &[], "")
        .await
        .json();
    assert_eq!(stats["subscribers"]["news"], 1, "{stats}");
}
