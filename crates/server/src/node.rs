//! The node: everything one running gateway shares between its connections.

use crate::{
    auth::Verifier,
    broker::{
        memory::MemoryBroker,
        redis::{RedisBroker, RedisOptions},
        Broker, BrokerError, PresenceList, PresenceStats, PublishOutcome,
    },
    channel_rules::ChannelRules,
    config::{BrokerKind, Config},
    events::{Ending, Events, EventsOptions},
    hooks::Hooks,
    hub::Hub,
    limits::Admission,
    metrics::Metrics,
};
use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Why a node could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Auth(#[from] crate::auth::KeyError),
    #[error("{0}")]
    Broker(String),
    #[error("{0}")]
    Rules(String),
    #[error("{0}")]
    Hooks(String),
    #[error("--events-url: {0}")]
    Events(String),
}

/// The events sender, when `--events-url` is set: its POSTs are signed
/// with `--hook-secret` and take one call slot of their own.
fn start_events(
    config: &Config,
    id: &str,
    metrics: &Arc<Metrics>,
) -> Result<Option<Arc<Events>>, NodeError> {
    let Some(url) = &config.events.url else {
        return Ok(None);
    };
    let url = crate::config::events_url(url).map_err(NodeError::Events)?;
    let secret = config.hooks.secret.as_deref().unwrap_or_default();
    let options = EventsOptions {
        url,
        node: id.to_owned(),
        queue: config.events.queue,
        retry_max: config.events.retry_max,
        client: crate::hooks::HookClient::new(secret, config.events.timeout, 1),
    };
    Ok(Some(Events::start(options, metrics.clone())))
}

/// Why [`Node::publish`] stored nothing.
#[derive(Debug)]
pub enum PublishError {
    /// The channel is new and its publisher's address has made its share of
    /// new channels: retry after this long.
    NewChannels(std::time::Duration),
    Broker(BrokerError),
}

/// The most entries a `presence` answer lists; a channel with more answers
/// only `presence_stats` (the list would be ~100 KiB and growing).
pub const PRESENCE_ANSWER_MAX: usize = 1_000;

/// Why a presence question got no answer (the session answers an `error`,
/// the API a 4xx/5xx); the text is the message either way.
#[derive(Debug, thiserror::Error)]
pub enum PresenceRefusal {
    #[error("{0}")]
    InvalidChannel(String),
    /// The channel's rule does not say `presence = true`.
    #[error("presence is not enabled for channel {0:?} (a [[channels]] rule with presence = true; docs/presence.md)")]
    Disabled(String),
    /// More than [`PRESENCE_ANSWER_MAX`] are present.
    #[error("{0} clients are present in {1:?}; ask presence_stats")]
    TooMany(u64, String),
    #[error(transparent)]
    Broker(BrokerError),
}

pub struct Node {
    pub config: Arc<Config>,
    pub id: String,
    pub metrics: Arc<Metrics>,
    pub hub: Arc<Hub>,
    pub broker: Arc<dyn Broker>,
    /// Per-channel options (`[[channels]]`), shared with the broker.
    pub rules: Arc<ChannelRules>,
    /// Kept typed for the periodic sweep; `None` with other brokers.
    memory_broker: Option<Arc<MemoryBroker>>,
    pub admission: Arc<Admission>,
    /// Lifecycle events; `None` without `--events-url`.
    pub events: Option<Arc<Events>>,
    /// Token verification; `None` when no JWT key is configured (open access).
    pub verifier: Option<Verifier>,
    /// The backend's hooks (`--hook-*`); `None` when none is configured.
    pub hooks: Option<Arc<Hooks>>,
    /// Cancelled when the node starts draining: sessions close with 1012.
    pub shutdown: CancellationToken,
    draining: AtomicBool,
    /// Wakes WebSocket sessions for their heartbeat checks and the drain.
    pub ticker: crate::heartbeat::Ticker,
    /// Every connection task, so the drain can wait for them.
    pub tasks: TaskTracker,
    next_conn_id: AtomicU64,
    /// Origins refused so far, each logged once.
    pub refused_origins: crate::refused_origins::RefusedOrigins,
    /// Notices connections repeatedly cut after the same idle time.
    idle_patterns: parking_lot::Mutex<crate::idle_pattern::IdlePatterns>,
}

