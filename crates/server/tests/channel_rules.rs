//! Channel rules that close channels to clients (docs/configuration.md,
//! "Channel rules"): with `client_publish = false` a client's publish is
//! refused with `forbidden` on `/ws` and on `/lp/` even though its token
//! allows it, nothing is stored, and the backend's `POST /api/publish`
//! still publishes there; other channels are left to the token. The
//! refused connection stays open and a bystander on 127.0.0.2 is served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use tether_server::{config, Config};
use tether_test_util::{attack::Bystander, http, longpoll::Lp, ws::WsClient, TestServer};

const SECRET: &str = "rules-test-secret";

const RULES: &str = "\
[[channels]]
pattern = \"announce:*\"
client_publish = false

[[channels]]
pattern = \"chat:*\"
client_publish = true
";

/// The rules above, read from a file the way `tether serve --config` does.
fn config() -> Config {
    let dir = std::env::temp_dir().join(format!("tether-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.toml");
    std::fs::write(&file, RULES).unwrap();
    let flags =
        [("listen", "127.0.0.1:0"), ("jwt-secret", SECRET)].map(|(k, v)| (k.into(), v.into()));
    config::load(Some(&file), |_| None, &flags).unwrap()
}

/// A token that may publish to both kinds of channel.
fn token() -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"sub": "u", "exp": exp, "publish": ["announce:*", "chat:*"]});
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

#[track_caller]
fn forbidden(reply: &Value, id: u64) {
    assert_eq!(
        (&reply["code"], &reply["id"]),
        (&json!("forbidden"), &json!(id)),
        "{reply}"
    );
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(message.contains("client_publish = false"), "{reply}");
}

#[tokio::test]
async fn a_closed_channel_refuses_clients_on_both_transports_but_not_the_backend() {
    let server = TestServer::start_with(config()).await;
    let token = token();
    let mut bystander =
        Bystander::join_path(server.addr, &format!("/ws?token={token}"), "chat:bystander").await;

    let (mut ws, _) = WsClient::tether(&server.ws_url(&format!("/ws?token={token}"))).await;
    ws.send(json!({"type": "publish", "id": 1, "channel": "announce:a", "data": 1}))
        .await;
    forbidden(&ws.recv().await, 1);
    ws.send(json!({"type": "publish", "id": 2, "channel": "chat:a", "data": 1}))
        .await;
    assert_eq!(ws.recv_type("ack").await["id"], 2);

    let bearer = format!("Bearer {token}");
    let (lp, _) = Lp::open_with(server.addr, &[("Authorization", &bearer)]).await;
    let replies = lp
        .send(json!([
            {"type": "publish", "id": 3, "channel": "announce:a", "data": 2},
            {"type": "publish", "id": 4, "channel": "chat:a", "data": 2},
        ]))
        .await;
    forbidden(&replies[0], 3);
    assert_eq!(replies[1], json!({"type": "ack", "id": 4, "offset": 2}));

    // Nothing the clients tried was stored: the backend's is the first.
    let answer = http::publish(server.addr, "announce:a", json!("from the backend")).await;
    assert_eq!(answer["offset"], 1, "{answer}");
    // The refused clients were told, not cut; the bystander never noticed.
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong");
    bystander.still_served().await;
    server.shutdown().await;
}
