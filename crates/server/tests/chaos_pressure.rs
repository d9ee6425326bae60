//! Resource pressure: a server under `ulimit -n 256` and more Rust clients
//! than its open-file budget holds, all retrying with backoff.
//!
//! Proves: the clients it holds keep working (publish, receive); the rest
//! are refused with 503 (`file_limit`) again and again without crashing the
//! server or making it spin (its CPU time over a window of refusals stays
//! far from a busy loop's); and as held clients leave, the waiting ones get
//! in on their next retry and are served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "chaos_support/mod.rs"]
mod chaos;

use chaos::{fleet, gauge, handshakes, wait_all, wait_count, Subscriber};
use serde_json::json;
use std::{io::Read, time::Duration};
use tether_test_util::{http, proc_stats, process::ServerProcess, STEP};
use tokio::time::Instant;

/// The server's open-file limit (soft and hard: it cannot raise it).
const ULIMIT: &str = "-n 256";
/// More clients than 256 descriptors minus the server's own and its
/// 32 in reserve can hold.
const CLIENTS: usize = 320;
/// The budget must still hold at least this many.
const MIN_HELD: usize = 150;
/// Refused clients retry within `MAX_DELAY` (the 503's `Retry-After` of
/// 2–5 s is a floor, capped at it).
const MIN_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(1);
/// Every waiting client has been refused this many times in a row before
/// the held set is taken as settled.
const REFUSALS_SEEN: u32 = 3;
/// CPU time is measured over this window of refusals...
const WINDOW: Duration = Duration::from_secs(2);
/// ...and may use at most this share of one CPU (a spinning accept loop
/// uses all of it).
const MAX_CPU_SHARE: f64 = 0.5;
/// Held clients closed beyond the number waiting, so every waiter fits.
const SPARE: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_clients_keep_working_the_rest_get_503_and_get_in_as_room_frees() {
    let log = tempfile_log();
    let mut server = ServerProcess::start_with_ulimit(
        &[
            "--handshake-rate-per-ip",
            "10000",
            "--handshake-burst-per-ip",
            "10000",
        ],
        ULIMIT,
        Some(log.reopen()),
    )
    .await;
    let pid = server.child.id().expect("running");
    let url = format!("ws://{}/ws", server.addr);
    let started = Instant::now();
    let mut subs = fleet(CLIENTS, &url, "pressure", MIN_DELAY, MAX_DELAY).await;

    // Settled: the budget is full, and every client that is not in has
    // been refused again and again.
    wait_count(&subs, MIN_HELD, "clients held", STEP, |p| {
        p.subscribed() >= 1
    })
    .await;
    wait_all(&subs, "the rest refused repeatedly", STEP, |p| {
        p.subscribed() >= 1 || p.attempts >= REFUSALS_SEEN
    })
    .await;
    let held: Vec<usize> = (0..CLIENTS)
        .filter(|&i| subs[i].now().subscribed() >= 1)
        .collect();
    let waiting = CLIENTS - held.len();
    assert!(waiting > 0, "more clients than the budget: none refused");

    // Not a spin: the refusals cost little CPU while the waiters knock.
    let cpu_before = proc_stats::cpu_time(pid);
    let wall = Instant::now();
    tokio::time::sleep(WINDOW).await; // the measurement window itself
    let cpu_share =
        (proc_stats::cpu_time(pid) - cpu_before).as_secs_f64() / wall.elapsed().as_secs_f64();
    assert!(
        server.child.try_wait().expect("wait").is_none(),
        "the server died"
    );
    assert!(
        cpu_share <= MAX_CPU_SHARE,
        "the server used {cpu_share:.2} CPU while refusing: a spin?"
    );

    // The held clients keep working: one publishes over its connection
    // (HTTP would need a descriptor the server does not have), all receive.
    let publisher = subs[held[0]].client.clone();
    let offset = tokio::time::timeout(STEP, publisher.publish("pressure", json!({"n": 1})))
        .await
        .expect("ack in time")
        .expect("publish");
    for &i in &held {
        let mut rx = subs[i].progress.clone();
        tokio::time::timeout(STEP, rx.wait_for(|p| p.last() == offset))
            .await
            .unwrap_or_else(|_| panic!("held client {i} did not receive offset {offset}"))
            .expect("alive");
    }
    let refusals_seen: u32 = subs.iter().map(|s| s.now().attempts).sum();

    // Room frees: the waiters get in on their next retry.
    let leaving = waiting + SPARE;
    let freed = Instant::now();
    for &i in held.iter().rev().take(leaving) {
        subs[i].client.close().await;
    }
    let gone: Vec<usize> = held.iter().rev().take(leaving).copied().collect();
    let mut staying: Vec<Subscriber> = Vec::new();
    for (i, s) in subs.drain(..).enumerate() {
        if !gone.contains(&i) {
            staying.push(s);
        }
    }
    wait_all(&staying, "every waiter in", STEP, |p| p.subscribed() >= 1).await;
    let all_in = freed.elapsed();
    let answer = http::publish(server.addr, "pressure", json!({"n": 2})).await;
    let second = answer["offset"].as_u64().unwrap();
    wait_all(
        &staying,
        "the publication after the room freed",
        STEP,
        |p| p.last() == second,
    )
    .await;
    assert_eq!(
        gauge(server.addr, "tether_connections").await,
        staying.len() as u64
    );
    let outcomes = handshakes(server.addr).await;
    let refused = outcomes.get("file_limit").copied().unwrap_or(0);
    assert!(
        refused >= u64::from(REFUSALS_SEEN) * waiting as u64,
        "{outcomes:?}"
    );
    // The held ones were never dropped.
    assert!(staying.iter().all(|s| s.now().dropped_at.is_empty()));

    server.signal("TERM");
    let status = server.child.wait().await.expect("wait");
    assert_eq!(status.code(), Some(0), "a clean exit after the pressure");
    // At most 16 refusals past the budget are answered at once (the rest
    // closed unanswered), so the 32 reserved descriptors are never all in
    // use and accept() never fails with EMFILE.
    let text = log.read();
    let accept_failures = text.matches("accept failed").count();
    if let Some(line) = text.lines().find(|l| l.contains("accept failed")) {
        eprintln!("chaos_pressure: first accept() failure: {line}");
    }
    eprintln!(
        "chaos_pressure: ulimit {ULIMIT}, {CLIENTS} clients: {} held and served, {waiting} refused with 503 \
         ({refused} file_limit refusals, {refusals_seen} client retries counted), server CPU {:.0} % of one \
         core while refusing, {accept_failures} accept() failures logged; {leaving} left and all {waiting} \
         waiters were in {all_in:?} later; handshake outcomes {outcomes:?}; test took {:?}",
        held.len(),
        cpu_share * 100.0,
        started.elapsed()
    );
    assert_eq!(accept_failures, 0, "the descriptor reserve ran out");
}

/// The server's stderr, kept in a file the test reads at the end.
struct Log(std::path::PathBuf);

fn tempfile_log() -> Log {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Log(std::env::temp_dir().join(format!(
        "tether-pressure-{}-{nanos:x}.log",
        std::process::id()
    )))
}

impl Log {
    fn reopen(&self) -> std::fs::File {
        std::fs::File::create(&self.0).expect("log file")
    }

    fn read(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.0)
            .and_then(|mut f| f.read_to_string(&mut s))
            .expect("read log");
        s
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
