//! A publish larger than the server's `--max-message-bytes` gets the
//! connection closed with 1009; the client fails that publish with
//! `Error::MessageTooBig` instead of resending it into the same close after
//! every reconnect, and the publishes around it go through.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{fast_client, wait_state};
use tether_client::{Error, State};
use tether_test_util::{http, TestServer, STEP};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_over_the_servers_limit_fails_and_the_rest_go_through() {
    let server = TestServer::start(&[("max-message-bytes", "1024")]).await;
    let client = fast_client(&server.ws_url("/ws"));
    let mut state = client.state();
    wait_state(&mut state, "connected", |s| *s == State::Connected).await;
    assert_eq!(client.publish("big", serde_json::json!("a")).await, Ok(1));

    let huge = serde_json::json!("x".repeat(4_000));
    let (too_big, after) = tokio::join!(
        client.publish("big", huge),
        client.publish("big", serde_json::json!("b")),
    );
    match too_big {
        Err(Error::MessageTooBig { bytes }) => assert!(bytes > 4_000, "{bytes}"),
        other => panic!("expected MessageTooBig, got {other:?}"),
    }
    assert_eq!(after, Ok(2), "the publish behind it is stored, once");
    // The client is connected again and the huge one is not resent: the
    // server closed exactly one connection with 1009.
    wait_state(&mut state, "connected", |s| *s == State::Connected).await;
    assert_eq!(
        timeout(STEP, client.publish("big", serde_json::json!("c")))
            .await
            .expect("in time"),
        Ok(3)
    );
    assert_eq!(
        http::metric(server.addr, "tether_closes_total", &[("code", "1009")]).await,
        1.0
    );
}
