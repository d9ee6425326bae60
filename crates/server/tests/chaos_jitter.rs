//! A bad but living network: every chunk between the clients and the
//! server is delayed 100 ms ± 50 ms (uniformly random, order kept), and the
//! path stalls completely a few times for 2 s — each stall shorter than the
//! heartbeat bound (`ping_interval + pong_timeout` = 4 s) — while a backend
//! publishes steadily straight to the server.
//!
//! Proves: no connection is dropped (no close, no reconnect, on either
//! side: the proxy accepted exactly one connection per subscriber) and
//! every subscriber ends with every offset exactly once, in order. Brief
//! trouble costs latency, never the connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "chaos_faults/mod.rs"]
mod chaos;

use chaos::{finish_all, fleet, publish, server_metric as metric};
use std::time::{Duration, Instant};
use tether_client::Client;
use tether_test_util::{process::ServerProcess, proxy::Proxy};

const SUBSCRIBERS: usize = 200;
const PING_INTERVAL: &str = "1s";
const PONG_TIMEOUT: &str = "3s";
/// Per chunk, each direction: `DELAY ± JITTER`.
const DELAY: Duration = Duration::from_millis(100);
const JITTER: Duration = Duration::from_millis(50);
/// Stalls: the proxy stops forwarding (nothing closed) this long, this
/// many times, `STALL_EVERY` apart from the start of one to the next.
const STALL: Duration = Duration::from_secs(2);
const STALLS: u32 = 3;
const STALL_EVERY: Duration = Duration::from_millis(3500);
/// The publisher: `PUBLICATIONS` at `RATE` per second (about 12 s).
const PUBLICATIONS: u64 = 300;
const RATE: u64 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_and_stalls_under_the_heartbeat_bound_drop_nothing() {
    let server = ServerProcess::start(&[
        "--ping-interval",
        PING_INTERVAL,
        "--pong-timeout",
        PONG_TIMEOUT,
        "--handshake-burst-per-ip",
        "10000",
        "--handshake-rate-per-ip",
        "10000",
    ])
    .await;
    let proxy = Proxy::start(server.addr).await;
    proxy.jitter(DELAY, JITTER);
    let url = proxy.ws_url("/ws");
    let started = Instant::now();
    let mut subs = fleet(SUBSCRIBERS, "jitter", PUBLICATIONS, || {
        Client::builder(&url)
            .connect_timeout(Duration::from_secs(20))
            .build()
            .expect("client")
    })
    .await;
    let subscribed_in = started.elapsed();

    let addr = server.addr;
    let publisher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE as u32);
        for n in 1..=PUBLICATIONS {
            tick.tick().await;
            assert_eq!(publish(addr, "jitter", n).await, n);
        }
    });
    // The stall schedule is the scenario itself: time is what it varies.
    let stalls = async {
        for _ in 0..STALLS {
            tokio::time::sleep(STALL_EVERY - STALL).await;
            proxy.pause(true);
            tokio::time::sleep(STALL).await;
            proxy.pause(false);
        }
    };
    stalls.await;
    publisher.await.expect("publisher");
    let published = Instant::now();

    let changed: Vec<usize> = (0..subs.len())
        .filter(|&i| subs[i].state_changed())
        .collect();
    let (tallies, delivered) = finish_all(&mut subs, published, Duration::from_secs(30)).await;
    let max_latency = tallies
        .iter()
        .map(|t| t.max_latency)
        .max()
        .unwrap_or_default();
    let timeouts = metric(server.addr, "tether_heartbeat_timeouts_total").await;
    let closes = metric(server.addr, "tether_closes_total").await;
    eprintln!(
        "chaos_jitter: {SUBSCRIBERS} subscribers through {} ms ± {} ms per chunk and {STALLS} \
         stalls of {} ms (heartbeat {PING_INTERVAL} + {PONG_TIMEOUT}): subscribed in {} ms; \
         {PUBLICATIONS} publications at {RATE}/s, the last delivered to all {} ms after it was \
         published; max delivery latency {} ms; reconnects {}, server closes {closes}, heartbeat \
         timeouts {timeouts}, lost 0, duplicated 0",
        DELAY.as_millis(),
        JITTER.as_millis(),
        STALL.as_millis(),
        subscribed_in.as_millis(),
        delivered.as_millis(),
        max_latency.as_millis(),
        proxy.accepted() - SUBSCRIBERS as u64,
    );
    for (i, t) in tallies.iter().enumerate() {
        t.assert_complete(i, PUBLICATIONS);
        assert_eq!(
            t.subscribed, 1,
            "subscriber {i} subscribed again: it reconnected"
        );
    }
    assert!(changed.is_empty(), "clients left Connected: {changed:?}");
    assert_eq!(proxy.accepted(), SUBSCRIBERS as u64, "a client reconnected");
    assert_eq!(timeouts, 0.0, "the server closed a connection for silence");
    assert_eq!(closes, 0.0, "the server closed a connection");
    // The stalls really held deliveries back (the scenario happened).
    assert!(max_latency >= STALL, "max latency {max_latency:?}");
}
