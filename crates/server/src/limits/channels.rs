//! What one client address may make the node hold for channels: places in
//! the node's subscription budget (`limits.max_subscriptions_total`, of
//! which `limits.max_subscriptions_per_ip` per address), and new channels
//! per unit of time (`limits.new_channel_rate_per_ip`, a token bucket), so
//! one address can neither hold every subscription nor fill
//! `limits.max_channels` with channels of its own faster than they expire.

use super::{Admission, ConnectionPermit};
use crate::token_bucket::TokenBucket;
use std::{
    net::IpAddr,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

/// Why a subscription found no place; both are answered
/// `too_many_subscriptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionsFull {
    /// The node holds `max_subscriptions_total`.
    Node(usize),
    /// This address holds `max_subscriptions_per_ip`.
    Address(usize),
}

impl SubscriptionsFull {
    /// The metric label of the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            SubscriptionsFull::Node(_) => "subscriptions_full",
            SubscriptionsFull::Address(_) => "subscriptions_per_ip",
        }
    }

    /// The one-line reason given to the client.
    pub fn message(&self) -> String {
        match self {
            SubscriptionsFull::Node(max) => {
                format!("the server holds its maximum of {max} subscriptions; retry later")
            }
            SubscriptionsFull::Address(max) => {
                format!("your address holds its maximum of {max} subscriptions; unsubscribe first")
            }
        }
    }
}

/// The place of one subscription being made. Given back on drop (a join
/// that failed or was cancelled), unless [`SubscriptionPermit::keep`] moved
/// it into the session's [`ConnectionPermit`].
pub struct SubscriptionPermit {
    admission: Option<Arc<Admission>>,
    key: IpAddr,
}

impl SubscriptionPermit {
    /// The subscription is made: its place is held by the session's
    /// connection permit from now on, until the session drops it
    /// ([`ConnectionPermit::release_subscription`]) or ends.
    pub fn keep(mut self, connection: &mut ConnectionPermit) {
        if self.admission.take().is_some() {
            connection.subscriptions = connection.subscriptions.saturating_add(1);
        }
    }
}

impl Drop for SubscriptionPermit {
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            admission.release_subscriptions(self.key, 1);
        }
    }
}

impl Admission {
    /// Takes a place for one more subscription of a session from `key` (an
    /// address as [`Admission::key`] gives it), or says which cap is full.
    pub fn take_subscription(
        self: &Arc<Self>,
        key: IpAddr,
    ) -> Result<SubscriptionPermit, SubscriptionsFull> {
        let mut map = self.per_ip.lock();
        let state = map
            .entry(key)
            .or_insert_with(|| self.new_state(Instant::now()));
        if state.subscriptions >= self.cfg.max_subscriptions_per_ip {
            return Err(SubscriptionsFull::Address(
                self.cfg.max_subscriptions_per_ip,
            ));
        }
        // Taken under the map's lock, so two takers cannot both see room.
        let total = self.subscriptions.load(Ordering::Acquire);
        if total >= self.cfg.max_subscriptions_total {
            return Err(SubscriptionsFull::Node(self.cfg.max_subscriptions_total));
        }
        self.subscriptions.store(total + 1, Ordering::Release);
        state.subscriptions += 1;
        Ok(SubscriptionPermit {
            admission: Some(self.clone()),
            key,
        })
    }

    /// Subscriptions held on the node.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::Acquire)
    }

    pub(super) fn release_subscriptions(&self, key: IpAddr, n: usize) {
        if n == 0 {
            return;
        }
        let mut map = self.per_ip.lock();
        if let Some(state) = map.get_mut(&key) {
            state.subscriptions = state.subscriptions.saturating_sub(n);
        }
        let total = self.subscriptions.load(Ordering::Acquire);
        self.subscriptions
            .store(total.saturating_sub(n), Ordering::Release);
    }

    /// Takes one token from `ip`'s bucket of new channels (a subscribe that
    /// makes the node hold a channel it did not), or says how long until one
    /// is free.
    pub fn take_new_channel(&self, ip: IpAddr) -> Result<(), Duration> {
        self.with_new_channels(ip, |bucket, now| bucket.take(now))
    }

    /// Whether `ip` may create a channel now, taking nothing: a publish asks
    /// its broker to create the channel only then, and pays with
    /// [`Admission::charge_new_channel`] only if the broker did.
    pub fn new_channel_allowed(&self, ip: IpAddr) -> Result<(), Duration> {
        self.with_new_channels(ip, |bucket, now| bucket.peek(now))
    }

    /// Takes the token of a channel `ip`'s publish created.
    pub fn charge_new_channel(&self, ip: IpAddr) {
        self.with_new_channels(ip, |bucket, now| bucket.charge(now));
    }

    fn with_new_channels<T>(
        &self,
        ip: IpAddr,
        f: impl FnOnce(&mut TokenBucket, Instant) -> T,
    ) -> T {
        let key = self.key(ip);
        let now = Instant::now();
        let mut map = self.per_ip.lock();
        let state = map.entry(key).or_insert_with(|| self.new_state(now));
        let bucket = state.new_channels.get_or_insert_with(|| {
            TokenBucket::new(
                self.cfg.new_channel_rate_per_ip,
                self.cfg.new_channel_burst_per_ip,
                now,
            )
        });
        f(bucket, now)
    }
}

#[cfg(test)]
mod tests {
    use crate::{config::LimitsConfig, limits::Admission};
    use std::net::IpAddr;

    fn admission(total: usize, per_ip: usize) -> std::sync::Arc<Admission> {
        let cfg = LimitsConfig {
            max_subscriptions_total: total,
            max_subscriptions_per_ip: per_ip,
            new_channel_rate_per_ip: 1.0,
            new_channel_burst_per_ip: 2,
            ..LimitsConfig::default()
        };
        Admission::new(cfg, 1, 1000)
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3));

    #[test]
    fn an_address_has_a_share_and_the_node_a_total() {
        let a = admission(3, 2);
        let a1 = a.take_subscription(A).expect("a1");
        let _a2 = a.take_subscription(A).expect("a2");
        assert_eq!(
            a.take_subscription(A).err(),
            Some(super::SubscriptionsFull::Address(2))
        );
        let _b1 = a.take_subscription(B).expect("another address");
        assert_eq!(
            a.take_subscription(C).err(),
            Some(super::SubscriptionsFull::Node(3))
        );
        drop(a1);
        assert_eq!(a.subscriptions(), 2);
        let _c1 = a.take_subscription(C).expect("a place was given back");
    }

    #[test]
    fn kept_places_go_back_when_the_connection_ends() {
        let a = admission(10, 10);
        let mut conn = a.admit(A).expect("admitted");
        a.take_subscription(A).expect("s1").keep(&mut conn);
        a.take_subscription(A).expect("s2").keep(&mut conn);
        assert_eq!(a.subscriptions(), 2);
        conn.release_subscription();
        assert_eq!(a.subscriptions(), 1);
        drop(conn);
        assert_eq!(a.subscriptions(), 0);
        let held = a.per_ip.lock().get(&A).map_or(0, |s| s.subscriptions);
        assert_eq!(held, 0, "nothing left under the address");
    }

    #[test]
    fn new_channels_have_a_bucket_per_address() {
        let a = admission(10, 10);
        assert!(a.take_new_channel(A).is_ok());
        assert!(a.take_new_channel(A).is_ok());
        assert!(a.take_new_channel(A).is_err());
        assert!(a.take_new_channel(B).is_ok());
    }
}
