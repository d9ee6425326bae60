//! A server frozen with SIGSTOP keeps its TCP connections open but answers
//! nothing: the client must notice within ping_interval + pong_timeout,
//! drop the connection, and reconnect once the server is continued.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{fast_client, next_event, offsets_until, wait_state};
use std::time::{Duration, Instant};
use tether_client::{Event, State};
use tether_test_util::{http, process::ServerProcess};

#[tokio::test]
async fn sigstop_is_detected_and_sigcont_reconnects() {
    let server = ServerProcess::start(&["--ping-interval", "1s", "--pong-timeout", "1s"]).await;
    let client = fast_client(&format!("ws://{}/ws", server.addr));
    let mut state = client.state();
    let mut sub = client.subscribe("frozen").await.expect("subscribe");
    assert!(matches!(
        next_event(&mut sub).await,
        Event::Subscribed { .. }
    ));
    wait_state(&mut state, "connected", |s| *s == State::Connected).await;

    server.signal("STOP");
    let stopped = Instant::now();
    wait_state(&mut state, "reconnecting", |s| {
        matches!(s, State::Reconnecting { .. })
    })
    .await;
    let detected = stopped.elapsed();
    // ping_interval + pong_timeout = 2 s, plus scheduling slack.
    assert!(
        detected <= Duration::from_millis(2600),
        "dead connection noticed after {detected:?}"
    );

    server.signal("CONT");
    wait_state(&mut state, "connected after SIGCONT", |s| {
        *s == State::Connected
    })
    .await;
    http::publish(server.addr, "frozen", serde_json::json!("alive")).await;
    assert_eq!(offsets_until(&mut sub, 1).await, [1]);
}
