//! The hub: which local connections subscribe to which channel.
//!
//! A sharded registry mapping channel names to their delivery logs
//! ([`ChannelLog`]). Delivering a publication appends it once to the
//! channel's log; the subscribers are woken by the broker after it has
//! released its locks ([`Wakeup::ring`]), and each connection then writes
//! from its own position. Nothing is copied per connection, and a slow
//! reader never holds up the publisher or anyone else.

use crate::{
    broker::{Delivery, Publication},
    channel_log::{ChannelLog, Cursor, Wakeup, Window},
    doorbell::Doorbell,
};
use parking_lot::RwLock;
use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::Arc,
};

const SHARDS: usize = 64;

type ChannelMap = HashMap<Arc<str>, Arc<ChannelLog>>;

pub struct Hub {
    shards: Box<[RwLock<ChannelMap>]>,
    hasher: RandomState,
    window: Window,
}

impl Hub {
    /// `window`: how far a subscriber may fall behind its channel.
    pub fn new(window: Window) -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            window,
        }
    }

    fn shard(&self, channel: &str) -> &RwLock<ChannelMap> {
        &self.shards[(self.hasher.hash_one(channel) as usize) % self.shards.len()]
    }

    /// Subscribes a connection; returns its cursor, and whether it is the
    /// channel's first subscriber on this node.
    pub fn add(&self, channel: &str, conn_id: u64, bell: Arc<Doorbell>) -> (Arc<Cursor>, bool) {
        let mut map = self.shard(channel).write();
        let log = map
            .entry(Arc::from(channel))
            .or_insert_with_key(|name| ChannelLog::new(name.clone(), self.window))
            .clone();
        let cursor = log.join(conn_id, bell);
        (cursor, log.subscriber_count() == 1)
    }

    /// Unsubscribes a connection; returns the channel's log when no
    /// subscriber is left here (the caller gives back the node's interest
    /// at the broker if it was live).
    pub fn remove(&self, channel: &str, conn_id: u64) -> Option<Arc<ChannelLog>> {
        let mut map = self.shard(channel).write();
        let log = map.get(channel)?;
        if log.leave(conn_id) == 0 {
            map.remove(channel)
        } else {
            None
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
                    .map(|(k, v)| (k.to_string(), v.subscriber_count()))
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
    fn reset(&self, channel: &str) -> Wakeup {
        let log = self.shard(channel).read().get(channel).cloned();
        match log {
            Some(log) => log.reset(),
            None => Wakeup::none(),
        }
    }

    fn deliver(&self, publication: Arc<Publication>) -> Wakeup {
        let log = self
            .shard(&publication.channel)
            .read()
            .get(&publication.channel)
            .cloned();
        match log {
            Some(log) => log.append(publication),
            None => Wakeup::none(),
        }
    }
}
