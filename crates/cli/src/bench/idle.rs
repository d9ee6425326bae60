//! `bench idle`: N idle connections — the connect rate, and what each one
//! costs the server in memory (its VmRSS delta divided by N).
//!
//! The connections live as futures in a few worker tasks (not a task or a
//! client object each), so the load generator stays lean at 10k+ sockets.

use super::{chatter, close, failure_label, number, ready, stats, Common, Outcome, Protocol};
use clap::ArgMatches;
use futures_util::{stream::FuturesUnordered, StreamExt};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::{watch, Semaphore};

/// Worker tasks that hold the connections.
const WORKERS: usize = 8;
/// Pause before reading memory, so that allocations made during the
/// handshakes (and freed) settle.
const SETTLE: Duration = Duration::from_secs(2);

pub struct Options {
    pub connections: usize,
    pub hold: Duration,
    pub concurrency: usize,
    pub channel: String,
    pub server_pid: Option<u32>,
}

impl Options {
    pub fn from(m: &ArgMatches) -> anyhow::Result<Self> {
        Ok(Options {
            connections: number(m, "connections")?,
            hold: super::duration(m, "hold")?,
            concurrency: number::<usize>(m, "concurrency")?.max(1),
            channel: m.get_one::<String>("channel").cloned().unwrap_or_default(),
            server_pid: super::server_pid(m)?.and_then(|p| p.parse().ok()),
        })
    }
}

#[derive(Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub url: String,
    pub protocol: Protocol,
    pub connections: usize,
    pub established: usize,
    pub failed: BTreeMap<String, usize>,
    /// Connections the server closed during the hold.
    pub dropped_during_hold: usize,
    pub connect_secs: f64,
    pub connects_per_sec: f64,
    pub connect_latency: stats::Latency,
    pub hold_secs: f64,
    /// Server memory before the first connection and with all of them open.
    pub server_before: Option<stats::Memory>,
    pub server_after: Option<stats::Memory>,
    /// User-space memory per connection (VmRSS delta / established).
    pub server_rss_per_conn_kib: Option<f64>,
    pub server_anon_per_conn_kib: Option<f64>,
    /// This load generator's own VmRSS per connection.
    pub client_rss_per_conn_kib: f64,
    /// Kernel slab growth (system-wide, both ends of every socket) per
    /// connection; not in any RSS.
    pub kernel_slab_per_conn_kib: Option<f64>,
}

