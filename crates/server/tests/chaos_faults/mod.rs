//! Shared by the kernel-fault and proxy chaos tests (`chaos_jitter`,
//! `chaos_link_down`, `chaos_firewall`, `chaos_slow_link`): a fleet of
//! Rust-client subscribers that tally what they receive, publishing and
//! metrics from inside a network namespace, and the outage scenario that
//! link-down and firewall share. Each test keeps its numbers at its top.
#![allow(dead_code)]

use futures_util::{future::join_all, StreamExt};
use serde_json::{json, Value};
use std::{
    net::SocketAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tether_client::{Client, Event, State};
use tether_test_util::{http, netns::Netns, process::ServerProcess};
use tokio::{sync::watch, task::JoinHandle, time::timeout};

/// The first `subscribed` of a fresh subscriber, through whatever the test
/// put in the way.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(20);

/// Milliseconds since the Unix epoch: publications carry it as `t`, so a
/// subscriber in the same machine can tell how late each one arrived.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Publication offsets in arrival order.
    pub offsets: Vec<u64>,
    /// `Subscribed` events: one per (re)connection that subscribed.
    pub subscribed: u32,
    /// How many of those replayed missed publications.
    pub recovered: u32,
    /// `Unrecovered` events (a gap history could not fill).
    pub unrecovered: u32,
    /// The latest a publication arrived after its `t`.
    pub max_latency: Duration,
}

impl Tally {
    /// Every offset of `1..=last` exactly once, in order, and no gap left
    /// unrecovered.
    pub fn assert_complete(&self, who: usize, last: u64) {
        assert_eq!(self.unrecovered, 0, "subscriber {who}: unrecovered gap");
        let expected: Vec<u64> = (1..=last).collect();
        if self.offsets != expected {
            let dupes = self.offsets.len() as i64 - last as i64;
            panic!(
                "subscriber {who}: {} offsets ({dupes:+} vs expected), \
                 first out of place at index {:?}",
                self.offsets.len(),
                self.offsets.iter().zip(&expected).position(|(a, b)| a != b)
            );
        }
    }
}

/// One subscriber of the fleet: its client, its state, and the task
/// tallying its events until offset `last` has arrived.
pub struct Subscriber {
    pub client: Client,
    pub state: watch::Receiver<State>,
    tally: JoinHandle<Tally>,
}

impl Subscriber {
    /// Waits (at most `within`) for the tally to reach its last offset.
    /// The client stays connected (so what the server counts is not
    /// disturbed by closes) until the subscriber is dropped.
    pub async fn finish(&mut self, within: Duration) -> Tally {
        timeout(within, &mut self.tally)
            .await
            .expect("subscriber received its last offset in time")
            .expect("tally task")
    }

    /// Whether the client's state moved since it was first connected: a
    /// watch keeps only the latest value, but any change (even a reconnect
    /// that already completed) marks it changed.
    pub fn state_changed(&self) -> bool {
        self.state.has_changed().unwrap_or(true)
    }
}

/// `n` clients made by `make`, each subscribed to `channel` (its first
/// `Subscribed` awaited, so nothing published afterwards is missed), each
/// tallying until offset `last`. Subscribes run concurrently.
pub async fn fleet(
    n: usize,
    channel: &str,
    last: u64,
    make: impl Fn() -> Client,
) -> Vec<Subscriber> {
    let joins = (0..n).map(|_| {
        let client = make();
        async move {
            let mut sub = client.subscribe(channel).await.expect("subscribe");
            let first = timeout(SUBSCRIBE_WITHIN, sub.next())
                .await
                .expect("subscribed in time")
                .expect("subscription open");
            assert!(
                matches!(first, Event::Subscribed { .. }),
                "first event: {first:?}"
            );
            let mut state = client.state();
            assert_eq!(*state.borrow_and_update(), State::Connected);
            let tally = tokio::spawn(async move {
                let mut tally = Tally {
                    subscribed: 1,
                    ..Tally::default()
                };
                while tally.offsets.last() != Some(&last) {
                    match sub.next().await {
                        Some(Event::Publication(p)) => {
                            let data: Value =
                                serde_json::from_str(p.data.get()).unwrap_or_default();
                            if let Some(t) = data["t"].as_u64() {
                                let late = Duration::from_millis(now_ms().saturating_sub(t));
                                tally.max_latency = tally.max_latency.max(late);
                            }
                            tally.offsets.push(p.offset);
                        }
                        Some(Event::Subscribed { recovered, .. }) => {
                            tally.subscribed += 1;
                            tally.recovered += u32::from(recovered);
                        }
                        Some(Event::Unrecovered { .. }) => tally.unrecovered += 1,
                        Some(_) => {}
                        None => break,
                    }
                }
                tally
            });
            Subscriber {
                client,
                state,
                tally,
            }
        }
    });
    join_all(joins).await
}

