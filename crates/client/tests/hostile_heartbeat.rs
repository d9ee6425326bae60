//! A server announcing an absurd heartbeat (`u64::MAX` ms) in its `welcome`
//! does not crash the client's connection task, and cannot switch off its
//! dead-connection detection: each timing is clamped to one hour, so the
//! client still pings after an hour of silence.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{fake_server, recv_json, send_text, wait_state};
use std::time::Duration;
use tether_client::{Client, State};
use tether_test_util::STEP;
use tokio::{
    sync::mpsc,
    time::{timeout, Instant},
};

#[tokio::test]
async fn huge_heartbeat_in_welcome_is_clamped_to_an_hour() {
    let (pings_tx, mut pings) = mpsc::unbounded_channel();
    let addr = fake_server(move |_, mut ws| {
        let pings = pings_tx.clone();
        async move {
            let max = u64::MAX;
            send_text(
                &mut ws,
                &format!(r#"{{"type":"welcome","client":"h","ping_interval_ms":{max},"pong_timeout_ms":{max},"version":1}}"#),
            )
            .await;
            while let Some(req) = recv_json(&mut ws).await {
                match req["type"].as_str() {
                    Some("publish") => {
                        let ack = format!(r#"{{"type":"ack","id":{},"offset":7}}"#, req["id"]);
                        send_text(&mut ws, &ack).await;
                    }
                    Some("ping") => {
                        let _ = pings.send(Instant::now());
                        send_text(&mut ws, r#"{"type":"pong"}"#).await;
                    }
                    _ => {}
                }
            }
        }
    })
    .await;
    let client = Client::builder(format!("ws://{addr}/ws"))
        .min_delay(Duration::from_millis(20))
        .build()
        .expect("client");
    let mut state = client.state();
    wait_state(&mut state, "connected", |s| *s == State::Connected).await;
    // The connection task computed its heartbeat deadline right after the
    // welcome; a panic there would end it and fail this publish.
    let acked = timeout(STEP, client.publish("h", serde_json::json!(1)))
        .await
        .expect("an answer in time");
    assert_eq!(acked, Ok(7));

    // With time paused, the runtime jumps to the next timer: the client's
    // ping (due an hour after the ack, the last frame it heard) comes before
    // this timeout's, unless the hour-long clamp is missing.
    tokio::time::pause();
    let paused = Instant::now();
    let pinged = timeout(Duration::from_secs(3601), pings.recv())
        .await
        .expect("a ping within an hour")
        .expect("server alive");
    // The timer wheel rounds deadlines up to the next millisecond.
    let silent = pinged - paused;
    assert!(
        silent <= Duration::from_millis(3_600_010) && silent >= Duration::from_secs(3590),
        "pinged after {silent:?}"
    );
    assert_eq!(*state.borrow(), State::Connected);
}
