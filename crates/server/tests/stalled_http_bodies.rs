//! Attack: one address opens many HTTP sockets that send a request head and
//! then stall (or trickle) the body, or sit idle between keep-alive
//! requests, to exhaust the node's sockets.
//!
//! Bound: every socket counts under its address from accept on, so the
//! attacker is refused with 503 + Retry-After at `--max-connections-per-ip`
//! while a bystander on 127.0.0.2 connects and is served; each stalled
//! socket gets 408 and is closed within `--handshake-timeout`, and an idle
//! keep-alive socket is closed within it too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};
use tether_test_util::{
    attack::Bystander,
    eventually,
    http::{self, connect_from, parse_response, read_response},
    TestServer,
};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const CAP: usize = 20;

async fn stalled_body(server: &TestServer) -> TcpStream {
    let mut tcp = connect_from(ATTACKER, server.addr).await.unwrap();
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"channel\":",
        server.addr
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

#[tokio::test]
async fn stalled_bodies_hit_the_per_address_cap_and_are_cut_by_the_timeout() {
    let server = TestServer::start(&[
        ("max-connections-per-ip", &CAP.to_string()),
        ("handshake-timeout", "2s"),
    ])
    .await;
    let mut bystander = Bystander::join(server.addr).await;

    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..CAP {
        stalled.push(stalled_body(&server).await);
    }
    eventually("the attacker's sockets are all counted", || {
        let held = server.node.admission.held_by(ATTACKER);
        async move { held == CAP }
    })
    .await;

    // One more socket from the same address: a short 503, then closed.
    let mut over = connect_from(ATTACKER, server.addr).await.unwrap();
    let res = parse_response(&read_response(&mut over).await);
    assert_eq!(res.status, 503, "{res:?}");
    assert!(res.header("retry-after").is_some());
    assert!(
        res.body.contains("too many connections from your address"),
        "{}",
        res.body
    );

    // Meanwhile another address gets in and is served.
    bystander.still_served().await;
    let fresh = Bystander::join_channel(server.addr, "second").await;
    drop(fresh);

    // Every stalled socket gets 408 and is closed within the timeout.
    for mut tcp in stalled {
        let res = parse_response(&read_response(&mut tcp).await);
        assert_eq!(res.status, 408, "{res:?}");
        assert_eq!(res.json()["error"], "timeout");
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    eventually("the stalled sockets are freed", || {
        let held = server.node.admission.held_by(ATTACKER);
        async move { held == 0 }
    })
    .await;
    assert!(
        http::metric(
            server.addr,
            "tether_refusals_total",
            &[("reason", "body_timeout")]
        )
        .await
            >= CAP as f64
    );
    assert!(
        http::metric(
            server.addr,
            "tether_handshakes_total",
            &[("outcome", "ip_full")]
        )
        .await
            >= 1.0
    );

    // The address is welcome again, and the server is alive.
    let res = http::request(server.addr, "GET", "/healthz", &[], "").await;
    assert_eq!(res.status, 200);
    bystander.still_served().await;
}

#[tokio::test]
async fn a_trickled_body_is_cut_at_the_timeout_not_per_byte() {
    let server = TestServer::start(&[("handshake-timeout", "2s")]).await;
    let mut bystander = Bystander::join(server.addr).await;
    let mut tcp = stalled_body(&server).await;
    let started = Instant::now();
    // One byte every 300 ms would keep a per-read timeout happy forever.
    let mut answer = Vec::new();
    for _ in 0..40 {
        if tcp.write_all(b" ").await.is_err() {
            break;
        }
        if let Ok(buf) =
            tokio::time::timeout(Duration::from_millis(300), read_response(&mut tcp)).await
        {
            answer = buf;
            break;
        }
    }
    let res = parse_response(&answer);
    assert_eq!(res.status, 408, "{res:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    bystander.still_served().await;
}

#[tokio::test]
async fn an_idle_keep_alive_socket_is_closed_within_the_timeout() {
    let server = TestServer::start(&[("handshake-timeout", "1s")]).await;
    let mut bystander = Bystander::join(server.addr).await;
    let mut tcp = connect_from(ATTACKER, server.addr).await.unwrap();
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    tcp.write_all(req.as_bytes()).await.unwrap();
    let res = parse_response(&read_response(&mut tcp).await);
    assert_eq!(res.status, 200);
    assert_eq!(server.node.admission.held_by(ATTACKER), 1);
    // Now say nothing: the server closes the socket (read returns EOF).
    let started = Instant::now();
    let rest = read_response(&mut tcp).await;
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
        "{rest:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    eventually("the idle socket is freed", || {
        let held = server.node.admission.held_by(ATTACKER);
        async move { held == 0 }
    })
    .await;
    bystander.still_served().await;
}