/// Waits until every subscriber's state matches `pred`; returns how long
/// that took from `since` (the slowest subscriber's time).
pub async fn all_reach(
    subs: &mut [Subscriber],
    what: &str,
    since: Instant,
    within: Duration,
    pred: impl Fn(&State) -> bool,
) -> Duration {
    for (i, s) in subs.iter_mut().enumerate() {
        let left = within.saturating_sub(since.elapsed());
        timeout(left, s.state.wait_for(&pred))
            .await
            .unwrap_or_else(|_| panic!("subscriber {i} not {what} within {within:?}"))
            .expect("client task alive");
    }
    since.elapsed()
}

/// Waits for every subscriber's tally; the slowest one's time from `since`.
pub async fn finish_all(
    subs: &mut [Subscriber],
    since: Instant,
    within: Duration,
) -> (Vec<Tally>, Duration) {
    let tallies = join_all(subs.iter_mut().map(|s| s.finish(within))).await;
    (tallies, since.elapsed())
}

/// `curl` inside the namespace: the body of a GET (or of a POST of `body`).
pub async fn ns_curl(ns: &Netns, url: &str, body: Option<&str>) -> String {
    let mut cmd = ns.command("curl");
    cmd.args(["-sS", "--fail", "--max-time", "5", url]);
    if let Some(body) = body {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let out = cmd.output().await.expect("curl runs");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `POST /api/publish` from inside the namespace (works while the link is
/// down: the server's own address stays reachable there); the offset.
pub async fn ns_publish(ns: &Netns, addr: SocketAddr, channel: &str, n: u64) -> u64 {
    let body = json!({"channel": channel, "data": {"n": n, "t": now_ms()}}).to_string();
    let answer = ns_curl(ns, &format!("http://{addr}/api/publish"), Some(&body)).await;
    let v: Value = serde_json::from_str(&answer).expect("publish answer is JSON");
    v["offset"].as_u64().expect("offset in the answer")
}

/// `count` publications `first..first + count` to `channel` (each with
/// `pad` bytes of padding) from inside the namespace in one `curl` run:
/// a burst that does not cross the veth, so a slowed link shapes only what
/// subscribers receive. The offsets, in order.
pub async fn ns_publish_burst(
    ns: &Netns,
    addr: SocketAddr,
    channel: &str,
    first: u64,
    count: u64,
    pad: usize,
) -> Vec<u64> {
    let url = format!("http://{addr}/api/publish");
    let padding = "x".repeat(pad);
    let mut cmd = ns.command("curl");
    for n in first..first + count {
        if n > first {
            cmd.arg("--next");
        }
        let body = json!({"channel": channel, "data": {"n": n, "t": now_ms(), "pad": padding}});
        cmd.args(["-sS", "--fail", "--max-time", "10", "-w", "\\n"])
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(body.to_string())
            .arg(&url);
    }
    let out = cmd.output().await.expect("curl runs");
    assert!(
        out.status.success(),
        "curl burst: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("publish answer is JSON");
            v["offset"].as_u64().expect("offset in the answer")
        })
        .collect()
}

/// `POST /api/publish` from the test process; the offset.
pub async fn publish(addr: SocketAddr, channel: &str, n: u64) -> u64 {
    let answer = http::publish(addr, channel, json!({"n": n, "t": now_ms()})).await;
    answer["offset"].as_u64().expect("offset in the answer")
}

/// A metric's value from a Prometheus text, summed over its labels; `name`
/// may end with the first label to pick one
/// (`tether_closes_total{code="4004"`). 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    http::samples(text, name).map(|(_, value)| value).sum()
}

/// A metric of a server the test process reaches.
pub async fn server_metric(addr: SocketAddr, name: &str) -> f64 {
    metric(
        &http::request(addr, "GET", "/metrics", &[], "").await.body,
        name,
    )
}

/// A metric of the server inside `ns`, read from inside it.
pub async fn ns_metric(ns: &Netns, addr: SocketAddr, name: &str) -> f64 {
    metric(
        &ns_curl(ns, &format!("http://{addr}/metrics"), None).await,
        name,
    )
}

/// Polls `metric` every `every` until `done(value)`; how long it took from
/// `since`. Polling because a gauge has no event to await.
pub async fn ns_metric_until(
    ns: &Netns,
    addr: SocketAddr,
    name: &str,
    since: Instant,
    within: Duration,
    done: impl Fn(f64) -> bool,
) -> Duration {
    const EVERY: Duration = Duration::from_millis(50);
    loop {
        let value = ns_metric(ns, addr, name).await;
        if done(value) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < within,
            "{name} still {value} after {within:?}"
        );
        tokio::time::sleep(EVERY).await;
    }
}