pub async fn run(c: &Common, o: Options) -> anyhow::Result<Outcome> {
    let pid = o.server_pid.map(|p| p.to_string());
    let server_before = pid.as_deref().and_then(stats::memory);
    if pid.is_some() && server_before.is_none() {
        anyhow::bail!(
            "--server-pid: cannot read /proc/{}/status",
            pid.as_deref().unwrap_or("")
        );
    }
    let client_before = stats::memory("self").unwrap_or_default();
    let slab_before = stats::slab_kib();

    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(o.concurrency));
    let established = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    // When the last connection finished its handshake (µs after `started`):
    // the connect time, exact rather than rounded up to the wait loop's tick.
    let last_done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let channel =
        (c.protocol == Protocol::Tether && !o.channel.is_empty()).then(|| o.channel.clone());
    let mut workers = Vec::new();
    for w in 0..WORKERS.min(o.connections) {
        let (c, gate, stop) = (c.clone(), gate.clone(), stop_rx.clone());
        let (established, failed, dropped) = (established.clone(), failed.clone(), dropped.clone());
        let last_done = last_done.clone();
        let channel = channel.clone();
        let n = o.connections;
        workers.push(tokio::spawn(async move {
            let mut held = FuturesUnordered::new();
            for i in (w..n).step_by(WORKERS) {
                let (c, gate, mut stop) = (&c, gate.clone(), stop.clone());
                let (established, failed, dropped) = (&established, &failed, &dropped);
                let last_done = &last_done;
                let channel = channel.as_deref();
                held.push(async move {
                    let permit = gate.acquire_owned().await;
                    let t0 = Instant::now();
                    let ws = ready(c, &c.target, i, channel).await;
                    let took = t0.elapsed();
                    last_done.fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    drop(permit);
                    let mut ws = match ws {
                        Ok(ws) => ws,
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            return (Some(failure_label(&e)), None);
                        }
                    };
                    established.fetch_add(1, Ordering::Relaxed);
                    // Idle: read only to answer pings and notice a close.
                    loop {
                        tokio::select! {
                            _ = stop.changed() => break,
                            m = ws.next() => match m {
                                Some(Ok(m)) if !m.is_close() => {
                                    chatter(c, &mut ws, &m).await;
                                    continue;
                                }
                                _ => {
                                    dropped.fetch_add(1, Ordering::Relaxed);
                                    return (None, Some(took));
                                }
                            }
                        }
                    }
                    close(ws).await;
                    (None, Some(took))
                });
            }
            let mut failures: BTreeMap<String, usize> = BTreeMap::new();
            let mut latency = stats::Histogram::default();
            while let Some((failure, took)) = held.next().await {
                if let Some(f) = failure {
                    *failures.entry(f).or_default() += 1;
                }
                if let Some(t) = took {
                    latency.record(t.as_micros() as u64);
                }
            }
            (failures, latency)
        }));
    }

    // Wait until every connection is open or has failed.
    let deadline = started + c.timeout;
    while established.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < o.connections
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = match last_done.load(Ordering::Relaxed) {
        0 => started.elapsed().as_secs_f64(),
        us => us as f64 / 1e6,
    };
    let open = established.load(Ordering::Relaxed);

    tokio::time::sleep(SETTLE).await;
    let server_after = pid.as_deref().and_then(stats::memory);
    let client_after = stats::memory("self").unwrap_or_default();
    let slab_after = stats::slab_kib();
    let hold = o.hold.min(c.timeout.saturating_sub(started.elapsed()));
    tokio::time::sleep(hold.saturating_sub(SETTLE)).await;
    let _ = stop_tx.send(true);

    let mut failures = BTreeMap::new();
    let mut latency = stats::Histogram::default();
    for w in workers {
        if let Ok((f, l)) = w.await {
            for (k, v) in f {
                *failures.entry(k).or_default() += v;
            }
            latency.merge(&l);
        }
    }
    let unfinished = o.connections - open - failed.load(Ordering::Relaxed);
    if unfinished > 0 {
        failures.insert("unfinished".into(), unfinished);
    }
    let report = Report {
        scenario: "idle",
        url: format!("ws://{}{}", c.target.authority, c.target.path),
        protocol: c.protocol,
        connections: o.connections,
        established: open,
        failed: failures,
        dropped_during_hold: dropped.load(Ordering::Relaxed),
        connect_secs: (connect_secs * 1000.0).round() / 1000.0,
        connects_per_sec: stats::rate(open as u64, connect_secs),
        connect_latency: latency.summary_ms(),
        hold_secs: hold.max(SETTLE).as_secs_f64(),
        server_rss_per_conn_kib: server_before
            .zip(server_after)
            .map(|(b, a)| stats::per_unit(b.vm_rss_kib, a.vm_rss_kib, open)),
        server_anon_per_conn_kib: server_before
            .zip(server_after)
            .map(|(b, a)| stats::per_unit(b.rss_anon_kib, a.rss_anon_kib, open)),
        server_before,
        server_after,
        client_rss_per_conn_kib: stats::per_unit(
            client_before.vm_rss_kib,
            client_after.vm_rss_kib,
            open,
        ),
        kernel_slab_per_conn_kib: slab_before
            .zip(slab_after)
            .map(|(b, a)| stats::per_unit(b, a, open)),
    };
    let ok = report.established == o.connections && report.dropped_during_hold == 0;
    let human = human(&report);
    Outcome::new(&report, human, ok)
}

fn human(r: &Report) -> String {
    let mut s = format!(
        "idle {} ({:?}): {}/{} connections open in {:.2} s ({} connects/s; handshake {})\n",
        r.url,
        r.protocol,
        r.established,
        r.connections,
        r.connect_secs,
        r.connects_per_sec,
        r.connect_latency
    );
    if !r.failed.is_empty() {
        s.push_str(&format!(
            "  failed: {:?} (server limits? see `tether serve --help`)\n",
            r.failed
        ));
    }
    if r.dropped_during_hold > 0 {
        s.push_str(&format!(
            "  closed by the server during the hold: {}\n",
            r.dropped_during_hold
        ));
    }
    match (r.server_rss_per_conn_kib, r.server_before, r.server_after) {
        (Some(per), Some(b), Some(a)) => s.push_str(&format!(
            "  server memory: VmRSS {} -> {} KiB = {per:.2} KiB per connection (anon {:.2} KiB)\n",
            b.vm_rss_kib,
            a.vm_rss_kib,
            r.server_anon_per_conn_kib.unwrap_or(0.0)
        )),
        _ => s.push_str("  server memory: not measured (give --server-pid PID)\n"),
    }
    s.push_str(&format!(
        "  load generator: {:.2} KiB per connection; kernel slab (both ends, system-wide): {}\n",
        r.client_rss_per_conn_kib,
        r.kernel_slab_per_conn_kib
            .map_or("n/a".into(), |k| format!("{k:.2} KiB per connection"))
    ));
    s
}
