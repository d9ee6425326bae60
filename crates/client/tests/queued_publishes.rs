//! Publishes made while the client cannot reach the server wait in its
//! queue and arrive exactly once after the reconnect.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{fast_client, next_event, offsets_until, wait_state};
use futures_util::future::join_all;
use tether_client::{Event, State};
use tether_test_util::{
    proxy::{Cut, Proxy},
    TestServer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_publishes_arrive_exactly_once() {
    let server = TestServer::start(&[]).await;
    let proxy = Proxy::start(server.addr).await;
    // The observer connects directly, so it sees what the server stored.
    let observer = fast_client(&server.ws_url("/ws"));
    let mut seen = observer.subscribe("queued").await.expect("subscribe");
    assert!(matches!(
        next_event(&mut seen).await,
        Event::Subscribed { .. }
    ));

    let client = fast_client(&proxy.ws_url("/ws"));
    let mut state = client.state();
    wait_state(&mut state, "connected", |s| *s == State::Connected).await;
    // Stall the proxy and cut: the reconnect hangs in its handshake.
    proxy.pause(true);
    proxy.cut(Cut::Reset);
    proxy.wait_accepted(2).await;
    assert!(matches!(*state.borrow(), State::Reconnecting { .. }));

    let publishes = (1..=5).map(|i| {
        let client = client.clone();
        async move {
            client
                .publish("queued", serde_json::json!({ "i": i }))
                .await
        }
    });
    let acks = tokio::spawn(join_all(publishes));
    proxy.pause(false);
    let mut offsets: Vec<u64> = acks
        .await
        .expect("publishes")
        .into_iter()
        .map(|r| r.expect("acked"))
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, [1, 2, 3, 4, 5]);
    assert_eq!(offsets_until(&mut seen, 5).await, [1, 2, 3, 4, 5]);
    // Nothing was stored twice: a marker published now gets offset 6.
    assert_eq!(
        client.publish("queued", serde_json::json!("end")).await,
        Ok(6)
    );
    assert_eq!(offsets_until(&mut seen, 6).await, [6]);
}
