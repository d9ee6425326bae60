//! `bench presence`: what presence costs. N clients are present over K
//! channels (`PREFIX:0` .. `PREFIX:K-1`, which the server's `[[channels]]`
//! rule must give `presence = true`): N - 1 held idle, and one more on
//! `PREFIX:0` that asks (so with N = 10,000 and K = 10 every channel has
//! 1,000 entries, the most a `presence` answer lists); then
//!
//! - with `--redis-url`, Redis's own counters over a `--window` of quiet
//!   (nothing but the nodes' presence refreshes, every `--presence-ttl`/3):
//!   commands/s, CPU and memory — the Redis cost of keeping N present;
//! - `--requests` `presence` requests, one at a time, on `PREFIX:0`
//!   (`(N - 1) / K` held entries plus the asker): their latency, and that
//!   each lists them all.

use super::{chatter, close, failure_label, number, ready, stats, Common, Outcome};
use anyhow::{bail, Context};
use clap::ArgMatches;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::{watch, Semaphore};
use tokio_websockets::Message;

pub struct Options {
    pub clients: usize,
    pub channels: usize,
    pub prefix: String,
    pub requests: usize,
    pub window: Duration,
    pub concurrency: usize,
    pub redis_url: Option<String>,
    pub server_pid: Option<String>,
}

impl Options {
    pub fn from(m: &ArgMatches) -> anyhow::Result<Self> {
        let channels: usize = number(m, "channels")?;
        if channels == 0 {
            bail!("--channels 0: at least one channel is needed");
        }
        Ok(Options {
            clients: number(m, "clients")?,
            channels,
            prefix: m.get_one::<String>("prefix").cloned().unwrap_or_default(),
            requests: number(m, "requests")?,
            window: super::duration(m, "window")?,
            concurrency: number::<usize>(m, "concurrency")?.max(1),
            redis_url: m.get_one::<String>("redis-url").cloned(),
            server_pid: super::server_pid(m)?,
        })
    }
}

#[derive(Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub url: String,
    pub clients: usize,
    pub channels: usize,
    pub established: usize,
    pub failed: BTreeMap<String, usize>,
    /// Connections the server closed while they were held.
    pub dropped: usize,
    /// Clients held idle (all but the asker).
    pub held: usize,
    /// What a `presence` answer on the first channel should list.
    pub entries_asked: usize,
    /// What every answer listed (the smallest count seen).
    pub entries_listed: usize,
    pub presence_latency: stats::Latency,
    pub window_secs: f64,
    pub redis: Option<RedisCost>,
    /// The server's CPU over the window, in percent of one CPU.
    pub server_cpu_percent: Option<f64>,
}

/// Redis's counters over the window.
#[derive(Serialize)]
pub struct RedisCost {
    pub commands_per_sec: f64,
    /// Redis's user + system CPU over the window, in percent of one CPU.
    pub cpu_percent: f64,
    pub used_memory_bytes: u64,
}

/// `INFO` fields read before and after the window.
struct RedisInfo {
    commands: u64,
    cpu_secs: f64,
    used_memory: u64,
}

