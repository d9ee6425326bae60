//! `bench fanout`: N subscribers of one channel and one publisher sending R
//! messages a second, each stamped with its send time and a sequence number.
//! Reports deliveries/s, end-to-end latency (publisher send → subscriber
//! read, one clock) and losses (sequence gaps plus what never arrived).

use super::{
    chatter, close, failure_label, frame, number, ready, stats, Common, Outcome, Protocol,
};
use anyhow::Context;
use clap::ArgMatches;
use conn_stamp::{field, stamp};
use futures_util::{stream::FuturesUnordered, SinkExt, StreamExt};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::sync::{watch, Semaphore};
use tokio_websockets::Message;

const WORKERS: usize = 8;
/// Longest wait for the last deliveries once the publisher is done.
const DRAIN: Duration = Duration::from_secs(5);
/// The drain also ends when nothing has arrived for this long: a server that
/// skipped messages (the bare `broadcast` baseline does) will never deliver
/// them, and waiting out `DRAIN` for them would count idle seconds into its
/// deliveries/s.
const DRAIN_QUIET: Duration = Duration::from_secs(1);
/// Messages written before one flush when the publisher is behind schedule.
const BURST: u64 = 256;
/// How often the server's VmRSS is sampled while publishing and draining.
const RSS_SAMPLE: Duration = Duration::from_millis(50);
/// Latency is also kept per second of publishing, up to this many seconds.
const MAX_SECONDS: usize = 120;

pub struct Options {
    pub subscribers: usize,
    pub rate: f64,
    pub duration: Duration,
    pub size: usize,
    pub concurrency: usize,
    pub channel: String,
    /// Raw and Socket.IO: the publisher sends Tether's `message` frame for
    /// the server to relay, so every server's subscribers read equal bytes.
    pub envelope: bool,
    /// Closed loop: at most this many publications not yet delivered to
    /// every subscriber (0: open loop, the schedule alone).
    pub window: u64,
    pub server_pid: Option<String>,
}

impl Options {
    pub fn from(m: &ArgMatches) -> anyhow::Result<Self> {
        let rate: f64 = number(m, "rate")?;
        if !(rate > 0.0 && rate <= 1_000_000.0) {
            anyhow::bail!("--rate {rate}: expected 0 < R <= 1000000");
        }
        Ok(Options {
            subscribers: number(m, "subscribers")?,
            rate,
            duration: super::duration(m, "duration")?,
            size: number(m, "size")?,
            concurrency: number::<usize>(m, "concurrency")?.max(1),
            channel: m.get_one::<String>("channel").cloned().unwrap_or_default(),
            envelope: match m.get_one::<String>("envelope").map(String::as_str) {
                None | Some("message") => true,
                Some("none") => false,
                Some(other) => anyhow::bail!("--envelope {other:?}: expected message or none"),
            },
            window: number(m, "window")?,
            server_pid: super::server_pid(m)?,
        })
    }
}

#[derive(Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub url: String,
    pub protocol: Protocol,
    pub subscribers: usize,
    pub subscribed: usize,
    pub failed: BTreeMap<String, usize>,
    pub rate: f64,
    /// Closed loop: publications allowed in flight (0: open loop).
    pub window: u64,
    pub duration_secs: f64,
    pub sent: u64,
    pub publish_errors: u64,
    pub first_publish_error: Option<String>,
    /// sent × subscribed.
    pub expected: u64,
    pub delivered: u64,
    /// expected − delivered: messages some subscriber never got.
    pub lost: u64,
    /// Sequence numbers skipped within a subscriber's stream.
    pub gaps: u64,
    pub out_of_order: u64,
    /// Subscribers the server closed (or that failed) during the run.
    pub closed_early: usize,
    pub deliveries_per_sec: f64,
    pub offered_deliveries_per_sec: f64,
    pub latency: stats::Latency,
    /// Latency by the second (of the publishing schedule) in which the
    /// message was due: a backlog growing through the run shows as a p99
    /// climbing second by second, a steady spread as flat figures.
    pub latency_by_second: Vec<stats::Latency>,
    /// Whether raw/Socket.IO publications carried Tether's `message` frame.
    pub envelope: bool,
    /// Bytes of one delivered frame's text (the last one seen).
    pub delivered_frame_bytes: usize,
    /// This load generator's CPU seconds while publishing and draining
    /// (it runs on one CPU: near the elapsed time means it was the limit).
    pub client_cpu_secs: Option<f64>,
    pub elapsed_secs: f64,
    /// With --server-pid: the server's write system calls per 1,000
    /// deliveries (how many messages each write carried). Counts write and
    /// writev (/proc/PID/io `syscw`), which is how tokio-websockets writes;
    /// send/recv are not counted there.
    pub server_writes_per_1k_deliveries: Option<f64>,
    /// With --server-pid: the server's CPU seconds while publishing and
    /// draining, and deliveries per server CPU-second.
    pub server_cpu_secs: Option<f64>,
    pub deliveries_per_server_cpu_sec: Option<f64>,
    /// With --server-pid: the server's VmRSS with every subscriber
    /// connected, just before publishing; its highest VmRSS sampled every
    /// 50 ms while publishing and draining; and the growth between the two
    /// (what the server buffered for subscribers that fell behind).
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_peak_kib: Option<u64>,
    pub server_rss_growth_kib: Option<i64>,
}

