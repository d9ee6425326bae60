//! A firewall starts dropping every packet of the server's port (nftables
//! DROP, both directions: a middlebox that lost its connection state) while
//! clients are connected and a backend keeps publishing, then lets them
//! through again.
//!
//! Proves: the same as a link down — the server and the clients each notice
//! within `ping_interval + pong_timeout` (the server's gauge drops to 0),
//! the clients' reconnects time out while the rule holds and succeed by
//! themselves once it is removed, and every publication made meanwhile is
//! recovered: every offset exactly once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "chaos_faults/mod.rs"]
mod chaos;

use chaos::{outage, Fault, Outage};
use std::{net::SocketAddr, time::Duration};
use tether_test_util::netns::Netns;

const SCENARIO: Outage = Outage {
    name: "chaos_firewall",
    subscribers: 50,
    ping_interval: Duration::from_secs(1),
    pong_timeout: Duration::from_secs(2),
    outage: Duration::from_secs(5),
    before: 20,
    during: 30,
    after: 10,
    slack: Duration::from_millis(1200),
};

struct DropPort;

impl Fault for DropPort {
    fn inject(&self, ns: &Netns, server: SocketAddr) {
        ns.drop_port(server.port());
    }

    fn heal(&self, ns: &Netns, _server: SocketAddr) {
        ns.clear_drops();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firewall_drop_is_detected_by_both_sides_and_everything_recovered() {
    outage(&SCENARIO, &DropPort).await;
}
