//! Lifecycle events (`--events-url`): `connect`, `disconnect`, `subscribe`
//! and `unsubscribe`, POSTed to the operator's backend in batches, each with
//! a unique id (`<node id>-<sequence>`, the sequence starting from the
//! node's start time in microseconds, so that a node restarted with the
//! same `--node-id` does not reuse ids), in order per client, at least
//! once (docs/events.md).
//!
//! - **Emitting never waits.** The session engine calls [`Events`] where a
//!   session starts, joins, leaves and ends; each call encodes the event
//!   and appends it to one node-wide queue under a short lock. Nothing on a
//!   request's path awaits the backend.
//! - **One queue, one sender.** A single task takes up to [`BATCH_MAX`]
//!   events (after at most [`LINGER`] for more to come), POSTs them, and
//!   sends the same batch again, with backoff and jitter from
//!   [`RETRY_MIN`] up to `--events-retry-max`, until a 2xx acknowledges it.
//!   Only then does the next batch go: that keeps every client's events in
//!   order, and a retried batch is byte for byte the one the backend may
//!   already have seen (it de-duplicates by id).
//! - **Bounded.** At most `--events-queue` events wait (plus the batch in
//!   flight); a full queue drops its oldest event and reports it: the drops
//!   since the sender last took from the queue become one `gap` event in
//!   their place ([`queue`]).
//! - **A ledger for crashes.** With `--broker redis` the node keeps a
//!   registry of its sessions in Redis ([`Ledger`]): a session is written
//!   there before its `connect` is sent and forgotten only once its
//!   `disconnect` is acknowledged, so a node that dies leaves behind exactly
//!   the sessions whose end the backend has not heard of, and a surviving
//!   node sends their `disconnect` (`node_lost`).

mod queue;
mod sender;

use crate::{hooks::HookClient, metrics::Metrics};
use parking_lot::Mutex;
use queue::{Queue, Queued};
use serde::Serialize;
use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// Events one POST carries at most.
pub const BATCH_MAX: usize = 500;
/// How long the sender waits for a batch to fill once an event is queued.
pub const LINGER: Duration = Duration::from_millis(50);
/// The first retry's delay; each failure doubles it up to `--events-retry-max`.
pub const RETRY_MIN: Duration = Duration::from_millis(100);
/// The close code of a `disconnect` sent for a lost node's session: what a
/// client sees when its connection died without a close frame.
pub const NODE_LOST_CODE: u16 = 1006;
/// The reason of such a disconnect.
pub const NODE_LOST: &str = "node_lost";

/// Where a node records its sessions for other nodes to find if it dies
/// (the Redis broker's node registry).
pub trait Ledger: Send + Sync {
    /// Resolves once every session recorded before the call is written
    /// (or at once while the ledger cannot be written: events still flow).
    fn written(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// These sessions' disconnects were delivered (or dropped): forget them.
    fn forget(&self, ended: &[(Box<str>, u64)]);
}

/// What the sender is told at start.
pub struct EventsOptions {
    pub url: http::Uri,
    /// This node's id: events' ids start with it.
    pub node: String,
    pub queue: usize,
    pub retry_max: Duration,
    /// The client POSTs go through (signed).
    pub client: HookClient,
}

/// The node's events: emit from anywhere, sent by one task.
pub struct Events {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

struct Shared {
    node: String,
    queue: Mutex<Queue>,
    /// Rung on every push (the sender waits for it).
    pushed: Notify,
    /// The highest sequence number acknowledged (or dropped into an
    /// acknowledged gap): what `flush` waits for.
    settled: watch::Sender<u64>,
    /// Set by `flush`: send what is queued at once, no lingering.
    hurry: std::sync::atomic::AtomicBool,
    metrics: Arc<Metrics>,
    ledger: OnceLock<Arc<dyn Ledger>>,
}

/// One event on the wire (docs/events.md).
#[derive(Serialize)]
struct Wire<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    client: &'a str,
    user: Option<&'a str>,
    node: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    at_ms: u64,
}

/// How a session ended, as its `disconnect` tells it.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    pub code: u16,
    pub reason: &'a str,
    /// From its `connect` to now.
    pub duration_ms: u64,
}

