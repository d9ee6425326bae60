//! Every proxy config in the docs (nginx and HAProxy, read from docs/*.md by
//! `doc_proxies`), run in front of a real server with `--trusted-proxies
//! 127.0.0.1` and the docs' other proxy flags.
//!
//! Attack: a client behind the proxy sends its own `Forwarded: for=...` and
//! `X-Forwarded-For` to escape its per-address cap (or to frame another
//! address).
//! Bound: only the header `--forwarded-header` names is read, and each
//! documented config overwrites it and clears the other; the client is
//! counted under its own address: `--max-connections-per-ip 2` refuses its
//! third connection, another client behind the same proxy is served, and a
//! direct bystander on 127.0.0.2 stays served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod doc_proxies;

use doc_proxies::DocProxy;
use std::net::{IpAddr, Ipv4Addr};
use tether_test_util::{attack::Bystander, http, TestServer};

const CLIENT_A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const CLIENT_B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
const FORGED: [&str; 2] = [
    "Forwarded: for=198.51.100.7",
    "X-Forwarded-For: 198.51.100.8",
];

#[tokio::test]
async fn a_client_behind_a_documented_proxy_cannot_pick_its_address() {
    doc_proxies::each(counted_under_its_own_address).await;
}

async fn counted_under_its_own_address(doc: DocProxy) {
    let flags = doc.server_flags(&[("max-connections-per-ip", "2")]);
    let server = TestServer::start(&flags).await;
    let proxy = doc.start(server.addr).await;
    let mut bystander = Bystander::join(server.addr).await;
    let origin = &doc.origin;
    let held_by = |ip: &str| server.node.admission.held_by(ip.parse().unwrap());

    let mut held = Vec::new();
    for _ in 0..2 {
        let (res, tcp) = http::upgrade_with(CLIENT_A, proxy.addr(), "/ws", &FORGED).await;
        assert_eq!(res.status, 101, "{origin}: {res:?}\n{}", proxy.log());
        held.push(tcp);
    }
    assert_eq!(
        (
            held_by("127.0.0.3"),
            held_by("198.51.100.7"),
            held_by("198.51.100.8")
        ),
        (2, 0, 0),
        "{origin}: counted under (its own, Forwarded's, X-Forwarded-For's) address"
    );
    let (res, _) = http::upgrade_with(CLIENT_A, proxy.addr(), "/ws", &FORGED).await;
    assert_eq!(res.status, 503, "{origin}: a third connection: {res:?}");
    assert!(
        res.body.contains("too many connections from your address"),
        "{origin}: {}",
        res.body
    );
    // Another client behind the same proxy has caps of its own.
    let (res, tcp) = http::upgrade_with(CLIENT_B, proxy.addr(), "/ws", &FORGED).await;
    assert_eq!(res.status, 101, "{origin}: another client: {res:?}");
    held.push(tcp);
    assert_eq!(held_by("127.0.0.4"), 1, "{origin}");
    bystander.still_served().await;
}

/// What each documented config sends upstream, seen by a stand-in that
/// answers every request with its own head: exactly one `X-Forwarded-For`,
/// the client's address alone, and no `Forwarded` (configs with the PROXY
/// protocol name the client in its header instead, and are left out).
#[tokio::test]
async fn documented_proxies_overwrite_x_forwarded_for_and_clear_forwarded() {
    doc_proxies::each(|doc| async move {
        if doc.flags.iter().any(|(k, _)| k == "proxy-protocol") {
            return;
        }
        let upstream = EchoHead::start().await;
        let proxy = doc.start(upstream.addr).await;
        let headers = [
            ("Forwarded", "for=198.51.100.7"),
            ("X-Forwarded-For", "198.51.100.8"),
        ];
        let res = http::request_from(CLIENT_A, proxy.addr(), "GET", "/", &headers, "").await;
        assert_eq!(res.status, 200, "{}: {res:?}", doc.origin);
        let sent: Vec<String> = res
            .body
            .lines()
            .map(|l| l.to_ascii_lowercase())
            .filter(|l| l.starts_with("forwarded:") || l.starts_with("x-forwarded-for:"))
            .collect();
        assert_eq!(
            sent,
            ["x-forwarded-for: 127.0.0.3"],
            "{}: forwarding headers sent upstream",
            doc.origin
        );
    })
    .await;
}

/// An upstream that answers each request with its head as the body.
struct EchoHead {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoHead {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    // Bounded: a head of at most 64 KiB, then answer.
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        head.len()
                    );
                    let _ = tcp.write_all(answer.as_bytes()).await;
                    let _ = tcp.write_all(&head).await;
                });
            }
        });
        EchoHead { addr, task }
    }
}

impl Drop for EchoHead {
    fn drop(&mut self) {
        self.task.abort();
    }
}
