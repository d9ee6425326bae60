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
//!   and bytes (`history.max_channel_bytes`), oldest first; in all by
//!   `history.max_bytes` — a channel may make room by dropping its own oldest
//!   entries, never another channel's; a publish that cannot fit is refused.
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

use super::{Broker, BrokerError, Delivery, Publication, PublishOutcome, Recovery};
use crate::{config::HistoryConfig, metrics::Metrics};
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

/// Most idempotency keys remembered per channel (oldest forgotten first).
pub const MAX_KEYS_PER_CHANNEL: usize = 10_000;
/// Bytes a history entry costs beyond its frame (queue slot, Arc, struct).
const ENTRY_OVERHEAD: usize = 96;
/// At the channel cap with nothing to forget, look again at most this often
/// (a scan visits every stream).
const EVICTION_RESCAN: Duration = Duration::from_secs(1);
const SHARDS: usize = 64;

/// The memory a history entry is charged for.
fn cost(p: &Publication) -> usize {
    p.frame.len() + p.channel.len() + ENTRY_OVERHEAD
}

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
}

impl Stream {
    /// Whether forgetting this stream loses nothing a client could recover.
    fn is_idle(&self) -> bool {
        self.interest == 0 && self.history.is_empty() && self.keys.is_empty()
    }
}

/// A fresh random id.
pub fn new_epoch() -> String {
    format!("{:016x}", fastrand::u64(..))
}

type StreamMap = HashMap<Arc<str>, Stream>;

