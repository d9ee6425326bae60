//! Attack: `/echo` as a side door — no origin check, no token, no
//! handshake rate, no cap — to hold connections or bypass auth.
//!
//! Bound: `/echo` passes the same gate as `/ws` (403 bad origin, 401 no
//! token, 429 past the handshake bucket) and holds at most
//! `--echo-max-connections` (503 past it) without taking places from `/ws`.
//! A bystander on 127.0.0.2 stays served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};
use tether_test_util::{attack::Bystander, http, TestServer};

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const SECRET: &str = "echo-gating-secret";

fn token() -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "u", "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn echo_checks_origin_token_and_its_own_cap() {
    let server = TestServer::start(&[
        ("jwt-secret", SECRET),
        ("allowed-origins", "https://app.example"),
        ("echo-max-connections", "2"),
    ])
    .await;
    let t = token();
    let mut bystander =
        Bystander::join_path(server.addr, &format!("/ws?token={t}"), "bystander").await;
    let with_token = format!("/echo?token={t}");

    let (res, _) = http::upgrade_with(ATTACKER, server.addr, "/echo", &[]).await;
    assert_eq!(res.status, 401, "{res:?}");
    let (res, _) = http::upgrade_with(
        ATTACKER,
        server.addr,
        &with_token,
        &["Origin: https://evil.example"],
    )
    .await;
    assert_eq!(res.status, 403, "{res:?}");

    let mut held = Vec::new();
    for _ in 0..2 {
        let (res, tcp) = http::upgrade_with(
            ATTACKER,
            server.addr,
            &with_token,
            &["Origin: https://app.example"],
        )
        .await;
        assert_eq!(res.status, 101, "{res:?}");
        held.push(tcp);
    }
    let (res, _) = http::upgrade_with(ATTACKER, server.addr, &with_token, &[]).await;
    assert_eq!(res.status, 503, "{res:?}");
    assert!(res.header("retry-after").is_some());
    assert!(
        res.body.contains("/echo is at its connection limit"),
        "{}",
        res.body
    );
    assert_eq!(
        http::metric(
            server.addr,
            "tether_handshakes_total",
            &[("outcome", "echo_full")]
        )
        .await,
        1.0
    );
    // /ws is not affected by /echo being full.
    let (res, _ws) =
        http::upgrade_with(ATTACKER, server.addr, &format!("/ws?token={t}"), &[]).await;
    assert_eq!(res.status, 101, "{res:?}");
    bystander.still_served().await;
}

#[tokio::test]
async fn echo_handshakes_share_the_per_address_bucket() {
    let server = TestServer::start(&[
        ("handshake-rate-per-ip", "0.5"),
        ("handshake-burst-per-ip", "3"),
    ])
    .await;
    let mut bystander = Bystander::join(server.addr).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let (res, tcp) = http::upgrade_with(ATTACKER, server.addr, "/echo", &[]).await;
        assert_eq!(res.status, 101, "{res:?}");
        held.push(tcp);
    }
    let (res, _) = http::upgrade_with(ATTACKER, server.addr, "/echo", &[]).await;
    assert_eq!(res.status, 429, "{res:?}");
    assert!(res.header("retry-after").is_some());
    let (res, _) = http::upgrade_with(ATTACKER, server.addr, "/ws", &[]).await;
    assert_eq!(res.status, 429, "one bucket for both endpoints: {res:?}");
    bystander.still_served().await;
}
