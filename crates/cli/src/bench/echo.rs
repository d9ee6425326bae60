//! `bench echo`: N connections, each sending a B-byte text message and
//! waiting for it to come back, for a fixed time. Reports round trips per
//! second and their latency. Works against any RFC 6455 echo endpoint
//! (Tether's `/echo`, or a baseline server).

use super::{
    chatter, close, failure_label, frame, number, stats, Common, Outcome, Protocol, HANDSHAKE_LIMIT,
};
use clap::ArgMatches;
use futures_util::{stream::FuturesUnordered, SinkExt, StreamExt};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};
use tokio_websockets::Message;

const WORKERS: usize = 8;

pub struct Options {
    pub connections: usize,
    pub size: usize,
    pub duration: Duration,
    pub server_pid: Option<String>,
}

impl Options {
    pub fn from(m: &ArgMatches) -> anyhow::Result<Self> {
        Ok(Options {
            connections: number(m, "connections")?,
            size: number::<usize>(m, "size")?.max(1),
            duration: super::duration(m, "duration")?,
            server_pid: super::server_pid(m)?,
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
    pub size: usize,
    pub duration_secs: f64,
    pub round_trips: u64,
    /// Echoes that came back different from what was sent.
    pub mismatches: u64,
    /// Connections that ended before the time was up.
    pub ended_early: usize,
    pub messages_per_sec: f64,
    pub round_trip: stats::Latency,
    /// With --server-pid: the server's CPU seconds during the run, and
    /// messages echoed per server CPU-second.
    pub server_cpu_secs: Option<f64>,
    pub messages_per_server_cpu_sec: Option<f64>,
}

struct PerConn {
    failure: Option<String>,
    round_trips: u64,
    mismatches: u64,
    ended_early: bool,
}

pub async fn run(c: &Common, o: Options) -> anyhow::Result<Outcome> {
    if c.protocol == Protocol::Tether {
        anyhow::bail!(
            "echo needs an echo endpoint, not the Tether protocol: use ws://HOST:PORT/echo (or --protocol raw)"
        );
    }
    let duration = o.duration.min(c.timeout);
    // Everyone connects first; the clock starts when all are open.
    let start_at = Instant::now()
        + HANDSHAKE_LIMIT
            .min(Duration::from_secs(2) + Duration::from_micros(o.connections as u64 * 500));
    let end_at = start_at + duration;
    // The payload goes as it is; Socket.IO carries it as a JSON string in an
    // `echo` event, and the server emits the same packet back.
    let payload = "e".repeat(o.size);
    let payload = match c.protocol {
        Protocol::Socketio => frame(c, "echo", format!("\"{payload}\"")),
        _ => payload,
    };
    let pid = o.server_pid.clone();
    let cpu_at_start = tokio::spawn(async move {
        tokio::time::sleep_until(start_at.into()).await;
        pid.as_deref().and_then(stats::cpu_secs)
    });
    let mut workers = Vec::new();
    for w in 0..WORKERS.min(o.connections) {
        let (c, payload, n) = (c.clone(), payload.clone(), o.connections);
        workers.push(tokio::spawn(async move {
            let latency = std::sync::Mutex::new(stats::Histogram::default());
            let mut conns = FuturesUnordered::new();
            for i in (w..n).step_by(WORKERS) {
                let (c, payload, latency) = (&c, payload.as_str(), &latency);
                conns.push(async move {
                    let mut out = PerConn {
                        failure: None,
                        round_trips: 0,
                        mismatches: 0,
                        ended_early: false,
                    };
                    let mut ws = match super::ready(c, &c.target, i, None).await {
                        Ok(ws) => ws,
                        Err(e) => {
                            out.failure = Some(failure_label(&e));
                            return out;
                        }
                    };
                    // Wait for the start, reading meanwhile (Socket.IO pings).
                    let start = tokio::time::sleep_until(start_at.into());
                    tokio::pin!(start);
                    loop {
                        tokio::select! {
                            () = &mut start => break,
                            m = ws.next() => match m {
                                Some(Ok(m)) if !m.is_close() => {
                                    chatter(c, &mut ws, &m).await;
                                }
                                _ => {
                                    out.ended_early = true;
                                    return out;
                                }
                            }
                        }
                    }
                    while Instant::now() < end_at {
                        let t0 = Instant::now();
                        if ws.send(Message::text(payload.to_owned())).await.is_err() {
                            out.ended_early = true;
                            return out;
                        }
                        let echoed = loop {
                            match ws.next().await {
                                Some(Ok(m)) if chatter(c, &mut ws, &m).await => continue,
                                Some(Ok(m)) if m.is_text() || m.is_binary() => break Some(m),
                                Some(Ok(m)) if !m.is_close() => continue,
                                _ => break None,
                            }
                        };
                        let Some(m) = echoed else {
                            out.ended_early = true;
                            return out;
                        };
                        if m.as_text() != Some(payload) {
                            out.mismatches += 1;
                        }
                        out.round_trips += 1;
                        if let Ok(mut h) = latency.lock() {
                            h.record(t0.elapsed().as_micros() as u64);
                        }
                    }
                    close(ws).await;
                    out
                });
            }
            let mut all = Vec::new();
            while let Some(r) = conns.next().await {
                all.push(r);
            }
            drop(conns);
            (all, latency.into_inner().unwrap_or_default())
        }));
    }
    let mut report = Report {
        scenario: "echo",
        url: format!("ws://{}{}", c.target.authority, c.target.path),
        connections: o.connections,
        established: 0,
        failed: BTreeMap::new(),
        size: o.size,
        duration_secs: duration.as_secs_f64(),
        round_trips: 0,
        mismatches: 0,
        ended_early: 0,
        messages_per_sec: 0.0,
        round_trip: stats::Latency::default(),
        server_cpu_secs: None,
        messages_per_server_cpu_sec: None,
    };
    let mut latency = stats::Histogram::default();
    for w in workers {
        let Ok((conns, l)) = w.await else { continue };
        latency.merge(&l);
        for r in conns {
            match r.failure {
                Some(f) => *report.failed.entry(f).or_default() += 1,
                None => report.established += 1,
            }
            report.round_trips += r.round_trips;
            report.mismatches += r.mismatches;
            report.ended_early += usize::from(r.ended_early);
        }
    }
    report.messages_per_sec = stats::rate(report.round_trips, duration.as_secs_f64());
    report.round_trip = latency.summary_ms();
    let cpu_end = o.server_pid.as_deref().and_then(stats::cpu_secs);
    if let (Ok(Some(b)), Some(a)) = (cpu_at_start.await, cpu_end) {
        let cpu = ((a - b) * 100.0).round() / 100.0;
        report.server_cpu_secs = Some(cpu);
        report.messages_per_server_cpu_sec = stats::per_cpu_sec(report.round_trips, Some(cpu));
    }
    let ok = report.established == o.connections
        && report.mismatches == 0
        && report.ended_early == 0
        && report.round_trips > 0;
    let mut human = format!(
        "echo {}: {}/{} connections x {} B for {:.1} s: {} round trips = {} msg/s\n  round trip: {}\n",
        report.url, report.established, report.connections, report.size, report.duration_secs,
        report.round_trips, report.messages_per_sec, report.round_trip
    );
    if let (Some(cpu), Some(per)) = (report.server_cpu_secs, report.messages_per_server_cpu_sec) {
        human.push_str(&format!(
            "  server CPU {cpu:.2} s = {per} messages per CPU-second\n"
        ));
    }
    if !report.failed.is_empty() || report.mismatches > 0 || report.ended_early > 0 {
        human.push_str(&format!(
            "  failed {:?}, mismatched echoes {}, ended early {}\n",
            report.failed, report.mismatches, report.ended_early
        ));
    }
    Outcome::new(&report, human, ok)
}
