//! The command connection to Redis: one multiplexed connection shared by
//! every publish and history read on this node, the run id of the Redis
//! server it reached, and reconnection with backoff and jitter.
//!
//! The run id is read on every new connection, before the connection is
//! used: it is what the scripts fence epochs on, so it must always be the
//! id of the server this very connection talks to.
//!
//! A multiplexed connection whose server died looks healthy until a command
//! fails on it. So the link is PINGed every check interval, and at once when
//! a pub/sub connection drops (Redis may have restarted under both): until
//! that PING answers, the link counts as down and the node is not ready.

use super::backoff::Backoff;
use crate::broker::BrokerError;
use parking_lot::Mutex;
use redis::{
    aio::{ConnectionLike, MultiplexedConnection},
    AsyncConnectionConfig, RedisError,
};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a connect or a command may take before the connection is
/// considered lost (a network cut shows as silence, not as an error).
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// A usable connection and what it is connected to.
#[derive(Clone)]
pub struct Conn {
    pub conn: MultiplexedConnection,
    pub run_id: Arc<str>,
    /// When the Redis server started, if this connection found another run
    /// than the link's previous connection (Redis restarted or failed
    /// over): what it held may be gone, and presence is being rebuilt.
    pub restarted_at: Option<Instant>,
    /// Which connection this is (to tell a stale failure report from a
    /// failure of the current connection).
    generation: u64,
}

impl Conn {
    /// Tells connections apart: a new one has a higher number.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

pub struct Link {
    client: redis::Client,
    current: Mutex<Option<Conn>>,
    generations: AtomicU64,
    /// Wakes the loop: to connect again, or to verify the connection.
    lost: Notify,
    /// Bumped by [`Link::suspect`]: a PING sent before a suspicion proves
    /// nothing about the connection after it.
    suspicions: AtomicU64,
    /// Called with `true` when a connection is made, `false` when lost.
    on_change: Box<dyn Fn(bool) + Send + Sync>,
    /// Notified when a new connection is made (presence re-asserts then).
    pub connected: Notify,
    /// The run id of the last connection's server.
    last_run: Mutex<Option<Arc<str>>>,
}

impl Link {
    pub fn new(client: redis::Client, on_change: Box<dyn Fn(bool) + Send + Sync>) -> Self {
        Link {
            client,
            current: Mutex::new(None),
            generations: AtomicU64::new(0),
            lost: Notify::new(),
            suspicions: AtomicU64::new(0),
            on_change,
            connected: Notify::new(),
            last_run: Mutex::new(None),
        }
    }

    pub fn config() -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
    }

    /// The current connection, or `Unavailable` while reconnecting.
    pub fn get(&self) -> Result<Conn, BrokerError> {
        self.current.lock().clone().ok_or_else(|| {
            BrokerError::Unavailable("Redis is unreachable (reconnecting); retry".into())
        })
    }

    /// Reports a failed command: when it means the connection is gone, the
    /// connection is dropped and the reconnect loop wakes. Returns the
    /// error as the broker reports it.
    pub fn failed(&self, conn: &Conn, e: RedisError) -> BrokerError {
        if e.code() == Some("OOM") {
            // Redis is at `maxmemory`: the script was refused before its
            // first write (see `scripts`), so nothing was stored.
            return BrokerError::OverCapacity(
                "Redis is full (maxmemory reached): nothing was stored; retry later".into(),
            );
        }
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_unrecoverable_error()
        {
            let mut current = self.current.lock();
            if current
                .as_ref()
                .is_some_and(|c| c.generation == conn.generation)
            {
                *current = None;
                drop(current);
                warn!(error = %e, "Redis command connection lost; reconnecting");
                (self.on_change)(false);
                self.lost.notify_one();
            }
        }
        BrokerError::Unavailable(format!("Redis: {e}"))
    }

    /// Another connection to the same Redis dropped: the link counts as
    /// down (the node is not ready) until a PING on it answers again.
    pub fn suspect(&self) {
        self.suspicions.fetch_add(1, Ordering::AcqRel);
        (self.on_change)(false);
        self.lost.notify_one();
    }

    /// PINGs the current connection: up again when it answers and nothing
    /// was suspected meanwhile; dropped (to reconnect) when it does not.
    async fn verify(&self, conn: Conn) {
        let asked = self.suspicions.load(Ordering::Acquire);
        let mut c = conn.conn.clone();
        let pong: Result<String, RedisError> = redis::cmd("PING").query_async(&mut c).await;
        match pong {
            Ok(_) => {
                let current = self.current.lock();
                let same = current
                    .as_ref()
                    .is_some_and(|c| c.generation == conn.generation);
                if same && self.suspicions.load(Ordering::Acquire) == asked {
                    (self.on_change)(true);
                }
            }
            Err(e) => {
                self.failed(&conn, e);
            }
        }
    }

    /// Keeps a connection up until `stop`: connects, connects again (with
    /// backoff and jitter) whenever a failure report drops it, and PINGs it
    /// every `interval` and whenever it is suspected.
    pub async fn run(self: Arc<Self>, stop: CancellationToken, interval: Duration) {
        let mut backoff = Backoff::new();
        let mut first = true;
        loop {
            if let Ok(conn) = self.get() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.lost.notified() => {}
                    () = tokio::time::sleep(interval) => {}
                }
                self.verify(conn).await;
                continue;
            }
            match self.connect().await {
                Ok(conn) => {
                    info!(run_id = %conn.run_id, "Redis command connection up");
                    *self.current.lock() = Some(conn);
                    (self.on_change)(true);
                    self.connected.notify_one();
                    backoff.reset();
                    first = false;
                    continue;
                }
                Err(e) => {
                    if first || backoff.attempts().is_multiple_of(10) {
                        warn!(error = %e, "cannot reach Redis; retrying with backoff");
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff.next()) => {}
            }
        }
    }

    async fn connect(&self) -> Result<Conn, RedisError> {
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&Self::config())
            .await?;
        let (run_id, uptime) = server_info(&mut conn).await?;
        let run_id: Arc<str> = run_id.into();
        let before = self.last_run.lock().replace(run_id.clone());
        let restarted_at = before.filter(|b| *b != run_id).map(|_| {
            Instant::now()
                .checked_sub(uptime)
                .unwrap_or_else(Instant::now)
        });
        Ok(Conn {
            conn,
            run_id,
            restarted_at,
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
        })
    }
}

/// `work` on a Redis connection within [`TIMEOUT`]; running out of it is
/// an I/O error, like the lost connection it most likely means.
pub async fn bounded<T>(
    what: &'static str,
    work: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| RedisError::from((redis::ErrorKind::Io, "timed out", what.to_owned())))?
}

/// The `run_id` from `INFO server` (unique to one life of one Redis
/// server) and how long that server has been up.
pub async fn server_info(conn: &mut impl ConnectionLike) -> Result<(String, Duration), RedisError> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let run_id = field("run_id:")
        .ok_or_else(|| RedisError::from((redis::ErrorKind::Parse, "INFO server has no run_id")))?;
    let uptime = field("uptime_in_seconds:")
        .and_then(|s| s.parse().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    Ok((run_id, uptime))
}
