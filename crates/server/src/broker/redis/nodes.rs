//! The node registry in Redis, for lifecycle events that survive a node's
//! death (`--events-url` with `--broker redis`; keys and scripts in
//! `nodes_scripts`).
//!
//! - **Its own sessions.** The node keeps its sessions locally (client →
//!   user, start, presence channels), the truth it writes to Redis: every
//!   change is marked, and one writer task sends the marked ones in a
//!   script call that also refreshes the node's liveness key — at once
//!   when something changed (calls batch what arrives meanwhile), and every
//!   `--node-ttl`/3 regardless. A session is written before its `connect`
//!   event is sent ([`Ledger::written`]) and removed once its `disconnect`
//!   is acknowledged ([`Ledger::forget`]). After any failed write, and when
//!   Redis has forgotten the node (restarted empty), the next write
//!   replaces the whole set.
//! - **Lapsed nodes.** Every `--redis-check-interval` each node lists the
//!   registered nodes and claims any whose liveness key has expired
//!   (`CLAIM_SCRIPT`: exactly one claimer), then queues `disconnect` with
//!   reason `node_lost` for each of its sessions and removes their
//!   presence. A node is so declared lost within `--node-ttl` +
//!   `--redis-check-interval` of its last write.
//! - **A clean exit** leaves the registry when every disconnect was
//!   acknowledged; otherwise it only drops its liveness key, and another
//!   node claims what is left at its next check.

use super::{
    backoff::Backoff,
    link::{Conn, Link},
    millis,
    nodes_scripts::{NodeKeys, BEAT_SCRIPT, CLAIM_SCRIPT, KEEP, LEAVE_SCRIPT, SESSIONS_PER_CALL},
};
use crate::{
    events::{now_ms, Events, Ledger},
    metrics::Metrics,
};
use parking_lot::Mutex;
use redis::RedisError;
use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// One of this node's sessions, as the registry holds it.
struct Entry {
    conn: u64,
    user: Option<Box<str>>,
    started_ms: u64,
    /// Channels where it is present (removed if the node is lost).
    presence: Vec<Box<str>>,
}

/// What the registry holds for a session (`nodes_scripts`).
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    #[serde(rename = "u")]
    user: Option<String>,
    #[serde(rename = "t")]
    started_ms: u64,
    #[serde(rename = "p", default, skip_serializing_if = "Vec::is_empty")]
    presence: Vec<String>,
}

#[derive(Default)]
struct Local {
    sessions: HashMap<Box<str>, Entry>,
    /// Clients whose entry changed since the last write.
    dirty: std::collections::HashSet<Box<str>>,
    /// Bumped by every change.
    version: u64,
}

/// How far the writes got: every change up to `version` is in Redis, or
/// (`up` false) the last write failed.
#[derive(Debug, Clone, Copy)]
struct Written {
    version: u64,
    up: bool,
}

/// What the next write does (`BEAT_SCRIPT`'s modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Start,
    Beat,
    Rebuild,
    Accept,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Start => "start",
            Mode::Beat => "beat",
            Mode::Rebuild => "rebuild",
            Mode::Accept => "accept",
        }
    }
}

/// What a write found.
enum Outcome {
    /// Written; a previous life's sessions (`Mode::Start`).
    Done(Vec<String>),
    Unknown,
    Claimed,
}

/// Removes a lost session's presence in a channel (the broker's).
pub type Evict = Box<dyn Fn(&str, &str) + Send + Sync>;

