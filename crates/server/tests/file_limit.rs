//! A server started with a low open-file limit and hit with more
//! connections than it can hold keeps every existing connection working,
//! refuses the excess with 503, and serves new clients once the excess leaves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tether_test_util::{http, process::ServerProcess, ws::WsClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_the_file_limit_new_handshakes_get_503_and_existing_ones_live() {
    // `ulimit -n 256` sets soft and hard limits; the server cannot raise it.
    let server =
        ServerProcess::start_with_ulimit(&["--handshake-burst-per-ip", "10000"], "-n 256", None)
            .await;
    let url = format!("ws://{}/ws", server.addr);

    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..320 {
        match WsClient::try_connect(&url, &[]).await {
            Ok(c) => held.push(c),
            Err(e) => {
                refused += 1;
                assert!(e.to_string().contains("503"), "refusals are 503: {e}");
            }
        }
    }
    assert!(
        held.len() > 150,
        "the budget holds most of the 256 descriptors: {}",
        held.len()
    );
    assert!(refused > 0, "the excess is refused");

    // Every held connection still works.
    for c in &mut held {
        assert_eq!(c.recv().await["type"], "welcome");
        c.send(json!({"type": "ping"})).await;
        assert_eq!(c.recv().await["type"], "pong");
    }
    let refusal = http::upgrade_from([127, 0, 0, 1].into(), server.addr, "/ws").await;
    assert_eq!(refusal.status, 503);
    assert!(refusal.header("Retry-After").is_some());
    assert!(refusal.body.contains("open-file limit"), "{}", refusal.body);

    // Once some leave, new clients are served again.
    held.truncate(held.len() - 50);
    tether_test_util::eventually("new clients served after the excess leaves", || async {
        WsClient::try_connect(&url, &[]).await.is_ok()
    })
    .await;
    for c in &mut held {
        c.send(json!({"type": "ping"})).await;
        assert_eq!(c.recv().await["type"], "pong");
    }
}
