//! A bounded soak: `TETHER_SOAK_SECS` (default `DEFAULT_SOAK_SECS`) of
//! connection churn (WebSocket clients that subscribe, publish and leave,
//! politely or not; long-polling sessions that are abandoned), steady
//! publishing, and a fault proxy cutting its connections every `CUT_EVERY`.
//!
//! Proves: after the churn stops and everyone leaves, the server is back
//! where it started — open descriptors and threads as before, its
//! `tether_connections` and `tether_longpoll_sessions` at 0, and its memory
//! (VmRSS) within `RSS_BOUND_KIB` of the baseline taken after a warm-up —
//! and every subscriber received every offset exactly once: those connected
//! directly without a single drop, those behind the cutting proxy by
//! recovery after each cut.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "chaos_support/mod.rs"]
mod chaos;

use chaos::{assert_every_offset_once, fleet, gauge, wait_all, Subscriber};
use serde_json::json;
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use tether_test_util::{
    eventually, http,
    longpoll::Lp,
    proc_stats::ProcStats,
    process::ServerProcess,
    proxy::{Cut, Proxy},
    ws::WsClient,
    STEP,
};
use tokio::time::Instant;

/// The soak's length when `TETHER_SOAK_SECS` is not set: the whole test
/// then stays under a minute on this 2-core machine.
const DEFAULT_SOAK_SECS: u64 = 45;
/// Churn before the baseline is taken, so that lazily grown pools
/// (allocator arenas, per-thread buffers) are in the baseline.
const WARMUP: Duration = Duration::from_secs(3);
/// Subscribers connected directly for the whole soak (never dropped)...
const DIRECT: usize = 10;
/// ...and behind the fault proxy (cut and recovering all along).
const PROXIED: usize = 20;
const CUT_EVERY: Duration = Duration::from_secs(3);
const PUBLISH_EVERY: Duration = Duration::from_millis(20);
/// Concurrent churn loops, and a bound on each one's iterations.
const CHURNERS: usize = 4;
const MAX_CHURN_PER_LOOP: u64 = 100_000;
/// Distinct channels the churn touches.
const CHURN_CHANNELS: u64 = 50;
/// How far above its warmed-up baseline VmRSS may stay once all have left,
/// beyond what history legitimately grew by (`tether_history_bytes`: the
/// churn publishes to `CHURN_CHANNELS`, each keeping its last 100).
const RSS_BOUND_KIB: u64 = 4 * 1024;
/// Heartbeat short enough that abandoned long-polling sessions expire
/// (after ping + pong of silence) within the settling time.
const SERVER_FLAGS: &[&str] = &[
    "--ping-interval",
    "1s",
    "--pong-timeout",
    "1s",
    "--long-poll-timeout",
    "300ms",
    "--handshake-rate-per-ip",
    "100000",
    "--handshake-burst-per-ip",
    "100000",
    // The churn re-creates its channels on the node far faster than one
    // address may by default (it is all one address here).
    "--new-channel-rate-per-ip",
    "100000",
    "--new-channel-burst-per-ip",
    "100000",
    // Abandoned sessions wait up to 2 s for their expiry, all from one
    // address: several hundred at a time, near the default 1000.
    "--max-long-poll-sessions-per-ip",
    "100000",
    "--max-long-poll-sessions",
    "100000",
];

fn soak_duration() -> Duration {
    let secs = std::env::var("TETHER_SOAK_SECS")
        .ok()
        .map(|s| s.parse().expect("TETHER_SOAK_SECS is a number of seconds"))
        .unwrap_or(DEFAULT_SOAK_SECS);
    Duration::from_secs(secs)
}

/// What the churn did, for the report.
#[derive(Default)]
struct Churned {
    websockets: AtomicU64,
    abrupt: AtomicU64,
    longpoll: AtomicU64,
}