pub struct Nodes {
    id: Arc<str>,
    /// This process's life, to tell it from an earlier one with the same id.
    incarnation: String,
    ttl: Duration,
    prefix: Arc<str>,
    keys: NodeKeys,
    link: Arc<Link>,
    events: Arc<Events>,
    metrics: Arc<Metrics>,
    evict: Evict,
    local: Mutex<Local>,
    changed: tokio::sync::Notify,
    written: watch::Sender<Written>,
    /// Stops the writer and the checks (a clean exit, or the broker dropped).
    stop: CancellationToken,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// What [`Nodes::start`] is told.
pub struct NodesOptions {
    pub id: String,
    pub ttl: Duration,
    pub check_interval: Duration,
    pub prefix: Arc<str>,
    pub events: Arc<Events>,
    pub metrics: Arc<Metrics>,
    pub evict: Evict,
}

impl Nodes {
    /// Starts the writer and the checks for lapsed nodes, and becomes the
    /// events' ledger.
    pub fn start(options: NodesOptions, link: Arc<Link>, stop: &CancellationToken) -> Arc<Self> {
        let nodes = Arc::new(Nodes {
            keys: NodeKeys::new(&options.prefix, &options.id),
            id: options.id.into(),
            incarnation: format!("{:016x}", fastrand::u64(..)),
            ttl: options.ttl,
            prefix: options.prefix,
            link,
            events: options.events.clone(),
            metrics: options.metrics,
            evict: options.evict,
            local: Mutex::default(),
            changed: tokio::sync::Notify::new(),
            // Up until the writer says otherwise: the first events wait
            // for the node's first write (or its failure).
            written: watch::Sender::new(Written {
                version: 0,
                up: true,
            }),
            stop: stop.child_token(),
            writer: Mutex::new(None),
        });
        options.events.set_ledger(nodes.clone());
        *nodes.writer.lock() = Some(tokio::spawn(nodes.clone().write_loop()));
        tokio::spawn(nodes.clone().check_loop(options.check_interval));
        nodes
    }

    /// A session started (before its `connect` is queued).
    pub fn started(&self, client: &str, conn: u64, user: Option<&str>, started_ms: u64) {
        let entry = Entry {
            conn,
            user: user.map(Box::from),
            started_ms,
            presence: Vec::new(),
        };
        let mut local = self.local.lock();
        local.sessions.insert(client.into(), entry);
        Self::mark(&mut local, client);
        drop(local);
        self.changed.notify_one();
    }

    /// The session `client` is present in `channel` now (or not).
    pub fn presence(&self, client: &str, channel: &str, present: bool) {
        let mut local = self.local.lock();
        let Some(entry) = local.sessions.get_mut(client) else {
            return;
        };
        let at = entry.presence.iter().position(|c| &**c == channel);
        match (at, present) {
            (None, true) => entry.presence.push(channel.into()),
            (Some(i), false) => {
                entry.presence.swap_remove(i);
            }
            _ => return,
        }
        Self::mark(&mut local, client);
        drop(local);
        self.changed.notify_one();
    }

    fn mark(local: &mut Local, client: &str) {
        local.version += 1;
        if !local.dirty.contains(client) {
            local.dirty.insert(client.into());
        }
    }

    /// The changes to write (all sessions when `full`), as script
    /// arguments, and the version they bring Redis to.
    fn take(&self, full: bool) -> (Vec<(Box<str>, String)>, u64) {
        let mut local = self.local.lock();
        let dirty = std::mem::take(&mut local.dirty);
        let clients: Vec<Box<str>> = if full {
            local.sessions.keys().cloned().collect()
        } else {
            dirty.into_iter().collect()
        };
        let ops = clients
            .into_iter()
            .map(|client| {
                let stored = local.sessions.get(&client).map(|e| {
                    let stored = Stored {
                        user: e.user.as_deref().map(str::to_owned),
                        started_ms: e.started_ms,
                        presence: e.presence.iter().map(|c| c.to_string()).collect(),
                    };
                    serde_json::to_string(&stored).unwrap_or_default()
                });
                (client, stored.unwrap_or_default())
            })
            .collect();
        (ops, local.version)
    }

    fn has_changes(&self) -> bool {
        !self.local.lock().dirty.is_empty()
    }

