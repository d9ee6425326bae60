//! Presence across nodes: who is subscribed to each presence channel on
//! every node, in Redis (`presence_scripts` says what is kept there).
//!
//! - **This node's entries are its own truth.** The node keeps them locally
//!   (channel → client → entry) and re-asserts them: every refresh period
//!   (`presence.ttl / 3`) one script call per channel (and up to
//!   [`CLIENTS_PER_CALL`] clients) moves their expiry, pipelined; an entry
//!   found missing (it expired while the node was cut off, or Redis
//!   restarted empty) is added again, with its join. A new command
//!   connection re-asserts at once.
//! - **Joins and leaves are queued, in order.** `presence_add` and
//!   `presence_remove` cannot await (they run where a join completes or a
//!   session leaves): they push onto one ordered queue of at most
//!   [`MAX_QUEUED`] changes, which one writer task sends in pipelines of
//!   one script call per channel. A change that finds the queue full, or
//!   Redis unreachable, is dropped: the next refresh re-adds a dropped add
//!   (with its join), and a dropped remove's entry expires within the TTL
//!   (its leave announced by whoever cleans it). `presence_flushed` waits
//!   for every change queued before it (tickets and a `watch`).
//! - **Nothing stale.** Reads run a script that cleans expired entries and
//!   counts only live ones; while Redis or a connection to it is down they
//!   answer `unavailable`, and so for one refresh period after Redis
//!   restarted, while every node re-adds its clients.

