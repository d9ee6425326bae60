//! Reconnect storms: thousands of Rust clients lose their node at once.
//!
//! Proves, on the Redis broker (history outlives a node, so a client can
//! recover on a restarted node or on another one):
//! - a node restarted on the same port, after SIGKILL (the worst case: no
//!   close frame, no hint, everyone retries on its own backoff at once) and
//!   after SIGTERM (the drain: 1012 with a jittered hint spreads the
//!   returns), gets every client back within `BACK_WITHIN`, each having
//!   received every offset published meanwhile exactly once;
//! - the restarted node's accepted handshakes never run ahead of its
//!   per-address bucket (`--handshake-rate-per-ip`, `--handshake-burst-per-ip`):
//!   the excess gets 429 and the clients retry with backoff;
//! - no client that is back is refused or dropped again during the storm;
//! - with two nodes behind nginx round robin, the clients of a killed node
//!   move to the other and recover, and those already there are untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "chaos_support/mod.rs"]
mod chaos;

use chaos::{assert_every_offset_once, fleet, gauge, handshakes, wait_all, wait_count, Subscriber};
use serde_json::json;
use std::{net::SocketAddr, time::Duration};
use tether_test_util::{http, nginx::Nginx, process::ServerProcess, redis::RedisServer, STEP};
use tokio::{sync::watch, task::JoinHandle, time::Instant};

/// Clients in each storm (the test process holds one socket each, the
/// server another: far from the 20,000 open-file limit).
const CLIENTS: usize = 2_000;
/// The server's per-address handshake bucket. Every client connects from
/// 127.0.0.1, so the whole storm goes through one bucket.
const HANDSHAKE_RATE: u64 = 500;
const HANDSHAKE_BURST: u64 = 500;
/// The clients' backoff: the first retry within `MIN_DELAY`; a 429's
/// `Retry-After` (whole seconds) is a floor, capped at `MAX_DELAY`.
const MIN_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(2);
/// `--drain-jitter`: on SIGTERM clients are told to return within it.
const DRAIN_JITTER: &str = "2s";
/// One publication per `PUBLISH_EVERY` on another node, through every storm.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Bounds the publisher: at most this many publications...
const MAX_PUBLICATIONS: u64 = 1_000;
/// ...and `--history-size` keeps them all, so every gap is recoverable.
const HISTORY: &str = "1000";
/// Every client must be back and recovered this long after its node died.
const BACK_WITHIN: Duration = Duration::from_secs(30);
/// How often the limiter's work is sampled from `/metrics` during a storm.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

fn node_args(redis: &RedisServer) -> Vec<String> {
    [
        "--broker",
        "redis",
        "--redis-url",
        &redis.url(),
        "--redis-check-interval",
        "300ms",
        "--history-size",
        HISTORY,
        "--handshake-rate-per-ip",
        &HANDSHAKE_RATE.to_string(),
        "--handshake-burst-per-ip",
        &HANDSHAKE_BURST.to_string(),
        "--drain-jitter",
        DRAIN_JITTER,
        "--drain-timeout",
        "10s",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A node whose log goes to a file of its own (`NodeLog`), so the test can
/// tell which node logged what.
async fn start_node(listen: &str, args: &[String], log: &NodeLog) -> ServerProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let file = log.append();
    let node = ServerProcess::start_at(listen, &args, |cmd| {
        cmd.stderr(file);
    })
    .await;
    tether_test_util::eventually("the node ready", || async {
        http::request(node.addr, "GET", "/readyz", &[], "")
            .await
            .status
            == 200
    })
    .await;
    node
}

/// A node's log file (across restarts); removed on drop.
struct NodeLog(std::path::PathBuf);

impl NodeLog {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let file = format!("tether-storm-{name}-{}-{nanos:x}.log", std::process::id());
        NodeLog(std::env::temp_dir().join(file))
    }

    fn append(&self) -> std::fs::File {
        std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.0)
            .expect("node log")
    }

    /// Lines of the log containing `needle`.
    fn count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .matches(needle)
            .count()
    }
}

impl Drop for NodeLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What the Redis broker logs when a command or pub/sub connection fails.
const REDIS_LOST: &str = "connection lost; reconnecting";

