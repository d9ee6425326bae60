//! RECONSTRUCTED — READ FIRST. The original of this file (written by the
//! engineer doing chaos_nginx / chaos_storm / chaos_pressure) was
//! overwritten by mistake at 18:59:50 UTC on 2026-11-25 by the issue-12
//! harness work (whose own helpers now live in `chaos_faults/mod.rs`). This
//! version was rebuilt from how `chaos_nginx.rs`, `chaos_storm.rs` and
//! `chaos_pressure.rs` use it; compare it with your copy and replace it.
//!
//! Shared by the chaos tests: a fleet of Rust clients each subscribed to one
//! channel, whose progress (offsets, (re)subscribes, drops, reconnect
//! attempts) is followed through a watch; and reading the server's gauges and
//! handshake outcomes from `/metrics`.
#![allow(dead_code)]

use futures_util::StreamExt;
use std::{collections::BTreeMap, net::SocketAddr, time::Duration};
use tether_client::{Client, Event, State};
use tether_test_util::http;
use tokio::{
    sync::watch,
    time::{timeout, Instant},
};

/// What one client has seen so far.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Publication offsets in arrival order.
    pub offsets: Vec<u64>,
    /// When each `Subscribed` arrived (one per connection that subscribed).
    pub subscribed_at: Vec<Instant>,
    /// When each connection was lost (the state left `Connected`).
    pub dropped_at: Vec<Instant>,
    /// `Subscribed` events that replayed missed publications.
    pub recovered: u32,
    /// `Unrecovered` events.
    pub unrecovered: u32,
    /// `RefusedWillRetry` events.
    pub refused_for_now: u32,
    /// The latest reconnect attempt number seen (`State::Reconnecting`).
    pub attempts: u32,
}

impl Progress {
    pub fn subscribed(&self) -> usize {
        self.subscribed_at.len()
    }

    /// The last offset received; 0 before any.
    pub fn last(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }
}

/// A one-line summary for assertion messages.
pub fn brief(p: &Progress) -> String {
    format!(
        "{} offsets (last {}), {} subscribed, {} dropped, {} recovered, {} unrecovered, {} refused for now, attempt {}",
        p.offsets.len(),
        p.last(),
        p.subscribed(),
        p.dropped_at.len(),
        p.recovered,
        p.unrecovered,
        p.refused_for_now,
        p.attempts
    )
}

pub struct Subscriber {
    pub client: Client,
    pub progress: watch::Receiver<Progress>,
}

impl Subscriber {
    /// A snapshot of the progress.
    pub fn now(&self) -> Progress {
        self.progress.borrow().clone()
    }

    pub fn state(&self) -> State {
        self.client.state().borrow().clone()
    }
}

/// `n` clients of `url`, each subscribed to `channel`, retrying with backoff
/// between `min_delay` and `max_delay`. Returns at once: wait for
/// `subscribed() == 1` with [`wait_all`].
pub async fn fleet(
    n: usize,
    url: &str,
    channel: &str,
    min_delay: Duration,
    max_delay: Duration,
) -> Vec<Subscriber> {
    let mut subs = Vec::with_capacity(n);
    for _ in 0..n {
        let client = Client::builder(url)
            .min_delay(min_delay)
            .max_delay(max_delay)
            .build()
            .expect("client");
        let mut sub = client.subscribe(channel).await.expect("subscribe");
        let mut state = client.state();
        let (tx, progress) = watch::channel(Progress::default());
        tokio::spawn(async move {
            let mut was_connected = false;
            loop {
                tokio::select! {
                    event = sub.next() => {
                        let Some(event) = event else { break };
                        tx.send_modify(|p| match event {
                            Event::Publication(pb) => p.offsets.push(pb.offset),
                            Event::Subscribed { recovered, .. } => {
                                // A reconnect the state watch coalesced
                                // still counts as a drop.
                                if p.dropped_at.len() < p.subscribed_at.len() {
                                    p.dropped_at.push(Instant::now());
                                }
                                p.subscribed_at.push(Instant::now());
                                p.recovered += u32::from(recovered);
                            }
                            Event::Unrecovered { .. } => p.unrecovered += 1,
                            Event::RefusedWillRetry { .. } => p.refused_for_now += 1,
                            _ => {}
                        });
                    }
                    changed = state.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let now = state.borrow_and_update().clone();
                        tx.send_modify(|p| {
                            if was_connected && now != State::Connected
                                && p.dropped_at.len() < p.subscribed_at.len()
                            {
                                p.dropped_at.push(Instant::now());
                            }
                            if let State::Reconnecting { attempt, .. } = now {
                                p.attempts = attempt;
                            }
                        });
                        was_connected = now == State::Connected;
                    }
                }
            }
        });
        subs.push(Subscriber { client, progress });
    }
    subs
}

/// Waits until `pred` holds for every subscriber (at most `within`).
pub async fn wait_all(
    subs: &[Subscriber],
    what: &str,
    within: Duration,
    pred: impl Fn(&Progress) -> bool,
) {
    wait_count(subs, subs.len(), what, within, pred).await;
}

/// Waits until `pred` holds for at least `n` subscribers (at most `within`).
pub async fn wait_count(
    subs: &[Subscriber],
    n: usize,
    what: &str,
    within: Duration,
    pred: impl Fn(&Progress) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let count = subs.iter().filter(|s| pred(&s.progress.borrow())).count();
        if count >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {count} of {n} after {within:?}"
        );
        let mut rxs: Vec<_> = subs.iter().map(|s| s.progress.clone()).collect();
        let changes = rxs.iter_mut().map(|r| Box::pin(r.changed()));
        let _ = timeout(
            Duration::from_millis(100),
            futures_util::future::select_all(changes),
        )
        .await;
    }
}

/// Every subscriber received `first..=last`, each once, in order.
pub fn assert_every_offset_once(subs: &[Subscriber], first: u64, last: u64) {
    let expected: Vec<u64> = (first..=last).collect();
    for (i, s) in subs.iter().enumerate() {
        let p = s.now();
        assert_eq!(p.unrecovered, 0, "client {i}: {}", brief(&p));
        assert!(p.offsets == expected, "client {i}: {}", brief(&p));
    }
}

/// A gauge (or counter) from `/metrics`, as an integer.
pub async fn gauge(addr: SocketAddr, name: &str) -> u64 {
    http::metric(addr, name, &[]).await as u64
}

/// `tether_handshakes_total` by outcome.
pub async fn handshakes(addr: SocketAddr) -> BTreeMap<String, u64> {
    let res = http::request(addr, "GET", "/metrics", &[], "").await;
    res.body
        .lines()
        .filter(|l| l.starts_with("tether_handshakes_total{"))
        .filter_map(|l| {
            let outcome = l.split("outcome=\"").nth(1)?.split('"').next()?;
            let value = l.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((outcome.to_owned(), value as u64))
        })
        .collect()
}
