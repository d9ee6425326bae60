//! What every attack test checks besides its own bound: the server's memory
//! (VmRSS of a `tether` child process), and a well-behaved client on another
//! loopback address (127.0.0.2) that stays connected and served while the
//! attack runs.

use crate::{http, ws::WsClient, STEP};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};

/// The address well-behaved bystanders connect from; attackers use 127.0.0.1.
pub const BYSTANDER_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// `VmRSS` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A client that behaves: connected from 127.0.0.2, subscribed to its own
/// channel. [`Bystander::still_served`] proves the server still serves it.
pub struct Bystander {
    pub client: WsClient,
    addr: SocketAddr,
    channel: String,
    seen: u64,
}

impl Bystander {
    /// Connects to `/ws` at `addr` and subscribes to `bystander`.
    pub async fn join(addr: SocketAddr) -> Self {
        Self::join_channel(addr, "bystander").await
    }

    pub async fn join_channel(addr: SocketAddr, channel: &str) -> Self {
        Self::join_path(addr, "/ws", channel).await
    }

    /// Connects to `path` (e.g. `/ws?token=...` when auth is on).
    pub async fn join_path(addr: SocketAddr, path: &str, channel: &str) -> Self {
        let mut client = WsClient::connect_from(BYSTANDER_IP, &format!("ws://{addr}{path}"))
            .await
            .expect("bystander connects");
        assert_eq!(client.recv().await["type"], "welcome");
        let reply = client.subscribe(1, channel, None).await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        Bystander {
            client,
            addr,
            channel: channel.to_owned(),
            seen: reply["offset"].as_u64().unwrap_or(0),
        }
    }

    /// Publishes to the bystander's channel over the API and waits for the
    /// message, then pings and waits for the pong, then asks `/healthz`: the
    /// connection is alive, the server answers it within `STEP`, and the
    /// node reports itself alive.
    pub async fn still_served(&mut self) {
        let n = self.seen + 1;
        let answer =
            http::publish_from(BYSTANDER_IP, self.addr, &self.channel, json!({"n": n})).await;
        let offset = answer["offset"].as_u64().expect("publish offset");
        loop {
            let m = self.client.recv().await;
            if m["type"] == "message" && m["offset"] == offset {
                break;
            }
        }
        self.seen = offset;
        self.client.send(json!({"type": "ping"})).await;
        let pong = tokio::time::timeout(STEP, self.client.recv_type("pong")).await;
        assert!(pong.is_ok(), "bystander got no pong");
        // And the node as a whole answers: liveness over plain HTTP.
        let health = http::request_from(BYSTANDER_IP, self.addr, "GET", "/healthz", &[], "").await;
        assert_eq!(health.status, 200, "the server is not alive");
    }
}
