//! The refresh hook (docs/hooks.md, "refresh"): one `--hook-timeout`
//! before a session's expiry the backend is asked for a new one; it
//! extends the session, or ends it with its close code; a backend that
//! cannot answer ends it with 4002. Without the hook, the expiry the
//! connect hook gave ends the session with 4002, as a token's does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hooks_support/mod.rs"]
mod hooks_support;

use hooks_support::{bodies, node};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tether_test_util::{
    backend::{Backend, Reply},
    longpoll::Lp,
    ws::{Ended, WsClient},
    STEP,
};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A short ping interval, so the node's ticker looks at expiries every
/// 100 ms; a long pong timeout, so clients that do not read meanwhile
/// (and so do not answer pings) are not timed out.
const FLAGS: &[(&str, &str)] = &[
    ("hook-timeout", "500ms"),
    ("ping-interval", "400ms"),
    ("pong-timeout", "20s"),
];

/// connect: ann, expiring in 1.5 s; refresh: `refresh(expire_at)`.
fn answers(backend: &Backend, refresh: impl Fn(f64) -> Reply + Send + Sync + 'static) {
    backend.respond(move |r| match r.path.as_str() {
        "/connect" => Reply::Json(200, json!({"user": "ann", "expire_at": now() + 1.5})),
        _ => refresh(r.json()["expire_at"].as_f64().unwrap_or(0.0)),
    });
}

#[tokio::test]
async fn a_websocket_session_is_extended_then_ended_by_the_backend() {
    let backend = Backend::start().await;
    answers(&backend, |_| {
        Reply::Json(200, json!({"expire_at": now() + 1.5}))
    });
    let hooks = [("hook-connect", "/connect"), ("hook-refresh", "/refresh")];
    let server = node(&backend, &hooks, FLAGS).await;
    let (mut ws, welcome) = WsClient::tether(&server.ws_url("/ws")).await;
    let started = Instant::now();
    assert_eq!(ws.subscribe(1, "news", None).await["type"], "subscribed");
    // Alive past the first expiry, refreshed twice meanwhile.
    hooks_support::wait_for(&backend, "/refresh", 2).await;
    assert!(
        started.elapsed() > Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    tether_test_util::http::publish(server.addr, "news", json!("still here")).await;
    assert_eq!(ws.recv().await["data"], "still here");
    let asked = bodies(&backend, "/refresh");
    assert_eq!(asked[0]["client"], welcome["client"]);
    assert_eq!(asked[0]["user"], "ann");
    // Asked one timeout (500 ms) before the expiry it names, give or take a tick.
    let at = asked[0]["expire_at"].as_u64().unwrap();
    assert!((now() - at as f64).abs() < 2.0, "{at}");
    // Now the backend says no.
    backend.respond(|r| match r.path.as_str() {
        "/refresh" => Reply::Json(
            200,
            json!({"error": {"code": 4403, "reason": "logged out"}}),
        ),
        _ => Reply::Json(200, json!({})),
    });
    assert_eq!(
        ws.ended(STEP).await,
        Ended::Closed(4403, "logged out".into())
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_backend_that_cannot_refresh_ends_the_session_with_4002() {
    let mut backend = Backend::start().await;
    answers(&backend, |_| Reply::Json(200, json!({})));
    let hooks = [("hook-connect", "/connect"), ("hook-refresh", "/refresh")];
    let server = node(&backend, &hooks, FLAGS).await;
    let (mut ws, _) = WsClient::tether(&server.ws_url("/ws")).await;
    backend.down().await;
    match ws.ended(STEP).await {
        Ended::Closed(4002, reason) => {
            assert!(
                reason.starts_with(
                    "session expired; not refreshed: the refresh hook could not be reached"
                ),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // An answer without a usable expiry ends it too (here: one within the
    // timeout, which would be refreshed again at once).
    backend.up().await;
    answers(&backend, |at| Reply::Json(200, json!({"expire_at": at})));
    let (mut ws, _) = WsClient::tether(&server.ws_url("/ws")).await;
    match ws.ended(STEP).await {
        Ended::Closed(4002, reason) => assert!(reason.contains("did not extend"), "{reason}"),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn without_a_refresh_hook_the_connect_hooks_expiry_ends_the_session() {
    let backend = Backend::start().await;
    answers(&backend, |_| Reply::Json(500, json!({})));
    let server = node(&backend, &[("hook-connect", "/connect")], FLAGS).await;
    let (mut ws, _) = WsClient::tether(&server.ws_url("/ws")).await;
    let started = Instant::now();
    match ws.ended(STEP).await {
        Ended::Closed(4002, _) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() > Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_long_polling_session_is_refreshed_while_it_polls_and_ended_by_a_refusal() {
    let backend = Backend::start().await;
    answers(&backend, |_| {
        Reply::Json(200, json!({"expire_at": now() + 1.5}))
    });
    let hooks = [("hook-connect", "/connect"), ("hook-refresh", "/refresh")];
    let extra = [FLAGS, &[("long-poll-timeout", "3s")]].concat();
    let server = node(&backend, &hooks, &extra).await;
    let (lp, _) = Lp::open(server.addr).await;
    // One poll waits 3 s, past the 1.5 s expiry: refreshed under it.
    let started = Instant::now();
    assert!(lp.poll(json!({"channels": {}})).await.is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(!backend.received_at("/refresh").is_empty());
    backend.respond(|r| match r.path.as_str() {
        "/refresh" => Reply::Json(
            200,
            json!({"error": {"code": 4403, "reason": "logged out"}}),
        ),
        _ => Reply::Json(200, json!({})),
    });
    let answer = lp.poll(json!({"channels": {}})).await;
    assert_eq!(
        answer,
        vec![json!({"type": "close", "code": 4403, "reason": "logged out"})]
    );
    server.shutdown().await;
}