impl Node {
    /// Builds a node; `socket_budget` is how many sockets the open-file limit allows.
    pub fn new(config: Config, socket_budget: usize) -> Result<Arc<Self>, NodeError> {
        let verifier = Verifier::from_config(&config.auth)?;
        let metrics = Arc::new(Metrics::new());
        let rules = Arc::new(ChannelRules::new(&config.channels).map_err(NodeError::Rules)?);
        let hooks = Hooks::from_config(&config.hooks, metrics.clone())
            .map_err(NodeError::Hooks)?
            .map(Arc::new);
        // How far a subscriber may fall behind its channel before it is
        // resynchronised: `send_queue` publications, `max_channel_bytes`.
        let hub = Arc::new(Hub::new(
            crate::channel_log::Window {
                publications: config.limits.send_queue,
                bytes: config.history.max_channel_bytes,
            },
            config.limits.max_channels,
        ));
        let id = config
            .server
            .node_id
            .clone()
            .unwrap_or_else(|| format!("{:08x}", fastrand::u32(..)));
        let events = start_events(&config, &id, &metrics)?;
        let (broker, memory_broker): (Arc<dyn Broker>, _) = match config.broker.kind {
            BrokerKind::Memory => {
                let memory = Arc::new(
                    MemoryBroker::new(
                        config.history.clone(),
                        config.limits.max_channels,
                        hub.clone(),
                        metrics.clone(),
                    )
                    .with_rules(rules.clone()),
                );
                (memory.clone(), Some(memory))
            }
            BrokerKind::Redis => {
                let options = RedisOptions {
                    url: config.broker.redis_url.clone(),
                    prefix: config.broker.redis_prefix.clone(),
                    check_interval: config.broker.redis_check_interval,
                    rules: rules.clone(),
                    presence_ttl: config.presence.ttl,
                    node_id: id.clone(),
                    node_ttl: config.broker.node_ttl,
                    events: events.clone(),
                };
                let redis = RedisBroker::start(
                    options,
                    config.history.clone(),
                    hub.clone(),
                    metrics.clone(),
                )
                .map_err(|e| NodeError::Broker(e.to_string()))?;
                (Arc::new(redis), None)
            }
        };
        Ok(Arc::new(Node {
            verifier,
            hooks,
            admission: Admission::new(
                config.limits.clone(),
                config.server.echo_max_connections,
                socket_budget,
            ),
            config: Arc::new(config),
            id,
            metrics,
            hub,
            broker,
            rules,
            memory_broker,
            events,
            shutdown: CancellationToken::new(),
            draining: AtomicBool::new(false),
            tasks: TaskTracker::new(),
            ticker: Default::default(),
            next_conn_id: AtomicU64::new(1),
            idle_patterns: Default::default(),
            refused_origins: Default::default(),
        }))
    }

    /// Gives back this node's interest in `channel` at the broker (its last
    /// local subscriber left, or a join was undone) in a task of the node's:
    /// the caller may be a request future that is dropped at any await, and
    /// the broker's count of interest must stay matched. Brokers count
    /// interest, so this commutes with a later subscribe: nothing waits for it.
    pub fn release_interest(self: &Arc<Self>, channel: &str) {
        // No runtime: the process is exiting and the broker goes with it.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let node = self.clone();
        let channel = channel.to_owned();
        self.tasks.spawn(async move {
            if let Err(e) = node.broker.unsubscribe(&channel).await {
                tracing::debug!(channel, error = %e, "broker unsubscribe failed");
            }
        });
    }

    /// Publishes for a client at `ip` (the API's caller or a session's
    /// address): a publish that creates the channel at the broker takes a
    /// token from the address's bucket of new channels, and one the bucket
    /// cannot pay for is refused by the broker with nothing stored. Publishes
    /// to channels that exist never touch the bucket, however many.
    pub async fn publish(
        &self,
        ip: std::net::IpAddr,
        channel: &str,
        data: &serde_json::value::RawValue,
        key: Option<&str>,
    ) -> Result<PublishOutcome, PublishError> {
        let allowed = self.admission.new_channel_allowed(ip);
        match self
            .broker
            .publish(channel, data, key, allowed.is_ok())
            .await
        {
            Ok(outcome) => {
                if outcome.created {
                    self.admission.charge_new_channel(ip);
                }
                if !outcome.duplicate {
                    self.metrics.publications.inc();
                }
                Ok(outcome)
            }
            Err(BrokerError::NotCreated) => {
                self.metrics.refusal("new_channel_rate");
                let wait = allowed.err().unwrap_or(std::time::Duration::from_secs(1));
                Err(PublishError::NewChannels(wait))
            }
            Err(e) => Err(PublishError::Broker(e)),
        }
    }

