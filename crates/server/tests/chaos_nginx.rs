//! A real nginx in front, cutting tunnels idle for `proxy_read_timeout`
//! (here 2 s; nginx's default is 60 s).
//!
//! Proves: with Tether's heartbeat well under that timeout, connections
//! idle for 3× the timeout survive, directly behind nginx and through an
//! nginx round robin over two Redis-backed nodes (no sticky sessions),
//! where a publication on either node reaches subscribers on both. With the
//! heartbeat far above the idle time (and so the Rust client, which pings
//! only after `ping_interval` of silence, quiet too) nginx cuts every
//! connection after its timeout. That is why the default `--ping-interval`
//! is 25 s: under nginx's 60 s default with room for a lost ping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "chaos_support/mod.rs"]
mod chaos;
#[path = "redis_support/mod.rs"]
mod support;

use chaos::{fleet, gauge, handshakes, wait_all, Subscriber};
use futures_util::future::select_all;
use serde_json::json;
use std::time::Duration;
use tether_client::State;
use tether_test_util::{http, nginx::Nginx, process::ServerProcess, redis::RedisServer, STEP};
use tokio::time::{timeout, Instant};

/// nginx's `proxy_read_timeout` in these tests.
const PROXY_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// `--ping-interval` with the heartbeat on: a quarter of the proxy's timeout.
const PING_ON: &str = "500ms";
/// `--ping-interval` with the heartbeat effectively off: far above `IDLE`.
const PING_OFF: &str = "60s";
/// How long the connections stay idle: 3× the proxy's timeout.
const IDLE: Duration = Duration::from_secs(6);
/// Subscribers per test.
const CLIENTS: usize = 20;
/// The client's reconnect backoff (only used when something is cut).
const MIN_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_millis(500);

/// The `location` body of a WebSocket proxy to `upstream`.
fn location(upstream: &str) -> String {
    format!(
        "proxy_pass http://{upstream};\n proxy_http_version 1.1;\n\
         proxy_set_header Upgrade $http_upgrade;\n proxy_set_header Connection \"upgrade\";\n\
         proxy_read_timeout {}s;",
        PROXY_READ_TIMEOUT.as_secs()
    )
}

