//! `bench hooks`: what a backend in the loop costs. The bench is the backend
//! too: it listens on `--backend-listen` (start the server with
//! `--hook-connect http://ADDR/connect` and `--events-url http://ADDR/events`
//! pointing there), answers every connect hook at once with a user, and
//! counts the lifecycle events the server sends. It opens N connections (at
//! most C handshakes in flight), each to its welcome, closes them all, and
//! waits for their `connect` and `disconnect` events.
//!
//! Reported: handshakes/s and the welcome latency (run it against a server
//! without the hook for the added latency: benches/hooks.sh does both), the
//! connect hook calls served, and events/s delivered.

use super::{close, failure_label, number, ready, stats, Common, Outcome};
use anyhow::Context;
use clap::ArgMatches;
use futures_util::{stream::FuturesUnordered, StreamExt};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

pub struct Options {
    pub connections: usize,
    pub concurrency: usize,
    pub backend: String,
    /// How long to wait for the events after the last close.
    pub settle: Duration,
}

impl Options {
    pub fn from(m: &ArgMatches) -> anyhow::Result<Self> {
        Ok(Options {
            connections: number(m, "connections")?,
            concurrency: number::<usize>(m, "concurrency")?.max(1),
            backend: m
                .get_one::<String>("backend-listen")
                .cloned()
                .context("--backend-listen is required")?,
            settle: super::duration(m, "settle")?,
        })
    }
}

#[derive(Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub url: String,
    pub connections: usize,
    pub established: usize,
    pub failed: BTreeMap<String, usize>,
    pub handshakes_per_sec: f64,
    /// Connect → welcome (the connect hook's round trip included, when the
    /// server calls it).
    pub welcome_latency: stats::Latency,
    /// Connect hook calls the backend answered.
    pub connect_hooks: u64,
    /// Lifecycle events received (`connect` and `disconnect` expected for
    /// each connection).
    pub events: u64,
    /// Events over the time from the first to the last one received.
    pub events_per_sec: f64,
    /// Event batches (POSTs) received.
    pub event_batches: u64,
}

/// What the backend counted.
#[derive(Default)]
struct Counts {
    connect_hooks: AtomicU64,
    events: AtomicU64,
    batches: AtomicU64,
    /// µs since the bench started: first and last event.
    first_event: AtomicU64,
    last_event: AtomicU64,
}

pub async fn run(c: &Common, o: Options) -> anyhow::Result<Outcome> {
    let listener = TcpListener::bind(&o.backend)
        .await
        .with_context(|| format!("--backend-listen {}", o.backend))?;
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let backend = tokio::spawn(serve(listener, counts.clone(), started));

    let gate = Arc::new(Semaphore::new(o.concurrency));
    let mut opening = FuturesUnordered::new();
    for i in 0..o.connections {
        let gate = gate.clone();
        opening.push(async move {
            let _permit = gate.acquire_owned().await;
            let t0 = Instant::now();
            let ws = ready(c, &c.target, i, None).await;
            (ws, t0.elapsed())
        });
    }
    let t0 = Instant::now();
    let (mut open, mut failures, mut latency) = (
        Vec::new(),
        BTreeMap::<String, usize>::new(),
        stats::Histogram::default(),
    );
    while let Some((ws, took)) = opening.next().await {
        match ws {
            Ok(ws) => {
                latency.record(took.as_micros() as u64);
                open.push(ws);
            }
            Err(e) => *failures.entry(failure_label(&e)).or_default() += 1,
        }
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    let established = open.len();
    let mut closing: FuturesUnordered<_> = open.into_iter().map(close).collect();
    while closing.next().await.is_some() {}

    // Every connection's connect and disconnect, or the settle time.
    let expected = 2 * established as u64;
    let deadline = Instant::now() + o.settle;
    while counts.events.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    backend.abort();
    let events = counts.events.load(Ordering::Relaxed);
    let span = counts
        .last_event
        .load(Ordering::Relaxed)
        .saturating_sub(counts.first_event.load(Ordering::Relaxed));
    let report = Report {
        scenario: "hooks",
        url: format!("ws://{}{}", c.target.authority, c.target.path),
        connections: o.connections,
        established,
        failed: failures,
        handshakes_per_sec: stats::rate(established as u64, connect_secs),
        welcome_latency: latency.summary_ms(),
        connect_hooks: counts.connect_hooks.load(Ordering::Relaxed),
        events,
        events_per_sec: stats::rate(events, span as f64 / 1e6),
        event_batches: counts.batches.load(Ordering::Relaxed),
    };
    let ok = established == o.connections;
    let human = format!(
        "hooks: {}/{} connected at {} handshakes/s; welcome {}\n  connect hooks answered: {}; events: {} in {} batches, {} events/s\n",
        report.established,
        report.connections,
        report.handshakes_per_sec,
        report.welcome_latency,
        report.connect_hooks,
        report.events,
        report.event_batches,
        report.events_per_sec
    );
    Outcome::new(&report, human, ok)
}

/// The backend: HTTP/1.1 keep-alive, every POST answered at once.
async fn serve(listener: TcpListener, counts: Arc<Counts>, started: Instant) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, counts.clone(), started));
    }
}

async fn connection(stream: TcpStream, counts: Arc<Counts>, started: Instant) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut length = 0usize;
        loop {
            line.clear();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let answer: &[u8] = if path.starts_with("/events") {
            let n = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["events"].as_array().map(Vec::len))
                .unwrap_or(0) as u64;
            let now = started.elapsed().as_micros() as u64;
            let _ =
                counts
                    .first_event
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            counts.last_event.fetch_max(now, Ordering::Relaxed);
            counts.events.fetch_add(n, Ordering::Relaxed);
            counts.batches.fetch_add(1, Ordering::Relaxed);
            b"{}"
        } else {
            counts.connect_hooks.fetch_add(1, Ordering::Relaxed);
            br#"{"user":"bench"}"#
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        let out = stream.get_mut();
        if out.write_all(head.as_bytes()).await.is_err() || out.write_all(answer).await.is_err() {
            return;
        }
    }
}
