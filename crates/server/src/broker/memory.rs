//! The embedded one-node broker: channel streams in memory.
//!
//! Each channel has a stream: an epoch (a random id for this generation of
//! its history), the last offset, the recent publications (bounded by
//! `history.size` and `history.ttl`) and the idempotency keys seen recently.
//! A stream that has been idle for `history.meta_ttl` with no subscriber is
//! forgotten; the next publish starts a new epoch at offset 1, and clients
//! recovering from the old epoch are told `recovered: false`.

use super::{Broker, BrokerError, Delivery, Publication, PublishOutcome, Recovery};
use crate::config::HistoryConfig;
use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasher, RandomState},
    sync::Arc,
    time::{Duration, Instant},
};
use tether_protocol::StreamPosition;

/// How long a publish's idempotency key is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(300);
/// Most idempotency keys remembered per channel (oldest forgotten first).
const MAX_KEYS_PER_CHANNEL: usize = 10_000;
const SHARDS: usize = 64;

struct Stream {
    /// The channel name, shared by every publication on it.
    name: Arc<str>,
    epoch: Arc<str>,
    top: u64,
    history: VecDeque<(Instant, Arc<Publication>)>,
    keys: HashMap<String, u64>,
    key_order: VecDeque<(Instant, String)>,
    last_active: Instant,
    /// Local subscriber interest; a stream with interest is never forgotten.
    interest: usize,
}

impl Stream {
    fn new(name: Arc<str>, now: Instant) -> Self {
        Stream {
            name,
            epoch: new_epoch().into(),
            top: 0,
            history: VecDeque::new(),
            keys: HashMap::new(),
            key_order: VecDeque::new(),
            last_active: now,
            interest: 0,
        }
    }

    fn prune(&mut self, now: Instant, cfg: &HistoryConfig) {
        while let Some((at, _)) = self.history.front() {
            if now.duration_since(*at) >= cfg.ttl || self.history.len() > cfg.size {
                self.history.pop_front();
            } else {
                break;
            }
        }
        while let Some((at, _)) = self.key_order.front() {
            if now.duration_since(*at) >= IDEMPOTENCY_WINDOW
                || self.key_order.len() > MAX_KEYS_PER_CHANNEL
            {
                if let Some((_, key)) = self.key_order.pop_front() {
                    self.keys.remove(&key);
                }
            } else {
                break;
            }
        }
    }
}

/// A fresh random epoch id.
pub fn new_epoch() -> String {
    format!("{:016x}", fastrand::u64(..))
}

type StreamMap = HashMap<Arc<str>, Stream>;

pub struct MemoryBroker {
    shards: Box<[Mutex<StreamMap>]>,
    hasher: RandomState,
    cfg: HistoryConfig,
    delivery: Arc<dyn Delivery>,
}

impl MemoryBroker {
    pub fn new(cfg: HistoryConfig, delivery: Arc<dyn Delivery>) -> Self {
        MemoryBroker {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            cfg,
            delivery,
        }
    }

    fn shard(&self, channel: &str) -> &Mutex<StreamMap> {
        let i = (self.hasher.hash_one(channel) as usize) % self.shards.len();
        &self.shards[i]
    }

    /// Forgets streams idle for longer than `meta_ttl` and drops expired
    /// history everywhere; called periodically by the node.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut map = shard.lock();
            map.retain(|_, s| {
                s.prune(now, &self.cfg);
                s.interest > 0 || now.duration_since(s.last_active) < self.cfg.meta_ttl
            });
        }
    }

    /// The channel's stream (created when new), with expired history pruned
    /// and marked active. The name is allocated only for a new stream: this
    /// runs on every publish.
    fn stream_mut<'m>(
        &self,
        map: &'m mut StreamMap,
        channel: &str,
        now: Instant,
    ) -> Result<&'m mut Stream, BrokerError> {
        if !map.contains_key(channel) {
            let name: Arc<str> = Arc::from(channel);
            map.insert(name.clone(), Stream::new(name, now));
        }
        let stream = map
            .get_mut(channel)
            .ok_or_else(|| BrokerError::Unavailable("channel stream vanished".into()))?;
        stream.prune(now, &self.cfg);
        stream.last_active = now;
        Ok(stream)
    }

    /// Number of channel streams held (for tests and stats).
    pub fn stream_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
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
        let now = Instant::now();
        let mut map = self.shard(channel).lock();
        let stream = self.stream_mut(&mut map, channel, now)?;
        if let Some(key) = key {
            if let Some(&offset) = stream.keys.get(key) {
                return Ok(PublishOutcome {
                    offset,
                    epoch: stream.epoch.to_string(),
                    duplicate: true,
                });
            }
        }
        stream.top += 1;
        let publication = Arc::new(Publication::new(stream.name.clone(), stream.top, data));
        if self.cfg.size > 0 {
            stream.history.push_back((now, publication.clone()));
            stream.prune(now, &self.cfg);
        }
        if let Some(key) = key {
            stream.keys.insert(key.to_owned(), stream.top);
            stream.key_order.push_back((now, key.to_owned()));
        }
        let outcome = PublishOutcome {
            offset: stream.top,
            epoch: stream.epoch.to_string(),
            duplicate: false,
        };
        // Delivered under the stream lock so subscribers see offsets in order.
        self.delivery.deliver(publication);
        Ok(outcome)
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
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
        Ok(())
    }

    async fn recover(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
    ) -> Result<Recovery, BrokerError> {
        let now = Instant::now();
        let mut map = self.shard(channel).lock();
        let stream = self.stream_mut(&mut map, channel, now)?;
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
        let first_needed = since.offset + 1;
        let oldest_held = stream
            .history
            .front()
            .map(|(_, p)| p.offset)
            .unwrap_or(stream.top + 1);
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
        let sink = Arc::new(Collect::default());
        let cfg = HistoryConfig {
            size,
            ttl,
            meta_ttl: Duration::from_secs(3600),
            ..HistoryConfig::default()
        };
        (MemoryBroker::new(cfg, sink.clone()), sink)
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