const CONNECTIONS: &str = "tether_connections";
const HEARTBEAT_TIMEOUTS: &str = "tether_heartbeat_timeouts_total";

/// The numbers of an outage scenario (link down, firewall drop).
pub struct Outage {
    pub name: &'static str,
    pub subscribers: usize,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    /// How long the fault lasts: longer than the heartbeat bound, so both
    /// sides must notice and the clients must come back by themselves.
    pub outage: Duration,
    /// Published before the fault, during it (from inside the namespace)
    /// and after it.
    pub before: u64,
    pub during: u64,
    pub after: u64,
    /// Scheduling slack allowed on top of each bound.
    pub slack: Duration,
}

/// How a scenario breaks and heals the path to the server in `ns`.
pub trait Fault {
    fn inject(&self, ns: &Netns, server: SocketAddr);
    fn heal(&self, ns: &Netns, server: SocketAddr);
}

/// What an outage run measured.
pub struct OutageReport {
    /// Every connection closed for silence (4003 decided).
    pub server_detected: Duration,
    /// Every connection released (`tether_connections` at 0).
    pub server_released: Duration,
    pub clients_detected: Duration,
    pub reconnected: Duration,
    pub recovered: Duration,
}

/// The outage clients' backoff and connect timeout: reconnects are fast
/// and each attempt short, so the clients come back soon after the path
/// does — at most one attempt's timeout plus one delay later.
pub const MIN_DELAY: Duration = Duration::from_millis(100);
pub const MAX_DELAY: Duration = Duration::from_secs(1);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

fn outage_client(url: &str) -> Client {
    Client::builder(url)
        .min_delay(MIN_DELAY)
        .max_delay(MAX_DELAY)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .expect("client")
}

