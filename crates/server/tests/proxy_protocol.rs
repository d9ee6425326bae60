//! Attack: PROXY protocol headers used to forge a client address, and
//! garbage or silence from a trusted proxy to hold sockets.
//!
//! Bound: with `--proxy-protocol`, only peers in `--trusted-proxies` are
//! parsed: their v1/v2 header names the client, whose per-address cap then
//! applies from the socket on; a trusted peer sending no valid header is
//! dropped (counted in `tether_refusals_total{reason="proxy_header"}`), one
//! sending nothing is dropped at `--handshake-timeout`. An untrusted peer is
//! served as-is: its "PROXY ..." line is just a bad HTTP request. A
//! bystander on 127.0.0.2 stays served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};
use tether_test_util::{
    attack::Bystander,
    eventually,
    http::{self, connect_from, parse_response, read_response},
    TestServer,
};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const PROXY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

fn v1(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 {port} 80\r\n").into_bytes()
}

fn v2(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    h
}

async fn proxied(addr: SocketAddr, header: &[u8]) -> TcpStream {
    let mut tcp = connect_from(PROXY, addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    tcp
}

#[tokio::test]
async fn proxy_headers_name_the_client_only_from_trusted_peers() {
    let server = TestServer::start(&[
        ("trusted-proxies", "127.0.0.1"),
        ("proxy-protocol", ""),
        ("max-connections-per-ip", "2"),
        ("handshake-timeout", "1s"),
    ])
    .await;
    let mut bystander = Bystander::join(server.addr).await;

    // v2 (HAProxy send-proxy-v2): the client holds two WebSockets...
    let mut held = Vec::new();
    for port in [4710, 4711] {
        let tcp = proxied(server.addr, &v2([198, 51, 100, 7], port)).await;
        let (res, ws) = http::upgrade_on(tcp, server.addr, "/ws", &[]).await;
        assert_eq!(res.status, 101, "{res:?}");
        held.push(ws);
    }
    assert_eq!(
        server
            .node
            .admission
            .held_by("198.51.100.7".parse().unwrap()),
        2
    );
    // ...so its next socket (v1 this time) is over its cap of 2, at accept.
    let mut over = proxied(server.addr, &v1("198.51.100.7", 4712)).await;
    let res = parse_response(&read_response(&mut over).await);
    assert_eq!(res.status, 503, "{res:?}");
    // Another client behind the same proxy is not affected.
    let mut tcp = proxied(server.addr, &v1("198.51.100.8", 4713)).await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(parse_response(&read_response(&mut tcp).await).status, 200);

    // Garbage from the trusted peer: dropped without an answer.
    let mut garbage = connect_from(PROXY, server.addr).await.unwrap();
    garbage
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        read_response(&mut garbage).await.is_empty(),
        "served without a PROXY header"
    );
    // Silence from the trusted peer: dropped at the handshake timeout.
    let mut silent = connect_from(PROXY, server.addr).await.unwrap();
    let started = Instant::now();
    assert!(read_response(&mut silent).await.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // An untrusted peer's PROXY line is never parsed: it is a bad request,
    // and the address it claims gets nothing.
    let mut forged = connect_from(OTHER, server.addr).await.unwrap();
    forged.write_all(&v1("198.51.100.99", 1)).await.unwrap();
    forged
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let res = parse_response(&read_response(&mut forged).await);
    assert_eq!(
        res.status, 400,
        "an untrusted PROXY header was honoured: {res:?}"
    );
    assert_eq!(
        server
            .node
            .admission
            .held_by("198.51.100.99".parse().unwrap()),
        0
    );
    drop(forged);

    eventually("two PROXY header refusals counted", || async {
        http::metric_from(
            OTHER,
            server.addr,
            "tether_refusals_total",
            &[("reason", "proxy_header")],
        )
        .await
            >= 2.0
    })
    .await;
    bystander.still_served().await;
}
