//! Long-polling sessions have a budget of their own
//! (`--max-long-poll-sessions`, and `--max-long-poll-sessions-per-ip` of it
//! per address), apart from `--max-connections`: sessions opened from
//! several addresses stop at their cap with 503 + `Retry-After`, and take
//! none of the WebSockets' places, so a bystander on 127.0.0.2 still gets
//! every WebSocket `--max-connections` allows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use tether_test_util::{
    attack::{Bystander, BYSTANDER_IP},
    eventually,
    http::{self, HttpResponse},
    ws::WsClient,
    TestServer,
};

const MAX_CONNECTIONS: usize = 8;
const SESSIONS: usize = 12;
const PER_IP: usize = 5;
/// Attacking addresses: 127.0.0.3 to 127.0.0.5, 3 × 5 places wanted, 12 given.
const ATTACKERS: u8 = 3;

fn attacker(n: u8) -> IpAddr {
    [127, 0, 0, 3 + n].into()
}

/// Waits until the node holds `n` connections and sessions: the test's
/// handshakes, dropped once answered, have been released.
async fn settled(addr: std::net::SocketAddr, n: usize) {
    eventually("dropped WebSockets released", || async move {
        http::metric(addr, "tether_connections", &[]).await == n as f64
    })
    .await;
}

fn retry_after(res: &HttpResponse) -> bool {
    res.header("Retry-After")
        .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1))
}

#[tokio::test]
async fn sessions_past_their_cap_are_refused_and_take_no_websocket_place() {
    let (max, sessions, per_ip) = (
        MAX_CONNECTIONS.to_string(),
        SESSIONS.to_string(),
        PER_IP.to_string(),
    );
    let server = TestServer::start(&[
        ("max-connections", &max),
        ("max-long-poll-sessions", &sessions),
        ("max-long-poll-sessions-per-ip", &per_ip),
        ("ping-interval", "30s"),
    ])
    .await;
    let addr = server.addr;
    let mut bystander = Bystander::join(addr).await;

    let (mut opened, mut node_full, mut ip_full) = (0, 0, 0);
    for n in 0..ATTACKERS {
        // One more than the address's share.
        for _ in 0..=PER_IP {
            let res = http::request_from(attacker(n), addr, "POST", "/lp/open", &[], "").await;
            match res.status {
                200 => opened += 1,
                503 if res.body.contains("--max-long-poll-sessions-per-ip") => ip_full += 1,
                503 if res.body.contains("--max-long-poll-sessions)") => node_full += 1,
                _ => panic!("unexpected answer: {res:?}"),
            }
            if res.status == 503 {
                assert!(retry_after(&res), "{res:?}");
            }
            // A WebSocket handshake from the bystander's address is served
            // throughout: sessions do not count against --max-connections.
            let ws = http::upgrade_from(BYSTANDER_IP, addr, "/ws").await;
            assert_eq!(ws.status, 101, "after {opened} sessions: {ws:?}");
            settled(addr, 1 + opened).await;
        }
    }
    assert_eq!(opened, SESSIONS, "the node's cap, not more");
    assert_eq!(ip_full, 2, "the first two addresses each past their share");
    assert_eq!(node_full, 4, "the third address past the node's cap");
    assert_eq!(
        http::metric(addr, "tether_longpoll_sessions", &[]).await,
        SESSIONS as f64
    );
    for outcome in ["longpoll_full", "longpoll_ip_full"] {
        let n = http::metric(addr, "tether_handshakes_total", &[("outcome", outcome)]).await;
        assert!(n >= 1.0, "{outcome}: {n}");
    }

    settled(addr, 1 + SESSIONS).await;
    // Every WebSocket place but the bystander's is still free.
    let mut held = Vec::new();
    for _ in 1..MAX_CONNECTIONS {
        let url = format!("ws://{addr}/ws");
        let mut ws = WsClient::connect_from(BYSTANDER_IP, &url)
            .await
            .expect("a WebSocket place is free");
        assert_eq!(ws.recv().await["type"], "welcome");
        held.push(ws);
    }
    let past = http::upgrade_from(BYSTANDER_IP, addr, "/ws").await;
    assert_eq!(past.status, 503, "{past:?}");
    assert!(
        past.body.contains("server at its connection limit"),
        "{past:?}"
    );
    bystander.still_served().await;
    server.shutdown().await;
}
