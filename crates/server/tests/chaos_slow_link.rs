//! A slow line: the server's side of the link is shaped to `LINK_BITS`
//! (tbf on its veth) and a backend publishes more than the link carries.
//!
//! Proves, per docs/limits.md "How a slow consumer is handled":
//! - while each subscriber's lag stays within the channel's log window
//!   (`--send-queue` publications) and each write completes within
//!   `--write-timeout`, a saturated link closes nobody: publications wait
//!   in the shared log and the kernel's buffers, arrive late, and every
//!   subscriber gets every offset exactly once, in order, on its first
//!   connection;
//! - a subscriber whose backlog outgrows the window is closed with 4004
//!   (`tether_slow_consumers_total`), reconnects by itself and recovers
//!   from history over the same slow link: it too ends with every offset
//!   exactly once, in order.
//!
//! Publishers run inside the server's namespace (curl to its address over
//! loopback), so the shaped link carries only what subscribers receive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "chaos_faults/mod.rs"]
mod chaos;

use chaos::{finish_all, fleet, ns_metric, ns_publish_burst};
use std::time::{Duration, Instant};
use tether_client::Client;
use tether_test_util::{netns::Netns, process::ServerProcess};

/// The link from the server to the subscribers: 256 kbit/s (32 KB/s).
const LINK_BITS: u64 = 256_000;
/// `--send-queue`: how many publications a subscriber may lag.
const SEND_QUEUE: u64 = 64;
const WRITE_TIMEOUT: &str = "10s";
const WRITE_TIMEOUT_SECS: Duration = Duration::from_secs(10);
/// History keeps every publication of a test, so recovery is complete.
const HISTORY: &str = "2000";
/// Bytes of padding per publication (plus ~60 of JSON).
const PAD: usize = 1000;

/// Within the window: subscribers, and bursts of publications every
/// `BURST_EVERY` — `WITHIN_BURSTS × WITHIN_BURST` in all, fewer than
/// `SEND_QUEUE`, at 2 × 30 KB/s offered to a 32 KB/s link.
const WITHIN_SUBSCRIBERS: usize = 2;
const WITHIN_BURST: u64 = 6;
const WITHIN_BURSTS: u64 = 10;
const BURST_EVERY: Duration = Duration::from_millis(200);

/// Beyond the window: one subscriber, one burst of `BEYOND` publications
/// (several windows' worth, more than the kernel's buffers hold too).
const BEYOND: u64 = 400;

/// Every subscriber must have everything this long after the last publish.
const DRAINED_WITHIN: Duration = Duration::from_secs(30);

/// Connections cut because one write took longer than `--write-timeout`.
const WRITE_TIMEOUTS: &str = "tether_refusals_total{reason=\"write_timeout\"";

async fn slow_server(ns: &Netns) -> ServerProcess {
    let send_queue = SEND_QUEUE.to_string();
    let server = ServerProcess::start_in(
        ns,
        &[
            "--allow-anonymous",
            "--send-queue",
            &send_queue,
            "--write-timeout",
            WRITE_TIMEOUT,
            "--history-size",
            HISTORY,
            "--history-max-channel-bytes",
            "16777216",
            "--ping-interval",
            "1s",
            "--pong-timeout",
            "3s",
        ],
    )
    .await;
    ns.slow(LINK_BITS);
    server
}

fn client(url: &str) -> Client {
    Client::builder(url)
        .min_delay(Duration::from_millis(100))
        .max_delay(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_the_log_window_a_saturated_link_closes_nobody() {
    let ns = Netns::new();
    let server = slow_server(&ns).await;
    let url = format!("ws://{}/ws", server.addr);
    let last = WITHIN_BURST * WITHIN_BURSTS;
    assert!(last < SEND_QUEUE, "the scenario stays within the window");
    let mut subs = fleet(WITHIN_SUBSCRIBERS, "within", last, || client(&url)).await;

    let started = Instant::now();
    let mut tick = tokio::time::interval(BURST_EVERY);
    for b in 0..WITHIN_BURSTS {
        tick.tick().await;
        let first = b * WITHIN_BURST + 1;
        let offsets = ns_publish_burst(&ns, server.addr, "within", first, WITHIN_BURST, PAD).await;
        assert_eq!(offsets, (first..first + WITHIN_BURST).collect::<Vec<_>>());
    }
    let published = started.elapsed();
    let changed: Vec<usize> = (0..subs.len())
        .filter(|&i| subs[i].state_changed())
        .collect();
    let (tallies, drained) = finish_all(&mut subs, started, DRAINED_WITHIN).await;
    let slow = ns_metric(&ns, server.addr, "tether_slow_consumers_total").await;
    let write_timeouts = ns_metric(&ns, server.addr, WRITE_TIMEOUTS).await;
    let max_latency = tallies
        .iter()
        .map(|t| t.max_latency)
        .max()
        .unwrap_or_default();
    let offered = (last * (PAD as u64 + 60)) as f64 / published.as_secs_f64();
    eprintln!(
        "chaos_slow_link: link {} kbit/s, {WITHIN_SUBSCRIBERS} subscribers, {last} publications of \
         ~{} B in {} ms ({:.0} KB/s offered per subscriber, window {SEND_QUEUE}): all delivered {} ms \
         after the first publish, max latency {} ms; 4004 closes {slow}, reconnects {}, lost 0",
        LINK_BITS / 1000,
        PAD + 60,
        published.as_millis(),
        offered / 1000.0,
        drained.as_millis(),
        max_latency.as_millis(),
        changed.len(),
    );
    for (i, t) in tallies.iter().enumerate() {
        t.assert_complete(i, last);
        assert_eq!(t.subscribed, 1, "subscriber {i} reconnected");
    }
    assert!(changed.is_empty(), "clients left Connected: {changed:?}");
    assert_eq!(slow, 0.0, "nobody closed with 4004");
    assert_eq!(write_timeouts, 0.0, "nobody cut at the write timeout");
    // The link really was the bottleneck: delivery took longer than the
    // publishing did, yet no write came near the write timeout.
    assert!(drained > published, "{drained:?} vs {published:?}");
    assert!(max_latency < WRITE_TIMEOUT_SECS, "{max_latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_log_window_a_subscriber_gets_4004_and_recovers() {
    let ns = Netns::new();
    let server = slow_server(&ns).await;
    let url = format!("ws://{}/ws", server.addr);
    let mut subs = fleet(1, "beyond", BEYOND, || client(&url)).await;

    let started = Instant::now();
    let offsets = ns_publish_burst(&ns, server.addr, "beyond", 1, BEYOND, PAD).await;
    assert_eq!(offsets, (1..=BEYOND).collect::<Vec<_>>());
    let published = started.elapsed();
    let (tallies, drained) = finish_all(&mut subs, started, DRAINED_WITHIN).await;
    let slow = ns_metric(&ns, server.addr, "tether_slow_consumers_total").await;
    let t = &tallies[0];
    eprintln!(
        "chaos_slow_link: link {} kbit/s, 1 subscriber, a burst of {BEYOND} publications of ~{} B \
         in {} ms (window {SEND_QUEUE}): 4004 closes {slow}, reconnects {}, recovered {}; all \
         delivered {} ms after the first publish, lost 0",
        LINK_BITS / 1000,
        PAD + 60,
        published.as_millis(),
        t.subscribed - 1,
        t.recovered,
        drained.as_millis(),
    );
    t.assert_complete(0, BEYOND);
    assert!(slow >= 1.0, "the subscriber fell off the window: 4004");
    assert!(t.subscribed >= 2, "it reconnected by itself");
    assert!(t.recovered >= 1, "and recovered from history");
}