    async fn write_loop(self: Arc<Self>) {
        let mut mode = Mode::Start;
        let mut backoff = Backoff::new();
        let period = (self.ttl / 3).max(Duration::from_millis(100));
        let mut next_beat = Instant::now();
        loop {
            if mode == Mode::Beat {
                let changed = self.changed.notified();
                if !self.has_changes() {
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = changed => {}
                        () = tokio::time::sleep_until(next_beat) => {}
                    }
                }
            }
            if self.stop.is_cancelled() {
                return;
            }
            let outcome = match self.link.get() {
                Ok(conn) => {
                    let (ops, version) = self.take(mode != Mode::Beat);
                    match self.write(&conn, mode, ops).await {
                        Ok(o) => Ok((o, version)),
                        Err(e) => {
                            self.link.failed(&conn, e);
                            Err(())
                        }
                    }
                }
                Err(_) => Err(()),
            };
            match outcome {
                Ok((Outcome::Done(previous), version)) => {
                    backoff.reset();
                    mode = Mode::Beat;
                    next_beat = Instant::now() + period;
                    self.written.send_replace(Written { version, up: true });
                    if !previous.is_empty() {
                        let id = self.id.clone();
                        self.announce_lost(&id, previous);
                    }
                }
                Ok((Outcome::Unknown, _)) => {
                    info!("Redis does not know this node (restarted empty?): writing its sessions again");
                    mode = Mode::Rebuild;
                }
                Ok((Outcome::Claimed, _)) => {
                    error!(
                        node = %self.id,
                        "this node's liveness lapsed (cut off from Redis for longer than \
                         --node-ttl) and another node declared it lost: the backend got \
                         disconnect (node_lost) for its sessions. Registering again; sessions \
                         still open here will send a second disconnect when they end"
                    );
                    mode = Mode::Accept;
                }
                Err(()) => {
                    // Whatever was taken is written again in full.
                    self.written.send_modify(|w| w.up = false);
                    if mode != Mode::Start {
                        mode = Mode::Rebuild;
                    }
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = tokio::time::sleep(backoff.next()) => {}
                    }
                }
            }
        }
    }

    /// One write: the first call carries `mode`, further ones (a long
    /// set of changes) add to it.
    async fn write(
        &self,
        conn: &Conn,
        mode: Mode,
        ops: Vec<(Box<str>, String)>,
    ) -> Result<Outcome, RedisError> {
        let mut previous = Vec::new();
        let mut chunks = ops.chunks(SESSIONS_PER_CALL);
        let mut mode = mode;
        loop {
            let chunk = chunks.next().unwrap_or(&[]);
            let mut invocation = BEAT_SCRIPT.prepare_invoke();
            invocation
                .key(&self.keys.nodes)
                .key(&self.keys.alive)
                .key(&self.keys.sessions)
                .key(&self.keys.lost)
                .arg(&*self.id)
                .arg(&self.incarnation)
                .arg(millis(self.ttl))
                .arg(mode.arg())
                .arg(millis(KEEP));
            for (client, stored) in chunk {
                invocation.arg(&**client).arg(stored);
            }
            let mut c = conn.conn.clone();
            let (status, found): (u8, Vec<String>) = invocation.invoke_async(&mut c).await?;
            match status {
                0 => previous.extend(found),
                1 => return Ok(Outcome::Unknown),
                _ => return Ok(Outcome::Claimed),
            }
            mode = Mode::Beat;
            if chunks.len() == 0 {
                return Ok(Outcome::Done(previous));
            }
        }
    }

    async fn check_loop(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Ok(conn) = self.link.get() else {
                continue;
            };
            if let Err(e) = self.check(&conn).await {
                self.link.failed(&conn, e);
            }
        }
    }

    /// Claims every registered node whose liveness has lapsed, and
    /// announces its sessions lost.
    async fn check(&self, conn: &Conn) -> Result<(), RedisError> {
        let mut c = conn.conn.clone();
        let ids: Vec<String> = redis::cmd("HKEYS")
            .arg(NodeKeys::nodes(&self.prefix))
            .query_async(&mut c)
            .await?;
        let others: Vec<NodeKeys> = ids
            .iter()
            .filter(|id| **id != *self.id)
            .map(|id| NodeKeys::new(&self.prefix, id))
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for keys in &others {
            pipe.exists(&keys.alive);
        }
        let alive: Vec<bool> = pipe.query_async(&mut c).await?;
        let mut lapsed: Vec<(&String, &NodeKeys)> = ids
            .iter()
            .filter(|id| **id != *self.id)
            .zip(&others)
            .zip(alive)
            .filter(|(_, alive)| !alive)
            .map(|(pair, _)| pair)
            .collect();
        fastrand::shuffle(&mut lapsed);
        for (id, keys) in lapsed {
            let claimed: Option<Vec<String>> = CLAIM_SCRIPT
                .key(&keys.nodes)
                .key(&keys.alive)
                .key(&keys.sessions)
                .key(&keys.lost)
                .arg(id)
                .arg(millis(KEEP))
                .invoke_async(&mut c)
                .await?;
            if let Some(sessions) = claimed {
                self.metrics.nodes_lost.inc();
                warn!(
                    lost = %id,
                    sessions = sessions.len() / 2,
                    "a node's liveness lapsed: claimed it; sending disconnect (node_lost) for its sessions"
                );
                self.announce_lost(id, sessions);
            }
        }
        Ok(())
    }

    /// Queues `disconnect` (`node_lost`) for the sessions of `node` (flat
    /// client, entry pairs) and removes their presence.
    fn announce_lost(&self, node: &str, sessions: Vec<String>) {
        let now = now_ms();
        let mut pairs = sessions.into_iter();
        while let (Some(client), Some(stored)) = (pairs.next(), pairs.next()) {
            let stored: Stored = serde_json::from_str(&stored).unwrap_or(Stored {
                user: None,
                started_ms: now,
                presence: Vec::new(),
            });
            let duration_ms = now.saturating_sub(stored.started_ms);
            self.events
                .lost(node, &client, stored.user.as_deref(), duration_ms);
            for channel in &stored.presence {
                (self.evict)(channel, &client);
            }
        }
    }

    /// A clean exit, once the node's events were flushed (or the drain
    /// ran out of time): stops writing, writes the last changes, and
    /// leaves the registry (or, with disconnects not acknowledged, drops
    /// only the liveness key, for another node to claim what is left).
    pub async fn leave(&self) {
        self.stop.cancel();
        let writer = self.writer.lock().take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        let Ok(conn) = self.link.get() else {
            return;
        };
        let (ops, _) = self.take(false);
        let result = async {
            self.write(&conn, Mode::Beat, ops).await?;
            let mut c = conn.conn.clone();
            LEAVE_SCRIPT
                .key(&self.keys.nodes)
                .key(&self.keys.alive)
                .key(&self.keys.sessions)
                .arg(&*self.id)
                .arg(&self.incarnation)
                .invoke_async::<u8>(&mut c)
                .await
        }
        .await;
        match result {
            Ok(1) => info!("left the node registry"),
            Ok(2) => warn!(
                "left with sessions whose disconnect the backend has not acknowledged: \
                 another node sends them (node_lost) at its next check"
            ),
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "could not leave the node registry; another node claims this one within --node-ttl")
            }
        }
    }
}

impl Ledger for Nodes {
    fn written(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let target = self.local.lock().version;
        let mut written = self.written.subscribe();
        Box::pin(async move {
            let _ = written.wait_for(|w| !w.up || w.version >= target).await;
        })
    }

    fn forget(&self, ended: &[(Box<str>, u64)]) {
        let mut local = self.local.lock();
        let mut any = false;
        for (client, conn) in ended {
            if local.sessions.get(client).is_some_and(|e| e.conn == *conn) {
                local.sessions.remove(client);
                Self::mark(&mut local, client);
                any = true;
            }
        }
        drop(local);
        if any {
            self.changed.notify_one();
        }
    }
}
