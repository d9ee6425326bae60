//! JWT auth before the upgrade: 401 for missing, expired, `none`-signed and
//! wrongly-keyed tokens; tokens from header, query and subprotocol; 4002 at
//! expiry; channel permissions from claims.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tether_test_util::{
    http,
    ws::{Ended, WsClient},
    TestServer,
};

const SECRET: &str = "test-secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: serde_json::Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn upgrade_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ]
}

async fn status_with(server: &TestServer, path: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let mut headers = upgrade_headers();
    headers.extend_from_slice(extra);
    let res = http::request(server.addr, "GET", path, &headers, "").await;
    (res.status, res.body)
}

#[tokio::test]
async fn bad_tokens_get_401_with_a_reason() {
    let server = TestServer::start(&[("jwt-secret", SECRET)]).await;
    let (status, body) = status_with(&server, "/ws", &[]).await;
    assert_eq!(status, 401);
    assert!(body.contains("token is required"), "{body}");

    let expired = hs256(json!({"sub": "u", "exp": now() - 5}), SECRET);
    let (status, body) = status_with(&server, &format!("/ws?token={expired}"), &[]).await;
    assert_eq!((status, body.contains("expired")), (401, true), "{body}");

    let wrong_key = hs256(json!({"sub": "u", "exp": now() + 60}), "not-the-secret");
    let bearer = format!("Bearer {wrong_key}");
    let (status, body) = status_with(&server, "/ws", &[("Authorization", &bearer)]).await;
    assert_eq!((status, body.contains("signature")), (401, true), "{body}");

    // {"alg":"none"} with an empty signature.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ.";
    let (status, _) = status_with(&server, &format!("/ws?token={none}"), &[]).await;
    assert_eq!(status, 401);

    let good = hs256(json!({"sub": "u", "exp": now() + 60}), SECRET);
    let (status, _) = status_with(&server, &format!("/ws?token={good}"), &[]).await;
    assert_eq!(status, 101);
    assert!(
        http::metric(
            server.addr,
            "tether_handshakes_total",
            &[("outcome", "unauthorized")]
        )
        .await
            >= 4.0
    );
}

#[tokio::test]
async fn rs256_rejects_hs256_signed_with_the_public_key() {
    // A fixed test-only key pair (rcgen on ring cannot generate RSA keys).
    let (private_pem, public_pem) = (
        include_str!("keys/rsa_private.pem"),
        include_str!("keys/rsa_public.pem"),
    );
    let dir = std::env::temp_dir().join(format!("tether-rs256-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let public_path = dir.join("public.pem");
    std::fs::write(&public_path, public_pem).unwrap();
    let server = TestServer::start(&[("jwt-public-key", public_path.to_str().unwrap())]).await;

    let claims = json!({"sub": "u", "exp": now() + 60});
    let good = encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        status_with(&server, &format!("/ws?token={good}"), &[])
            .await
            .0,
        101
    );

    // Key confusion: HS256 "signed" with the RSA public key as the HMAC secret.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .unwrap();
    let (status, body) = status_with(&server, &format!("/ws?token={confused}"), &[]).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("HS256"), "{body}");
}

#[tokio::test]
async fn token_in_subprotocol_is_accepted_and_echoed() {
    let server = TestServer::start(&[("jwt-secret", SECRET)]).await;
    let good = hs256(json!({"sub": "u", "exp": now() + 60}), SECRET);
    let proto = format!("tether, bearer.{good}");
    let mut headers = upgrade_headers();
    headers.push(("Sec-WebSocket-Protocol", &proto));
    let res = http::request(server.addr, "GET", "/ws", &headers, "").await;
    assert_eq!(res.status, 101);
    assert_eq!(res.header("Sec-WebSocket-Protocol"), Some("tether"));
}

#[tokio::test]
async fn connection_is_closed_with_4002_when_the_token_expires() {
    let server = TestServer::start(&[("jwt-secret", SECRET), ("ping-interval", "10s")]).await;
    let token = hs256(json!({"sub": "u", "exp": now() + 2}), SECRET);
    let (mut c, _) = WsClient::tether(&server.ws_url(&format!("/ws?token={token}"))).await;
    match c.ended(Duration::from_secs(5)).await {
        Ended::Closed(code, reason) => {
            assert_eq!(code, 4002);
            assert!(reason.contains("expired"), "{reason}");
        }
        other => panic!("expected 4002, got {other:?}"),
    }
}

#[tokio::test]
async fn claims_limit_subscribe_and_publish() {
    let server = TestServer::start(&[("jwt-secret", SECRET)]).await;
    let token = hs256(
        json!({"sub": "u", "exp": now() + 60, "subscribe": ["news", "chat:*"], "publish": ["chat:*"]}),
        SECRET,
    );
    let (mut c, _) = WsClient::tether(&server.ws_url(&format!("/ws?token={token}"))).await;
    assert_eq!(c.subscribe(1, "news", None).await["type"], "subscribed");
    assert_eq!(
        c.subscribe(2, "chat:room", None).await["type"],
        "subscribed"
    );
    let denied = c.subscribe(3, "secret", None).await;
    assert_eq!(
        (denied["type"].as_str(), denied["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );

    c.send(json!({"type": "publish", "id": 4, "channel": "news", "data": 1}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["code"], "forbidden");
    assert_eq!(reply["id"], 4);
    c.send(json!({"type": "publish", "id": 5, "channel": "chat:room", "data": 1}))
        .await;
    assert_eq!(c.recv_type("ack").await["id"], 5);
}

#[tokio::test]
async fn allow_anonymous_admits_tokenless_clients_read_only() {
    let server = TestServer::start(&[("jwt-secret", SECRET), ("allow-anonymous", "")]).await;
    let (mut c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    assert_eq!(c.subscribe(1, "news", None).await["type"], "subscribed");
    c.send(json!({"type": "publish", "id": 2, "channel": "news", "data": 1}))
        .await;
    assert_eq!(c.recv().await["code"], "forbidden");
}
