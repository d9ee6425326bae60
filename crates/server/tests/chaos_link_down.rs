//! The link to the server goes down — no FIN, no RST, packets just vanish —
//! for longer than the heartbeat bound, while a backend keeps publishing.
//!
//! Proves: the server notices within `ping_interval + pong_timeout` (its
//! `tether_connections` gauge drops to 0: no half-open connection is kept),
//! so do the clients (they leave `Connected`); once the link is back they
//! reconnect by themselves with backoff and recover every publication made
//! during the outage: every subscriber ends with every offset exactly once,
//! in order. The server runs in its own network namespace; the link is its
//! veth, set down inside it (`tether_test_util::netns`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "chaos_faults/mod.rs"]
mod chaos;

use chaos::{outage, Fault, Outage};
use std::{net::SocketAddr, time::Duration};
use tether_test_util::netns::Netns;

const SCENARIO: Outage = Outage {
    name: "chaos_link_down",
    subscribers: 50,
    ping_interval: Duration::from_secs(1),
    pong_timeout: Duration::from_secs(2),
    // Well past the bound (3 s): both sides must give up on the connection.
    outage: Duration::from_secs(5),
    before: 20,
    during: 30,
    after: 10,
    slack: Duration::from_millis(1200),
};

struct LinkDown;

impl Fault for LinkDown {
    fn inject(&self, ns: &Netns, _server: SocketAddr) {
        ns.link_down();
    }

    fn heal(&self, ns: &Netns, _server: SocketAddr) {
        ns.link_up();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_down_is_detected_by_both_sides_and_everything_recovered() {
    outage(&SCENARIO, &LinkDown).await;
}