/// One subscriber's view of the stream.
#[derive(Default)]
struct Seen {
    next: u64,
    gaps: u64,
    out_of_order: u64,
}

pub async fn run(c: &Common, o: Options) -> anyhow::Result<Outcome> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(o.concurrency));
    let subscribed = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let channel = (c.protocol == Protocol::Tether).then(|| o.channel.clone());
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS.min(o.subscribers) {
        let (c, gate, stop) = (c.clone(), gate.clone(), stop_rx.clone());
        let (subscribed, failed, delivered) =
            (subscribed.clone(), failed.clone(), delivered.clone());
        let (channel, n, rate) = (channel.clone(), o.subscribers, o.rate);
        workers.push(tokio::spawn(async move {
            let latency = Mutex::new((stats::Histogram::default(), Vec::<stats::Histogram>::new()));
            let frame_bytes = AtomicUsize::new(0);
            let mut subs = FuturesUnordered::new();
            for i in (w..n).step_by(WORKERS) {
                let (c, gate, mut stop, latency) = (&c, gate.clone(), stop.clone(), &latency);
                let frame_bytes = &frame_bytes;
                let (subscribed, failed, delivered) = (&subscribed, &failed, &delivered);
                let channel = channel.as_deref();
                subs.push(async move {
                    let permit = gate.acquire_owned().await;
                    let ws = ready(c, &c.target, i, channel).await;
                    drop(permit);
                    let mut ws = match ws {
                        Ok(ws) => ws,
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            return (Some(failure_label(&e)), Seen::default(), false);
                        }
                    };
                    subscribed.fetch_add(1, Ordering::Relaxed);
                    let mut seen = Seen::default();
                    loop {
                        tokio::select! {
                            _ = stop.changed() => break,
                            m = ws.next() => {
                                let Some(Ok(m)) = m else { return (None, seen, true) };
                                if m.is_close() {
                                    return (None, seen, true);
                                }
                                if chatter(c, &mut ws, &m).await {
                                    continue;
                                }
                                let Some(text) = m.as_text() else { continue };
                                let (Some(seq), Some(t)) = (field(text, "\"seq\":"), field(text, "\"t\":")) else {
                                    continue;
                                };
                                let now = super::conn::unix_micros();
                                let second = ((seq as f64 / rate) as usize).min(MAX_SECONDS - 1);
                                if let Ok(mut h) = latency.lock() {
                                    let (all, by_second) = &mut *h;
                                    all.record(now.saturating_sub(t));
                                    if by_second.len() <= second {
                                        by_second.resize_with(second + 1, stats::Histogram::default);
                                    }
                                    by_second[second].record(now.saturating_sub(t));
                                }
                                frame_bytes.store(text.len(), Ordering::Relaxed);
                                if seq > seen.next {
                                    seen.gaps += seq - seen.next;
                                } else if seq < seen.next {
                                    seen.out_of_order += 1;
                                }
                                seen.next = seen.next.max(seq + 1);
                                delivered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    close(ws).await;
                    (None, seen, false)
                });
            }
            let mut failures: BTreeMap<String, usize> = BTreeMap::new();
            let (mut gaps, mut out_of_order, mut closed) = (0, 0, 0);
            while let Some((failure, seen, closed_early)) = subs.next().await {
                if let Some(f) = failure {
                    *failures.entry(f).or_default() += 1;
                }
                gaps += seen.gaps;
                out_of_order += seen.out_of_order;
                closed += usize::from(closed_early);
            }
            drop(subs);
            let latency = latency.into_inner().unwrap_or_default();
            (failures, gaps, out_of_order, closed, latency, frame_bytes.into_inner())
        }));
    }

    let deadline = started + c.timeout;
    while subscribed.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < o.subscribers
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready_subs = subscribed.load(Ordering::Relaxed);
    // Let the last subscriptions register everywhere before publishing.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let duration = o.duration.min(c.timeout.saturating_sub(started.elapsed()));
    let total = (o.rate * duration.as_secs_f64()).round() as u64;
    let cpu_before = o.server_pid.as_deref().and_then(stats::cpu_secs);
    let rss_before = o
        .server_pid
        .as_deref()
        .and_then(stats::memory)
        .map(|m| m.vm_rss_kib);
    let rss_sampler = o
        .server_pid
        .clone()
        .filter(|_| rss_before.is_some())
        .map(|pid| {
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut peak = 0;
                loop {
                    if let Some(m) = stats::memory(&pid) {
                        peak = peak.max(m.vm_rss_kib);
                    }
                    tokio::select! {
                        _ = stop.changed() => break,
                        () = tokio::time::sleep(RSS_SAMPLE) => {}
                    }
                }
                if let Some(m) = stats::memory(&pid) {
                    peak = peak.max(m.vm_rss_kib);
                }
                peak
            })
        });
    let server_io_before = o.server_pid.as_deref().and_then(stats::syscalls);
    let client_cpu_before = stats::cpu_secs("self");
    let publish_started = Instant::now();
    let flow = Flow {
        delivered: &delivered,
        subscribers: ready_subs as u64,
        window: o.window,
    };
    let published = publish(c, &o, total, o.subscribers, flow).await?;
    let expected = published.sent * ready_subs as u64;
    let drain_until = Instant::now() + DRAIN;
    let (mut seen, mut last_progress) = (delivered.load(Ordering::Relaxed), Instant::now());
    while seen < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = delivered.load(Ordering::Relaxed);
        if now != seen {
            (seen, last_progress) = (now, Instant::now());
        } else if last_progress.elapsed() >= DRAIN_QUIET {
            break;
        }
    }
    // Rates are over the time until the last delivery, not the quiet wait.
    let elapsed = last_progress.duration_since(publish_started).as_secs_f64();
    let cpu = cpu_before
        .zip(o.server_pid.as_deref().and_then(stats::cpu_secs))
        .map(|(b, a)| ((a - b) * 100.0).round() / 100.0);
    let client_cpu = client_cpu_before
        .zip(stats::cpu_secs("self"))
        .map(|(b, a)| ((a - b) * 100.0).round() / 100.0);
    let server_writes = server_io_before
        .zip(o.server_pid.as_deref().and_then(stats::syscalls))
        .map(|((_, b), (_, a))| a.saturating_sub(b));
    let _ = stop_tx.send(true);
    let rss_peak = match rss_sampler {
        Some(s) => s.await.ok().filter(|p| *p > 0),
        None => None,
    };

    let mut failures = BTreeMap::new();
    let (mut gaps, mut out_of_order, mut closed_early) = (0, 0, 0);
    let mut latency = stats::Histogram::default();
    let mut by_second: Vec<stats::Histogram> = Vec::new();
    let mut frame_bytes = 0;
    for w in workers {
        if let Ok((f, g, ooo, closed, (l, secs), bytes)) = w.await {
            if by_second.len() < secs.len() {
                by_second.resize_with(secs.len(), stats::Histogram::default);
            }
            for (a, b) in by_second.iter_mut().zip(&secs) {
                a.merge(b);
            }
            frame_bytes = frame_bytes.max(bytes);
            for (k, v) in f {
                *failures.entry(k).or_default() += v;
            }
            gaps += g;
            out_of_order += ooo;
            closed_early += closed;
            latency.merge(&l);
        }
    }
    let got = delivered.load(Ordering::Relaxed);
    let per_1k = |n: u64| (got > 0).then(|| (n as f64 * 1000.0 / got as f64 * 10.0).round() / 10.0);
    let report = Report {
        scenario: "fanout",
        url: format!("ws://{}{}", c.target.authority, c.target.path),
        protocol: c.protocol,
        subscribers: o.subscribers,
        subscribed: ready_subs,
        failed: failures,
        rate: o.rate,
        window: o.window,
        duration_secs: duration.as_secs_f64(),
        sent: published.sent,
        publish_errors: published.errors,
        first_publish_error: published.first_error,
        expected,
        delivered: got,
        lost: expected.saturating_sub(got),
        gaps,
        out_of_order,
        closed_early,
        deliveries_per_sec: stats::rate(got, elapsed),
        offered_deliveries_per_sec: (o.rate * ready_subs as f64).round(),
        latency: latency.summary_ms(),
        latency_by_second: by_second.iter().map(stats::Histogram::summary_ms).collect(),
        envelope: o.envelope && c.protocol != Protocol::Tether,
        delivered_frame_bytes: frame_bytes,
        client_cpu_secs: client_cpu,
        elapsed_secs: (elapsed * 100.0).round() / 100.0,
        server_writes_per_1k_deliveries: server_writes.and_then(per_1k),
        server_cpu_secs: cpu,
        deliveries_per_server_cpu_sec: stats::per_cpu_sec(got, cpu),
        server_rss_before_kib: rss_before,
        server_rss_peak_kib: rss_peak,
        server_rss_growth_kib: rss_before.zip(rss_peak).map(|(b, p)| p as i64 - b as i64),
    };
    let ok = report.subscribed == o.subscribers
        && report.lost == 0
        && report.gaps == 0
        && report.publish_errors == 0
        && report.closed_early == 0;
    let human = human(&report);
    Outcome::new(&report, human, ok)
}

