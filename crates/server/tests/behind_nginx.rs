//! A real nginx in front, with `proxy_set_header X-Forwarded-For
//! $proxy_add_x_forwarded_for`, and `--trusted-proxies 127.0.0.1`: the
//! per-address cap applies to each real client behind nginx, not to nginx.
//!
//! Attack: one client behind the proxy opens connections until refused.
//! Bound: it gets 503 (passed through nginx) at `--max-connections-per-ip`;
//! another client behind the same nginx still connects; a direct bystander
//! on 127.0.0.2 stays served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use tether_test_util::{attack::Bystander, http, nginx::Nginx, TestServer};

const CLIENT_A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const CLIENT_B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));

#[tokio::test]
async fn per_address_cap_applies_to_the_client_behind_nginx() {
    let server = TestServer::start(&[
        ("trusted-proxies", "127.0.0.1"),
        ("max-connections-per-ip", "3"),
    ])
    .await;
    let nginx = Nginx::start(&format!(
        "proxy_pass http://{};\n\
         proxy_http_version 1.1;\n\
         proxy_set_header Upgrade $http_upgrade;\n\
         proxy_set_header Connection \"upgrade\";\n\
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         proxy_read_timeout 60s;",
        server.addr
    ))
    .await;
    let mut bystander = Bystander::join(server.addr).await;

    let mut held = Vec::new();
    for _ in 0..3 {
        let (res, tcp) = http::upgrade_with(CLIENT_A, nginx.addr(), "/ws", &[]).await;
        assert_eq!(res.status, 101, "{res:?}");
        held.push(tcp);
    }
    assert_eq!(server.node.admission.held_by(CLIENT_A), 3);
    let (res, _) = http::upgrade_with(CLIENT_A, nginx.addr(), "/ws", &[]).await;
    assert_eq!(res.status, 503, "{res:?}");
    assert!(
        res.body.contains("too many connections from your address"),
        "{}",
        res.body
    );
    // A client spoofing X-Forwarded-For through nginx: nginx appends the
    // real address, and the right-most entry is the one that counts.
    let (res, _) = http::upgrade_with(
        CLIENT_A,
        nginx.addr(),
        "/ws",
        &["X-Forwarded-For: 198.51.100.1"],
    )
    .await;
    assert_eq!(res.status, 503, "{res:?}");

    // Another client behind the same nginx is not lumped in with it.
    for _ in 0..3 {
        let (res, tcp) = http::upgrade_with(CLIENT_B, nginx.addr(), "/ws", &[]).await;
        assert_eq!(res.status, 101, "{res:?}");
        held.push(tcp);
    }
    bystander.still_served().await;
}
