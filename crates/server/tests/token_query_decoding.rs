//! `?token=` is percent-decoded byte by byte: a `%` followed by a multi-byte
//! character, a dangling `%`, or escapes that decode to invalid UTF-8 get a
//! clean 401 "malformed token" from the real binary — never a panic — and a
//! well-behaved client on 127.0.0.2 stays connected and served meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tether_test_util::{attack::Bystander, http, process::ServerProcess};

/// A raw upgrade whose request target is exactly `target` (any bytes).
fn upgrade(target: &[u8]) -> Vec<u8> {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(
        b" HTTP/1.1\r\nHost: tether\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    req
}

#[tokio::test]
async fn odd_percent_escapes_in_the_token_get_401_not_a_panic() {
    // --allow-anonymous: the tokenless bystander may subscribe; a token that
    // is presented is still verified, so a bad one is refused.
    let server = ServerProcess::start(&["--jwt-secret", "s", "--allow-anonymous"]).await;
    let mut bystander = Bystander::join(server.addr).await;
    let targets: [&[u8]; 7] = [
        // Raw UTF-8 after `%`: `%€€` (used to slice inside a character).
        "/ws?token=%€€".as_bytes(),
        "/ws?token=a.b.c%4€".as_bytes(),
        // Percent-encoded bytes that are not UTF-8.
        b"/ws?token=%ff%fe%fd",
        b"/ws?token=%C3%28.e30.x",
        // Valid UTF-8 that is not ASCII.
        b"/ws?token=%C3%A9",
        // Dangling escapes.
        b"/ws?token=%",
        b"/ws?token=abc%4",
    ];
    for target in targets {
        let res = http::raw(server.addr, &upgrade(target)).await;
        let shown = String::from_utf8_lossy(target);
        assert_eq!(res.status, 401, "{shown}: {}", res.body);
        assert!(
            res.body.contains("malformed token"),
            "{shown}: {}",
            res.body
        );
        bystander.still_served().await;
    }
    // The server itself is alive and answers plain requests too.
    let health = http::request(server.addr, "GET", "/healthz", &[], "").await;
    assert_eq!(health.status, 200);
}