struct Published {
    sent: u64,
    errors: u64,
    first_error: Option<String>,
}

/// The closed loop's gate: publication `seq` may go once every subscriber
/// has all but `window` of the ones before it.
struct Flow<'a> {
    delivered: &'a AtomicU64,
    subscribers: u64,
    window: u64,
}

impl Flow<'_> {
    fn allows(&self, seq: u64) -> bool {
        self.window == 0
            || seq < self.delivered.load(Ordering::Relaxed) / self.subscribers.max(1) + self.window
    }
}

/// Sends `total` stamped messages at the configured rate; when behind
/// schedule it writes what is due in one flush instead of falling further
/// behind. In a closed loop (`--window`) it also waits for the window.
/// Reads the acks (Tether) as they come.
async fn publish(
    c: &Common,
    o: &Options,
    total: u64,
    index: usize,
    flow: Flow<'_>,
) -> anyhow::Result<Published> {
    let mut ws = ready(c, &c.target, index, None)
        .await
        .context("the publisher could not connect")?;
    let pad = "x".repeat(o.size.saturating_sub(40));
    let period = Duration::from_secs_f64(1.0 / o.rate);
    let start = tokio::time::Instant::now();
    let (mut sent, mut acked, mut errors, mut first_error) = (0u64, 0u64, 0u64, None);
    let wants_acks = c.protocol == Protocol::Tether;
    let channel = serde_json::Value::from(o.channel.as_str()).to_string();
    let at = |i: u64| start + period.mul_f64(i as f64);
    let ack_deadline = at(total) + DRAIN;
    let end = at(total);
    let mut total = total;
    while sent < total || (wants_acks && acked + errors < sent) {
        // A closed loop sends for the duration, not until the schedule's count.
        if flow.window > 0 && sent < total && tokio::time::Instant::now() >= end {
            total = sent;
            continue;
        }
        let due = at(sent);
        tokio::select! {
            biased;
            m = ws.next() => {
                let Some(Ok(m)) = m else { anyhow::bail!("the server closed the publisher's connection") };
                if chatter(c, &mut ws, &m).await {
                    continue;
                }
                if let Some(text) = m.as_text() {
                    if text.contains("\"type\":\"ack\"") {
                        acked += 1;
                    } else if text.contains("\"type\":\"error\"") {
                        errors += 1;
                        first_error.get_or_insert_with(|| text.to_owned());
                    }
                }
            }
            // A full window is looked at again each millisecond (tokio's
            // timer granularity; the window holds far more than that).
            () = tokio::time::sleep_until(if flow.allows(sent) { due } else { tokio::time::Instant::now() + Duration::from_millis(1) }), if sent < total => {
                let now = tokio::time::Instant::now();
                let mut burst = 0;
                while sent < total && burst < BURST && at(sent) <= now && flow.allows(sent) {
                    let body = stamp(sent, &pad);
                    let frame = match (c.protocol, o.envelope) {
                        (Protocol::Tether, _) => format!("{{\"type\":\"publish\",\"id\":{},\"channel\":{channel},\"data\":{body}}}", sent + 1),
                        // What Tether would deliver for this publication
                        // (offsets start at 1), relayed as is.
                        (_, true) => frame(c, "pub", format!("{{\"type\":\"message\",\"channel\":{channel},\"offset\":{},\"data\":{body}}}", sent + 1)),
                        (_, false) => frame(c, "pub", body),
                    };
                    ws.feed(Message::text(frame)).await?;
                    sent += 1;
                    burst += 1;
                }
                ws.flush().await?;
            }
            () = tokio::time::sleep_until(ack_deadline) => break,
        }
    }
    close(ws).await;
    Ok(Published {
        sent,
        errors,
        first_error,
    })
}

