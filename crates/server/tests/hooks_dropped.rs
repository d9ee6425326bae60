//! A client that goes away while the backend decides about it leaves
//! nothing behind: a WebSocket closed while its connect hook or an rpc
//! waits, a `/lp/open` and a `/lp/send` whose client hangs up mid-call —
//! once the calls end, the node holds no connection, no long-polling
//! session and no subscription, and their places under the limits are
//! free again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hooks_support/mod.rs"]
mod hooks_support;

use hooks_support::node;
use serde_json::{json, Value};
use std::time::Duration;
use tether_test_util::{
    backend::{Backend, Reply},
    eventually, http,
    longpoll::Lp,
    ws::WsClient,
    TestServer,
};
use tokio::io::AsyncWriteExt;

async fn stats(server: &TestServer) -> Value {
    http::request(server.addr, "GET", "/api/stats", &[], "")
        .await
        .json()
}

/// Sends `POST path` with `body`; the caller hangs up (drops the socket)
/// without reading.
async fn post(server: &TestServer, path: &str, body: &str) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_gone_mid_call_leave_nothing() {
    let backend = Backend::start().await;
    backend.respond(|r| match r.path.as_str() {
        // The connect hook of a first connection answers; the rest hang.
        "/connect" if r.json()["data"]["first"] == true => {
            Reply::Json(200, json!({"channels": ["mine"]}))
        }
        _ => Reply::Late(
            Duration::from_millis(700),
            Box::new(Reply::Json(200, json!({"result": 1}))),
        ),
    });
    let hooks = [("hook-connect", "/connect"), ("hook-rpc", "/rpc")];
    let server = node(
        &backend,
        &hooks,
        &[
            ("max-connections-per-ip", "6"),
            ("max-long-poll-sessions-per-ip", "2"),
        ],
    )
    .await;
    let url = server.ws_url("/ws");
    let first = format!("{url}?data={}", hooks_support::encode(r#"{"first":true}"#));

    // A connection with a server-side subscription and an rpc under way.
    let (mut ws, _) = WsClient::tether(&first).await;
    assert_eq!(ws.recv().await["channel"], "mine");
    ws.send(json!({"type": "rpc", "id": 1, "method": "m"}))
        .await;
    // Connections whose connect hook is under way.
    let mut waiting = Vec::new();
    for _ in 0..2 {
        waiting.push(WsClient::connect(&url).await);
    }
    // Long-polling requests abandoned mid-call.
    let opens = [
        post(&server, "/lp/open", "").await,
        post(&server, "/lp/open", "").await,
    ];
    hooks_support::wait_for(&backend, "/connect", 5).await;
    hooks_support::wait_for(&backend, "/rpc", 1).await;
    drop(ws);
    drop(waiting);
    drop(opens);

    eventually("nothing held", || async {
        let s = stats(&server).await;
        s["connections"] == 0 && s["subscriptions"] == 0
    })
    .await;
    assert_eq!(
        http::metric(server.addr, "tether_longpoll_sessions", &[]).await,
        0.0
    );
    assert_eq!(
        http::metric(server.addr, "tether_presence_entries", &[]).await,
        0.0
    );
    // The places are free: as many as the caps allow, again (6 sockets,
    // one kept for the stats; 2 long-polling sessions).
    backend.respond(|_| Reply::Json(200, json!({})));
    let mut again = Vec::new();
    for _ in 0..5 {
        again.push(WsClient::tether(&url).await.0);
    }
    for _ in 0..2 {
        Lp::open(server.addr).await;
    }
    let s = stats(&server).await;
    assert_eq!(s["connections"], 7, "{s}");
    server.shutdown().await;
}