    /// Checks that `channel` is a channel with presence on.
    fn presence_channel(&self, channel: &str) -> Result<(), PresenceRefusal> {
        tether_protocol::message::validate_channel(channel)
            .map_err(PresenceRefusal::InvalidChannel)?;
        if !self.rules.get(channel).presence {
            return Err(PresenceRefusal::Disabled(channel.to_owned()));
        }
        Ok(())
    }

    /// Who is present in `channel` (the caller has checked who asks).
    pub async fn presence(
        &self,
        channel: &str,
    ) -> Result<Vec<tether_protocol::PresenceEntry>, PresenceRefusal> {
        self.presence_channel(channel)?;
        match self.broker.presence(channel, PRESENCE_ANSWER_MAX).await {
            Ok(PresenceList::Clients(clients)) => Ok(clients),
            Ok(PresenceList::TooMany(n)) => {
                self.metrics.refusal("presence_too_many");
                Err(PresenceRefusal::TooMany(n, channel.to_owned()))
            }
            Err(e) => Err(PresenceRefusal::Broker(e)),
        }
    }

    /// How many clients and users are present in `channel`.
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, PresenceRefusal> {
        self.presence_channel(channel)?;
        self.broker
            .presence_stats(channel)
            .await
            .map_err(PresenceRefusal::Broker)
    }

    /// A session said `welcome`: recorded in the broker's registry of
    /// sessions (if it keeps one) before its `connect` event is queued.
    /// Returns when it started (Unix ms); nothing to do without events.
    pub fn session_started(&self, client: &str, conn: u64, user: Option<&str>) -> Option<u64> {
        let events = self.events.as_ref()?;
        let at_ms = crate::events::now_ms().max(1);
        self.broker.session_started(client, conn, user, at_ms);
        events.connect(client, user);
        Some(at_ms)
    }

    /// A session that started at `started_ms` ended (its `disconnect`).
    pub fn session_ended(
        &self,
        client: &str,
        conn: u64,
        user: Option<&str>,
        code: u16,
        reason: &str,
        started_ms: u64,
    ) {
        if let Some(events) = &self.events {
            let duration_ms = crate::events::now_ms().saturating_sub(started_ms);
            let ending = Ending {
                code,
                reason,
                duration_ms,
            };
            events.disconnect(client, conn, user, ending);
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts the drain: readiness turns false, new handshakes get 503, and
    /// every session is told to close with 1012.
    pub fn start_drain(self: &Arc<Self>) {
        self.draining.store(true, Ordering::Release);
        self.shutdown.cancel();
        self.ticker.drain();
    }

    /// Periodic housekeeping: expired history, idle per-IP state.
    pub fn sweep(self: &Arc<Self>) {
        if let Some(m) = &self.memory_broker {
            m.sweep();
        }
        self.admission.sweep();
        self.idle_patterns.lock().sweep(std::time::Instant::now());
    }

    /// A session from `peer` ended without a close frame after `idle` with
    /// no inbound frame. When that keeps happening after the same idle time,
    /// an intermediary is cutting idle connections: warn once and count it.
    pub fn note_abnormal_end(&self, peer: std::net::IpAddr, idle: std::time::Duration) {
        let found = self
            .idle_patterns
            .lock()
            .record(peer, idle, std::time::Instant::now());
        if let Some(p) = found {
            self.metrics.idle_cut_patterns.inc();
            tracing::warn!(
                subnet = %p.subnet,
                idle_s = p.idle.as_secs_f64(),
                count = p.count,
                "connections keep ending without a close frame after ~{:.0} s idle: {}",
                p.idle.as_secs_f64(),
                p.advice()
            );
        }
    }

    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.broker.is_healthy()
    }
}
