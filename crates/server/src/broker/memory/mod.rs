//! The embedded one-node broker: channel streams in memory.
//!
//! Each channel has a stream: an epoch (the generation of its history), the
//! last offset, the recent publications and the idempotency keys seen
//! recently. Everything a peer can make it hold is bounded:
//!
//! - **streams**: at most `limits.max_channels`. A stream exists while the
//!   channel has a local subscriber, history, or an offset worth
//!   remembering. A stream that never had a publication is dropped as soon as
//!   its last subscriber leaves; one whose history has expired is forgotten
//!   after `history.meta_ttl`, or at once when the cap needs room. At the cap
//!   with nothing to forget, creating a stream is refused (`over_capacity`).
//! - **history**: per channel by count (`history.size`), age (`history.ttl`)
//!   — both overridden by the channel's `[[channels]]` rule, resolved once
//!   when its stream is made — and bytes (`history.max_channel_bytes`),
//!   oldest first; in all by `history.max_bytes` — a channel may make room
//!   by dropping its own oldest entries, never another channel's; a publish
//!   that cannot fit is refused.
//! - **idempotency keys**: honoured for `history.idempotency_window`, at most
//!   [`MAX_KEYS_PER_CHANNEL`] per channel and `history.idempotency_max_keys`
//!   in all. A key forced out before its window ends is counted in
//!   `tether_idempotency_evictions_total`.
//!
//! Epochs: a new stream takes the node's current *empty epoch*, a boot id
//! plus a generation bumped whenever a stream that had publications is
//! forgotten. So a channel whose stream was dropped while empty comes back
//! with the same epoch at offset 0 (a client recovering from offset 0 is told
//! `recovered: true`, which is exact), while a channel that lost publications
//! can never be recovered into by mistake.
//!
//! This module holds the streams, the broker and its [`Broker`] impl; what
//! a stream and the node are charged for, and how room is made, is in
//! `budget`.

use super::{
    Broker, BrokerError, Delivery, PresenceList, PresenceStats, Publication, PublishOutcome,
    Recovery,
};
use crate::channel_log::{Event, Wakeup};
use crate::{channel_rules::ChannelRules, config::HistoryConfig, metrics::Metrics};
use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasher, RandomState},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tether_protocol::StreamPosition;

mod budget;
mod presence;
#[cfg(test)]
mod tests;

use budget::cost;

/// Most idempotency keys remembered per channel (oldest forgotten first).
pub const MAX_KEYS_PER_CHANNEL: usize = 10_000;
const SHARDS: usize = 64;

struct Stream {
    /// The channel name, shared by every publication on it.
    name: Arc<str>,
    epoch: Arc<str>,
    top: u64,
    history: VecDeque<(Instant, Arc<Publication>)>,
    /// Sum of `cost` over `history`.
    history_bytes: usize,
    keys: HashMap<Arc<str>, u64>,
    key_order: VecDeque<(Instant, Arc<str>)>,
    last_active: Instant,
    /// Local subscriber interest; a stream with interest is never forgotten.
    interest: usize,
    /// History kept: the channel's rule, else `history.size`/`history.ttl`.
    size: usize,
    ttl: Duration,
}

impl Stream {
    /// Whether forgetting this stream loses nothing a client could recover.
    fn is_idle(&self) -> bool {
        self.interest == 0 && self.history.is_empty() && self.keys.is_empty()
    }
}

type StreamMap = HashMap<Arc<str>, Stream>;

pub struct MemoryBroker {
    shards: Box<[Mutex<StreamMap>]>,
    hasher: RandomState,
    cfg: HistoryConfig,
    rules: Arc<ChannelRules>,
    max_channels: usize,
    delivery: Arc<dyn Delivery>,
    /// Counts streams, history bytes and keys (the gauges are the budget).
    metrics: Arc<Metrics>,
    /// Random per broker instance: epochs never repeat across restarts.
    boot: String,
    /// Bumped when a stream with publications is forgotten (see module docs).
    generation: AtomicU64,
    /// When a scan for streams to forget last found none.
    barren_scan: Mutex<Option<Instant>>,
    /// Who is subscribed to each presence channel.
    presence: presence::Presence,
}

impl MemoryBroker {
    pub fn new(
        cfg: HistoryConfig,
        max_channels: usize,
        delivery: Arc<dyn Delivery>,
        metrics: Arc<Metrics>,
    ) -> Self {
        MemoryBroker {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            cfg,
            rules: Arc::default(),
            max_channels,
            delivery,
            presence: presence::Presence::new(metrics.presence_entries.clone()),
            metrics,
            boot: format!("{:012x}", fastrand::u64(..) >> 16),
            generation: AtomicU64::new(0),
            barren_scan: Mutex::new(None),
        }
    }