/// The stamped payload and its cheap parser (no JSON tree per message).
mod conn_stamp {
    pub fn stamp(seq: u64, pad: &str) -> String {
        format!(
            "{{\"seq\":{seq},\"t\":{},\"pad\":\"{pad}\"}}",
            super::super::conn::unix_micros()
        )
    }

    /// The unsigned number after `key` (e.g. `"seq":`), if any.
    pub fn field(text: &str, key: &str) -> Option<u64> {
        let rest = &text[text.find(key)? + key.len()..];
        let digits = rest.trim_start();
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end].parse().ok()
    }
}

fn human(r: &Report) -> String {
    let mut s = format!(
        "fanout {} ({:?}): {}/{} subscribers, {} msg/s{} for {:.1} s: sent {}, delivered {}/{} ({} deliveries/s; offered {})\n  latency: {}\n",
        r.url, r.protocol, r.subscribed, r.subscribers, r.rate,
        if r.window > 0 { format!(" (closed loop, window {})", r.window) } else { String::new() },
        r.duration_secs, r.sent, r.delivered, r.expected,
        r.deliveries_per_sec, r.offered_deliveries_per_sec, r.latency
    );
    s.push_str(&format!(
        "  lost {}, gaps {}, out of order {}, subscribers closed early {}\n",
        r.lost, r.gaps, r.out_of_order, r.closed_early
    ));
    if !r.latency_by_second.is_empty() {
        let p99: Vec<String> = r
            .latency_by_second
            .iter()
            .map(|l| format!("{:.1}", l.p99_ms))
            .collect();
        s.push_str(&format!(
            "  p99 ms by second of publishing: {}\n",
            p99.join(" ")
        ));
    }
    s.push_str(&format!(
        "  frames of {} bytes{}; load generator CPU {} s in {:.2} s\n",
        r.delivered_frame_bytes,
        if r.envelope {
            " (Tether's message frame, relayed)"
        } else {
            ""
        },
        r.client_cpu_secs
            .map_or("n/a".into(), |c| format!("{c:.2}")),
        r.elapsed_secs,
    ));
    if let Some(w) = r.server_writes_per_1k_deliveries {
        s.push_str(&format!("  server: {w:.1} writes per 1,000 deliveries\n"));
    }
    if let (Some(cpu), Some(per)) = (r.server_cpu_secs, r.deliveries_per_server_cpu_sec) {
        s.push_str(&format!(
            "  server CPU {cpu:.2} s = {per} deliveries per CPU-second\n"
        ));
    }
    if let (Some(b), Some(p), Some(g)) = (
        r.server_rss_before_kib,
        r.server_rss_peak_kib,
        r.server_rss_growth_kib,
    ) {
        s.push_str(&format!(
            "  server VmRSS {b} KiB before publishing, peak {p} KiB: grew {g} KiB\n"
        ));
    }
    if !r.failed.is_empty() {
        s.push_str(&format!("  failed to subscribe: {:?}\n", r.failed));
    }
    if r.publish_errors > 0 {
        s.push_str(&format!(
            "  publish errors: {} (first: {}); raise the server's --messages-per-second for the bench\n",
            r.publish_errors,
            r.first_publish_error.as_deref().unwrap_or("")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::conn_stamp::{field, stamp};

    #[test]
    fn stamp_parses_back() {
        let s = stamp(42, "xx");
        assert_eq!(field(&s, "\"seq\":"), Some(42));
        assert!(field(&s, "\"t\":").is_some_and(|t| t > 1_600_000_000_000_000));
        let wrapped = format!("{{\"type\":\"message\",\"offset\":7,\"data\":{s}}}");
        assert_eq!(field(&wrapped, "\"seq\":"), Some(42));
    }
}
