//! A long-polling session holds no file descriptor, so it is bounded by its
//! own caps (`--max-long-poll-sessions-per-ip` here), not by the open-file
//! socket budget: hundreds of `/lp/open` from one address on one keep-alive
//! socket under a low `ulimit -n` neither get refused for the file limit
//! nor make the node refuse sockets from anyone else, at any point of the
//! flood.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tether_test_util::{
    attack::{rss_kib, Bystander, BYSTANDER_IP},
    http,
    process::ServerProcess,
};
use tokio::io::AsyncWriteExt;

/// Under `ulimit -n 512` the socket budget is about 512 − 12 − 32 = 468;
/// the per-address session cap is set above it, so if sessions were in the
/// file budget they would reach it first.
const PER_IP: usize = 600;
/// More opens than the per-address cap allows.
const OPENS: usize = 640;
/// The bystander is checked after every this many opens.
const CHECK_EVERY: usize = 100;
/// What one session may cost in user space at most (about 1 KiB measured:
/// 599 sessions, 612 KiB; generous for allocator slack).
const KIB_PER_SESSION: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_from_one_address_do_not_use_up_the_socket_budget() {
    let per_ip = PER_IP.to_string();
    let server = ServerProcess::start_with_ulimit(
        &[
            "--handshake-burst-per-ip",
            "10000",
            "--max-long-poll-sessions-per-ip",
            &per_ip,
        ],
        "-n 512",
        None,
    )
    .await;
    let pid = server.child.id().unwrap();
    let mut bystander = Bystander::join(server.addr).await;
    let rss_before = rss_kib(pid);

    // One keep-alive socket from 127.0.0.1; every session holds a place
    // of the address's session share.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let open = format!(
        "POST /lp/open HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
        server.addr
    );
    let (mut opened, mut refused) = (0, Vec::new());
    for n in 1..=OPENS {
        tcp.write_all(open.as_bytes()).await.unwrap();
        let res = http::parse_response(&http::read_response(&mut tcp).await);
        match res.status {
            200 => opened += 1,
            _ => refused.push(res),
        }
        if n % CHECK_EVERY == 0 {
            served_throughout(&mut bystander, server.addr, n).await;
        }
    }
    assert_eq!(
        opened,
        PER_IP,
        "every session the per-address cap allows is opened (first refusal: {:?})",
        refused.first()
    );
    assert_eq!(refused.len(), OPENS - opened);
    for res in &refused {
        assert_eq!(res.status, 503, "{res:?}");
        assert!(
            res.body
                .contains("too many long-polling sessions from your address"),
            "{res:?}"
        );
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(fds < 64, "the sessions hold no descriptor: {fds} open");
    let grown = rss_kib(pid).saturating_sub(rss_before);
    assert!(
        grown < opened as u64 * KIB_PER_SESSION,
        "{opened} sessions grew the RSS by {grown} KiB"
    );

    served_throughout(&mut bystander, server.addr, OPENS).await;
}

/// Everyone else is served: the bystander's connection, a new WebSocket
/// handshake and a new long-polling session from 127.0.0.2.
async fn served_throughout(bystander: &mut Bystander, addr: std::net::SocketAddr, opens: usize) {
    bystander.still_served().await;
    let upgrade = http::upgrade_from(BYSTANDER_IP, addr, "/ws").await;
    assert_eq!(upgrade.status, 101, "after {opens} opens: {upgrade:?}");
    let lp = http::request_from(BYSTANDER_IP, addr, "POST", "/lp/open", &[], "").await;
    assert_eq!(lp.status, 200, "after {opens} opens: {lp:?}");
    assert_eq!(lp.json()["type"], "welcome");
}
