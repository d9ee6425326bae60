//! The Redis broker: many nodes share offsets, history and idempotency keys
//! in Redis, and every node delivers what any node publishes.
//!
//! - A publish is one script (`scripts`): idempotency check, epoch fence,
//!   offset, history append, TTLs and the pub/sub message, atomically, so
//!   offsets are gap-free under concurrent publishers on many nodes.
//! - Each node subscribes once per channel it has local subscribers for
//!   (`fanout`), on a few pub/sub connections chosen by channel hash, and
//!   feeds what arrives into the hub in offset order, reading back from
//!   history whatever pub/sub lost.
//! - While Redis or any of this node's connections to it is down the node
//!   is not ready, and publishes and subscribes fail with `unavailable`
//!   (nothing is silently dropped); it reconnects with backoff and repairs.
//! - Presence (`presence`) lives in Redis with an expiry per entry, each
//!   node refreshing its own; joins and leaves ride the channels' pub/sub
//!   topics among the publications, in their place.

mod backoff;
mod fanout;
#[cfg(test)]
mod fanout_tests;
mod link;
mod nodes;
mod nodes_scripts;
#[cfg(test)]
mod nodes_tests;
mod presence;
mod presence_scripts;
#[cfg(test)]
mod presence_tests;
mod repair;
mod scripts;

use super::{Broker, BrokerError, Delivery, Publication, PublishOutcome, Recovery};
use crate::{channel_rules::ChannelRules, config::HistoryConfig, metrics::Metrics};
use async_trait::async_trait;
use fanout::Fanout;
use link::{Conn, Link};
use scripts::{Keys, PUBLISH_SCRIPT, RECOVER_SCRIPT};
use serde_json::value::RawValue;
use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tether_protocol::StreamPosition;
use tokio_util::sync::CancellationToken;

/// What the Redis broker is told at start.
pub struct RedisOptions {
    pub url: String,
    /// Prefix of every key and pub/sub channel (several deployments can
    /// share one Redis).
    pub prefix: String,
    /// How often quiet channels are compared with Redis (a lost last
    /// message surfaces within this) and pub/sub connections pinged.
    pub check_interval: Duration,
    /// Per-channel history size and TTL, presence and join/leave
    /// (`[[channels]]`).
    pub rules: Arc<ChannelRules>,
    /// How long a presence entry lives without its node refreshing it.
    pub presence_ttl: Duration,
    /// This node's id (the node registry's key for it).
    pub node_id: String,
    /// How long the node's liveness key lives unless refreshed.
    pub node_ttl: Duration,
    /// Lifecycle events: with them the node keeps its sessions in the
    /// node registry, and announces those of lapsed nodes (`nodes`).
    pub events: Option<Arc<crate::events::Events>>,
}

pub struct RedisBroker {
    inner: Arc<Inner>,
    /// The node registry, with lifecycle events only.
    nodes: Option<Arc<nodes::Nodes>>,
    stop: CancellationToken,
}

struct Inner {
    history: HistoryConfig,
    rules: Arc<ChannelRules>,
    link: Arc<Link>,
    fanout: Fanout,
    presence: presence::Presence,
}

/// The raw answer of the recover script.
struct Raw {
    epoch: String,
    top: u64,
    recovered: bool,
    /// The data of the publications after `since`, in order.
    data: Vec<String>,
}

