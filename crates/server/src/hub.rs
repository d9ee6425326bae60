//! The hub: which local connections subscribe to which channel.
//!
//! A sharded registry mapping channel names to their delivery logs
//! ([`ChannelLog`]). Delivering a publication appends it once to the
//! channel's log; the subscribers are woken by the broker after it has
//! released its locks ([`Wakeup::ring`]), and each connection then writes
//! from its own position. Nothing is copied per connection, and a slow
//! reader never holds up the publisher or anyone else.
//!
//! The hub holds at most `limits.max_channels` channels, whatever the
//! broker: each is a log here and, with Redis, a subscription there.

use crate::{
    broker::{Delivery, Publication},
    channel_log::{ChannelLog, Cursor, Wakeup, Window},
    doorbell::Doorbell,
};
use parking_lot::RwLock;
use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

const SHARDS: usize = 64;

type ChannelMap = HashMap<Arc<str>, Arc<ChannelLog>>;

pub struct Hub {
    shards: Box<[RwLock<ChannelMap>]>,
    hasher: RandomState,
    window: Window,
    max_channels: usize,
    /// Channels held, over every shard.
    channels: AtomicUsize,
}

/// The hub holds its maximum of channels (the value): a subscribe that
/// would add one is refused before anything is made at the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubFull(pub usize);

impl Hub {
    /// `window`: how far a subscriber may fall behind its channel;
    /// `max_channels`: channels with a local subscriber held at most.
    pub fn new(window: Window, max_channels: usize) -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            window,
            max_channels,
            channels: AtomicUsize::new(0),
        }
    }

    fn shard(&self, channel: &str) -> &RwLock<ChannelMap> {
        &self.shards[(self.hasher.hash_one(channel) as usize) % self.shards.len()]
    }

    /// Subscribes a connection; returns its cursor, and whether it is the
    /// channel's first subscriber on this node. A channel the hub does not
    /// hold yet is refused at `max_channels`.
    pub fn add(
        &self,
        channel: &str,
        conn_id: u64,
        bell: Arc<Doorbell>,
    ) -> Result<(Arc<Cursor>, bool), HubFull> {
        let mut map = self.shard(channel).write();
        let log = match map.get(channel) {
            Some(log) => log.clone(),
            None => {
                // Counted before inserting, under this shard's lock; other
                // shards race on the counter only, which cannot overshoot.
                if self.channels.fetch_add(1, Ordering::AcqRel) >= self.max_channels {
                    self.channels.fetch_sub(1, Ordering::AcqRel);
                    return Err(HubFull(self.max_channels));
                }
                let name: Arc<str> = Arc::from(channel);
                let log = ChannelLog::new(name.clone(), self.window);
                map.insert(name, log.clone());
                log
            }
        };
        let cursor = log.join(conn_id, bell);
        Ok((cursor, log.subscriber_count() == 1))
    }

    /// Whether the hub holds `channel` (it has a local subscriber).
    pub fn contains(&self, channel: &str) -> bool {
        self.shard(channel).read().contains_key(channel)
    }

    /// Unsubscribes a connection; returns the channel's log when no
    /// subscriber is left here (the caller gives back the node's interest
    /// at the broker if it was live).
    pub fn remove(&self, channel: &str, conn_id: u64) -> Option<Arc<ChannelLog>> {
        let mut map = self.shard(channel).write();
        let log = map.get(channel)?;
        if log.leave(conn_id) == 0 {
            let removed = map.remove(channel);
            if removed.is_some() {
                self.channels.fetch_sub(1, Ordering::AcqRel);
            }
            removed
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
        self.channels.load(Ordering::Acquire)
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

    fn deliver_event(&self, channel: &str, event: crate::channel_log::Event) -> Wakeup {
        let log = self.shard(channel).read().get(channel).cloned();
        match log {
            Some(log) => log.append_event(event),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_channel_past_the_cap_is_refused_and_existing_ones_join() {
        let window = Window {
            publications: 4,
            bytes: 1024,
        };
        let hub = Hub::new(window, 2);
        let bell = Arc::new(Doorbell::new());
        assert!(hub.add("a", 1, bell.clone()).is_ok_and(|(_, first)| first));
        assert!(hub.add("b", 1, bell.clone()).is_ok());
        assert_eq!(hub.add("c", 1, bell.clone()).err(), Some(HubFull(2)));
        assert!(hub.add("a", 2, bell.clone()).is_ok_and(|(_, first)| !first));
        assert_eq!(hub.channel_count(), 2);
        assert!(hub.remove("a", 1).is_none(), "a still has a subscriber");
        assert!(hub.remove("a", 2).is_some());
        assert_eq!(hub.channel_count(), 1);
        assert!(hub.add("c", 1, bell).is_ok(), "room again");
    }
}
