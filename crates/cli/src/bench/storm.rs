//! `bench storm`: N clients connect at the same moment, as after a server
//! restart. Counts how the first attempts were answered (101, 429, 503,
//! errors) and how long it takes until every client is in when each retries
//! as the server advises: after `Retry-After` plus up to as much again of
//! random jitter (so the retries do not arrive as a second storm).

use super::{
    close, conn, failure_label, number, stats, Common, Outcome, Protocol, HANDSHAKE_LIMIT,
};
use clap::ArgMatches;
use futures_util::{stream::FuturesUnordered, StreamExt};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::watch;

const WORKERS: usize = 8;
/// Retry delay after a refusal without `Retry-After`, or a network error.
const DEFAULT_RETRY: Duration = Duration::from_millis(500);

pub struct Options {
    pub clients: usize,
    pub hold: Duration,
}

impl Options {
    pub fn from(m: &ArgMatches) -> anyhow::Result<Self> {
        Ok(Options {
            clients: number(m, "clients")?,
            hold: super::duration(m, "hold")?,
        })
    }
}

#[derive(Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub url: String,
    pub protocol: Protocol,
    pub clients: usize,
    pub sources: usize,
    /// How the first attempt of each client was answered: "101", "429",
    /// "503", or an error label.
    pub first_attempt: BTreeMap<String, usize>,
    /// The same over every attempt.
    pub all_attempts: BTreeMap<String, usize>,
    pub attempts: u64,
    pub connected: usize,
    /// From the storm's start until the last client was in.
    pub all_connected_secs: Option<f64>,
    /// Per client: storm start → connected.
    pub time_to_connect: stats::Latency,
    pub max_retry_after_secs: f64,
}

struct PerClient {
    first: String,
    outcomes: BTreeMap<String, usize>,
    attempts: u64,
    connected_after: Option<Duration>,
    max_retry_after: Duration,
}

impl PerClient {
    fn note(&mut self, label: &str) {
        if self.first.is_empty() {
            self.first = label.to_owned();
        }
        *self.outcomes.entry(label.to_owned()).or_default() += 1;
    }
}

pub async fn run(c: &Common, o: Options) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let deadline = start + c.timeout;
    let (release_tx, release_rx) = watch::channel(false);
    let settled = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..WORKERS.min(o.clients) {
        let (c, n, release_rx, settled) =
            (c.clone(), o.clients, release_rx.clone(), settled.clone());
        workers.push(tokio::spawn(async move {
            let mut clients = FuturesUnordered::new();
            for i in (w..n).step_by(WORKERS) {
                let (c, mut release_rx, settled) = (&c, release_rx.clone(), &settled);
                clients.push(async move {
                    let source = c.sources[i % c.sources.len()];
                    let mut me = PerClient {
                        first: String::new(),
                        outcomes: BTreeMap::new(),
                        attempts: 0,
                        connected_after: None,
                        max_retry_after: Duration::ZERO,
                    };
                    while Instant::now() < deadline {
                        me.attempts += 1;
                        let (label, wait) =
                            match conn::open(&c.target, source, HANDSHAKE_LIMIT).await {
                                Ok(conn::Opened::Open(ws)) => {
                                    me.connected_after = Some(start.elapsed());
                                    me.note("101");
                                    settled.fetch_add(1, Ordering::Relaxed);
                                    // Stay connected until everyone is in, so
                                    // the server holds the whole storm at once.
                                    let _ = release_rx.changed().await;
                                    close(ws).await;
                                    return me;
                                }
                                Ok(conn::Opened::Refused {
                                    status,
                                    retry_after,
                                }) => {
                                    let floor = retry_after.unwrap_or(DEFAULT_RETRY);
                                    me.max_retry_after = me.max_retry_after.max(floor);
                                    (status.to_string(), floor.mul_f64(1.0 + fastrand::f64()))
                                }
                                Err(e) => (
                                    failure_label(&e),
                                    DEFAULT_RETRY.mul_f64(1.0 + fastrand::f64()),
                                ),
                            };
                        me.note(&label);
                        tokio::time::sleep(
                            wait.min(deadline.saturating_duration_since(Instant::now())),
                        )
                        .await;
                    }
                    settled.fetch_add(1, Ordering::Relaxed);
                    me
                });
            }
            let mut all = Vec::new();
            while let Some(r) = clients.next().await {
                all.push(r);
            }
            all
        }));
    }
    while settled.load(Ordering::Relaxed) < o.clients && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(
        o.hold
            .min(deadline.saturating_duration_since(Instant::now())),
    )
    .await;
    let _ = release_tx.send(true);

    let mut report = Report {
        scenario: "storm",
        url: format!("ws://{}{}", c.target.authority, c.target.path),
        protocol: c.protocol,
        clients: o.clients,
        sources: c.sources.len(),
        first_attempt: BTreeMap::new(),
        all_attempts: BTreeMap::new(),
        attempts: 0,
        connected: 0,
        all_connected_secs: None,
        time_to_connect: stats::Latency::default(),
        max_retry_after_secs: 0.0,
    };
    let mut times = stats::Histogram::default();
    let mut last = Duration::ZERO;
    let mut max_retry_after = Duration::ZERO;
    for w in workers {
        let Ok(clients) = w.await else { continue };
        for me in clients {
            *report.first_attempt.entry(me.first).or_default() += 1;
            for (k, v) in me.outcomes {
                *report.all_attempts.entry(k).or_default() += v;
            }
            report.attempts += me.attempts;
            max_retry_after = max_retry_after.max(me.max_retry_after);
            if let Some(t) = me.connected_after {
                report.connected += 1;
                times.record(t.as_micros() as u64);
                last = last.max(t);
            }
        }
    }
    if report.connected == o.clients {
        report.all_connected_secs = Some((last.as_secs_f64() * 1000.0).round() / 1000.0);
    }
    report.time_to_connect = times.summary_ms();
    report.max_retry_after_secs = max_retry_after.as_secs_f64();
    let ok = report.connected == o.clients;
    let human = human(&report);
    Outcome::new(&report, human, ok)
}

fn human(r: &Report) -> String {
    let all_in = r
        .all_connected_secs
        .map_or("not all connected before --timeout".into(), |s| {
            format!("all in after {s:.2} s")
        });
    format!(
        "storm {} ({} clients from {} source address(es)): {}/{} connected, {all_in}\n  first attempts: {:?}\n  all {} attempts: {:?} (largest Retry-After {} s)\n  time to connect: {}\n",
        r.url, r.clients, r.sources, r.connected, r.clients, r.first_attempt, r.attempts, r.all_attempts,
        r.max_retry_after_secs, r.time_to_connect
    )
}