impl RedisBroker {
    /// Starts the broker's connections (in the background: the node starts
    /// not ready and turns ready once Redis answers).
    pub fn start(
        options: RedisOptions,
        history: HistoryConfig,
        delivery: Arc<dyn Delivery>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BrokerError> {
        let client = redis::Client::open(options.url.as_str())
            .map_err(|e| BrokerError::Unavailable(format!("--redis-url: {e}")))?;
        let stop = CancellationToken::new();
        let health = fanout::Health::new(metrics.clone());
        let link = Arc::new(Link::new(client.clone(), {
            let health = health.clone();
            Box::new(move |up| health.set_link(up))
        }));
        let inner = Arc::new(Inner {
            history,
            rules: options.rules,
            link: link.clone(),
            presence: presence::Presence::new(
                options.presence_ttl,
                metrics.presence_entries.clone(),
            ),
            fanout: Fanout::new(
                client,
                options.prefix.into(),
                delivery,
                metrics,
                health,
                options.check_interval,
            ),
        });
        tokio::spawn(link.clone().run(stop.clone(), options.check_interval));
        Fanout::spawn(&inner, &stop);
        let nodes = options.events.map(|events| {
            let evicting = inner.clone();
            let options = nodes::NodesOptions {
                id: options.node_id,
                ttl: options.node_ttl,
                check_interval: options.check_interval,
                prefix: inner.fanout.prefix.clone(),
                events,
                metrics: inner.fanout.metrics.clone(),
                evict: Box::new(move |channel, client| {
                    evicting.evict_lost_presence(channel, client)
                }),
            };
            nodes::Nodes::start(options, link.clone(), &stop)
        });
        presence::spawn(&inner, &stop);
        Ok(RedisBroker { inner, nodes, stop })
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Inner {
    /// A fresh epoch for a stream the scripts (re)start: random, so no two
    /// lives of a channel share one.
    fn fresh_epoch() -> String {
        format!("{:016x}", fastrand::u64(..))
    }

    /// How long the meta hash of a channel never published outlives the
    /// last refresh (see `scripts`).
    fn empty_ttl(&self) -> Duration {
        self.fanout.check_interval * scripts::EMPTY_TTL_CHECKS
    }

    /// Refuses work while Redis or any connection to it is down: a publish
    /// or subscribe then would be lost or half done.
    fn ensure_up(&self) -> Result<(), BrokerError> {
        if self.fanout.health.is_up() {
            Ok(())
        } else {
            Err(BrokerError::Unavailable(
                "Redis is unreachable or a connection to it is down (reconnecting); retry".into(),
            ))
        }
    }

    /// A failed script, as `Link::failed` reports it; a full Redis is
    /// counted in `tether_refusals_total{reason="redis_full"}`.
    fn failed(&self, conn: &Conn, e: redis::RedisError) -> BrokerError {
        let e = self.link.failed(conn, e);
        if matches!(e, BrokerError::OverCapacity(_)) {
            self.fanout.metrics.refusal("redis_full");
        }
        e
    }

    /// Removes the presence entry of `client`, a session of a node that
    /// was declared lost, in `channel` (with its leave, if the channel's
    /// rule says `join_leave`), through the presence writer, in order with
    /// this node's own changes. Without it the entry would expire anyway,
    /// within `--presence-ttl`.
    fn evict_lost_presence(&self, channel: &str, client: &str) {
        if let Err(e) = self.presence.evict(channel, client) {
            self.fanout.metrics.refusal("presence_queue_full");
            tracing::debug!(%channel, %client, error = %e, "a lost session's presence is left to expire");
        }
    }

    fn conn(&self) -> Result<Conn, BrokerError> {
        self.ensure_up()?;
        self.link.get()
    }

    async fn publish(
        &self,
        channel: &str,
        data: &RawValue,
        key: Option<&str>,
        may_create: bool,
    ) -> Result<PublishOutcome, BrokerError> {
        let conn = self.conn()?;
        let keys = Keys::new(&self.fanout.prefix, channel);
        let mut invocation = PUBLISH_SCRIPT.prepare_invoke();
        invocation.key(&keys.meta).key(&keys.history);
        if let Some(key) = key {
            invocation.key(Keys::idempotency(&self.fanout.prefix, channel, key));
        }
        let h = &self.history;
        let rule = self.rules.get(channel);
        invocation
            .arg(&*conn.run_id)
            .arg(Self::fresh_epoch())
            .arg(millis(h.meta_ttl))
            .arg(data.get())
            .arg(rule.history_size_or(h.size))
            .arg(millis(rule.history_ttl_or(h.ttl)))
            .arg(millis(h.idempotency_window))
            .arg(now_ms())
            .arg(&keys.topic)
            .arg(u8::from(may_create));
        let mut c = conn.conn.clone();
        let (epoch, offset, status): (String, u64, u8) = invocation
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.failed(&conn, e))?;
        match status {
            scripts::STORED | scripts::DUPLICATE | scripts::CREATED => Ok(PublishOutcome {
                offset,
                epoch,
                duplicate: status == scripts::DUPLICATE,
                created: status == scripts::CREATED,
            }),
            scripts::NOT_CREATED => Err(BrokerError::NotCreated),
            other => Err(BrokerError::Unavailable(format!(
                "the publish script answered status {other}"
            ))),
        }
    }

    /// The channel's epoch and top, and the publications after `since` when
    /// history holds all of them. Fences the epoch (see `scripts`).
    async fn recover_raw(
        &self,
        channel: &str,
        since: Option<(&str, u64)>,
        budget: usize,
    ) -> Result<Raw, BrokerError> {
        let conn = self.link.get()?;
        let keys = Keys::new(&self.fanout.prefix, channel);
        let (since_epoch, since_offset) = since.unwrap_or(("", 0));
        let mut c = conn.conn.clone();
        let (epoch, top, recovered, data): (String, u64, u8, Vec<String>) = RECOVER_SCRIPT
            .key(&keys.meta)
            .key(&keys.history)
            .arg(&*conn.run_id)
            .arg(Self::fresh_epoch())
            .arg(millis(self.empty_ttl()))
            .arg(since_epoch)
            .arg(since_offset)
            .arg(millis(
                self.rules.get(channel).history_ttl_or(self.history.ttl),
            ))
            .arg(now_ms())
            .arg(budget)
            .arg(scripts::RECOVER_PAGE)
            .arg(scripts::RECOVER_FIRST_PAGE)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.failed(&conn, e))?;
        Ok(Raw {
            epoch,
            top,
            recovered: recovered == 1,
            data,
        })
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(
        &self,
        channel: &str,
        data: &RawValue,
        key: Option<&str>,
        may_create: bool,
    ) -> Result<PublishOutcome, BrokerError> {
        self.inner.publish(channel, data, key, may_create).await
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.inner.ensure_up()?;
        Fanout::subscribe(&self.inner, channel).await
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.inner.fanout.unsubscribe(channel).await;
        Ok(())
    }

    async fn recover(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        budget: usize,
    ) -> Result<Recovery, BrokerError> {
        self.inner.ensure_up()?;
        // The script counts data bytes (a frame adds its envelope): the
        // caller cuts what it gets to its exact budget.
        let raw = self
            .inner
            .recover_raw(channel, since.map(|s| (s.epoch.as_str(), s.offset)), budget)
            .await?;
        let name: Arc<str> = Arc::from(channel);
        let first = since.map_or(0, |s| s.offset) + 1;
        let publications = if raw.recovered {
            publications(&name, first, raw.data)
        } else {
            Vec::new()
        };
        Ok(Recovery {
            epoch: raw.epoch,
            offset: raw.top,
            recovered: raw.recovered,
            publications,
        })
    }

    // The session passes its channel's `join_leave`; the scripts read the
    // same rule (`presence::common`), for the node's refresh and cleaning too.
    fn presence_add(&self, channel: &str, entry: tether_protocol::PresenceEntry, _: bool) {
        // The node registry notes where a session is present, so that a
        // node that claims this one (if it dies) removes it there.
        if let Some(nodes) = &self.nodes {
            nodes.presence(&entry.client, channel, true);
        }
        if let Err(e) = self.inner.presence.add(channel, &entry) {
            self.inner.fanout.metrics.refusal("presence_queue_full");
            tracing::debug!(%channel, error = %e, "presence add not queued");
        }
    }

    fn presence_remove(&self, channel: &str, client: &str, _: bool) {
        if let Some(nodes) = &self.nodes {
            nodes.presence(client, channel, false);
        }
        if let Err(e) = self.inner.presence.remove(channel, client) {
            self.inner.fanout.metrics.refusal("presence_queue_full");
            tracing::debug!(%channel, error = %e, "presence remove not queued");
        }
    }

    async fn presence_flushed(&self) {
        self.inner.presence.flushed().await;
    }

    async fn presence(
        &self,
        channel: &str,
        max: usize,
    ) -> Result<super::PresenceList, BrokerError> {
        presence::list(&self.inner, channel, max).await
    }

    async fn presence_stats(&self, channel: &str) -> Result<super::PresenceStats, BrokerError> {
        presence::stats(&self.inner, channel).await
    }

    fn is_healthy(&self) -> bool {
        self.inner.fanout.health.is_up()
    }

    fn session_started(&self, client: &str, conn: u64, user: Option<&str>, at_ms: u64) {
        if let Some(nodes) = &self.nodes {
            nodes.started(client, conn, user, at_ms);
        }
    }

    async fn node_leaving(&self) {
        if let Some(nodes) = &self.nodes {
            nodes.leave().await;
        }
    }
}

/// Publications from consecutive data starting at offset `first`; data that
/// is not JSON (nothing Tether wrote) is skipped, never forwarded.
fn publications(channel: &Arc<str>, first: u64, data: Vec<String>) -> Vec<Arc<Publication>> {
    data.into_iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let raw = RawValue::from_string(d).ok()?;
            Some(Arc::new(Publication::new(
                channel.clone(),
                first + i as u64,
                &raw,
            )))
        })
        .collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
