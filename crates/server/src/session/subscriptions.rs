//! A connection's subscriptions: channel → its cursor in the channel's log
//! (the highest offset already sent, or covered by its `subscribed` reply,
//! so nothing is written twice).

use crate::channel_log::Cursor;
use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::Arc,
};

/// Looked up once per delivery, so it uses FNV-1a rather than SipHash:
/// channel names are short and not attacker-chosen keys of a shared table
/// (each connection only holds its own subscriptions, at most
/// `limits.max_subscriptions`).
pub(super) type Subscriptions = HashMap<Arc<str>, Arc<Cursor>, BuildHasherDefault<Fnv1a>>;

#[derive(Default)]
pub(super) struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}
