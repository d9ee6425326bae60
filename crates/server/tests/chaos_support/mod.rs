//! Shared by the chaos and soak tests: subscribers on the Rust client
//! (`tether-client`: reconnect with backoff, recovery, dedup by offset) that
//! record what they were given, so a test can await progress and then
//! check that every offset arrived exactly once, in order; and reading the
//! server's gauges and handshake outcomes from `/metrics`.
//!
//! (The issue-12 fault harness has its own helpers in `chaos_faults/`.)
#![allow(dead_code)]

use futures_util::StreamExt;
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};
use tether_client::{Client, Event, State};
use tether_test_util::http;
use tokio::{
    sync::watch,
    task::JoinHandle,
    time::{timeout_at, Instant},
};

/// What one subscriber has seen so far.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    /// Offsets of every publication, in arrival order.
    pub offsets: Vec<u64>,
    /// When each `Subscribed` arrived: one per connection that subscribed.
    pub subscribed_at: Vec<Instant>,
    /// When the client was seen leaving `Connected`: one per lost connection.
    pub dropped_at: Vec<Instant>,
    /// `Subscribed` events with `recovered: true`.
    pub recovered: u32,
    /// `Unrecovered` events: a gap the server could not fill.
    pub unrecovered: u32,
    /// `RefusedWillRetry` events: when, and the code and message.
    pub refused_for_now: Vec<(Instant, String)>,
    /// The highest reconnect attempt seen (failed connects in a row).
    pub attempts: u32,
    /// A `Refused`, or the stream's end.
    pub ended: Option<String>,
}

impl Progress {
    pub fn last(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }

    pub fn subscribed(&self) -> usize {
        self.subscribed_at.len()
    }
}

/// A Rust client with one subscription, read by a task of its own, and a
/// task following its connection state.
pub struct Subscriber {
    pub client: Client,
    pub progress: watch::Receiver<Progress>,
    tasks: [JoinHandle<()>; 2],
}