async fn redis_info(url: &str) -> anyhow::Result<RedisInfo> {
    let client = redis::Client::open(url).with_context(|| format!("--redis-url {url}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("cannot reach Redis at {url}"))?;
    let info: String = redis::cmd("INFO")
        .arg("all")
        .query_async(&mut conn)
        .await
        .context("INFO")?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .with_context(|| format!("Redis INFO has no {name}"))
    };
    Ok(RedisInfo {
        commands: field("total_commands_processed")?.parse()?,
        cpu_secs: field("used_cpu_user")?.parse::<f64>()?
            + field("used_cpu_sys")?.parse::<f64>()?,
        used_memory: field("used_memory")?.parse()?,
    })
}

pub async fn run(c: &Common, o: Options) -> anyhow::Result<Outcome> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(o.concurrency));
    let (established, failed, dropped) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let started = Instant::now();
    let holding = o.clients.saturating_sub(1);
    let mut held = Vec::with_capacity(holding);
    for i in 0..holding {
        // Channel 0 is one short: the asker completes it.
        let channel = format!("{}:{}", o.prefix, (i + 1) % o.channels);
        let (c, gate, mut stop) = (c.clone(), gate.clone(), stop_rx.clone());
        let (established, failed, dropped) = (established.clone(), failed.clone(), dropped.clone());
        held.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let ws = ready(&c, &c.target, i, Some(&channel)).await;
            drop(permit);
            let mut ws = match ws {
                Ok(ws) => ws,
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return Some(failure_label(&e));
                }
            };
            established.fetch_add(1, Ordering::Relaxed);
            // Held idle: read only to answer pings and notice a close.
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    m = ws.next() => match m {
                        Some(Ok(m)) if !m.is_close() => {
                            chatter(&c, &mut ws, &m).await;
                        }
                        _ => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            return None;
                        }
                    }
                }
            }
            close(ws).await;
            None
        }));
    }
    let deadline = started + c.timeout;
    while established.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < holding
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The quiet window: only the nodes' refreshes run.
    let window = o.window.min(c.timeout.saturating_sub(started.elapsed()));
    let before = match &o.redis_url {
        Some(url) => Some(redis_info(url).await?),
        None => None,
    };
    let cpu_before = o.server_pid.as_deref().and_then(stats::cpu_secs);
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let window_secs = t0.elapsed().as_secs_f64();
    let server_cpu_percent = match (
        cpu_before,
        o.server_pid.as_deref().and_then(stats::cpu_secs),
    ) {
        (Some(b), Some(a)) => Some(((a - b) / window_secs * 1000.0).round() / 10.0),
        _ => None,
    };
    let redis = match (&o.redis_url, before) {
        (Some(url), Some(b)) => {
            let a = redis_info(url).await?;
            Some(RedisCost {
                commands_per_sec: stats::rate(a.commands.saturating_sub(b.commands), window_secs),
                cpu_percent: ((a.cpu_secs - b.cpu_secs) / window_secs * 1000.0).round() / 10.0,
                used_memory_bytes: a.used_memory,
            })
        }
        _ => None,
    };

    // Latency of `presence` on the first channel, from one more subscriber.
    let first = format!("{}:0", o.prefix);
    let entries_asked = holding / o.channels + 1;
    let (latency, entries_listed) = ask(c, &first, o.requests, o.clients).await?;
    let _ = stop_tx.send(true);

    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for h in held {
        if let Ok(Some(f)) = h.await {
            *failures.entry(f).or_default() += 1;
        }
    }
    let open = established.load(Ordering::Relaxed);
    let report = Report {
        scenario: "presence",
        url: format!("ws://{}{}", c.target.authority, c.target.path),
        clients: o.clients,
        channels: o.channels,
        held: holding,
        established: open,
        failed: failures,
        dropped: dropped.load(Ordering::Relaxed),
        entries_asked,
        entries_listed,
        presence_latency: latency.summary_ms(),
        window_secs: (window_secs * 100.0).round() / 100.0,
        redis,
        server_cpu_percent,
    };
    let ok = open == holding
        && report.dropped == 0
        && (o.requests == 0 || entries_listed == entries_asked);
    let human = human(&report);
    Outcome::new(&report, human, ok)
}

/// Sends `requests` `presence` requests one after another on `channel`;
/// their latency, and the fewest entries an answer listed.
async fn ask(
    c: &Common,
    channel: &str,
    requests: usize,
    i: usize,
) -> anyhow::Result<(stats::Histogram, usize)> {
    let mut latency = stats::Histogram::default();
    if requests == 0 {
        return Ok((latency, 0));
    }
    let mut ws = ready(c, &c.target, i, Some(channel)).await?;
    let mut fewest = usize::MAX;
    for id in 2..2 + requests as u64 {
        let request = serde_json::json!({"type": "presence", "id": id, "channel": channel});
        let t0 = Instant::now();
        ws.send(Message::text(request.to_string())).await?;
        let reply = loop {
            let m = tokio::time::timeout(super::HANDSHAKE_LIMIT, ws.next())
                .await
                .context("no presence answer within 10s")?
                .context("the connection closed")??;
            let Some(text) = m.as_text() else { continue };
            let v: serde_json::Value = serde_json::from_str(text)?;
            if v["id"] == id {
                break v;
            }
        };
        latency.record(t0.elapsed().as_micros() as u64);
        let Some(clients) = reply["clients"].as_array() else {
            bail!("presence answered {reply}");
        };
        fewest = fewest.min(clients.len());
    }
    close(ws).await;
    Ok((latency, fewest))
}

fn human(r: &Report) -> String {
    let mut s = format!(
        "presence: {} of {} held clients present over {} channels, and the asker ({} dropped)\n",
        r.established, r.held, r.channels, r.dropped
    );
    if !r.failed.is_empty() {
        s.push_str(&format!("  failed: {:?}\n", r.failed));
    }
    if let Some(redis) = &r.redis {
        s.push_str(&format!(
            "  Redis over {:.1} s of quiet: {} commands/s, {:.1} % CPU, {} bytes used\n",
            r.window_secs, redis.commands_per_sec, redis.cpu_percent, redis.used_memory_bytes
        ));
    }
    if let Some(cpu) = r.server_cpu_percent {
        s.push_str(&format!("  server over the window: {cpu:.1} % CPU\n"));
    }
    s.push_str(&format!(
        "  presence of {} entries: {} (each answer listed {})\n",
        r.entries_asked, r.presence_latency, r.entries_listed
    ));
    s
}