    /// Per-channel history size and TTL (`[[channels]]`); none by default.
    pub fn with_rules(mut self, rules: Arc<ChannelRules>) -> Self {
        self.rules = rules;
        self
    }

    fn shard(&self, channel: &str) -> &Mutex<StreamMap> {
        let i = (self.hasher.hash_one(channel) as usize) % self.shards.len();
        &self.shards[i]
    }

    /// The epoch a new stream takes now.
    fn empty_epoch(&self) -> String {
        format!(
            "{}{:04x}",
            self.boot,
            self.generation.load(Ordering::Acquire)
        )
    }

    /// The channel's stream, created when new (if the channel cap allows),
    /// pruned and marked active.
    fn stream_mut<'m>(
        &self,
        map: &'m mut StreamMap,
        channel: &str,
        now: Instant,
    ) -> Result<&'m mut Stream, BrokerError> {
        if !map.contains_key(channel) {
            if self.at_channel_cap() {
                self.metrics.refusal("channels_full");
                return Err(BrokerError::OverCapacity(format!(
                    "the server holds its maximum of {} channels; retry later",
                    self.max_channels
                )));
            }
            let name: Arc<str> = Arc::from(channel);
            let rule = self.rules.get(channel);
            self.metrics.channel_streams.inc();
            map.insert(
                name.clone(),
                Stream {
                    name,
                    epoch: self.empty_epoch().into(),
                    top: 0,
                    history: VecDeque::new(),
                    history_bytes: 0,
                    keys: HashMap::new(),
                    key_order: VecDeque::new(),
                    last_active: now,
                    interest: 0,
                    size: rule.history_size_or(self.cfg.size),
                    ttl: rule.history_ttl_or(self.cfg.ttl),
                },
            );
        }
        let stream = map
            .get_mut(channel)
            .ok_or_else(|| BrokerError::Unavailable("channel stream vanished".into()))?;
        self.prune(stream, now);
        stream.last_active = now;
        Ok(stream)
    }

    /// Drops the stream if it holds nothing worth keeping: no subscriber and
    /// never a publication.
    fn drop_if_unused(&self, map: &mut StreamMap, channel: &str) {
        if map
            .get(channel)
            .is_some_and(|s| s.interest == 0 && s.top == 0)
        {
            if let Some(s) = map.remove(channel) {
                self.release(&s);
            }
        }
    }

    /// Forgets streams idle for longer than `meta_ttl` and drops expired
    /// history everywhere; called periodically by the node.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.forget_where(now, |s| {
            s.interest == 0
                && (s.top == 0 || now.saturating_duration_since(s.last_active) >= self.cfg.meta_ttl)
        });
    }

    /// Number of channel streams held (for tests and stats).
    pub fn stream_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Delivers a join or leave after the channel's last publication: under
    /// the channel's shard lock, so it is placed exactly between the
    /// publications made before and after it.
    fn announce(&self, channel: &str, mut event: Event) {
        let wakeup = {
            let map = self.shard(channel).lock();
            event.after = map.get(channel).map_or(0, |s| s.top);
            self.delivery.deliver_event(channel, event)
        };
        wakeup.ring();
    }

    fn publish_locked(
        &self,
        map: &mut StreamMap,
        channel: &str,
        data: &RawValue,
        key: Option<&str>,
        may_create: bool,
        now: Instant,
    ) -> Result<(PublishOutcome, Wakeup), BrokerError> {
        let created = !map.contains_key(channel);
        if created && !may_create {
            return Err(BrokerError::NotCreated);
        }
        let stream = self.stream_mut(map, channel, now)?;
        if let Some(key) = key {
            if let Some(&offset) = stream.keys.get(key) {
                let duplicate = PublishOutcome {
                    offset,
                    epoch: stream.epoch.to_string(),
                    duplicate: true,
                    created: false,
                };
                return Ok((duplicate, Wakeup::none()));
            }
        }
        let publication = Arc::new(Publication::new(stream.name.clone(), stream.top + 1, data));
        let c = cost(&publication);
        // Every check first: a refused publish changes nothing.
        if stream.size > 0 {
            self.check_history(stream, c)?;
        }
        if key.is_some() {
            self.check_key(stream)?;
        }
        if stream.size > 0 {
            self.make_history_room(stream, c);
            stream.history.push_back((now, publication.clone()));
            stream.history_bytes += c;
            self.metrics.history_bytes.inc_by(c as i64);
        }
        stream.top += 1;
        if let Some(key) = key {
            self.make_key_room(stream);
            let key: Arc<str> = Arc::from(key);
            stream.keys.insert(key.clone(), stream.top);
            stream.key_order.push_back((now, key));
            self.metrics.idempotency_keys.inc();
        }
        self.prune(stream, now);
        let outcome = PublishOutcome {
            offset: stream.top,
            epoch: stream.epoch.to_string(),
            duplicate: false,
            created,
        };
        // Appended to the delivery log under the lock, so offsets arrive in
        // order; the subscribers are woken by the caller once it is released.
        let wakeup = self.delivery.deliver(publication);
        Ok((outcome, wakeup))
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(
        &self,
        channel: &str,
        data: &RawValue,
        key: Option<&str>,
        may_create: bool,
    ) -> Result<PublishOutcome, BrokerError> {
        // Room is made for a stream only a publish that may create one needs.
        if may_create {
            self.make_room(channel);
        }
        let mut map = self.shard(channel).lock();
        let result = self.publish_locked(&mut map, channel, data, key, may_create, Instant::now());
        if result.is_err() {
            // A refused publish to a new channel leaves nothing behind.
            self.drop_if_unused(&mut map, channel);
        }
        drop(map);
        // Fan-out happens outside every broker lock: a channel with
        // thousands of subscribers holds up no other channel's publish.
        result.map(|(outcome, wakeup)| {
            wakeup.ring();
            outcome
        })
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.make_room(channel);
        let mut map = self.shard(channel).lock();
        self.stream_mut(&mut map, channel, Instant::now())?.interest += 1;
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let mut map = self.shard(channel).lock();
        if let Some(stream) = map.get_mut(channel) {
            stream.interest = stream.interest.saturating_sub(1);
            stream.last_active = Instant::now();
        }
        self.drop_if_unused(&mut map, channel);
        Ok(())
    }

    async fn recover(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        budget: usize,
    ) -> Result<Recovery, BrokerError> {
        let now = Instant::now();
        let mut map = self.shard(channel).lock();
        let Some(stream) = map.get_mut(channel) else {
            // Nothing held (not subscribed here): a position at the empty
            // epoch, created nowhere.
            let epoch = self.empty_epoch();
            let recovered = since.is_some_and(|s| s.epoch == epoch && s.offset == 0);
            return Ok(Recovery {
                epoch,
                offset: 0,
                recovered,
                publications: Vec::new(),
            });
        };
        self.prune(stream, now);
        let mut recovery = Recovery {
            epoch: stream.epoch.to_string(),
            offset: stream.top,
            recovered: false,
            publications: Vec::new(),
        };
        let Some(since) = since else {
            return Ok(recovery);
        };
        if since.epoch != *stream.epoch || since.offset > stream.top {
            return Ok(recovery);
        }
        let first_needed = since.offset.saturating_add(1);
        let oldest_held = stream
            .history
            .front()
            .map(|(_, p)| p.offset)
            .unwrap_or(stream.top.saturating_add(1));
        if first_needed >= oldest_held || since.offset == stream.top {
            recovery.recovered = true;
            let mut used = 0usize;
            recovery.publications = stream
                .history
                .iter()
                .filter(|(_, p)| p.offset >= first_needed)
                .take_while(|(_, p)| {
                    let first = used == 0;
                    used = used.saturating_add(p.frame.len());
                    first || used <= budget
                })
                .map(|(_, p)| p.clone())
                .collect();
        }
        Ok(recovery)
    }

    fn presence_add(&self, channel: &str, entry: tether_protocol::PresenceEntry, join_leave: bool) {
        let event = join_leave.then(|| Event::new(channel, &entry, true, 0));
        self.presence.add(channel, entry);
        if let Some(event) = event {
            self.announce(channel, event);
        }
    }

    fn presence_remove(&self, channel: &str, client: &str, join_leave: bool) {
        let gone = self.presence.remove(channel, client);
        if let (Some(entry), true) = (gone, join_leave) {
            self.announce(channel, Event::new(channel, &entry, false, 0));
        }
    }

    async fn presence(&self, channel: &str, max: usize) -> Result<PresenceList, BrokerError> {
        Ok(self.presence.list(channel, max))
    }

    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError> {
        Ok(self.presence.stats(channel))
    }

    fn is_healthy(&self) -> bool {
        true
    }
}