use super::{
    link::Conn,
    presence_scripts::{
        invocation, Common, APPLY_SCRIPT, CLIENTS_PER_CALL, READ_SCRIPT, REFRESH_SCRIPT,
        STATS_SCRIPT,
    },
    Inner,
};
use crate::broker::{BrokerError, PresenceList, PresenceStats};
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use redis::RedisResult;
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};
use tether_protocol::PresenceEntry;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Joins and leaves waiting for the writer, at most (about 100 bytes each
/// plus the entry's `info`).
pub const MAX_QUEUED: usize = 65_536;
/// Changes one writer pipeline carries at most.
const WRITE_BATCH: usize = 1_024;
/// Refresh calls one pipeline carries at most.
const REFRESH_PIPELINE: usize = 64;

/// What a queued change does.
enum Change {
    /// Add (or replace) the entry, JSON.
    Add(Arc<str>),
    Remove,
    /// Add the client's entry again if it is still local when the writer
    /// gets to it (the refresh found it missing in Redis).
    Readd,
}

struct Op {
    channel: Arc<str>,
    client: Arc<str>,
    change: Change,
}

#[derive(Default)]
struct Queue {
    ops: VecDeque<Op>,
    /// The ticket of the last change queued (they count from 1).
    tickets: u64,
}

/// Channel → client → its entry (JSON).
type Local = HashMap<Arc<str>, HashMap<Arc<str>, Arc<str>>>;

pub(super) struct Presence {
    ttl: Duration,
    local: Mutex<Local>,
    queue: Mutex<Queue>,
    queued: Notify,
    /// The ticket of the last change the writer is done with.
    done: watch::Sender<u64>,
    /// `tether_presence_entries`: this node's entries.
    entries: Gauge,
}

impl Presence {
    pub fn new(ttl: Duration, entries: Gauge) -> Self {
        Presence {
            ttl,
            local: Mutex::default(),
            queue: Mutex::default(),
            queued: Notify::new(),
            done: watch::Sender::new(0),
            entries,
        }
    }

    /// How often the node refreshes its entries: a third of the TTL, so an
    /// entry survives two refreshes lost in a row.
    pub fn period(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(1))
    }

    /// Records `entry` as present in `channel` and queues it for Redis.
    pub fn add(&self, channel: &str, entry: &PresenceEntry) -> Result<(), String> {
        let json: Arc<str> = serde_json::to_string(entry)
            .map_err(|e| e.to_string())?
            .into();
        let client: Arc<str> = entry.client.as_str().into();
        let channel: Arc<str> = {
            let mut local = self.local.lock();
            let name = match local.get_key_value(channel) {
                Some((name, _)) => name.clone(),
                None => channel.into(),
            };
            let clients = local.entry(name.clone()).or_default();
            if clients.insert(client.clone(), json.clone()).is_none() {
                self.entries.inc();
            }
            name
        };
        self.push(Op {
            channel,
            client,
            change: Change::Add(json),
        })
    }

    /// Forgets `client`'s entry in `channel` and queues its removal.
    pub fn remove(&self, channel: &str, client: &str) -> Result<(), String> {
        let (channel, client) = {
            let mut local = self.local.lock();
            let Some(name) = local.get_key_value(channel).map(|(name, _)| name.clone()) else {
                return Ok(());
            };
            let Some(clients) = local.get_mut(channel) else {
                return Ok(());
            };
            let Some((client, _)) = clients.remove_entry(client) else {
                return Ok(());
            };
            self.entries.dec();
            if clients.is_empty() {
                local.remove(channel);
            }
            (name, client)
        };
        self.push(Op {
            channel,
            client,
            change: Change::Remove,
        })
    }

    /// Queues the removal of another node's client (a lost node's, claimed
    /// by this one): its `leave` is announced by the write that removes it.
    pub fn evict(&self, channel: &str, client: &str) -> Result<(), String> {
        self.push(Op {
            channel: channel.into(),
            client: client.into(),
            change: Change::Remove,
        })
    }

    /// Queues a change; refused (dropped) when [`MAX_QUEUED`] wait already.
    fn push(&self, op: Op) -> Result<(), String> {
        let mut queue = self.queue.lock();
        if queue.ops.len() >= MAX_QUEUED {
            return Err(format!(
                "{MAX_QUEUED} presence changes are waiting for Redis; this one is left to the \
                 next refresh"
            ));
        }
        queue.ops.push_back(op);
        queue.tickets += 1;
        drop(queue);
        self.queued.notify_one();
        Ok(())
    }

    /// Up to `most` changes, oldest first, and the ticket of the last.
    fn take(&self, most: usize) -> (Vec<Op>, u64) {
        let mut queue = self.queue.lock();
        let n = queue.ops.len().min(most);
        let ops: Vec<Op> = queue.ops.drain(..n).collect();
        let last = queue.tickets - queue.ops.len() as u64;
        (ops, last)
    }

    /// Waits until the writer is done with every change queued before the
    /// call (sent, or dropped because Redis could not take it). Cancel-safe.
    pub async fn flushed(&self) {
        let want = self.queue.lock().tickets;
        let mut done = self.done.subscribe();
        // The sender lives as long as `self`: an error cannot happen.
        let _ = done.wait_for(|d| *d >= want).await;
    }

    /// The entry of `client` in `channel` if it is still this node's.
    fn local_entry(&self, channel: &str, client: &str) -> Option<Arc<str>> {
        self.local.lock().get(channel)?.get(client).cloned()
    }

    /// The channels this node has entries in, with their clients.
    fn local_clients(&self) -> Vec<(Arc<str>, Vec<Arc<str>>)> {
        let channels: Vec<Arc<str>> = self.local.lock().keys().cloned().collect();
        channels
            .into_iter()
            .filter_map(|channel| {
                let clients = self.local.lock().get(&channel)?.keys().cloned().collect();
                Some((channel, clients))
            })
            .collect()
    }
}

/// What every call on `channel` passes.
fn common<'a>(inner: &'a Inner, conn: &'a Conn, channel: &str) -> Common<'a> {
    Common {
        prefix: &inner.fanout.prefix,
        run_id: &conn.run_id,
        empty_ttl_ms: super::millis(inner.empty_ttl()),
        ttl_ms: super::millis(inner.presence.ttl),
        announce: inner.rules.get(channel).join_leave,
    }
}

/// Starts the writer and the refresh loop.
pub(super) fn spawn(inner: &Arc<Inner>, stop: &CancellationToken) {
    tokio::spawn(write_loop(inner.clone(), stop.clone()));
    tokio::spawn(refresh_loop(inner.clone(), stop.clone()));
}

/// Sends queued changes to Redis, in order, a pipeline at a time.
async fn write_loop(inner: Arc<Inner>, stop: CancellationToken) {
    let me = &inner.presence;
    loop {
        let (ops, last) = me.take(WRITE_BATCH);
        if ops.is_empty() {
            tokio::select! {
                () = stop.cancelled() => break,
                () = me.queued.notified() => continue,
            }
        }
        write(&inner, ops).await;
        me.done.send_replace(last);
    }
    // Nobody waits for a writer that is gone.
    me.done.send_replace(u64::MAX);
}

