//! An unacked publish is resent after a reconnect only within the server's
//! idempotency window (counted from its first send): past it the server
//! would store the resend as new, so the publish fails with
//! `IdempotencyWindowExpired` and is not resent. Time is tokio's paused
//! clock; the connection dies because the fake server never answers, so the
//! client's own heartbeat drops it once the clock jumps.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{fake_server, recv_type, send_text, WELCOME};
use serde_json::Value;
use std::time::Duration;
use tether_client::{Client, Error};
use tether_test_util::STEP;
use tokio::{sync::mpsc, time::timeout};

const WINDOW: Duration = Duration::from_secs(300);

/// A server that never acks on its first connection and acks everything on
/// later ones; every publish frame it receives is reported as
/// `(connection, frame)`.
async fn server() -> (String, mpsc::UnboundedReceiver<(usize, Value)>) {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let addr = fake_server(move |n, mut ws| {
        let seen = seen_tx.clone();
        async move {
            send_text(&mut ws, WELCOME).await;
            while let Some(p) = recv_type(&mut ws, "publish").await {
                let _ = seen.send((n, p.clone()));
                if n > 0 {
                    let ack = format!(r#"{{"type":"ack","id":{},"offset":1}}"#, p["id"]);
                    send_text(&mut ws, &ack).await;
                }
            }
        }
    })
    .await;
    (format!("ws://{addr}/ws"), seen)
}

fn client(url: &str) -> Client {
    Client::builder(url)
        .min_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(200))
        .idempotency_window(WINDOW)
        .build()
        .expect("client")
}

async fn next_seen(seen: &mut mpsc::UnboundedReceiver<(usize, Value)>) -> (usize, Value) {
    timeout(STEP, seen.recv())
        .await
        .expect("a publish frame in time")
        .expect("server alive")
}

#[tokio::test]
async fn past_the_window_a_lost_publish_fails_instead_of_being_resent() {
    let (url, mut seen) = server().await;
    let client = client(&url);
    let publish = tokio::spawn({
        let client = client.clone();
        async move { client.publish("w", serde_json::json!("old")).await }
    });
    let (conn, first) = next_seen(&mut seen).await;
    assert_eq!((conn, &first["data"]), (0, &Value::from("old")));

    // Past the window: the heartbeat drops the silent connection on the way.
    tokio::time::pause();
    tokio::time::advance(WINDOW + Duration::from_secs(1)).await;
    let result = timeout(WINDOW, publish)
        .await
        .expect("an answer")
        .expect("task");
    assert_eq!(
        result,
        Err(Error::IdempotencyWindowExpired { window: WINDOW })
    );

    // The next publish is the first one the new connection sees: the old one
    // was not resent ahead of it.
    let fresh = timeout(WINDOW, client.publish("w", serde_json::json!("new")))
        .await
        .expect("an answer");
    assert_eq!(fresh, Ok(1));
    let (conn, frame) = next_seen(&mut seen).await;
    assert_eq!((conn, &frame["data"]), (1, &Value::from("new")));
}

#[tokio::test]
async fn within_the_window_a_lost_publish_is_resent_with_its_key() {
    let (url, mut seen) = server().await;
    let client = client(&url);
    let publish = tokio::spawn({
        let client = client.clone();
        async move { client.publish("w", serde_json::json!("kept")).await }
    });
    let (conn, first) = next_seen(&mut seen).await;
    assert_eq!(conn, 0);

    // Long enough for the heartbeat to drop the connection (35 s), well
    // inside the window.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(60)).await;
    let result = timeout(WINDOW, publish)
        .await
        .expect("an answer")
        .expect("task");
    assert_eq!(result, Ok(1));
    let (conn, resent) = next_seen(&mut seen).await;
    assert_eq!(conn, 1);
    assert_eq!(
        (&resent["data"], &resent["key"]),
        (&first["data"], &first["key"])
    );
}