/// Fails if any client's connection state changes within `idle`: a cut
/// connection is seen as `Reconnecting` at once.
async fn stays_connected(subs: &[Subscriber], idle: Duration) {
    let mut states: Vec<_> = subs.iter().map(|s| s.client.state()).collect();
    for s in &mut states {
        s.mark_unchanged();
        assert_eq!(*s.borrow(), State::Connected);
    }
    let changes = states.iter_mut().map(|s| Box::pin(s.changed()));
    let changed = timeout(idle, select_all(changes)).await.map(|(_, i, _)| i);
    if let Ok(i) = changed {
        panic!(
            "client {i} did not survive {idle:?} idle behind nginx: {:?}",
            subs[i].state()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_heartbeat_under_proxy_read_timeout_idle_connections_survive() {
    let server = ServerProcess::start(&["--ping-interval", PING_ON]).await;
    let nginx = Nginx::start(&location(&server.addr.to_string())).await;
    let subs = fleet(CLIENTS, &nginx.url("/ws"), "idle", MIN_DELAY, MAX_DELAY).await;
    wait_all(&subs, "subscribed", STEP, |p| p.subscribed() == 1).await;

    let started = Instant::now();
    stays_connected(&subs, IDLE).await;
    // Not one reconnect, seen from the server too.
    let outcomes = handshakes(server.addr).await;
    assert_eq!(
        outcomes.get("accepted"),
        Some(&(CLIENTS as u64)),
        "{outcomes:?}"
    );
    assert_eq!(
        gauge(server.addr, "tether_connections").await,
        CLIENTS as u64
    );
    // And the connections that sat idle still deliver.
    http::publish(server.addr, "idle", json!({"after": "idle"})).await;
    wait_all(&subs, "the publication after the idle", STEP, |p| {
        p.offsets == [1]
    })
    .await;
    assert!(subs.iter().all(|s| s.now().subscribed() == 1));
    eprintln!(
        "chaos_nginx: heartbeat {PING_ON} under proxy_read_timeout {PROXY_READ_TIMEOUT:?}: \
         {CLIENTS} of {CLIENTS} connections survived {:?} idle, 0 reconnects, 0 lost",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_heartbeat_nginx_cuts_idle_connections_at_its_timeout() {
    let server = ServerProcess::start(&["--ping-interval", PING_OFF]).await;
    let nginx = Nginx::start(&location(&server.addr.to_string())).await;
    let subs = fleet(CLIENTS, &nginx.url("/ws"), "quiet", MIN_DELAY, MAX_DELAY).await;
    wait_all(&subs, "subscribed", STEP, |p| p.subscribed() == 1).await;

    // The subscribe reply was each connection's last traffic: nginx's timer
    // runs from there. Each cut shows as the client leaving `Connected`.
    wait_all(&subs, "cut by nginx", IDLE, |p| !p.dropped_at.is_empty()).await;
    let cut_after: Vec<Duration> = subs
        .iter()
        .map(|s| {
            let p = s.now();
            p.dropped_at[0] - p.subscribed_at[0]
        })
        .collect();
    let first = *cut_after.iter().min().unwrap();
    let last = *cut_after.iter().max().unwrap();
    assert!(
        first >= PROXY_READ_TIMEOUT - Duration::from_millis(200),
        "cut before nginx's timeout: {first:?}"
    );
    assert!(
        last <= PROXY_READ_TIMEOUT + Duration::from_secs(2),
        "cut long after nginx's timeout: {last:?}"
    );
    // The cut costs a reconnect, not data: the clients come back and recover.
    wait_all(&subs, "back after the cut", STEP, |p| p.subscribed() >= 2).await;
    eprintln!(
        "chaos_nginx: heartbeat {PING_OFF} (off) behind proxy_read_timeout {PROXY_READ_TIMEOUT:?}: \
         {CLIENTS} of {CLIENTS} connections cut after {first:?}..{last:?} idle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_over_two_redis_nodes_idle_connections_survive_and_both_deliver() {
    let redis = RedisServer::start().await;
    let flags = ["--ping-interval", PING_ON];
    let (a, b) = (
        support::node_with(&redis, &flags).await,
        support::node_with(&redis, &flags).await,
    );
    let nginx = Nginx::round_robin(&[a.addr(), b.addr()], &location("tether")).await;
    let subs = fleet(CLIENTS, &nginx.url("/ws"), "rr", MIN_DELAY, MAX_DELAY).await;
    wait_all(&subs, "subscribed", STEP, |p| p.subscribed() == 1).await;
    let (on_a, on_b) = (
        gauge(a.addr(), "tether_connections").await,
        gauge(b.addr(), "tether_connections").await,
    );
    assert_eq!(on_a + on_b, CLIENTS as u64);
    assert!(
        on_a > 0 && on_b > 0,
        "round robin uses both nodes: {on_a} + {on_b}"
    );

    let started = Instant::now();
    stays_connected(&subs, IDLE).await;
    let idle = started.elapsed();
    for node in [&a, &b] {
        let outcomes = handshakes(node.addr()).await;
        let connections = gauge(node.addr(), "tether_connections").await;
        assert_eq!(
            outcomes.get("accepted").copied().unwrap_or(0),
            connections,
            "no reconnects: {outcomes:?}"
        );
    }
    // A publication on either node reaches the subscribers on both.
    support::publish(&a, "rr", json!({"from": "a"})).await;
    wait_all(&subs, "node A's publication", STEP, |p| p.offsets == [1]).await;
    support::publish(&b, "rr", json!({"from": "b"})).await;
    wait_all(&subs, "node B's publication", STEP, |p| p.offsets == [1, 2]).await;
    assert!(subs.iter().all(|s| s.now().subscribed() == 1));
    eprintln!(
        "chaos_nginx: round robin over 2 Redis nodes ({on_a} + {on_b} clients), heartbeat {PING_ON}: \
         {CLIENTS} of {CLIENTS} survived {idle:?} idle, publications on A and on B received by all, 0 lost"
    );
}
