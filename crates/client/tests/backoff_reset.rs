//! The reconnect schedule starts over only once a connection proved usable
//! (a request answered, or up for `STABLE_AFTER`): a server that welcomes
//! and drops every connection at once gets ever longer delays, not a tight
//! reconnect loop (the JS client's rule, docs/client.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::scripted_server;
use std::time::Duration;
use tether_client::Client;
use tether_test_util::STEP;
use tokio::time::timeout;

#[tokio::test]
async fn a_server_that_welcomes_and_drops_gets_growing_delays() {
    // Every connection: welcome, then 1001 at once.
    let (addr, mut accepted) = scripted_server(|_| Some((1001, "going away".to_owned()))).await;
    // Retry n waits 0.5 × 20 ms × 2^n: 10, 20, 40, 80, 160, 320 ms.
    let _client = Client::builder(format!("ws://{addr}/ws"))
        .min_delay(Duration::from_millis(20))
        .max_delay(Duration::from_secs(10))
        .jitter(|| 0.5)
        .build()
        .expect("client");
    let mut times = Vec::new();
    for _ in 0..7 {
        times.push(
            timeout(STEP, accepted.recv())
                .await
                .expect("a connection")
                .expect("open"),
        );
    }
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (n, gap) in gaps.iter().enumerate() {
        let delay = Duration::from_millis(10 << n);
        assert!(
            *gap >= delay,
            "retry {n} came after {gap:?}, before its {delay:?} (the schedule restarted on a welcome): {gaps:?}"
        );
    }
}
