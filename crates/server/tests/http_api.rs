//! The HTTP side: publish API, stats, health, readiness, metrics, and
//! refused handshakes with their status and one-line reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tether_test_util::{http, ws::WsClient, TestServer};

#[tokio::test]
async fn publish_api_validates_its_input() {
    let server = TestServer::start(&[]).await;
    let ok = http::request(
        server.addr,
        "POST",
        "/api/publish",
        &[],
        r#"{"channel":"a","data":{"x":1}}"#,
    )
    .await;
    assert_eq!(ok.status, 200);
    let v = ok.json();
    assert_eq!(v["offset"], 1);
    assert!(v["epoch"].as_str().is_some_and(|e| !e.is_empty()));

    for (body, code) in [
        ("not json", "bad_request"),
        (r#"{"channel":"a"}"#, "bad_request"),
        (r#"{"data":1}"#, "bad_request"),
        (r#"{"channel":"a b","data":1}"#, "invalid_channel"),
        (r#"{"channel":"","data":1}"#, "invalid_channel"),
    ] {
        let res = http::request(server.addr, "POST", "/api/publish", &[], body).await;
        assert_eq!(res.status, 400, "{body}");
        assert_eq!(res.json()["error"], code, "{body}");
    }
}

#[tokio::test]
async fn api_key_protects_publish_and_stats() {
    let server = TestServer::start(&[("api-key", "s3cret")]).await;
    let body = r#"{"channel":"a","data":1}"#;
    let none = http::request(server.addr, "POST", "/api/publish", &[], body).await;
    assert_eq!(none.status, 401);
    let wrong = http::request(
        server.addr,
        "POST",
        "/api/publish",
        &[("Authorization", "Bearer nope")],
        body,
    )
    .await;
    assert_eq!(wrong.status, 401);
    let right = http::request(
        server.addr,
        "POST",
        "/api/publish",
        &[("Authorization", "Bearer s3cret")],
        body,
    )
    .await;
    assert_eq!(right.status, 200);
    assert_eq!(
        http::request(server.addr, "GET", "/api/stats", &[], "")
            .await
            .status,
        401
    );
    let stats = http::request(
        server.addr,
        "GET",
        "/api/stats",
        &[("Authorization", "Bearer s3cret")],
        "",
    )
    .await;
    assert_eq!(stats.status, 200);
    assert!(stats.json()["node"].is_string());
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = TestServer::start(&[]).await;
    assert_eq!(
        http::request(server.addr, "GET", "/healthz", &[], "")
            .await
            .status,
        200
    );
    assert_eq!(
        http::request(server.addr, "GET", "/readyz", &[], "")
            .await
            .status,
        200
    );
    let (_c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    let metrics = http::request(server.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(metrics.status, 200);
    for name in [
        "tether_connections",
        "tether_handshakes_total",
        "tether_messages_out_total",
        "tether_heartbeat_timeouts_total",
    ] {
        assert!(metrics.body.contains(name), "{name} missing from /metrics");
    }
    assert_eq!(
        http::metric(server.addr, "tether_connections", &[]).await,
        1.0
    );
    assert_eq!(
        http::metric(
            server.addr,
            "tether_handshakes_total",
            &[("outcome", "accepted")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn refused_handshakes_say_why() {
    let server = TestServer::start(&[]).await;
    let plain = http::request(server.addr, "GET", "/ws", &[], "").await;
    assert_eq!(plain.status, 400);
    assert!(plain.body.contains("Upgrade"), "{}", plain.body);

    let upgrade = |version: &'static str| {
        vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", version),
        ]
    };
    let bad_version = http::request(server.addr, "GET", "/ws", &upgrade("8"), "").await;
    assert_eq!(bad_version.status, 400);
    assert_eq!(bad_version.header("Sec-WebSocket-Version"), Some("13"));

    let wrong_path = http::request(server.addr, "GET", "/socket", &upgrade("13"), "").await;
    assert_eq!(wrong_path.status, 404);
    assert!(wrong_path.body.contains("/ws"), "{}", wrong_path.body);

    let ok = http::request(server.addr, "GET", "/ws", &upgrade("13"), "").await;
    assert_eq!(ok.status, 101);
    assert_eq!(
        ok.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );

    assert!(
        http::metric(
            server.addr,
            "tether_handshakes_total",
            &[("outcome", "bad_version")]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn no_echo_turns_the_echo_route_off() {
    let server = TestServer::start(&[("no-echo", "")]).await;
    assert!(WsClient::try_connect(&server.ws_url("/echo"), &[])
        .await
        .is_err());
    let on = TestServer::start(&[]).await;
    let mut c = WsClient::connect(&on.ws_url("/echo")).await;
    c.send(json!({"any": "thing"})).await;
    assert_eq!(c.recv().await, json!({"any": "thing"}));
}