/// Publishes to `channel` at `addr` every `PUBLISH_EVERY` until stopped (or
/// `MAX_PUBLICATIONS`), as a backend should: with an idempotency key, and a
/// 503 (`unavailable`: the node lost Redis for a moment) retried with the
/// same key after `RETRY_EVERY`. Yields the last offset and the 503s seen.
struct Publisher {
    stop: watch::Sender<bool>,
    task: JoinHandle<(u64, u64)>,
}

/// A publish answered 503 is retried this often, at most `MAX_RETRIES` times.
const RETRY_EVERY: Duration = Duration::from_millis(100);
const MAX_RETRIES: u32 = 100;

impl Publisher {
    fn start(addr: SocketAddr, channel: &'static str) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(PUBLISH_EVERY);
            let (mut last, mut unavailable) = (0, 0);
            while last < MAX_PUBLICATIONS && !*stopped.borrow_and_update() {
                tick.tick().await;
                let n = last + 1;
                let body =
                    json!({"channel": channel, "data": {"n": n}, "key": format!("{channel}-{n}")});
                let mut retries = 0;
                last = loop {
                    let (status, answer) = http::try_publish(addr, &body).await;
                    match status {
                        200 => break answer["offset"].as_u64().expect("offset"),
                        503 if retries < MAX_RETRIES => {
                            retries += 1;
                            unavailable += 1;
                            tokio::time::sleep(RETRY_EVERY).await;
                        }
                        _ => panic!("publish {n}: {status} {answer} after {retries} retries"),
                    }
                };
                assert_eq!(last, n, "one offset per publication, retries stored once");
            }
            (last, unavailable)
        });
        Publisher { stop, task }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.send_replace(true);
        let (last, unavailable) = self.task.await.expect("publisher");
        assert!(
            last < MAX_PUBLICATIONS,
            "the publisher ran out of its bound"
        );
        (last, unavailable)
    }
}

/// Samples `tether_handshakes_total` at `addr` until stopped and checks each
/// sample against the bucket: since `since` (before the node's bucket
/// existed, so the bound is if anything generous), `accepted - base` may not
/// exceed `burst + rate × elapsed`.
struct LimiterWatch {
    stop: watch::Sender<bool>,
    task: JoinHandle<(u64, u64)>,
}

impl LimiterWatch {
    fn start(addr: SocketAddr, since: Instant, base: u64) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let (mut accepted, mut limited) = (0, 0);
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            // Bounded: a storm that outlives BACK_WITHIN fails anyway.
            let deadline = Instant::now() + BACK_WITHIN + STEP;
            while !*stopped.borrow_and_update() && Instant::now() < deadline {
                tick.tick().await;
                let outcomes = handshakes(addr).await;
                let elapsed = since.elapsed().as_secs_f64();
                accepted = outcomes.get("accepted").copied().unwrap_or(0) - base;
                limited = outcomes.get("rate_limited").copied().unwrap_or(0);
                let allowed = HANDSHAKE_BURST as f64 + HANDSHAKE_RATE as f64 * elapsed + 1.0;
                assert!(
                    accepted as f64 <= allowed,
                    "{accepted} handshakes accepted in {elapsed:.2} s: more than the bucket allows ({allowed:.0})"
                );
            }
            (accepted, limited)
        });
        LimiterWatch { stop, task }
    }

    /// Accepted handshakes (since `base`) and 429s at the last sample.
    async fn finish(self) -> (u64, u64) {
        self.stop.send_replace(true);
        self.task.await.expect("limiter watch")
    }
}

