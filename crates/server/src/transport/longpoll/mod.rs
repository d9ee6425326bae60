//! Long polling under `/lp/`: the fallback for networks that block
//! WebSocket, a thin adapter over the same session engine as `/ws`.
//!
//! No sticky sessions: every poll carries the client's position in each of
//! its channels, so any node can answer any request and a lost response is
//! simply read again. A node keeps, per client id, an engine session (its
//! cursors in the channels' logs) between requests, re-created on demand
//! when a client's request reaches a node that has not seen it, and dropped
//! when the client stops polling. The wire format: `docs/longpoll.md`.

mod poll;
mod routes;

pub use routes::{never_cached, routes};

use crate::{
    node::Node,
    session::{Closing, Session, Style},
};
use parking_lot::Mutex;
use std::future::Future;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};
use tether_protocol::{CloseCode, ServerMessage};
use tokio::{
    sync::{Notify, OwnedMutexGuard},
    time::Instant,
};

/// The sessions of long-polling clients on this node, by client id.
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<Box<str>, Arc<PollSession>>>,
}

/// One long-polling client on this node.
pub struct PollSession {
    pub(crate) client: Box<str>,
    /// Shared with the tasks that run engine work ([`PollSession::run`]).
    pub(crate) state: Arc<tokio::sync::Mutex<PollState>>,
    /// Requests under way; a session is not expired while one is.
    busy: AtomicUsize,
    /// When the last request ended.
    last_seen: Mutex<Instant>,
    /// Bumped by every poll: an older poll sees it and answers `[]`.
    pub(crate) poll_generation: AtomicU64,
    pub(crate) superseded: Notify,
}

/// The engine, and whether the session has ended.
pub struct PollState {
    pub(crate) engine: Session,
    /// Set when the session has ended; later requests get this close.
    pub(crate) closed: Option<Closing>,
}

/// Marks a request under way on a session until dropped.
pub(crate) struct Busy(Arc<PollSession>);

