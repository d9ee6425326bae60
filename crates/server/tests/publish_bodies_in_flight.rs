//! Attack: one address opens many `POST /api/publish` requests, each
//! sending its head and most of a large body, then stalls — every partial
//! body sits in the server's memory until the body timeout.
//!
//! Bound: one address may have at most 64 publish bodies arriving at once
//! (`MAX_BODIES_PER_IP`); the next gets 503 + `Retry-After` at once,
//! counted in `tether_refusals_total{reason="bodies_in_flight"}`. Server
//! memory grows by less than 64 × the body size; a bystander on 127.0.0.2
//! keeps publishing and being served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tether_test_util::{
    attack::{rss_kib, Bystander},
    http,
    process::ServerProcess,
};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

async fn stalled_body(addr: SocketAddr) -> TcpStream {
    let mut tcp = http::connect_from(ATTACKER, addr).await.unwrap();
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 65000\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&[b' '; 60_000]).await.unwrap();
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_64_bodies_in_flight() {
    let server = ServerProcess::start(&["--handshake-timeout", "30s"]).await;
    let (addr, pid) = (server.addr, server.child.id().expect("pid"));
    let mut bystander = Bystander::join(addr).await;
    let before = rss_kib(pid);
    // 300 stalled bodies of 60 KB: 18 MB if every one were held.
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(stalled_body(addr).await);
    }
    // Once the 64 heads are in, a complete publish from the same address is
    // refused at once (before that, it goes through). A probe can take the
    // last place just before the 64th stalled head arrives, which is then
    // refused: a stalled socket that got an answer is replaced.
    let deadline = tokio::time::Instant::now() + tether_test_util::STEP;
    loop {
        for tcp in held.iter_mut() {
            let mut buf = [0u8; 512];
            if !matches!(tcp.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            {
                *tcp = stalled_body(addr).await;
            }
        }
        let (status, _) = http::try_publish(addr, &json!({"channel": "probe", "data": 1})).await;
        if status == 503 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the address's 64 places were never all taken"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for _ in 0..236 {
        let mut tcp = stalled_body(addr).await;
        let res = http::parse_response(&http::read_response(&mut tcp).await);
        assert_eq!(res.status, 503, "{res:?}");
        assert_eq!(res.header("retry-after"), Some("1"));
    }
    let after = rss_kib(pid);
    assert!(
        after < before + 8 * 1024,
        "server RSS grew from {before} KiB to {after} KiB"
    );
    assert!(
        http::metric(
            addr,
            "tether_refusals_total",
            &[("reason", "bodies_in_flight")]
        )
        .await
            >= 236.0
    );
    // Another address publishes as usual.
    bystander.still_served().await;
    drop(held);
}