/// How long after `died` each client was back, for the clients that lost a
/// connection the `n`th time (1-based): the `Subscribed` of its `n + 1`th
/// connection. Sorted.
fn back_after(subs: &[Subscriber], n: usize, died: Instant) -> Vec<Duration> {
    let mut times: Vec<Duration> = subs
        .iter()
        .filter_map(|s| s.now().subscribed_at.get(n).map(|t| *t - died))
        .collect();
    times.sort();
    times
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_under_thousands_of_clients_gets_them_all_back_recovered() {
    let redis = RedisServer::start().await;
    let args = node_args(&redis);
    // The publisher's node is never restarted: publications go on through
    // every storm, into the history the returning clients recover from.
    let (publisher_log, node_log) = (NodeLog::new("publisher"), NodeLog::new("restarted"));
    let publisher_node = start_node("127.0.0.1:0", &args, &publisher_log).await;
    let mut node = start_node("127.0.0.1:0", &args, &node_log).await;
    let listen = node.addr.to_string();

    let started = Instant::now();
    let subs = fleet(
        CLIENTS,
        &format!("ws://{listen}/ws"),
        "storm",
        MIN_DELAY,
        MAX_DELAY,
    )
    .await;
    wait_all(&subs, "every client connected", BACK_WITHIN, |p| {
        p.subscribed() == 1
    })
    .await;
    eprintln!(
        "chaos_storm: {CLIENTS} clients connected in {:?} (429s: {:?})",
        started.elapsed(),
        handshakes(node.addr).await.get("rate_limited")
    );
    let publisher = Publisher::start(publisher_node.addr, "storm");

    for (round, signal) in [(1, "KILL"), (2, "TERM")] {
        // Let publications flow on the settled connections first.
        let before = subs[0].now().last();
        wait_all(&subs, "publications before the restart", STEP, |p| {
            p.last() > before
        })
        .await;
        let died = Instant::now();
        node.signal(signal);
        let status = node.child.wait().await.expect("wait");
        if signal == "TERM" {
            assert_eq!(status.code(), Some(0), "a drain exits 0");
        }
        let since = Instant::now();
        node = start_node(&listen, &args, &node_log).await;
        let limiter = LimiterWatch::start(node.addr, since, 0);
        wait_all(&subs, "every client back", BACK_WITHIN, |p| {
            p.subscribed() == round + 1
        })
        .await;
        let (accepted, limited) = limiter.finish().await;
        let back = back_after(&subs, round, died);
        let outcomes = handshakes(node.addr).await;
        let refusals: Vec<String> = subs
            .iter()
            .flat_map(|s| s.now().refused_for_now.into_iter().map(|(_, why)| why))
            .collect();
        let refused = refusals.len();
        let refused_why = refusals.first();
        let floor = (CLIENTS as u64).saturating_sub(HANDSHAKE_BURST) as f64 / HANDSHAKE_RATE as f64;
        eprintln!(
            "chaos_storm: SIG{signal} restart: {CLIENTS} clients back and recovered in {:?} (p50 {:?}, \
             bucket floor {floor:.1} s), handshake outcomes {outcomes:?} ({accepted} accepted, {limited} \
             rate-limited at the last sample); subscribes refused for now {refused} (e.g. {refused_why:?}); Redis connections \
             lost so far: restarted node {}, publisher node {}",
            back.last().unwrap(),
            pct(&back, 50),
            node_log.count(REDIS_LOST),
            publisher_log.count(REDIS_LOST),
        );
        // Every client came back exactly once: nobody who was back was
        // dropped (they would have been accepted twice) or refused.
        assert_eq!(
            outcomes.get("accepted"),
            Some(&(CLIENTS as u64)),
            "{outcomes:?}"
        );
        assert_eq!(gauge(node.addr, "tether_connections").await, CLIENTS as u64);
        // A client is back at its `round + 1`th `Subscribed`: nothing may
        // refuse or drop it after that. (A subscribe refused for now
        // before it, on a node still connecting to Redis, is allowed: the
        // client retries on the same connection.)
        for (i, s) in subs.iter().enumerate() {
            let p = s.now();
            let brief = chaos::brief(&p);
            let back_at = p.subscribed_at[round];
            assert_eq!(p.dropped_at.len(), round, "client {i}: {brief}");
            assert_eq!(p.recovered as usize, round, "client {i}: {brief}");
            assert!(
                p.dropped_at.iter().all(|t| *t < back_at),
                "client {i} dropped after it was back: {brief}"
            );
            assert!(
                p.refused_for_now.iter().all(|(t, _)| *t < back_at),
                "client {i} refused after it was back: {brief}"
            );
        }
        assert!(*back.last().unwrap() <= BACK_WITHIN);
    }

    let (last, unavailable) = publisher.finish().await;
    wait_all(&subs, "every publication", STEP, |p| p.last() == last).await;
    assert_every_offset_once(&subs, 1, last);
    eprintln!(
        "chaos_storm: {CLIENTS} clients × {last} offsets across a SIGKILL and a SIGTERM restart: \
         every offset exactly once, 0 lost, 0 unrecovered ({unavailable} publishes answered 503 and \
         retried); test took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_of_a_killed_node_move_to_the_other_and_recover() {
    let redis = RedisServer::start().await;
    let args = node_args(&redis);
    let (a_log, b_log) = (NodeLog::new("a"), NodeLog::new("b"));
    let a = start_node("127.0.0.1:0", &args, &a_log).await;
    let b = start_node("127.0.0.1:0", &args, &b_log).await;
    let location = "proxy_pass http://tether;\n proxy_http_version 1.1;\n\
                    proxy_set_header Upgrade $http_upgrade;\n proxy_set_header Connection \"upgrade\";\n\
                    proxy_read_timeout 3600s;";
    let nginx = Nginx::round_robin(&[a.addr, b.addr], location).await;

    let started = Instant::now();
    let subs = fleet(CLIENTS, &nginx.url("/ws"), "failover", MIN_DELAY, MAX_DELAY).await;
    wait_all(&subs, "every client connected", BACK_WITHIN, |p| {
        p.subscribed() == 1
    })
    .await;
    let on_a = gauge(a.addr, "tether_connections").await;
    let on_b = gauge(b.addr, "tether_connections").await;
    assert_eq!(on_a + on_b, CLIENTS as u64);
    assert!(
        on_a > 0 && on_b > 0,
        "clients on both nodes: {on_a} + {on_b}"
    );
    // B publishes throughout: it is the node that survives.
    let publisher = Publisher::start(b.addr, "failover");
    wait_all(&subs, "publications before the kill", STEP, |p| {
        p.last() >= 5
    })
    .await;

    let base = handshakes(b.addr)
        .await
        .get("accepted")
        .copied()
        .unwrap_or(0);
    let mut a = a;
    let died = Instant::now();
    a.signal("KILL");
    a.child.wait().await.expect("wait");
    let limiter = LimiterWatch::start(b.addr, died, base);
    wait_count(
        &subs,
        on_a as usize,
        "every client of A dropped",
        STEP,
        |p| !p.dropped_at.is_empty(),
    )
    .await;
    // Those that were on A come back (on B); the others never left.
    wait_all(&subs, "every client of A back", BACK_WITHIN, |p| {
        p.subscribed() == 1 + p.dropped_at.len()
    })
    .await;
    let (accepted, limited) = limiter.finish().await;
    let refused: usize = subs.iter().map(|s| s.now().refused_for_now.len()).sum();
    eprintln!(
        "chaos_storm: failover: subscribes refused for now {refused}; Redis connections lost: \
         A {}, B {}",
        a_log.count(REDIS_LOST),
        b_log.count(REDIS_LOST)
    );
    // Back is the last `Subscribed`: nothing refused or dropped anyone
    // after it (those on B never left).
    for (i, s) in subs.iter().enumerate() {
        let p = s.now();
        let brief = chaos::brief(&p);
        let back_at = *p.subscribed_at.last().expect("subscribed");
        assert!(
            p.dropped_at.iter().all(|t| *t < back_at),
            "client {i}: {brief}"
        );
        assert!(
            p.refused_for_now.iter().all(|(t, _)| *t < back_at),
            "client {i}: {brief}"
        );
    }
    let moved = subs
        .iter()
        .filter(|s| s.now().dropped_at.len() == 1)
        .count() as u64;
    assert_eq!(moved, on_a, "exactly A's clients were dropped, once each");
    assert_eq!(accepted, on_a, "B accepted each of them once");
    assert_eq!(gauge(b.addr, "tether_connections").await, CLIENTS as u64);
    let back = back_after(&subs, 1, died);

    let (last, unavailable) = publisher.finish().await;
    wait_all(&subs, "every publication", STEP, |p| p.last() == last).await;
    assert_every_offset_once(&subs, 1, last);
    assert!(*back.last().unwrap() <= BACK_WITHIN);
    eprintln!(
        "chaos_storm: node A killed under {on_a} of {CLIENTS} clients (nginx round robin, {on_b} on B): \
         all on B and recovered in {:?} (p50 {:?}), B's handshakes +{accepted} accepted, {limited} \
         rate-limited in all; {last} offsets each exactly once, 0 lost ({unavailable} publishes \
         answered 503 and retried); test took {:?}",
        back.last().unwrap(),
        pct(&back, 50),
        started.elapsed()
    );
}