pub struct MemoryBroker {
    shards: Box<[Mutex<StreamMap>]>,
    hasher: RandomState,
    cfg: HistoryConfig,
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
            max_channels,
            delivery,
            metrics,
            boot: format!("{:012x}", fastrand::u64(..) >> 16),
            generation: AtomicU64::new(0),
            barren_scan: Mutex::new(None),
        }
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

    /// Drops expired, over-count and over-bytes history and expired or
    /// over-cap keys, keeping the node-wide gauges in step.
    fn prune(&self, s: &mut Stream, now: Instant) {
        let cfg = &self.cfg;
        while let Some((at, p)) = s.history.front() {
            let over = s.history.len() > cfg.size || s.history_bytes > cfg.max_channel_bytes;
            if !over && now.saturating_duration_since(*at) < cfg.ttl {
                break;
            }
            let c = cost(p);
            s.history.pop_front();
            s.history_bytes -= c;
            self.metrics.history_bytes.dec_by(c as i64);
        }
        while let Some((at, _)) = s.key_order.front() {
            let expired = now.saturating_duration_since(*at) >= cfg.idempotency_window;
            if !expired && s.key_order.len() <= MAX_KEYS_PER_CHANNEL {
                break;
            }
            if !expired {
                self.metrics.idempotency_evictions.inc();
            }
            self.forget_oldest_key(s);
        }
    }

    fn forget_oldest_key(&self, s: &mut Stream) -> bool {
        match s.key_order.pop_front() {
            Some((_, key)) => {
                s.keys.remove(&key);
                self.metrics.idempotency_keys.dec();
                true
            }
            None => false,
        }
    }

    /// Forgets a stream entirely, releasing what it was charged for.
    fn release(&self, s: Stream) {
        self.metrics.channel_streams.dec();
        self.metrics.history_bytes.dec_by(s.history_bytes as i64);
        self.metrics
            .idempotency_keys
            .dec_by(s.key_order.len() as i64);
        if s.top > 0 {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn at_channel_cap(&self) -> bool {
        self.metrics.channel_streams.get() >= self.max_channels as i64
    }

    /// At the channel cap, forgets idle streams (no subscriber, no history)
    /// so that a new channel fits. Takes one shard lock at a time; never
    /// called with a shard locked.
    fn make_room(&self, channel: &str) {
        if !self.at_channel_cap() || self.shard(channel).lock().contains_key(channel) {
            return;
        }
        let now = Instant::now();
        {
            let mut last = self.barren_scan.lock();
            if last.is_some_and(|at| now.saturating_duration_since(at) < EVICTION_RESCAN) {
                return;
            }
            *last = None;
        }
        let mut freed = 0usize;
        for shard in self.shards.iter() {
            let mut map = shard.lock();
            let idle: Vec<Arc<str>> = map
                .iter_mut()
                .filter_map(|(k, s)| {
                    self.prune(s, now);
                    s.is_idle().then(|| k.clone())
                })
                .collect();
            for k in idle {
                if let Some(s) = map.remove(&k) {
                    self.release(s);
                    freed += 1;
                }
            }
        }
        if freed == 0 {
            *self.barren_scan.lock() = Some(now);
        }
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
                self.release(s);
            }
        }
    }

    /// Forgets streams idle for longer than `meta_ttl` and drops expired
    /// history everywhere; called periodically by the node.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut map = shard.lock();
            let gone: Vec<Arc<str>> = map
                .iter_mut()
                .filter_map(|(k, s)| {
                    self.prune(s, now);
                    let stale = s.interest == 0
                        && (s.top == 0
                            || now.saturating_duration_since(s.last_active) >= self.cfg.meta_ttl);
                    stale.then(|| k.clone())
                })
                .collect();
            for k in gone {
                if let Some(s) = map.remove(&k) {
                    self.release(s);
                }
            }
        }
    }

    /// Number of channel streams held (for tests and stats).
    pub fn stream_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Checks that a publication of `c` bytes fits the node's history budget,
    /// dropping this stream's own oldest entries if that makes it fit.
    fn fit_history(&self, stream: &mut Stream, c: usize) -> Result<(), BrokerError> {
        let max = self.cfg.max_bytes;
        let used = self.metrics.history_bytes.get().max(0) as usize;
        if used.saturating_sub(stream.history_bytes) + c > max {
            self.metrics.refusal("history_full");
            return Err(BrokerError::OverCapacity(format!(
                "the server's history is full ({max} bytes); retry later"
            )));
        }
        while self.metrics.history_bytes.get().max(0) as usize + c > max {
            let Some((_, p)) = stream.history.pop_front() else {
                break;
            };
            let freed = cost(&p);
            stream.history_bytes -= freed;
            self.metrics.history_bytes.dec_by(freed as i64);
        }
        Ok(())
    }

    /// Checks that one more idempotency key fits, forgetting this stream's
    /// own oldest key if the node-wide cap is reached.
    fn fit_key(&self, stream: &mut Stream) -> Result<(), BrokerError> {
        if self.metrics.idempotency_keys.get() < self.cfg.idempotency_max_keys as i64 {
            return Ok(());
        }
        if self.forget_oldest_key(stream) {
            self.metrics.idempotency_evictions.inc();
            return Ok(());
        }
        self.metrics.refusal("idempotency_keys_full");
        Err(BrokerError::OverCapacity(format!(
            "the server remembers its maximum of {} idempotency keys; retry later",
            self.cfg.idempotency_max_keys
        )))
    }

    fn publish_locked(
        &self,
        map: &mut StreamMap,
        channel: &str,
        data: &RawValue,
        key: Option<&str>,
        now: Instant,
    ) -> Result<PublishOutcome, BrokerError> {
        let stream = self.stream_mut(map, channel, now)?;
        if let Some(key) = key {
            if let Some(&offset) = stream.keys.get(key) {
                return Ok(PublishOutcome {
                    offset,
                    epoch: stream.epoch.to_string(),
                    duplicate: true,
                });
            }
            self.fit_key(stream)?;
        }
        let publication = Arc::new(Publication::new(stream.name.clone(), stream.top + 1, data));
        if self.cfg.size > 0 {
            let c = cost(&publication);
            self.fit_history(stream, c)?;
            stream.history.push_back((now, publication.clone()));
            stream.history_bytes += c;
            self.metrics.history_bytes.inc_by(c as i64);
        }
        stream.top += 1;
        if let Some(key) = key {
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
        };
        // Delivered under the stream lock so subscribers see offsets in order.
        self.delivery.deliver(publication);
        Ok(outcome)
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(
        &self,
        channel: &str,
        data: &RawValue,
        key: Option<&str>,
    ) -> Result<PublishOutcome, BrokerError> {
        self.make_room(channel);
        let mut map = self.shard(channel).lock();
        let result = self.publish_locked(&mut map, channel, data, key, Instant::now());
        if result.is_err() {
            // A refused publish to a new channel leaves nothing behind.
            self.drop_if_unused(&mut map, channel);
        }
        result
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
            recovery.publications = stream
                .history
                .iter()
                .filter(|(_, p)| p.offset >= first_needed)
                .map(|(_, p)| p.clone())
                .collect();
        }
        Ok(recovery)
    }

    fn is_healthy(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<u64>>);
    impl Delivery for Collect {
        fn deliver(&self, p: Arc<Publication>) {
            self.0.lock().push(p.offset);
        }
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap_or_else(|_| unreachable!())
    }

    fn broker(size: usize, ttl: Duration) -> (MemoryBroker, Arc<Collect>) {
        broker_with(
            HistoryConfig {
                size,
                ttl,
                meta_ttl: Duration::from_secs(3600),
                ..HistoryConfig::default()
            },
            1000,
        )
    }

    fn broker_with(cfg: HistoryConfig, max_channels: usize) -> (MemoryBroker, Arc<Collect>) {
        let sink = Arc::new(Collect::default());
        let b = MemoryBroker::new(cfg, max_channels, sink.clone(), Arc::new(Metrics::new()));
        (b, sink)
    }

    fn ok<T, E>(r: Result<T, E>) -> T {
        r.unwrap_or_else(|_| unreachable!())
    }

    #[tokio::test]
    async fn an_unused_subscription_leaves_nothing_and_keeps_its_epoch() {
        let (b, _) = broker(10, Duration::from_secs(60));
        ok(b.subscribe("quiet").await);
        let first = ok(b.recover("quiet", None).await);
        ok(b.unsubscribe("quiet").await);
        assert_eq!(b.stream_count(), 0);
        assert_eq!(b.metrics.channel_streams.get(), 0);
        // Back later: same epoch at offset 0, so recovering from 0 is exact.
        ok(b.subscribe("quiet").await);
        let since = StreamPosition {
            epoch: first.epoch.clone(),
            offset: 0,
        };
        let again = ok(b.recover("quiet", Some(&since)).await);
        assert!(again.recovered);
        assert_eq!(again.epoch, first.epoch);
        // Recovering on a channel nobody holds creates nothing.
        ok(b.recover("ghost", Some(&since)).await);
        assert_eq!(b.stream_count(), 1);
    }

    #[tokio::test]
    async fn forgetting_a_channel_with_publications_changes_every_new_epoch() {
        let (b, _) = broker(10, Duration::from_millis(1));
        ok(b.subscribe("a").await);
        let empty = ok(b.recover("a", None).await).epoch;
        ok(b.unsubscribe("a").await);
        ok(b.publish("b", &raw("1"), None).await);
        std::thread::sleep(Duration::from_millis(5));
        // "b" has no history left and no subscriber: the cap may forget it.
        let mut cfg = b.cfg.clone();
        cfg.meta_ttl = Duration::ZERO;
        let (b2, _) = broker_with(cfg, 1000);
        ok(b2.publish("b", &raw("1"), None).await);
        let before = b2.empty_epoch();
        std::thread::sleep(Duration::from_millis(5));
        b2.sweep();
        assert_eq!(b2.stream_count(), 0);
        assert_ne!(
            b2.empty_epoch(),
            before,
            "a forgotten offset must change the epoch"
        );
        assert_ne!(empty, b2.empty_epoch());
    }

    #[tokio::test]
    async fn channel_cap_forgets_idle_streams_then_refuses() {
        let cfg = HistoryConfig {
            ttl: Duration::from_millis(1),
            ..HistoryConfig::default()
        };
        let (b, _) = broker_with(cfg, 3);
        for c in ["a", "b", "c"] {
            ok(b.publish(c, &raw("1"), None).await);
        }
        std::thread::sleep(Duration::from_millis(5));
        // Their history expired: room is made by forgetting them.
        ok(b.publish("d", &raw("1"), None).await);
        assert!(b.stream_count() <= 3);
        // Subscribed channels cannot be forgotten: at the cap, refuse.
        let (b, _) = broker_with(HistoryConfig::default(), 2);
        ok(b.subscribe("x").await);
        ok(b.subscribe("y").await);
        assert!(matches!(
            b.subscribe("z").await,
            Err(BrokerError::OverCapacity(_))
        ));
        assert!(matches!(
            b.publish("z", &raw("1"), None).await,
            Err(BrokerError::OverCapacity(_))
        ));
        assert_eq!(b.stream_count(), 2);
        // Existing channels keep working.
        assert_eq!(ok(b.publish("x", &raw("1"), None).await).offset, 1);
    }

    #[tokio::test]
    async fn history_bytes_are_capped_per_channel_and_in_all() {
        let cfg = HistoryConfig {
            size: 1000,
            max_channel_bytes: 2_000,
            max_bytes: 3_000,
            ..HistoryConfig::default()
        };
        let (b, _) = broker_with(cfg, 100);
        let data = raw(&format!("\"{}\"", "x".repeat(300)));
        for _ in 0..20 {
            ok(b.publish("a", &data, None).await);
        }
        let held = b.metrics.history_bytes.get();
        assert!(held > 0 && held <= 2_000, "per-channel cap: {held}");
        // A second channel takes the rest of the node's budget, making room
        // in its own history as it goes.
        for _ in 0..20 {
            ok(b.publish("b", &data, None).await);
            assert!(b.metrics.history_bytes.get() <= 3_000);
        }
        // A third channel has no history of its own to give: refused, and
        // the refused publish consumed no offset and left no stream.
        let streams = b.stream_count();
        assert!(matches!(
            b.publish("c", &data, None).await,
            Err(BrokerError::OverCapacity(_))
        ));
        assert_eq!(b.stream_count(), streams);
        assert_eq!(ok(b.recover("c", None).await).offset, 0);
        // The channels with history keep publishing.
        let before = ok(b.recover("a", None).await).offset;
        assert_eq!(ok(b.publish("a", &data, None).await).offset, before + 1);
    }

    #[tokio::test]
    async fn idempotency_keys_are_capped_and_evictions_counted() {
        let cfg = HistoryConfig {
            idempotency_max_keys: 3,
            ..HistoryConfig::default()
        };
        let (b, _) = broker_with(cfg, 100);
        for k in ["k1", "k2", "k3"] {
            ok(b.publish("a", &raw("1"), Some(k)).await);
        }
        // A fourth key on the same channel forces out its oldest.
        ok(b.publish("a", &raw("1"), Some("k4")).await);
        assert_eq!(b.metrics.idempotency_evictions.get(), 1);
        assert_eq!(b.metrics.idempotency_keys.get(), 3);
        // A channel with no keys of its own cannot take another's: refused.
        assert!(matches!(
            b.publish("b", &raw("1"), Some("x")).await,
            Err(BrokerError::OverCapacity(_))
        ));
        // Keys still inside the window and the cap are honoured.
        assert!(ok(b.publish("a", &raw("1"), Some("k4")).await).duplicate);
    }

    #[tokio::test]
    async fn offsets_start_at_one_without_gaps_and_are_delivered() {
        let (b, sink) = broker(10, Duration::from_secs(60));
        for i in 1..=5 {
            let out = b
                .publish("c", &raw("1"), None)
                .await
                .unwrap_or_else(|_| unreachable!());
            assert_eq!(out.offset, i);
        }
        assert_eq!(*sink.0.lock(), vec![1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn recovery_returns_exactly_the_missed_publications() {
        let (b, _) = broker(10, Duration::from_secs(60));
        let pos = b
            .recover("c", None)
            .await
            .unwrap_or_else(|_| unreachable!());
        for _ in 0..4 {
            b.publish("c", &raw("{\"a\":1}"), None)
                .await
                .unwrap_or_else(|_| unreachable!());
        }
        let since = StreamPosition {
            epoch: pos.epoch.clone(),
            offset: 2,
        };
        let r = b
            .recover("c", Some(&since))
            .await
            .unwrap_or_else(|_| unreachable!());
        assert!(r.recovered);
        assert_eq!(
            r.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(r.publications[0].data(), "{\"a\":1}");
        let wrong_epoch = StreamPosition {
            epoch: "other".into(),
            offset: 2,
        };
        assert!(
            !b.recover("c", Some(&wrong_epoch))
                .await
                .unwrap_or_else(|_| unreachable!())
                .recovered
        );
    }

    #[tokio::test]
    async fn recovery_fails_when_history_was_trimmed() {
        let (b, _) = broker(2, Duration::from_secs(60));
        let epoch = b
            .recover("c", None)
            .await
            .unwrap_or_else(|_| unreachable!())
            .epoch;
        for _ in 0..5 {
            b.publish("c", &raw("1"), None)
                .await
                .unwrap_or_else(|_| unreachable!());
        }
        let lost = StreamPosition {
            epoch: epoch.clone(),
            offset: 1,
        };
        assert!(
            !b.recover("c", Some(&lost))
                .await
                .unwrap_or_else(|_| unreachable!())
                .recovered
        );
        let fine = StreamPosition { epoch, offset: 3 };
        let r = b
            .recover("c", Some(&fine))
            .await
            .unwrap_or_else(|_| unreachable!());
        assert!(r.recovered);
        assert_eq!(r.publications.len(), 2);
    }

    #[tokio::test]
    async fn idempotency_key_stores_once() {
        let (b, sink) = broker(10, Duration::from_secs(60));
        let a = b
            .publish("c", &raw("1"), Some("k"))
            .await
            .unwrap_or_else(|_| unreachable!());
        let again = b
            .publish("c", &raw("1"), Some("k"))
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(a.offset, again.offset);
        assert!(again.duplicate);
        assert_eq!(sink.0.lock().len(), 1);
    }
}
