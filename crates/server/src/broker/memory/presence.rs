//! Presence on one node: who is subscribed to each presence channel, exact
//! and immediate (an entry is there from the join that made it to the leave
//! that ends it, nothing expires).
//!
//! Entries are bounded by subscriptions, which are capped per connection,
//! per address and per node; each channel also counts its clients per user
//! so that `presence_stats` is O(1) however many are present.

use crate::broker::{PresenceList, PresenceStats};
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
};
use tether_protocol::PresenceEntry;

/// Locks are per shard of channels: a large channel's listing holds up
/// only the channels that share its shard.
const SHARDS: usize = 16;

#[derive(Default)]
struct Present {
    /// Client id → its entry.
    clients: HashMap<Box<str>, PresenceEntry>,
    /// User → how many of its clients are present (anonymous ones are not).
    users: HashMap<String, usize>,
}

/// Channel → who is present there.
type Channels = HashMap<Box<str>, Present>;

pub(super) struct Presence {
    shards: Box<[Mutex<Channels>]>,
    hasher: RandomState,
    /// `tether_presence_entries`.
    entries: Gauge,
}

impl Presence {
    pub fn new(entries: Gauge) -> Self {
        Presence {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            entries,
        }
    }

    fn shard(&self, channel: &str) -> &Mutex<Channels> {
        let i = self.hasher.hash_one(channel) as usize % SHARDS;
        &self.shards[i]
    }

    /// Adds (or replaces) the entry of `entry.client` in `channel`.
    pub fn add(&self, channel: &str, entry: PresenceEntry) {
        let mut map = self.shard(channel).lock();
        let present = map.entry(channel.into()).or_default();
        let user = entry.user.clone();
        match present.clients.insert(entry.client.as_str().into(), entry) {
            Some(old) => forget_user(&mut present.users, old.user.as_deref()),
            None => {
                self.entries.inc();
            }
        }
        if let Some(user) = user {
            *present.users.entry(user).or_default() += 1;
        }
    }

    /// Removes `client`'s entry in `channel`, if it has one; returns it.
    pub fn remove(&self, channel: &str, client: &str) -> Option<PresenceEntry> {
        let mut map = self.shard(channel).lock();
        let present = map.get_mut(channel)?;
        let old = present.clients.remove(client);
        if let Some(old) = &old {
            self.entries.dec();
            forget_user(&mut present.users, old.user.as_deref());
        }
        if present.clients.is_empty() {
            map.remove(channel);
        }
        old
    }

    /// Every entry of `channel` (oldest join first), or their count when
    /// there are more than `max`.
    pub fn list(&self, channel: &str, max: usize) -> PresenceList {
        let map = self.shard(channel).lock();
        let Some(present) = map.get(channel) else {
            return PresenceList::Clients(Vec::new());
        };
        if present.clients.len() > max {
            return PresenceList::TooMany(present.clients.len() as u64);
        }
        let mut clients: Vec<PresenceEntry> = present.clients.values().cloned().collect();
        drop(map);
        clients.sort_by(|a, b| (a.joined_at_ms, &a.client).cmp(&(b.joined_at_ms, &b.client)));
        PresenceList::Clients(clients)
    }

    pub fn stats(&self, channel: &str) -> PresenceStats {
        let map = self.shard(channel).lock();
        map.get(channel)
            .map(|p| PresenceStats {
                clients: p.clients.len() as u64,
                users: p.users.len() as u64,
            })
            .unwrap_or_default()
    }
}

fn forget_user(users: &mut HashMap<String, usize>, user: Option<&str>) {
    let Some(user) = user else { return };
    if let Some(n) = users.get_mut(user) {
        *n -= 1;
        if *n == 0 {
            users.remove(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(client: &str, user: Option<&str>, at: u64) -> PresenceEntry {
        PresenceEntry {
            client: client.into(),
            user: user.map(Into::into),
            info: None,
            joined_at_ms: at,
        }
    }

    fn clients(list: PresenceList) -> Vec<String> {
        match list {
            PresenceList::Clients(c) => c.into_iter().map(|e| e.client).collect(),
            PresenceList::TooMany(n) => panic!("{n} present"),
        }
    }

    #[test]
    fn three_clients_of_one_user_are_one_user() {
        let p = Presence::new(Gauge::default());
        p.add("c", entry("a", Some("ann"), 3));
        p.add("c", entry("b", Some("ann"), 1));
        p.add("c", entry("d", Some("ann"), 2));
        p.add("c", entry("e", Some("bob"), 4));
        p.add("c", entry("f", None, 5));
        p.add("c", entry("g", None, 6));
        assert_eq!(
            p.stats("c"),
            PresenceStats {
                clients: 6,
                users: 2
            },
            "anonymous clients are no user"
        );
        assert_eq!(clients(p.list("c", 10)), ["b", "d", "a", "e", "f", "g"]);
        assert_eq!(p.stats("other"), PresenceStats::default());
        assert_eq!(p.entries.get(), 6);
    }

    #[test]
    fn removing_the_last_client_of_a_user_removes_the_user_and_the_channel() {
        let p = Presence::new(Gauge::default());
        p.add("c", entry("a", Some("ann"), 1));
        p.add("c", entry("b", Some("ann"), 2));
        p.remove("c", "a");
        assert_eq!(p.stats("c").users, 1);
        p.remove("c", "b");
        p.remove("c", "b");
        assert_eq!(p.stats("c"), PresenceStats::default());
        assert_eq!(p.entries.get(), 0, "a second remove changes nothing");
        assert!(
            p.shard("c").lock().is_empty(),
            "an empty channel is dropped"
        );
    }

    #[test]
    fn a_repeated_add_replaces_the_entry() {
        let p = Presence::new(Gauge::default());
        p.add("c", entry("a", Some("ann"), 1));
        p.add("c", entry("a", Some("bob"), 2));
        assert_eq!(
            p.stats("c"),
            PresenceStats {
                clients: 1,
                users: 1
            }
        );
        assert_eq!(p.entries.get(), 1);
        p.remove("c", "a");
        assert_eq!(p.stats("c"), PresenceStats::default());
    }

    #[test]
    fn more_than_the_maximum_answers_the_count() {
        let p = Presence::new(Gauge::default());
        for i in 0..5 {
            p.add("c", entry(&format!("c{i}"), None, i));
        }
        assert_eq!(p.list("c", 4), PresenceList::TooMany(5));
        assert_eq!(clients(p.list("c", 5)).len(), 5);
    }
}
