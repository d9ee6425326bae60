//! A 4001 close (unauthorized) ends the client: no reconnect, the state says
//! why, and requests fail instead of waiting forever.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{scripted_server, wait_state};
use std::time::Duration;
use tether_client::{Client, Error, State};

#[tokio::test]
async fn close_4001_stops_reconnecting() {
    let (addr, mut accepted) = scripted_server(|_| Some((4001, "invalid token".into()))).await;
    let client = Client::builder(format!("ws://{addr}/ws"))
        .min_delay(Duration::from_millis(10))
        .build()
        .expect("client");
    let mut state = client.state();
    let end = wait_state(&mut state, "disconnected", |s| {
        matches!(s, State::Disconnected { .. })
    })
    .await;
    assert_eq!(
        end,
        State::Disconnected {
            code: 4001,
            reason: "closed with 4001 (unauthorized): invalid token".into()
        }
    );
    // The connection task has exited, so no further attempt can follow.
    assert!(accepted.recv().await.is_some());
    assert!(accepted.try_recv().is_err(), "exactly one connection");
    match client.publish("x", serde_json::json!(1)).await {
        Err(Error::Disconnected { code: 4001, .. }) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
}