/// The server in a namespace, subscribers in the root namespace on its
/// veth address: the fault cuts the path for `outage`; both sides detect it
/// within `ping_interval + pong_timeout` (the server closes every
/// connection with 4003 and releases it at once: none is left
/// half-open), the clients reconnect by
/// themselves once it heals, and every offset published before, during and
/// after arrives exactly once, in order.
pub async fn outage(o: &Outage, fault: &impl Fault) -> OutageReport {
    let ns = Netns::new();
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let (ping, pong) = (ms(o.ping_interval), ms(o.pong_timeout));
    let server = ServerProcess::start_in(
        &ns,
        &[
            "--allow-anonymous",
            "--ping-interval",
            &ping,
            "--pong-timeout",
            &pong,
            "--handshake-burst-per-ip",
            "10000",
            "--handshake-rate-per-ip",
            "10000",
        ],
    )
    .await;
    let addr = server.addr;
    let url = format!("ws://{addr}/ws");
    let last = o.before + o.during + o.after;
    let bound = o.ping_interval + o.pong_timeout;
    let channel = o.name;

    let mut subs = fleet(o.subscribers, channel, last, || outage_client(&url)).await;
    for n in 1..=o.before {
        assert_eq!(publish(addr, channel, n).await, n);
    }
    let connected = ns_metric(&ns, addr, CONNECTIONS).await;
    assert_eq!(
        connected, o.subscribers as f64,
        "every subscriber connected"
    );

    let cut = Instant::now();
    fault.inject(&ns, addr);
    for n in o.before + 1..=o.before + o.during {
        assert_eq!(ns_publish(&ns, addr, channel, n).await, n);
    }
    let within = bound + o.slack;
    let n = o.subscribers as f64;
    // Measured side by side, each from the moment of the cut.
    let (server_detected, server_released, clients_detected) = tokio::join!(
        ns_metric_until(&ns, addr, HEARTBEAT_TIMEOUTS, cut, within, |v| v == n),
        ns_metric_until(&ns, addr, CONNECTIONS, cut, within, |v| { v == 0.0 }),
        all_reach(&mut subs, "reconnecting", cut, within, |s| {
            matches!(s, State::Reconnecting { .. })
        }),
    );
    // The fault lasts its full length, whatever the detection took.
    tokio::time::sleep(o.outage.saturating_sub(cut.elapsed())).await;

    let healed = Instant::now();
    fault.heal(&ns, addr);
    let reconnected = all_reach(
        &mut subs,
        "connected again",
        healed,
        Duration::from_secs(10),
        |s| *s == State::Connected,
    )
    .await;
    for n in o.before + o.during + 1..=last {
        assert_eq!(publish(addr, channel, n).await, n);
    }
    let (tallies, recovered) = finish_all(&mut subs, healed, Duration::from_secs(10)).await;

    eprintln!(
        "{}: {} subscribers, heartbeat {}+{} ms, outage {} ms: server detected in {} ms \
         (connections released in {} ms), clients in {} ms (bound {} ms); reconnected {} ms \
         and recovered {} ms after the heal; {} published ({} during the outage), lost 0, \
         duplicated 0",
        o.name,
        o.subscribers,
        o.ping_interval.as_millis(),
        o.pong_timeout.as_millis(),
        o.outage.as_millis(),
        server_detected.as_millis(),
        server_released.as_millis(),
        clients_detected.as_millis(),
        bound.as_millis(),
        reconnected.as_millis(),
        recovered.as_millis(),
        last,
        o.during,
    );
    for (i, t) in tallies.iter().enumerate() {
        t.assert_complete(i, last);
        assert_eq!(t.subscribed, 2, "subscriber {i}: one reconnect");
        assert_eq!(t.recovered, 1, "subscriber {i}: the reconnect recovered");
    }
    // Detection by the heartbeat, not by an error: the last frame before
    // the cut was about a ping interval old at most (pings leave on the
    // node's ticker, a quarter interval late at worst), so the silence
    // still had most of the pong timeout to run.
    let earliest = o.pong_timeout - o.ping_interval / 2;
    assert!(server_detected >= earliest, "{server_detected:?}");
    assert!(clients_detected >= earliest, "{clients_detected:?}");
    assert!(
        server_released <= server_detected + o.slack,
        "{server_released:?}"
    );
    assert!(
        reconnected <= CONNECT_TIMEOUT + MAX_DELAY + o.slack,
        "back {reconnected:?} after the heal"
    );
    OutageReport {
        server_detected,
        server_released,
        clients_detected,
        reconnected,
        recovered,
    }
}
