//! The hub: which local connections subscribe to which channel.
//!
//! A sharded registry (a read-mostly lock per shard) mapping channel names to
//! the send queues of subscribed connections. Delivery never blocks: each
//! queue is bounded, and a connection whose queue is full is told to close
//! with 4004 (slow consumer) instead of holding up the publisher or growing
//! memory.

use crate::broker::{Delivery, Publication};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Pushed};
use parking_lot::RwLock;
use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::Arc,
};

const SHARDS: usize = 64;

/// A subscribed connection, as the hub sees it: its outbox.
pub type Subscriber = Arc<Outbox>;

type ChannelMap = HashMap<Arc<str>, HashMap<u64, Subscriber>>;

pub struct Hub {
    shards: Box<[RwLock<ChannelMap>]>,
    hasher: RandomState,
    metrics: Arc<Metrics>,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            metrics,
        }
    }

    fn shard(&self, channel: &str) -> &RwLock<ChannelMap> {
        &self.shards[(self.hasher.hash_one(channel) as usize) % self.shards.len()]
    }

    /// Adds a subscriber; returns true if it is the channel's first on this node.
    pub fn add(&self, channel: &str, conn_id: u64, subscriber: Subscriber) -> bool {
        let mut map = self.shard(channel).write();
        let subs = map.entry(Arc::from(channel)).or_default();
        subs.insert(conn_id, subscriber);
        subs.len() == 1
    }

    /// Removes a subscriber; returns true if the channel has none left here.
    pub fn remove(&self, channel: &str, conn_id: u64) -> bool {
        let mut map = self.shard(channel).write();
        let Some(subs) = map.get_mut(channel) else {
            return false;
        };
        if subs.remove(&conn_id).is_none() {
            return false;
        }
        if subs.is_empty() {
            map.remove(channel);
            true
        } else {
            false
        }
    }

    /// Channels with at least one local subscriber, and how many each has.
    pub fn channel_counts(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.read()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.len()))
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out
    }

    pub fn channel_count(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

impl Delivery for Hub {
    fn deliver(&self, publication: Arc<Publication>) {
        let map = self.shard(&publication.channel).read();
        let Some(subs) = map.get(&publication.channel) else {
            return;
        };
        for outbox in subs.values() {
            // A dropped push means the connection is closing and will
            // unsubscribe itself.
            if outbox.push(publication.clone()) == Pushed::Overflowed {
                self.metrics.slow_consumers.inc();
            }
        }
    }
}