/// One pipeline: per channel, its changes in order, in calls of at most
/// [`CLIENTS_PER_CALL`].
async fn write(inner: &Inner, ops: Vec<Op>) {
    let Ok(conn) = inner.link.get() else {
        // Unreachable: the refresh after the reconnect re-adds what is
        // still here, and what left expires.
        return;
    };
    let me = &inner.presence;
    let mut order: Vec<Arc<str>> = Vec::new();
    let mut by_channel: HashMap<Arc<str>, Vec<Op>> = HashMap::new();
    for op in ops {
        by_channel
            .entry(op.channel.clone())
            .or_insert_with(|| {
                order.push(op.channel.clone());
                Vec::new()
            })
            .push(op);
    }
    let mut pipe = redis::pipe();
    pipe.load_script(&APPLY_SCRIPT).ignore();
    for channel in order {
        let Some(ops) = by_channel.remove(&channel) else {
            continue;
        };
        for chunk in ops.chunks(CLIENTS_PER_CALL) {
            let mut call = invocation(&APPLY_SCRIPT, &channel, &common(inner, &conn, &channel));
            for op in chunk {
                let entry = match &op.change {
                    Change::Add(entry) => Some(entry.clone()),
                    Change::Readd => match me.local_entry(&channel, &op.client) {
                        Some(entry) => Some(entry),
                        None => continue,
                    },
                    Change::Remove => None,
                };
                match entry {
                    Some(entry) => call.arg("A").arg(&*op.client).arg(&*entry),
                    None => call.arg("R").arg(&*op.client).arg(""),
                };
            }
            pipe.invoke_script(&call);
        }
    }
    let started = Instant::now();
    let mut c = conn.conn.clone();
    let answers: RedisResult<Vec<RedisResult<u8>>> = pipe.ignore_errors().query_async(&mut c).await;
    inner
        .fanout
        .metrics
        .presence_redis("write", started.elapsed());
    match answers {
        Ok(answers) => {
            if let Some(Err(e)) = answers.into_iter().find(Result::is_err) {
                warn!(error = %e, "a presence change was refused by Redis; the next refresh retries it");
            }
        }
        Err(e) => {
            let e = inner.failed(&conn, e);
            warn!(error = %e, "presence changes did not reach Redis; the next refresh re-adds this node's clients");
        }
    }
}

/// Every refresh period, and at once on a new command connection: this
/// node's entries re-asserted.
async fn refresh_loop(inner: Arc<Inner>, stop: CancellationToken) {
    let me = &inner.presence;
    let mut every = tokio::time::interval(me.period());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_generation = 0;
    loop {
        let reconnected = tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => false,
            () = inner.link.connected.notified() => true,
        };
        let Ok(conn) = inner.link.get() else {
            continue;
        };
        if reconnected && conn.generation() == last_generation {
            continue;
        }
        last_generation = conn.generation();
        refresh(&inner, &conn).await;
    }
}

/// One refresh pass over every channel this node has entries in.
async fn refresh(inner: &Inner, conn: &Conn) {
    let me = &inner.presence;
    let mut calls = Vec::new();
    for (channel, clients) in me.local_clients() {
        for chunk in clients.chunks(CLIENTS_PER_CALL) {
            calls.push((channel.clone(), chunk.to_vec()));
        }
    }
    for batch in calls.chunks(REFRESH_PIPELINE) {
        let mut pipe = redis::pipe();
        pipe.load_script(&REFRESH_SCRIPT).ignore();
        for (channel, clients) in batch {
            let mut call = invocation(&REFRESH_SCRIPT, channel, &common(inner, conn, channel));
            for client in clients {
                call.arg(&**client);
            }
            pipe.invoke_script(&call);
        }
        let started = Instant::now();
        let mut c = conn.conn.clone();
        let answers: RedisResult<Vec<RedisResult<Vec<String>>>> =
            pipe.ignore_errors().query_async(&mut c).await;
        let metrics = &inner.fanout.metrics;
        metrics.presence_redis("refresh", started.elapsed());
        metrics.presence_refreshes.inc_by(batch.len() as u64);
        let answers = match answers {
            Ok(answers) => answers,
            Err(e) => {
                let e = inner.failed(conn, e);
                warn!(error = %e, "presence refresh failed; retrying next period");
                return;
            }
        };
        for ((channel, _), answer) in batch.iter().zip(answers) {
            match answer {
                Ok(missing) => {
                    for client in missing {
                        let readd = Op {
                            channel: channel.clone(),
                            client: client.into(),
                            change: Change::Readd,
                        };
                        if me.push(readd).is_err() {
                            inner.fanout.metrics.refusal("presence_queue_full");
                        }
                    }
                }
                Err(e) => warn!(%channel, error = %e, "presence refresh refused by Redis"),
            }
        }
    }
}

