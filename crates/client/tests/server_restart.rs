//! The server (memory broker) is killed and restarted on the same address:
//! the client reconnects, and the subscriber is told explicitly that the
//! missed publications could not be recovered.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{fast_client, free_addr, next_event, offsets_until, wait_state};
use tether_client::{Event, State};
use tether_test_util::{http, process::ServerProcess};

#[tokio::test]
async fn restart_reports_unrecovered_then_delivers_again() {
    let addr = free_addr().await;
    let listen = addr.to_string();
    let mut server = ServerProcess::start_at(&listen, &[], |_| {}).await;
    let client = fast_client(&format!("ws://{addr}/ws"));
    let mut state = client.state();
    let mut sub = client.subscribe("restart").await.expect("subscribe");
    assert!(matches!(
        next_event(&mut sub).await,
        Event::Subscribed { .. }
    ));
    for i in 1..=3 {
        http::publish(addr, "restart", serde_json::json!(i)).await;
    }
    assert_eq!(offsets_until(&mut sub, 3).await, [1, 2, 3]);

    server.child.kill().await.expect("kill server");
    wait_state(&mut state, "reconnecting", |s| {
        matches!(s, State::Reconnecting { .. })
    })
    .await;
    let _server = ServerProcess::start_at(&listen, &[], |_| {}).await;
    wait_state(&mut state, "connected again", |s| *s == State::Connected).await;

    match next_event(&mut sub).await {
        Event::Unrecovered { offset, .. } => assert_eq!(offset, 0, "fresh history"),
        other => panic!("expected Unrecovered, got {other:?}"),
    }
    // Delivery continues in the new epoch, from its first offset.
    http::publish(addr, "restart", serde_json::json!("after")).await;
    match next_event(&mut sub).await {
        Event::Publication(p) => {
            assert_eq!(p.offset, 1);
            assert_eq!(p.data.get(), "\"after\"");
        }
        other => panic!("expected a publication, got {other:?}"),
    }
}
