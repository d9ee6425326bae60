//! Connection caps and rate limits refuse the excess with 429/503 and
//! `Retry-After`, while other clients keep connecting and working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::{net::IpAddr, time::Duration};
use tether_test_util::{
    http,
    ws::{Ended, WsClient},
    TestServer,
};

/// `tether_handshakes_total{outcome}` as the server reports it.
async fn handshakes(server: &TestServer, outcome: &str) -> f64 {
    http::metric(
        server.addr,
        "tether_handshakes_total",
        &[("outcome", outcome)],
    )
    .await
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[tokio::test]
async fn per_ip_cap_answers_503_while_other_ips_connect() {
    let server = TestServer::start(&[("max-connections-per-ip", "3")]).await;
    let url = server.ws_url("/ws");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            WsClient::connect_from(ip(2), &url)
                .await
                .expect("under the cap"),
        );
    }
    let refused = http::upgrade_from(ip(2), server.addr, "/ws").await;
    assert_eq!(refused.status, 503);
    assert!(refused
        .header("Retry-After")
        .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    assert!(
        refused
            .body
            .contains("too many connections from your address"),
        "{}",
        refused.body
    );
    // Another address is unaffected, and the held connections still work.
    let mut other = WsClient::connect_from(ip(3), &url).await.expect("other ip");
    assert_eq!(other.recv().await["type"], "welcome");
    for c in &mut held {
        assert_eq!(c.recv().await["type"], "welcome");
        c.send(json!({"type": "ping"})).await;
        assert_eq!(c.recv().await["type"], "pong");
    }
    // Leaving frees the place.
    held.pop();
    tether_test_util::eventually("a place is free again", || async {
        http::upgrade_from(ip(2), server.addr, "/ws").await.status == 101
    })
    .await;
    assert!(handshakes(&server, "ip_full").await >= 1.0);
}

#[tokio::test]
async fn handshake_bucket_answers_429_with_retry_after() {
    let server = TestServer::start(&[
        ("handshake-rate-per-ip", "0.5"),
        ("handshake-burst-per-ip", "3"),
    ])
    .await;
    for _ in 0..3 {
        assert_eq!(
            http::upgrade_from(ip(4), server.addr, "/ws").await.status,
            101
        );
    }
    let limited = http::upgrade_from(ip(4), server.addr, "/ws").await;
    assert_eq!(limited.status, 429);
    let retry: u64 = limited
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "retry after {retry}");
    assert_eq!(
        http::upgrade_from(ip(5), server.addr, "/ws").await.status,
        101,
        "other IPs unaffected"
    );
    assert!(handshakes(&server, "rate_limited").await >= 1.0);
}

#[tokio::test]
async fn global_cap_answers_503() {
    let server = TestServer::start(&[("max-connections", "2")]).await;
    let url = server.ws_url("/ws");
    let _a = WsClient::connect_from(ip(6), &url).await.expect("1");
    let _b = WsClient::connect_from(ip(7), &url).await.expect("2");
    let refused = http::upgrade_from(ip(8), server.addr, "/ws").await;
    assert_eq!(refused.status, 503);
    assert!(
        refused.body.contains("connection limit"),
        "{}",
        refused.body
    );
    assert!(refused.header("Retry-After").is_some());
}

#[tokio::test]
async fn message_rate_is_answered_then_closed_with_4005() {
    let server = TestServer::start(&[("messages-per-second", "1"), ("messages-burst", "2")]).await;
    let (mut c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    for id in 1..=14 {
        c.send(json!({"type": "subscribe", "id": id, "channel": format!("c{id}")}))
            .await;
    }
    let mut ok = 0;
    let mut limited = 0;
    let end = loop {
        match c.try_recv(Duration::from_secs(5)).await {
            Some(m) if m["type"] == "subscribed" => ok += 1,
            Some(m) if m["code"] == "rate_limited" => {
                limited += 1;
                assert!(m["id"].is_u64(), "the error names the request: {m}");
            }
            Some(m) => panic!("unexpected {m}"),
            None => break c.ended(Duration::from_secs(1)).await,
        }
    };
    assert_eq!(ok, 2, "the burst is served");
    assert_eq!(limited, 10, "ten refusals are the grace");
    assert!(
        matches!(end, Ended::Closed(4005, _) | Ended::Abnormal),
        "{end:?}"
    );
    assert_eq!(
        http::metric(server.addr, "tether_closes_total", &[("code", "4005")]).await,
        1.0
    );
}

#[tokio::test]
async fn foreign_origin_gets_403() {
    let server = TestServer::start(&[(
        "allowed-origins",
        "https://app.example.com,https://*.example.org",
    )])
    .await;
    let url = server.ws_url("/ws");
    for good in ["https://app.example.com", "https://x.example.org"] {
        assert!(
            WsClient::try_connect(&url, &[("Origin", good)])
                .await
                .is_ok(),
            "{good}"
        );
    }
    let mut headers = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    headers.push(("Origin", "https://evil.example.net"));
    let res = http::request(server.addr, "GET", "/ws", &headers, "").await;
    assert_eq!(res.status, 403);
    assert!(
        res.body.contains("https://evil.example.net"),
        "{}",
        res.body
    );
    assert_eq!(handshakes(&server, "forbidden").await, 1.0);
}

#[tokio::test]
async fn slowloris_is_cut_at_the_handshake_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(&[("handshake-timeout", "1s")]).await;
    let start = std::time::Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // Trickle one header byte every 100 ms; never finish the head.
    let trickle = async {
        loop {
            if tcp.write_all(b"X").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(1), tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => break, // an error response also ends it
                Err(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), trickle)
        .await
        .expect("cut within 5 s");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "cut too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "cut too late: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_silent_tcp_connection_is_cut_at_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let server = TestServer::start(&[("handshake-timeout", "1s")]).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let mut buf = [0u8; 64];
    let start = std::time::Instant::now();
    // Whatever comes back (EOF, a reset, or a 408), it comes at the timeout.
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("server closes a silent socket");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "cut too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "cut too late: {elapsed:?}"
    );
}
