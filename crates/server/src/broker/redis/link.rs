//! The command connection to Redis: one multiplexed connection shared by
//! every publish and history read on this node, the run id of the Redis
//! server it reached, and reconnection with backoff and jitter.
//!
//! The run id is read on every new connection, before the connection is
//! used: it is what the scripts fence epochs on, so it must always be the
//! id of the server this very connection talks to.

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
    time::Duration,
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
    /// Which connection this is (to tell a stale failure report from a
    /// failure of the current connection).
    generation: u64,
}

pub struct Link {
    client: redis::Client,
    current: Mutex<Option<Conn>>,
    generations: AtomicU64,
    /// Asks the reconnect loop to connect again.
    lost: Notify,
    /// Called with `true` when a connection is made, `false` when lost.
    on_change: Box<dyn Fn(bool) + Send + Sync>,
}

impl Link {
    pub fn new(client: redis::Client, on_change: Box<dyn Fn(bool) + Send + Sync>) -> Self {
        Link {
            client,
            current: Mutex::new(None),
            generations: AtomicU64::new(0),
            lost: Notify::new(),
            on_change,
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

    pub fn is_up(&self) -> bool {
        self.current.lock().is_some()
    }

    /// Reports a failed command: when it means the connection is gone, the
    /// connection is dropped and the reconnect loop wakes. Returns the
    /// error as the broker reports it.
    pub fn failed(&self, conn: &Conn, e: RedisError) -> BrokerError {
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

    /// Keeps a connection up until `stop`: connects, and connects again
    /// (with backoff and jitter) whenever a failure report drops it.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = Backoff::new();
        let mut first = true;
        loop {
            if self.is_up() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.lost.notified() => continue,
                }
            }
            match self.connect().await {
                Ok(conn) => {
                    info!(run_id = %conn.run_id, "Redis command connection up");
                    *self.current.lock() = Some(conn);
                    (self.on_change)(true);
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
        let run_id = run_id(&mut conn).await?;
        Ok(Conn {
            conn,
            run_id: run_id.into(),
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

/// The `run_id` from `INFO server`: unique to one life of one Redis server.
pub async fn run_id(conn: &mut impl ConnectionLike) -> Result<String, RedisError> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned())
        .ok_or_else(|| RedisError::from((redis::ErrorKind::Parse, "INFO server has no run_id")))
}