/// The connection for a read, or why presence cannot be answered now.
/// Waits for this node's queued joins and leaves first: an answer reflects
/// every one made on this node before it (others', once their node wrote
/// them).
async fn ready(inner: &Inner) -> Result<Conn, BrokerError> {
    inner.presence.flushed().await;
    let conn = inner.conn()?;
    let period = inner.presence.period();
    if conn.restarted_at.is_some_and(|at| at.elapsed() < period) {
        return Err(BrokerError::Unavailable(format!(
            "Redis restarted: presence is being rebuilt (every node adds its clients again \
             within {}); retry",
            crate::duration::format(period)
        )));
    }
    Ok(conn)
}

/// Who is present in `channel`: every live entry (oldest join first), or
/// their count when more than `max`.
pub(super) async fn list(
    inner: &Inner,
    channel: &str,
    max: usize,
) -> Result<PresenceList, BrokerError> {
    let conn = ready(inner).await?;
    let mut call = invocation(&READ_SCRIPT, channel, &common(inner, &conn, channel));
    call.arg(max);
    let started = Instant::now();
    let mut c = conn.conn.clone();
    let answer: RedisResult<(u64, Vec<Option<String>>)> = call.invoke_async(&mut c).await;
    let metrics = &inner.fanout.metrics;
    metrics.presence_redis("read", started.elapsed());
    let (count, entries) = answer.map_err(|e| inner.failed(&conn, e))?;
    if count > max as u64 {
        return Ok(PresenceList::TooMany(count));
    }
    // An entry that is not one (nothing Tether wrote) is left out.
    let mut clients: Vec<PresenceEntry> = entries
        .into_iter()
        .flatten()
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect();
    clients.sort_by(|a, b| (a.joined_at_ms, &a.client).cmp(&(b.joined_at_ms, &b.client)));
    Ok(PresenceList::Clients(clients))
}

/// How many clients and users are present in `channel`.
pub(super) async fn stats(inner: &Inner, channel: &str) -> Result<PresenceStats, BrokerError> {
    let conn = ready(inner).await?;
    let call = invocation(&STATS_SCRIPT, channel, &common(inner, &conn, channel));
    let started = Instant::now();
    let mut c = conn.conn.clone();
    let answer: RedisResult<(u64, u64)> = call.invoke_async(&mut c).await;
    inner
        .fanout
        .metrics
        .presence_redis("read", started.elapsed());
    let (clients, users) = answer.map_err(|e| inner.failed(&conn, e))?;
    Ok(PresenceStats { clients, users })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(client: &str) -> PresenceEntry {
        PresenceEntry {
            client: client.into(),
            user: None,
            info: None,
            joined_at_ms: 1,
        }
    }

    #[tokio::test]
    async fn the_queue_is_bounded_and_the_entries_stay_local() {
        let gauge = Gauge::default();
        let p = Presence::new(Duration::from_secs(3), gauge.clone());
        assert_eq!(p.period(), Duration::from_secs(1));
        for i in 0..MAX_QUEUED {
            assert!(p.add("c", &entry(&format!("c{i}"))).is_ok());
        }
        // No writer: one more is refused, but the entry is this node's and
        // the next refresh finds it missing in Redis.
        assert!(p.add("c", &entry("late")).is_err());
        assert_eq!(gauge.get(), MAX_QUEUED as i64 + 1);
        assert!(p.local_entry("c", "late").is_some());
        // A writer's turn frees places, in order, and `flushed` follows it.
        let (ops, last) = p.take(10);
        assert_eq!(ops.first().map(|o| &*o.client), Some("c0"));
        assert_eq!(last, 10);
        p.done.send_replace(MAX_QUEUED as u64);
        p.flushed().await;
        assert!(p.remove("c", "c0").is_ok());
        assert!(
            p.remove("c", "c0").is_ok(),
            "a second remove queues nothing"
        );
        assert_eq!(p.queue.lock().ops.len(), MAX_QUEUED - 10 + 1);
        assert_eq!(gauge.get(), MAX_QUEUED as i64);
    }
}