/// Opens and leaves connections until `until` (or its iteration bound).
async fn churn(addr: SocketAddr, until: Instant, seed: u64, done: Arc<Churned>) {
    let url = format!("ws://{addr}/ws");
    let mut i = 0;
    while Instant::now() < until && i < MAX_CHURN_PER_LOOP {
        i += 1;
        let channel = format!("churn-{}", (seed * 7919 + i) % CHURN_CHANNELS);
        if i.is_multiple_of(5) {
            // A long-polling session, abandoned after its first request:
            // only its expiry frees it.
            let (lp, _) = Lp::open(addr).await;
            lp.send(json!([{"type": "subscribe", "id": 1, "channel": channel}]))
                .await;
            done.longpoll.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (mut ws, _) = WsClient::tether(&url).await;
        let reply = ws.subscribe(1, &channel, None).await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        ws.send(json!({"type": "publish", "id": 2, "channel": channel, "data": {"i": i}}))
            .await;
        assert_eq!(ws.recv_type("ack").await["id"], 2);
        if i.is_multiple_of(3) {
            // Gone without a close frame, as a lost network would be.
            done.abrupt.fetch_add(1, Ordering::Relaxed);
        } else {
            use futures_util::SinkExt;
            let _ = ws.ws.close().await;
        }
        drop(ws);
        done.websockets.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `CHURNERS` churn loops until `until`.
async fn churn_all(addr: SocketAddr, until: Instant, done: &Arc<Churned>) {
    let loops: Vec<_> = (0..CHURNERS as u64)
        .map(|seed| tokio::spawn(churn(addr, until, seed, done.clone())))
        .collect();
    for l in loops {
        l.await.expect("churn loop");
    }
}

/// The TCP sockets process `pid` holds, as `ss` shows them (state, ends),
/// for a failure message.
fn sockets_of(pid: u32) -> String {
    let out = std::process::Command::new("ss")
        .args(["-tanpH"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("ss: {e}"));
    let me = format!("pid={pid},");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(&me)).collect();
    format!("{} sockets\n{}", lines.len(), lines.join("\n"))
}

/// Waits until nothing is left connected: no WebSocket, no session.
async fn all_gone(addr: SocketAddr) {
    eventually("tether_connections 0", || async {
        gauge(addr, "tether_connections").await == 0
    })
    .await;
    eventually("tether_longpoll_sessions 0", || async {
        gauge(addr, "tether_longpoll_sessions").await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_soak_of_churn_publishes_and_cuts_the_server_is_back_where_it_started() {
    let soak = soak_duration();
    let started = Instant::now();
    let server = ServerProcess::start(SERVER_FLAGS).await;
    let (addr, pid) = (server.addr, server.child.id().expect("running"));
    let done = Arc::new(Churned::default());

    churn_all(addr, Instant::now() + WARMUP, &done).await;
    all_gone(addr).await;
    let baseline = ProcStats::of(pid);
    let history_before = gauge(addr, "tether_history_bytes").await;

    let proxy = Proxy::start(addr).await;
    let (min, max) = (Duration::from_millis(20), Duration::from_millis(200));
    let direct = fleet(DIRECT, &format!("ws://{addr}/ws"), "soak", min, max).await;
    let proxied = fleet(PROXIED, &proxy.ws_url("/ws"), "soak", min, max).await;
    wait_all(&direct, "direct subscribers", STEP, |p| p.subscribed() == 1).await;
    wait_all(&proxied, "proxied subscribers", STEP, |p| {
        p.subscribed() == 1
    })
    .await;

    let until = Instant::now() + soak;
    let publisher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PUBLISH_EVERY);
        let mut last = 0;
        let bound = soak.as_millis() as u64 / PUBLISH_EVERY.as_millis() as u64 + 1;
        while Instant::now() < until && last < bound {
            tick.tick().await;
            last = http::publish(addr, "soak", json!({"n": last + 1})).await["offset"]
                .as_u64()
                .unwrap();
        }
        last
    });
    let cutter = async {
        let mut cuts = 0u64;
        let mut tick = tokio::time::interval_at(Instant::now() + CUT_EVERY, CUT_EVERY);
        while tick.tick().await < until {
            cuts += 1;
            proxy.cut(if cuts.is_multiple_of(2) {
                Cut::Fin
            } else {
                Cut::Reset
            });
        }
        cuts
    };
    let sampler = async {
        let mut peak = baseline;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while tick.tick().await < until {
            let now = ProcStats::of(pid);
            peak.rss_kib = peak.rss_kib.max(now.rss_kib);
            peak.fds = peak.fds.max(now.fds);
            peak.threads = peak.threads.max(now.threads);
        }
        peak
    };
    let ((), cuts, peak) = tokio::join!(churn_all(addr, until, &done), cutter, sampler);
    let last = publisher.await.expect("publisher");

    let everyone: Vec<&Subscriber> = direct.iter().chain(&proxied).collect();
    for s in &everyone {
        let mut rx = s.progress.clone();
        tokio::time::timeout(STEP, rx.wait_for(|p| p.last() == last))
            .await
            .unwrap_or_else(|_| panic!("offset {last} not received: {}", chaos::brief(&s.now())))
            .expect("alive");
    }
    assert_every_offset_once(&direct, 1, last);
    assert_every_offset_once(&proxied, 1, last);
    assert!(
        direct.iter().all(|s| s.now().dropped_at.is_empty()),
        "a direct subscriber was dropped"
    );
    let recoveries: u32 = proxied.iter().map(|s| s.now().recovered).sum();
    assert!(
        recoveries as u64 >= cuts,
        "the proxied subscribers recovered after the cuts"
    );

    for s in &everyone {
        s.client.close().await;
    }
    drop(proxy);
    all_gone(addr).await;
    // Sockets close and threads idle out shortly after the last client.
    let deadline = Instant::now() + STEP;
    while ProcStats::of(pid).fds != baseline.fds {
        assert!(
            Instant::now() < deadline,
            "descriptors not back to the baseline {} within {STEP:?}: {} open; its sockets:\n{}",
            baseline.fds,
            ProcStats::of(pid).fds,
            sockets_of(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("threads back to the baseline", || async {
        ProcStats::of(pid).threads <= baseline.threads
    })
    .await;
    let after = ProcStats::of(pid);
    let history_after = gauge(addr, "tether_history_bytes").await;
    let history_growth_kib = history_after.saturating_sub(history_before) / 1024;
    let streams = gauge(addr, "tether_channel_streams").await;
    eprintln!(
        "soak: {soak:?} of churn ({} WebSocket connections, {} of them dropped without a close, \
         {} long-polling sessions abandoned), {last} publications, {cuts} proxy cuts \
         ({recoveries} recoveries); VmRSS baseline {} KiB, peak {} KiB, after {} KiB \
         (bound +{RSS_BOUND_KIB} KiB + history's growth, {history_before} -> {history_after} B \
         in {streams} channel streams); fds {} -> peak {} -> {}; threads {} -> peak {} -> {}; \
         {} + {} subscribers got all {last} offsets once; test took {:?}",
        done.websockets.load(Ordering::Relaxed),
        done.abrupt.load(Ordering::Relaxed),
        done.longpoll.load(Ordering::Relaxed),
        baseline.rss_kib,
        peak.rss_kib,
        after.rss_kib,
        baseline.fds,
        peak.fds,
        after.fds,
        baseline.threads,
        peak.threads,
        after.threads,
        DIRECT,
        PROXIED,
        started.elapsed()
    );
    assert!(
        after.rss_kib <= baseline.rss_kib + history_growth_kib + RSS_BOUND_KIB,
        "VmRSS {} KiB after the soak, baseline {} KiB: more than {RSS_BOUND_KIB} KiB above, \
         beyond history's growth of {history_growth_kib} KiB",
        after.rss_kib,
        baseline.rss_kib
    );
}