impl Events {
    /// Starts the sender (a task of its own, stopped when this is dropped).
    pub fn start(options: EventsOptions, metrics: Arc<Metrics>) -> Arc<Self> {
        let shared = Arc::new(Shared {
            node: options.node,
            queue: Mutex::new(Queue::new(options.queue, now_ms().saturating_mul(1000))),
            pushed: Notify::new(),
            settled: watch::Sender::new(0),
            hurry: Default::default(),
            metrics,
            ledger: OnceLock::new(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(sender::run(
            shared.clone(),
            options.client,
            options.url,
            options.retry_max,
            stop.clone(),
        ));
        Arc::new(Events { shared, stop })
    }

    /// The node's registry of sessions (set once, by the broker).
    pub fn set_ledger(&self, ledger: Arc<dyn Ledger>) {
        let _ = self.shared.ledger.set(ledger);
    }

    pub fn node(&self) -> &str {
        &self.shared.node
    }

    /// A session of this node said `welcome`.
    pub fn connect(&self, client: &str, user: Option<&str>) {
        self.push("connect", client, user, None, None, None);
    }

    pub fn subscribe(&self, client: &str, user: Option<&str>, channel: &str) {
        self.push("subscribe", client, user, None, Some(channel), None);
    }

    pub fn unsubscribe(&self, client: &str, user: Option<&str>, channel: &str) {
        self.push("unsubscribe", client, user, None, Some(channel), None);
    }

    /// A session of this node (its serial `conn`) ended.
    pub fn disconnect(&self, client: &str, conn: u64, user: Option<&str>, ending: Ending<'_>) {
        let ends = Some((Box::from(client), conn));
        self.push_event("disconnect", client, user, None, None, Some(ending), ends);
    }

    /// A session of `node`, which died, ended with it (`node_lost`).
    pub fn lost(&self, node: &str, client: &str, user: Option<&str>, duration_ms: u64) {
        let ending = Ending {
            code: NODE_LOST_CODE,
            reason: NODE_LOST,
            duration_ms,
        };
        self.push("disconnect", client, user, Some(node), None, Some(ending));
    }

    fn push(
        &self,
        kind: &'static str,
        client: &str,
        user: Option<&str>,
        node: Option<&str>,
        channel: Option<&str>,
        ending: Option<Ending<'_>>,
    ) {
        self.push_event(kind, client, user, node, channel, ending, None);
    }

    #[allow(clippy::too_many_arguments)]
    fn push_event(
        &self,
        kind: &'static str,
        client: &str,
        user: Option<&str>,
        node: Option<&str>,
        channel: Option<&str>,
        ending: Option<Ending<'_>>,
        ends: Option<(Box<str>, u64)>,
    ) {
        let shared = &self.shared;
        let at_ms = now_ms();
        let mut queue = shared.queue.lock();
        let seq = queue.next_seq();
        let id = format!("{}-{seq}", shared.node);
        let wire = Wire {
            id: &id,
            kind,
            client,
            user,
            node: node.unwrap_or(&shared.node),
            channel,
            code: ending.map(|e| e.code),
            reason: ending.map(|e| e.reason),
            duration_ms: ending.map(|e| e.duration_ms),
            at_ms,
        };
        // Strings and integers only: encoding cannot fail.
        let json = serde_json::to_string(&wire).unwrap_or_default().into();
        let dropped = queue.push(Queued { seq, json, ends }, at_ms);
        drop(queue);
        shared.metrics.events_queued.inc();
        if let Some(dropped) = dropped {
            shared.metrics.events_queued.dec();
            shared.metrics.events_dropped.inc();
            if let (Some(ends), Some(ledger)) = (dropped.ends, shared.ledger.get()) {
                ledger.forget(&[ends]);
            }
        }
        shared.pushed.notify_one();
    }

    /// Sends everything queued so far without lingering, and waits until
    /// the backend acknowledged it, or `deadline`; whether it did.
    pub async fn flush(&self, deadline: tokio::time::Instant) -> bool {
        let shared = &self.shared;
        let target = shared.queue.lock().last_seq();
        shared
            .hurry
            .store(true, std::sync::atomic::Ordering::Release);
        shared.pushed.notify_one();
        let mut settled = shared.settled.subscribe();
        let done = tokio::time::timeout_at(deadline, settled.wait_for(|s| *s >= target)).await;
        matches!(done, Ok(Ok(_)))
    }

    /// Events waiting (queued, and in the batch being sent).
    pub fn waiting(&self) -> i64 {
        self.shared.metrics.events_queued.get()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
