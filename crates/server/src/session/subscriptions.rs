//! A session's subscriptions: its cursors in the channels' logs, found by
//! channel name (each cursor's position is the highest offset already sent,
//! or covered by its `subscribed` reply, so nothing is written twice).
//!
//! A sorted `Vec` of the cursors themselves, keyed by the name their log
//! already holds: one subscription costs one pointer (a hash map cost 128
//! bytes of table plus a copy of the name per connection), lookups are a
//! binary search, and a session holds at most `limits.max_subscriptions`.

use crate::channel_log::Cursor;
use std::sync::Arc;

#[derive(Default)]
pub(super) struct Subscriptions(Vec<Arc<Cursor>>);

impl Subscriptions {
    fn find(&self, channel: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|c| (*c.log.name).cmp(channel))
    }

    pub fn get(&self, channel: &str) -> Option<&Arc<Cursor>> {
        self.find(channel).ok().map(|i| &self.0[i])
    }

    pub fn contains_key(&self, channel: &str) -> bool {
        self.find(channel).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds (or replaces) the subscription of the cursor's channel.
    pub fn insert(&mut self, cursor: Arc<Cursor>) {
        match self.find(&cursor.log.name) {
            Ok(i) => self.0[i] = cursor,
            Err(i) => {
                if self.0.capacity() == 0 {
                    // Most connections hold one subscription: no spare room.
                    self.0.reserve_exact(1);
                }
                self.0.insert(i, cursor);
            }
        }
    }

    pub fn remove(&mut self, channel: &str) -> Option<Arc<Cursor>> {
        let i = self.find(channel).ok()?;
        let cursor = self.0.remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(cursor)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Cursor>)> {
        self.0.iter().map(|c| (&c.log.name, c))
    }

    /// Removes every subscription, returning their channel names.
    pub fn drain(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|c| c.log.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        channel_log::{ChannelLog, Window},
        doorbell::Doorbell,
    };

    fn cursor(name: &str) -> Arc<Cursor> {
        let log = ChannelLog::new(
            Arc::from(name),
            Window {
                publications: 4,
                bytes: 1024,
            },
        );
        log.join(1, Arc::new(Doorbell::new()))
    }

    #[test]
    fn finds_inserts_and_removes_by_name() {
        let mut subs = Subscriptions::default();
        for name in ["m", "a", "z", "b"] {
            subs.insert(cursor(name));
        }
        assert_eq!(subs.len(), 4);
        let names: Vec<&str> = subs.iter().map(|(n, _)| &**n).collect();
        assert_eq!(names, ["a", "b", "m", "z"], "kept sorted");
        assert!(subs.contains_key("m") && !subs.contains_key("c"));
        let replaced = cursor("m");
        subs.insert(replaced.clone());
        assert_eq!(
            subs.len(),
            4,
            "a second cursor for a name replaces the first"
        );
        assert!(subs.get("m").is_some_and(|c| Arc::ptr_eq(c, &replaced)));
        assert!(subs.remove("b").is_some() && subs.remove("b").is_none());
        assert_eq!(
            subs.drain(),
            vec![Arc::<str>::from("a"), "m".into(), "z".into()]
        );
        assert_eq!(subs.len(), 0);
    }
}
