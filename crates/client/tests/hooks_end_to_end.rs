//! The Rust client against a real server whose hooks a real HTTP backend
//! answers (docs/hooks.md): its connect `data` reaches the connect hook, its
//! `rpc` gets the rpc hook's result, the server-side subscription the hook
//! names delivers, and a final refusal (4500-4999) stops it after one try
//! while a refusal for now (4000-4499) is retried.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::wait_state;
use futures_util::StreamExt;
use serde_json::json;
use std::time::Duration;
use tether_client::{Client, State};
use tether_test_util::{
    backend::{Backend, Reply},
    TestServer,
};

async fn server(backend: &Backend) -> TestServer {
    TestServer::start(&[
        ("hook-connect", &backend.url("/connect")),
        ("hook-rpc", &backend.url("/rpc")),
        ("hook-secret", "e2e-secret"),
    ])
    .await
}

fn client(server: &TestServer) -> tether_client::ClientBuilder {
    Client::builder(server.ws_url("/ws"))
        .min_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(100))
}

#[tokio::test]
async fn data_rpc_and_server_side_subscriptions_reach_the_backend_and_back() {
    let backend = Backend::start().await;
    backend.respond(|r| match r.path.as_str() {
        "/connect" => Reply::Json(
            200,
            json!({"user": r.json()["data"]["name"], "channels": ["inbox:ann"]}),
        ),
        "/rpc" => Reply::Json(
            200,
            json!({"result": {"echo": r.json()["data"], "user": r.json()["user"]}}),
        ),
        _ => Reply::Json(404, json!({})),
    });
    let server = server(&backend).await;
    let client = client(&server)
        .connect_data(json!({"name": "ann"}))
        .build()
        .unwrap();
    let mut server_side = client.server_subscriptions().expect("taken once");
    let result = client.rpc("whoami", json!({"n": 1})).await.unwrap();
    let result: serde_json::Value = serde_json::from_str(result.get()).unwrap();
    assert_eq!(result, json!({"echo": {"n": 1}, "user": "ann"}));
    let connect = &backend.received_at("/connect")[0];
    assert_eq!(connect.json()["data"], json!({"name": "ann"}));
    assert!(
        connect.headers.contains_key("tether-signature"),
        "{:?}",
        connect.headers
    );

    // The hook's channel is held for the client: a backend publish reaches it.
    let body = json!({"channel": "inbox:ann", "data": {"hello": "ann"}}).to_string();
    let published =
        tether_test_util::http::request(server.addr, "POST", "/api/publish", &[], &body).await;
    assert_eq!(published.status, 200, "{}", published.body);
    let delivered = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = server_side.next().await.expect("server-side stream open");
            if format!("{event:?}").contains("hello") {
                return event;
            }
        }
    })
    .await
    .expect("the server-side subscription delivers");
    assert_eq!(delivered.channel, "inbox:ann");
}

#[tokio::test]
async fn a_final_refusal_stops_and_a_refusal_for_now_is_retried() {
    for (code, retried) in [(4501, false), (4401, true)] {
        let backend = Backend::start().await;
        backend.respond(move |_| {
            Reply::Json(200, json!({"error": {"code": code, "reason": "not now"}}))
        });
        let server = server(&backend).await;
        let client = client(&server).build().unwrap();
        let mut state = client.state();
        if retried {
            wait_state(&mut state, "a second try", |s| {
                matches!(s, State::Reconnecting { attempt, code: c, .. } if *attempt >= 2 && *c == 4401)
            })
            .await;
            assert!(backend.received_at("/connect").len() >= 2);
        } else {
            let end = wait_state(&mut state, "stopped", |s| {
                matches!(s, State::Disconnected { .. })
            })
            .await;
            assert!(
                matches!(end, State::Disconnected { code: 4501, .. }),
                "{end:?}"
            );
            assert_eq!(backend.received_at("/connect").len(), 1, "no retry");
        }
    }
}

/// A session the connect hook made (no token) that reaches its `expire_at`
/// is closed 4002; the client connects again, and the hook decides again.
#[tokio::test]
async fn a_hook_session_that_expires_connects_again_through_the_hook() {
    let backend = Backend::start().await;
    backend.respond(|_| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Reply::Json(200, json!({"user": "ann", "expire_at": now + 2}))
    });
    let server = server(&backend).await;
    let client = client(&server).build().unwrap();
    let mut state = client.state();
    wait_state(&mut state, "closed 4002 and reconnecting", |s| {
        matches!(s, State::Reconnecting { code: 4002, .. })
    })
    .await;
    wait_state(&mut state, "connected again", |s| {
        matches!(s, State::Connected)
    })
    .await;
    assert!(backend.received_at("/connect").len() >= 2);
}
