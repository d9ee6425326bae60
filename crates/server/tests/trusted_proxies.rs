//! Attack: clients spoof `X-Forwarded-For`/`Forwarded` to dodge their
//! per-address caps (or to frame someone else); and, the other way round, a
//! trusted proxy's clients must not share one cap.
//!
//! Bound: headers are believed only from `--trusted-proxies` peers, only the
//! one `--forwarded-header` names, and then only its right-most untrusted
//! entry; per-address caps apply to that
//! address (IPv6 grouped by /64). An untrusted peer stays capped under its
//! own address whatever it claims. A bystander on 127.0.0.2 stays served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use tether_test_util::{attack::Bystander, http, TestServer};

const PROXY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const SPOOFER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

#[tokio::test]
async fn forwarded_clients_get_their_own_caps_and_spoofers_do_not() {
    let server = TestServer::start(&[
        ("trusted-proxies", "127.0.0.1"),
        ("max-connections-per-ip", "2"),
    ])
    .await;
    let mut bystander = Bystander::join(server.addr).await;
    let mut held = Vec::new();

    // Two clients behind the trusted proxy: two places each, not two in all.
    for _ in 0..2 {
        let (res, tcp) = http::upgrade_with(
            PROXY,
            server.addr,
            "/ws",
            &["X-Forwarded-For: 198.51.100.1"],
        )
        .await;
        assert_eq!(res.status, 101, "{res:?}");
        held.push(tcp);
    }
    let (res, _) = http::upgrade_with(
        PROXY,
        server.addr,
        "/ws",
        &["X-Forwarded-For: 198.51.100.1"],
    )
    .await;
    assert_eq!(res.status, 503, "{res:?}");
    assert!(res.body.contains("too many connections from your address"));
    // The client wrote its own (spoofed) entry on the left: the proxy's
    // right-most entry still names it.
    let (res, _) = http::upgrade_with(
        PROXY,
        server.addr,
        "/ws",
        &["X-Forwarded-For: 203.0.113.77, 198.51.100.1"],
    )
    .await;
    assert_eq!(
        res.status, 503,
        "a left-hand entry must not buy a fresh cap"
    );
    let (res, tcp) = http::upgrade_with(
        PROXY,
        server.addr,
        "/ws",
        &["X-Forwarded-For: 198.51.100.2"],
    )
    .await;
    assert_eq!(res.status, 101, "another client behind the proxy: {res:?}");
    held.push(tcp);

    // `Forwarded` is not the configured header (--forwarded-header defaults
    // to x-forwarded-for): what a client writes there names nobody.
    let (res, tcp) = http::upgrade_with(
        PROXY,
        server.addr,
        "/ws",
        &[
            "Forwarded: for=198.51.100.7",
            "X-Forwarded-For: 198.51.100.3",
        ],
    )
    .await;
    assert_eq!(res.status, 101, "{res:?}");
    held.push(tcp);
    let held_by = |ip: &str| server.node.admission.held_by(ip.parse().unwrap());
    assert_eq!(held_by("198.51.100.7"), 0, "Forwarded was believed");
    assert_eq!(held_by("198.51.100.3"), 1);
    assert_eq!(held_by("198.51.100.1"), 2);

    // An untrusted peer's headers are ignored: capped under its own address.
    let mut spoofed = Vec::new();
    for n in 0..2 {
        let xff = format!("X-Forwarded-For: 192.0.2.{n}");
        let (res, tcp) = http::upgrade_with(SPOOFER, server.addr, "/ws", &[&xff]).await;
        assert_eq!(res.status, 101, "{res:?}");
        spoofed.push(tcp);
    }
    let (res, _) = http::upgrade_with(
        SPOOFER,
        server.addr,
        "/ws",
        &["X-Forwarded-For: 192.0.2.99"],
    )
    .await;
    assert_eq!(
        res.status, 503,
        "spoofed header bought a fresh cap: {res:?}"
    );
    assert_eq!(
        server.node.admission.held_by("192.0.2.99".parse().unwrap()),
        0
    );

    bystander.still_served().await;
}

#[tokio::test]
async fn with_forwarded_header_forwarded_only_rfc_7239_counts() {
    let server = TestServer::start(&[
        ("trusted-proxies", "127.0.0.1"),
        ("forwarded-header", "forwarded"),
        ("max-connections-per-ip", "2"),
    ])
    .await;
    let mut bystander = Bystander::join(server.addr).await;
    let mut held = Vec::new();
    // RFC 7239, quoted IPv6 with a port; another address in the same /64 is
    // the same subscriber. X-Forwarded-For beside it is not read.
    for (header, want) in [
        (r#"Forwarded: for="[2001:db8:1:2::a]:4711""#, 101),
        (r#"Forwarded: for="[2001:db8:1:2::b]""#, 101),
        (r#"Forwarded: for="[2001:db8:1:2::c]:1""#, 503),
        (r#"Forwarded: for="[2001:db8:1:3::a]""#, 101),
    ] {
        let (res, tcp) = http::upgrade_with(
            PROXY,
            server.addr,
            "/ws",
            &[header, "X-Forwarded-For: 198.51.100.9"],
        )
        .await;
        assert_eq!(res.status, want, "{header}: {res:?}");
        held.push(tcp);
    }
    let held_by = |ip: &str| server.node.admission.held_by(ip.parse().unwrap());
    assert_eq!(held_by("2001:db8:1:2::ffff"), 2);
    assert_eq!(held_by("198.51.100.9"), 0, "X-Forwarded-For was believed");
    bystander.still_served().await;
}

#[tokio::test]
async fn publish_rate_follows_the_forwarded_client() {
    let server = TestServer::start(&[
        ("trusted-proxies", "127.0.0.0/30"),
        ("publish-rate-per-ip", "0.1"),
        ("publish-burst-per-ip", "1"),
    ])
    .await;
    let mut bystander = Bystander::join(server.addr).await;
    let publish = |xff: &'static str| {
        let addr = server.addr;
        async move {
            http::request(
                addr,
                "POST",
                "/api/publish",
                &[
                    ("Content-Type", "application/json"),
                    ("X-Forwarded-For", xff),
                ],
                r#"{"channel":"c","data":1}"#,
            )
            .await
            .status
        }
    };
    assert_eq!(publish("198.51.100.1").await, 200);
    assert_eq!(publish("198.51.100.1").await, 429);
    assert_eq!(
        publish("198.51.100.2").await,
        200,
        "another client, its own bucket"
    );
    // A trusted hop on the right is skipped, not taken for the client.
    assert_eq!(publish("198.51.100.2, 127.0.0.2").await, 429);
    bystander.still_served().await;
}