/// A client of `url` retrying between `min` and `max` (the server's
/// `Retry-After` is a floor, capped at `max`).
pub fn client(url: &str, min: Duration, max: Duration) -> Client {
    Client::builder(url)
        .min_delay(min)
        .max_delay(max)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

impl Subscriber {
    /// Subscribes `client` to `channel`; the client connects in the
    /// background, so this returns before it is connected.
    pub async fn start(client: Client, channel: &str) -> Self {
        let mut sub = client.subscribe(channel).await.expect("subscribe");
        let (tx, progress) = watch::channel(Progress::default());
        let tx = Arc::new(tx);
        let mut state = client.state();
        let states = tx.clone();
        // The driver stays `Reconnecting` for the backoff delay and the
        // connect attempt, so this task sees every drop.
        let watcher = tokio::spawn(async move {
            let mut connected = false;
            while state.changed().await.is_ok() {
                let now = state.borrow_and_update().clone();
                let is_connected = now == State::Connected;
                if connected && !is_connected {
                    states.send_modify(|p| p.dropped_at.push(Instant::now()));
                }
                if let State::Reconnecting { attempt, .. } = now {
                    states.send_if_modified(|p| {
                        let more = attempt > p.attempts;
                        p.attempts = p.attempts.max(attempt);
                        more
                    });
                }
                connected = is_connected;
            }
        });
        let task = tokio::spawn(async move {
            while let Some(event) = sub.next().await {
                tx.send_modify(|p| match event {
                    Event::Publication(publication) => p.offsets.push(publication.offset),
                    Event::Subscribed { recovered, .. } => {
                        p.subscribed_at.push(Instant::now());
                        p.recovered += u32::from(recovered);
                    }
                    Event::Unrecovered { .. } => p.unrecovered += 1,
                    Event::RefusedWillRetry { code, message, .. } => p
                        .refused_for_now
                        .push((Instant::now(), format!("{code:?}: {message}"))),
                    Event::Refused { code, message } => {
                        p.ended = Some(format!("refused: {code:?} {message}"))
                    }
                    _ => {}
                });
            }
            tx.send_modify(|p| {
                p.ended.get_or_insert_with(|| "stream ended".into());
            });
        });
        Subscriber {
            client,
            progress,
            tasks: [task, watcher],
        }
    }

    pub fn now(&self) -> Progress {
        self.progress.borrow().clone()
    }

    pub fn state(&self) -> State {
        self.client.state().borrow().clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts `n` subscribers of `channel` at `url` at once.
pub async fn fleet(
    n: usize,
    url: &str,
    channel: &str,
    min: Duration,
    max: Duration,
) -> Vec<Subscriber> {
    let mut subs = Vec::with_capacity(n);
    for _ in 0..n {
        subs.push(Subscriber::start(client(url, min, max), channel).await);
    }
    subs
}

/// Waits until every subscriber's progress satisfies `pred`, for at most
/// `within`; the panic says how many did.
pub async fn wait_all(
    subs: &[Subscriber],
    what: &str,
    within: Duration,
    pred: impl Fn(&Progress) -> bool,
) {
    let deadline = Instant::now() + within;
    for (i, s) in subs.iter().enumerate() {
        let mut rx = s.progress.clone();
        if timeout_at(deadline, rx.wait_for(|p| pred(p)))
            .await
            .is_err()
        {
            let done = subs.iter().filter(|s| pred(&s.progress.borrow())).count();
            panic!(
                "{what}: only {done} of {} within {within:?} (subscriber {i}: {}, state {:?})",
                subs.len(),
                brief(&s.now()),
                s.state()
            );
        }
    }
}

/// Waits until at least `n` subscribers' progress satisfies `pred`, for at
/// most `within`. There is no one event for "n of them", so this polls.
pub async fn wait_count(
    subs: &[Subscriber],
    n: usize,
    what: &str,
    within: Duration,
    pred: impl Fn(&Progress) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let done = subs.iter().filter(|s| pred(&s.progress.borrow())).count();
        if done >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: only {done} of {n} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A progress without its (long) offset list, for messages.
pub fn brief(p: &Progress) -> String {
    format!(
        "last {} ({} received), subscribed {}, dropped {}, recovered {}, unrecovered {}, \
         refused for now {}, attempts {}, ended {:?}",
        p.last(),
        p.offsets.len(),
        p.subscribed(),
        p.dropped_at.len(),
        p.recovered,
        p.unrecovered,
        p.refused_for_now.len(),
        p.attempts,
        p.ended
    )
}

/// Every subscriber received exactly `from..=to`, each once and in order,
/// with no unrecovered gap and no refusal.
pub fn assert_every_offset_once(subs: &[Subscriber], from: u64, to: u64) {
    let want: Vec<u64> = (from..=to).collect();
    for (i, s) in subs.iter().enumerate() {
        let p = s.now();
        assert_eq!(p.unrecovered, 0, "subscriber {i}: {}", brief(&p));
        assert!(p.ended.is_none(), "subscriber {i}: {}", brief(&p));
        if p.offsets != want {
            let missing: Vec<u64> = want
                .iter()
                .filter(|o| !p.offsets.contains(o))
                .copied()
                .collect();
            panic!(
                "subscriber {i}: not every offset {from}..={to} once in order; missing {missing:?}; {}",
                brief(&p)
            );
        }
    }
}

/// `tether_handshakes_total` by outcome, from `/metrics` at `addr`.
pub async fn handshakes(addr: SocketAddr) -> BTreeMap<String, u64> {
    let body = http::request(addr, "GET", "/metrics", &[], "").await.body;
    http::samples(&body, "tether_handshakes_total")
        .filter_map(|(line, value)| {
            let outcome = line.split_once("outcome=\"")?.1.split_once('"')?.0;
            Some((outcome.to_owned(), value as u64))
        })
        .collect()
}

/// A gauge or counter without labels from `/metrics` at `addr`.
pub async fn gauge(addr: SocketAddr, name: &str) -> u64 {
    http::metric(addr, name, &[]).await as u64
}