impl std::ops::Deref for Busy {
    type Target = Arc<PollSession>;
    fn deref(&self) -> &Arc<PollSession> {
        &self.0
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last_seen.lock() = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PollSession {
    fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Runs engine work on this session in a task of the node's, and waits
    /// for it. hyper drops a request's future when its client hangs up, and
    /// engine work must not stop halfway (a join awaits the broker; backend
    /// hooks will await the backend): the task finishes it either way. What
    /// a dropped request's work produced is not sent, and nothing is lost
    /// by that: a long-polling client names its positions in every poll,
    /// and retries its sends with the same ids. `None` only if the work
    /// panicked.
    pub(crate) async fn run<T, F, Fut>(self: &Arc<Self>, node: &Node, work: F) -> Option<T>
    where
        F: FnOnce(OwnedMutexGuard<PollState>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        // Busy until the work is done, even if the request is gone: the
        // session is not expired under it.
        let busy = self.busy();
        let state = self.state.clone();
        let work = node.tasks.spawn(async move {
            let _busy = busy;
            work(state.lock_owned().await).await
        });
        work.await.ok()
    }
}

impl Registry {
    /// The session of `client`, marked busy before the registry's lock is
    /// released: an expiry sweep never removes a session a request holds.
    pub(crate) fn enter(&self, client: &str) -> Option<Busy> {
        self.sessions.lock().get(client).map(PollSession::busy)
    }

    /// Adds a session built by the caller (admission already passed), busy
    /// for the request that built it; if another request created one for
    /// the same client meanwhile, that one is entered instead.
    pub(crate) fn insert(&self, node: &Node, client: &str, engine: Session) -> Busy {
        let mut sessions = self.sessions.lock();
        if let Some(existing) = sessions.get(client) {
            return existing.busy();
        }
        let mut engine = engine;
        engine.set_client(client);
        // Made on this node: its `connect` (a client that moves between
        // nodes has a session, and events, on each).
        engine.announce_connect();
        let session = Arc::new(PollSession {
            client: client.into(),
            state: Arc::new(tokio::sync::Mutex::new(PollState {
                engine,
                closed: None,
            })),
            busy: AtomicUsize::new(0),
            last_seen: Mutex::new(Instant::now()),
            poll_generation: AtomicU64::new(0),
            superseded: Notify::new(),
        });
        let busy = session.busy();
        sessions.insert(client.into(), session);
        node.metrics.connections.inc();
        node.metrics.longpoll_sessions.inc();
        busy
    }

    /// Removes a session and releases what it held. A request that still
    /// holds it finds it closed with `why` and joins nothing more.
    pub(crate) fn remove(&self, node: &Arc<Node>, client: &str, why: Closing) {
        let Some(session) = self.sessions.lock().remove(client) else {
            return;
        };
        node.metrics.connections.dec();
        node.metrics.longpoll_sessions.dec();
        // Leaving the channels may talk to the broker: not under any lock.
        node.tasks.spawn(async move {
            let mut state = session.state.lock().await;
            let why = state.closed.get_or_insert(why).clone();
            state.engine.finish(why.code.as_u16(), &why.reason);
        });
    }

    /// Drops sessions with no request under way for `ping_interval +
    /// pong_timeout`: their clients stopped polling.
    pub fn expire(&self, node: &Arc<Node>) {
        let silence = node.config.heartbeat.silence_limit();
        let now = Instant::now();
        let idle: Vec<Box<str>> = self
            .sessions
            .lock()
            .iter()
            .filter(|(_, s)| {
                s.busy.load(Ordering::Acquire) == 0 && now >= *s.last_seen.lock() + silence
            })
            .map(|(c, _)| c.clone())
            .collect();
        for client in idle {
            tracing::debug!(%client, "long-polling session expired");
            node.metrics.heartbeat_timeouts.inc();
            let why = Closing::new(
                CloseCode::HeartbeatTimeout,
                format!("no request for {} ms", silence.as_millis()),
            );
            self.remove(node, &client, why);
        }
    }

    /// While the node runs, expires sessions whose clients stopped polling
    /// (often enough that one goes within a quarter of its silence limit);
    /// when it drains, drops them all. A node task, so the drain waits for
    /// the sessions' ends it starts.
    pub(crate) fn keep(self: Arc<Self>, node: &Arc<Node>) {
        let node = node.clone();
        let every =
            std::time::Duration::from_secs(10).min(node.config.heartbeat.silence_limit() / 4);
        let tasks = node.tasks.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = node.shutdown.cancelled() => break self.clear(&node),
                    _ = tick.tick() => self.expire(&node),
                }
            }
        });
    }

    /// Drops every session (the node drains; polls under way answer 1012).
    pub fn clear(&self, node: &Arc<Node>) {
        let clients: Vec<Box<str>> = self.sessions.lock().keys().cloned().collect();
        for client in clients {
            self.remove(node, &client, Closing::draining(node));
        }
    }
}

/// An unguessable client id: the node id and 128 bits from the OS, so
/// another client cannot poll a session (or key publishes) as someone else.
pub(crate) fn new_client_id(node: &Node) -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness (never seen on Linux): still unique per node.
        bytes[..8].copy_from_slice(&node.next_conn_id().to_le_bytes());
        bytes[8..].copy_from_slice(&fastrand::u64(..).to_le_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // `--node-id` is free text: kept to what `valid_client_id` accepts (and
    // a query string carries as it is), so that any id handed out is usable.
    let node_id: String = node
        .id
        .chars()
        .take(MAX_CLIENT_ID - 33)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{node_id}-{hex}")
}

/// The longest client id accepted.
const MAX_CLIENT_ID: usize = 96;

/// Whether `client` looks like an id this transport hands out.
pub(crate) fn valid_client_id(client: &str) -> bool {
    (1..=MAX_CLIENT_ID).contains(&client.len())
        && client
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `close` that ends a session, counted in `tether_closes_total` as a
/// WebSocket close frame is.
pub(crate) fn ending_frame(node: &Node, c: &Closing) -> bytes::Bytes {
    node.metrics.close(c.code.as_u16());
    close_frame(c)
}

/// The `close` message a long-polling response carries when the session ends.
pub(crate) fn close_frame(c: &Closing) -> bytes::Bytes {
    let close = ServerMessage::Close {
        code: c.code.as_u16(),
        reason: c.reason.clone(),
    };
    close.encode().into()
}

pub(crate) const STYLE: Style = Style::Retried;
