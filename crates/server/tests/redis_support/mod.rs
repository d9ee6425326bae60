//! Shared by the Redis broker tests: a Tether node on a test Redis, and
//! publishing and reading helpers.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::net::SocketAddr;
use tether_test_util::{
    eventually, http, process::ServerProcess, redis::RedisServer, ws::WsClient,
};

/// Quiet channels are checked (and pub/sub pinged) this often in tests.
pub const CHECK: &str = "300ms";

/// A `tether serve --broker redis` process.
pub struct Node {
    pub server: ServerProcess,
}

/// Starts a node on `redis` and waits until it is ready (Redis reached,
/// every pub/sub connection up).
pub async fn node(redis: &RedisServer) -> Node {
    node_with(redis, &[]).await
}

pub async fn node_with(redis: &RedisServer, extra: &[&str]) -> Node {
    node_on(&redis.url(), extra).await
}

/// A node on the Redis at `url` (e.g. through a fault proxy).
pub async fn node_at(url: &str) -> Node {
    node_on(url, &[]).await
}

/// A node on the Redis at `url`, with more flags.
pub async fn node_at_with(url: &str, extra: &[&str]) -> Node {
    node_on(url, extra).await
}

async fn node_on(url: &str, extra: &[&str]) -> Node {
    let mut args = vec![
        "--broker",
        "redis",
        "--redis-url",
        url,
        "--redis-check-interval",
        CHECK,
    ];
    args.extend_from_slice(extra);
    let server = ServerProcess::start(&args).await;
    let n = Node { server };
    n.wait_ready(true).await;
    n
}

impl Node {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.server.addr)
    }

    pub async fn ready(&self) -> bool {
        http::request(self.server.addr, "GET", "/readyz", &[], "")
            .await
            .status
            == 200
    }

    pub async fn wait_ready(&self, want: bool) {
        let what = if want {
            "the node ready"
        } else {
            "the node not ready"
        };
        eventually(what, || async { self.ready().await == want }).await;
    }

    /// SIGKILL: the node dies without closing anything.
    pub async fn kill(&mut self) {
        self.server.child.start_kill().expect("kill");
        let _ = self.server.child.wait().await;
    }
}

pub async fn publish_at(addr: SocketAddr, channel: &str, data: Value) -> Value {
    http::publish(addr, channel, data).await
}

pub async fn publish(node: &Node, channel: &str, data: Value) -> Value {
    http::publish(node.addr(), channel, data).await
}

/// `POST /api/publish` with an idempotency key.
pub async fn publish_key(node: &Node, channel: &str, data: Value, key: &str) -> Value {
    let (status, answer) = http::try_publish(
        node.addr(),
        &json!({"channel": channel, "data": data, "key": key}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Reads `n` `message`s of `channel`, asserting their offsets follow each
/// other; returns `(offset, data)` of each.
pub async fn offsets_in_order(ws: &mut WsClient, channel: &str, n: usize) -> Vec<(u64, Value)> {
    let mut got: Vec<(u64, Value)> = Vec::new();
    while got.len() < n {
        let m = ws.recv_type("message").await;
        assert_eq!(m["channel"], channel);
        let o = m["offset"].as_u64().expect("offset");
        if let Some((last, _)) = got.last() {
            assert_eq!(
                o,
                last + 1,
                "offsets in order without gaps: {got:?} then {o}"
            );
        }
        got.push((o, m["data"].clone()));
    }
    got
}

/// The data of a `subscribed` reply's publications.
pub fn data_of(reply: &Value) -> Vec<Value> {
    reply["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| p["data"].clone())
        .collect()
}
