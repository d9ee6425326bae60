//! SIGTERM drains: new handshakes are refused, every client gets 1012 with a
//! reconnect hint, and the process exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tether_protocol::RetryHint;
use tether_test_util::{
    process::ServerProcess,
    ws::{Ended, WsClient},
};

#[tokio::test]
async fn sigterm_closes_clients_with_1012_and_exits_zero() {
    for signal in ["TERM", "INT"] {
        let mut server =
            ServerProcess::start(&["--drain-timeout", "5s", "--drain-jitter", "2s"]).await;
        let url = format!("ws://{}/ws", server.addr);
        let mut clients = Vec::new();
        for i in 0..5 {
            let (mut c, _) = WsClient::tether(&url).await;
            c.subscribe(i, "news", None).await;
            clients.push(c);
        }
        let (mut echo, _) = (
            WsClient::connect(&format!("ws://{}/echo", server.addr)).await,
            (),
        );

        server.signal(signal);
        for c in &mut clients {
            match c.ended(Duration::from_secs(5)).await {
                Ended::Closed(code, reason) => {
                    assert_eq!(code, 1012);
                    let hint = RetryHint::parse(&reason).expect("reconnect hint in the reason");
                    assert!(hint.0 <= Duration::from_secs(2), "{reason}");
                }
                other => panic!("expected 1012, got {other:?}"),
            }
        }
        assert!(matches!(
            echo.ended(Duration::from_secs(5)).await,
            Ended::Closed(1012, _)
        ));
        let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
            .await
            .expect("exits after draining")
            .expect("wait");
        assert_eq!(status.code(), Some(0), "SIG{signal}");
    }
}

#[tokio::test]
async fn drain_finishes_promptly_when_clients_leave() {
    let mut server = ServerProcess::start(&["--drain-timeout", "30s"]).await;
    let (_c, _) = WsClient::tether(&format!("ws://{}/ws", server.addr)).await;
    let start = std::time::Instant::now();
    server.signal("TERM");
    let status = server.child.wait().await.expect("wait");
    assert_eq!(status.code(), Some(0));
    // The client answered the close at once, so the 30 s timeout was not needed.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
