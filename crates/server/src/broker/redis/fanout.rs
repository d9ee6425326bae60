//! Fan-out from Redis to this node's hub.
//!
//! One Redis subscription per channel per node, counted by local interest
//! (the hub asks for the first subscriber and lets go after the last), on
//! one of [`SHARDS`] pub/sub connections chosen by channel hash.
//!
//! For every channel the node tracks `{epoch, last offset delivered}` and
//! feeds the hub strictly in order:
//! - **the seam**: a new subscription is made first, then the channel's
//!   position read; what pub/sub delivered meanwhile waits and is merged
//!   by offset, so nothing is missed or delivered twice.
//! - **gaps**: a message that skips offsets (pub/sub lost one), a pub/sub
//!   connection that dropped and came back, or the periodic check finding a
//!   quiet channel behind Redis, all read the missing range from history
//!   and deliver it in order. Clients are not disconnected for the node's
//!   own loss.
//! - **resets**: when the channel's epoch changed (Redis restarted, failed
//!   over, or came back from an older snapshot) or history no longer covers
//!   the gap, the hub resets the channel: its subscribers resynchronise
//!   with `recovered: false` through the ordinary path.

use super::{link::bounded, scripts::Keys, Inner};
use crate::{
    broker::{BrokerError, Delivery, Publication},
    channel_log::Wakeup,
    metrics::Metrics,
};
use parking_lot::Mutex;
use redis::aio::PubSubSink;
use serde_json::value::RawValue;
use std::{
    collections::{BTreeMap, HashMap},
    hash::{BuildHasher, RandomState},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Pub/sub connections per node; channels are spread over them by hash.
pub const SHARDS: usize = 4;
/// Publications one channel may hold waiting on a gap; past this the
/// channel is reset (its subscribers resynchronise) instead.
pub const MAX_PENDING: usize = 10_000;

/// Whether every Redis connection is up; feeds readiness and `tether_redis_up`.
#[derive(Clone)]
pub struct Health(Arc<HealthInner>);

struct HealthInner {
    link: AtomicBool,
    shards_up: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl Health {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Health(Arc::new(HealthInner {
            link: AtomicBool::new(false),
            shards_up: AtomicUsize::new(0),
            metrics,
        }))
    }

    pub fn is_up(&self) -> bool {
        self.0.link.load(Ordering::Acquire) && self.0.shards_up.load(Ordering::Acquire) == SHARDS
    }

    pub fn set_link(&self, up: bool) {
        self.0.link.store(up, Ordering::Release);
        self.publish();
    }

    pub(super) fn shard(&self, up: bool) {
        if up {
            self.0.shards_up.fetch_add(1, Ordering::AcqRel);
        } else {
            self.0.shards_up.fetch_sub(1, Ordering::AcqRel);
        }
        self.publish();
    }

    fn publish(&self) {
        self.0.metrics.redis_up.set(i64::from(self.is_up()));
    }
}

/// What the node knows of one channel it has local subscribers for.
pub(super) struct Tracked {
    pub(super) name: Arc<str>,
    /// Local interest (subscribe calls not yet matched by unsubscribe).
    refs: usize,
    /// `None` until the first position is read (the seam).
    pub(super) epoch: Option<Arc<str>>,
    /// The last offset delivered to the hub.
    pub(super) last: u64,
    /// Arrived ahead of a gap (or before the seam): delivered once the gap
    /// is filled.
    pending: BTreeMap<u64, Arc<Publication>>,
    /// A history read for this channel is under way.
    repairing: bool,
    /// The top offset the last periodic check saw in Redis: still not
    /// delivered a whole interval later means pub/sub lost it.
    seen_top: u64,
}

impl Tracked {
    /// Not subscribed yet: no interest, no position.
    fn new(name: Arc<str>) -> Self {
        Tracked {
            name,
            refs: 0,
            epoch: None,
            last: 0,
            pending: BTreeMap::new(),
            repairing: false,
            seen_top: 0,
        }
    }
}

pub(super) struct Shard {
    /// `None` while the connection is down.
    pub(super) sink: Mutex<Option<PubSubSink>>,
    /// Serialises SUBSCRIBE/UNSUBSCRIBE with the reconnect's resubscribe, so
    /// they reach Redis in the order interest changed.
    pub(super) ops: tokio::sync::Mutex<()>,
}

pub struct Fanout {
    pub(super) client: redis::Client,
    pub(super) prefix: Arc<str>,
    pub(super) delivery: Arc<dyn Delivery>,
    pub(super) metrics: Arc<Metrics>,
    pub health: Health,
    pub(super) check_interval: Duration,
    hasher: RandomState,
    pub(super) shards: Vec<Shard>,
    pub(super) channels: Mutex<HashMap<Arc<str>, Tracked>>,
}

impl Fanout {
    pub fn new(
        client: redis::Client,
        prefix: Arc<str>,
        delivery: Arc<dyn Delivery>,
        metrics: Arc<Metrics>,
        health: Health,
        check_interval: Duration,
    ) -> Self {
        Fanout {
            client,
            prefix,
            delivery,
            metrics,
            health,
            check_interval,
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| Shard {
                    sink: Mutex::new(None),
                    ops: tokio::sync::Mutex::new(()),
                })
                .collect(),
            channels: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn spawn(inner: &Arc<Inner>, stop: &CancellationToken) {
        for i in 0..SHARDS {
            tokio::spawn(super::repair::run_shard(inner.clone(), i, stop.clone()));
        }
        tokio::spawn(super::repair::run_checks(inner.clone(), stop.clone()));
    }

    fn shard_of(&self, channel: &str) -> usize {
        (self.hasher.hash_one(channel) as usize) % SHARDS
    }

    fn topic(&self, channel: &str) -> String {
        Keys::new(&self.prefix, channel).topic
    }

    /// Local interest in `channel`: the first subscribes in Redis and reads
    /// the channel's position (the seam).
    pub(super) async fn subscribe(inner: &Arc<Inner>, channel: &str) -> Result<(), BrokerError> {
        let me = &inner.fanout;
        {
            let mut map = me.channels.lock();
            let t = map
                .entry(Arc::from(channel))
                .or_insert_with_key(|name| Tracked::new(name.clone()));
            t.refs += 1;
            if t.refs > 1 {
                return Ok(());
            }
        }
        let shard = &me.shards[me.shard_of(channel)];
        let subscribed = {
            let _ops = shard.ops.lock().await;
            let sink = shard.sink.lock().clone();
            match sink {
                Some(mut sink) => bounded("SUBSCRIBE", sink.subscribe(me.topic(channel)))
                    .await
                    .map_err(|e| BrokerError::Unavailable(format!("Redis pub/sub: {e}; retry"))),
                None => Err(BrokerError::Unavailable(
                    "a Redis pub/sub connection is down (reconnecting); retry".into(),
                )),
            }
        };
        if let Err(e) = subscribed {
            // A SUBSCRIBE that timed out may still have been carried out:
            // the last interest out says UNSUBSCRIBE, as on a leave.
            if me.release(channel) {
                me.unsubscribe_in_redis(channel).await;
            }
            return Err(e);
        }
        match inner.recover_raw(channel, None, 0).await {
            Ok(raw) => {
                prime(inner, channel, raw.epoch.into(), raw.top);
                Ok(())
            }
            Err(e) => {
                // Subscribed in Redis but without a position: let go, so the
                // next subscriber starts the seam afresh.
                me.unsubscribe(channel).await;
                Err(e)
            }
        }
    }

    /// Tests: tracks `channel` as if subscribed and primed at `epoch`/`last`.
    #[cfg(test)]
    pub(super) fn track_at(&self, channel: &str, epoch: &str, last: u64) {
        let name: Arc<str> = Arc::from(channel);
        let mut t = Tracked::new(name.clone());
        (t.refs, t.epoch, t.last) = (1, Some(Arc::from(epoch)), last);
        self.channels.lock().insert(name, t);
    }

    /// Drops one unit of interest; the last unsubscribes in Redis.
    pub async fn unsubscribe(&self, channel: &str) {
        if self.release(channel) {
            self.unsubscribe_in_redis(channel).await;
        }
    }

    /// UNSUBSCRIBE after the last interest left, unless interest came back
    /// meanwhile (a new first subscriber, which keeps the subscription).
    async fn unsubscribe_in_redis(&self, channel: &str) {
        let shard = &self.shards[self.shard_of(channel)];
        let _ops = shard.ops.lock().await;
        // Interest may have come back while waiting: then stay subscribed.
        if self.channels.lock().contains_key(channel) {
            return;
        }
        let sink = shard.sink.lock().clone();
        if let Some(mut sink) = sink {
            // A failure here is a dropped connection, whose reconnect
            // resubscribes only what is still wanted.
            let _ = bounded("UNSUBSCRIBE", sink.unsubscribe(self.topic(channel))).await;
        }
    }

    /// Returns true when that was the last interest (the entry is gone).
    fn release(&self, channel: &str) -> bool {
        let mut map = self.channels.lock();
        let Some(t) = map.get_mut(channel) else {
            return false;
        };
        t.refs = t.refs.saturating_sub(1);
        if t.refs == 0 {
            map.remove(channel);
            true
        } else {
            false
        }
    }

    /// The channel continues in a new epoch from `top`: the hub resets it
    /// (its subscribers resynchronise) and nothing held is kept.
    pub(super) fn reset(
        &self,
        t: &mut Tracked,
        epoch: Arc<str>,
        top: u64,
        wakeups: &mut Vec<Wakeup>,
    ) {
        self.metrics.redis_resets.inc();
        wakeups.push(self.delivery.reset(&t.name));
        t.epoch = Some(epoch);
        t.pending.clear();
        t.last = top;
    }

    pub(super) fn set_repairing(&self, channel: &str, on: bool) {
        if let Some(t) = self.channels.lock().get_mut(channel) {
            t.repairing = on;
        }
    }

    /// Marks a primed channel `repairing`; false when it is not primed or a
    /// repair is already under way.
    pub(super) fn mark_repairing(&self, channel: &str) -> bool {
        let mut map = self.channels.lock();
        match map.get_mut(channel) {
            Some(t) if t.epoch.is_some() && !t.repairing => {
                t.repairing = true;
                true
            }
            _ => false,
        }
    }

    /// After a repair's history read: delivers what is pending; true when
    /// the channel is whole (the repair ends), false when a gap is left.
    pub(super) fn finish_repair(&self, t: &mut Tracked, wakeups: &mut Vec<Wakeup>) -> bool {
        t.repairing = false;
        !self.drain_pending(t, wakeups)
    }

    /// The channels pub/sub connection `i` carries.
    pub(super) fn channels_of_shard(&self, i: usize) -> Vec<Arc<str>> {
        self.channels
            .lock()
            .keys()
            .filter(|c| self.shard_of(c) == i)
            .cloned()
            .collect()
    }

    /// What the periodic check compares with Redis: each primed channel's
    /// epoch and last delivered offset, and whether it was already behind
    /// the top the previous check saw (then pub/sub lost it).
    pub(super) fn primed_positions(&self) -> Vec<(Arc<str>, Arc<str>, u64, bool)> {
        self.channels
            .lock()
            .values()
            .filter(|t| !t.repairing)
            .filter_map(|t| {
                let epoch = t.epoch.clone()?;
                Some((t.name.clone(), epoch, t.last, t.last < t.seen_top))
            })
            .collect()
    }

    /// Records the top a check saw for `channel`.
    pub(super) fn saw_top(&self, channel: &str, top: u64) {
        if let Some(t) = self.channels.lock().get_mut(channel) {
            t.seen_top = top;
        }
    }

    /// Delivers the pending publications that continue `last`, dropping
    /// those already delivered; returns true when a gap is left (and marks
    /// the channel repairing).
    fn drain_pending(&self, t: &mut Tracked, wakeups: &mut Vec<Wakeup>) -> bool {
        while let Some(entry) = t.pending.first_entry() {
            let offset = *entry.key();
            if offset <= t.last {
                entry.remove();
            } else if offset == t.last + 1 {
                t.last = offset;
                wakeups.push(self.delivery.deliver(entry.remove()));
            } else {
                break;
            }
        }
        let gap = !t.pending.is_empty() && !t.repairing;
        if gap {
            t.repairing = true;
        }
        gap
    }
}

/// The seam: the channel's position is known; what arrived meanwhile is
/// merged by offset.
fn prime(inner: &Arc<Inner>, channel: &str, epoch: Arc<str>, top: u64) {
    let me = &inner.fanout;
    let mut wakeups = Vec::new();
    let mut repair = None;
    {
        let mut map = me.channels.lock();
        let Some(t) = map.get_mut(channel) else {
            return;
        };
        if t.epoch.is_some() {
            return;
        }
        t.epoch = Some(epoch);
        t.last = top;
        if me.drain_pending(t, &mut wakeups) {
            repair = Some(t.name.clone());
        }
    }
    ring(wakeups);
    if let Some(name) = repair {
        super::repair::start(inner, name, "gap");
    }
}

/// A pub/sub message: delivered in order, held ahead of a gap (which is
/// then repaired), or the sign of a new epoch.
pub(super) fn on_message(inner: &Arc<Inner>, topic: &str, payload: &str) {
    let me = &inner.fanout;
    let Some(channel) = Keys::channel_of(&me.prefix, topic) else {
        return;
    };
    if payload.starts_with("! ") {
        return on_event(inner, channel, payload);
    }
    let Some((epoch, offset, data)) = super::scripts::parse_message(payload) else {
        warn!(topic, "ignoring a pub/sub message Tether did not write");
        return;
    };
    let Ok(data) = RawValue::from_string(data.to_owned()) else {
        warn!(topic, "ignoring a pub/sub message whose data is not JSON");
        return;
    };
    let mut wakeups = Vec::new();
    let mut repair = None;
    {
        let mut map = me.channels.lock();
        let Some(t) = map.get_mut(channel) else {
            return;
        };
        let publication = Arc::new(Publication::new(t.name.clone(), offset, &data));
        match t.epoch.as_deref() {
            None => {
                // Before the seam: the oldest can go (history refills it).
                if t.pending.len() >= MAX_PENDING {
                    t.pending.pop_first();
                }
                t.pending.insert(offset, publication);
            }
            Some(known) if known != epoch => {
                // A new epoch: what was delivered cannot be continued.
                info!(%channel, old = known, new = epoch, "channel epoch changed; resetting its subscribers");
                me.reset(t, epoch.into(), offset.saturating_sub(1), &mut wakeups);
                t.last = offset;
                wakeups.push(me.delivery.deliver(publication));
            }
            Some(known) => {
                if offset <= t.last {
                    // Already delivered (a repair got there first).
                } else if t.pending.len() >= MAX_PENDING {
                    // Publications keep arriving ahead of a gap history
                    // cannot fill fast enough: resynchronise the channel's
                    // subscribers rather than hold without bound, and go on
                    // from this one.
                    warn!(%channel, held = t.pending.len(), "too many publications waiting on a gap; resetting the channel's subscribers");
                    let known: Arc<str> = known.into();
                    me.reset(t, known, offset - 1, &mut wakeups);
                    t.last = offset;
                    wakeups.push(me.delivery.deliver(publication));
                } else {
                    t.pending.insert(offset, publication);
                    if !t.repairing && me.drain_pending(t, &mut wakeups) {
                        repair = Some(t.name.clone());
                    }
                }
            }
        }
    }
    ring(wakeups);
    if let Some(name) = repair {
        super::repair::start(inner, name, "gap");
    }
}

/// A join or leave (`presence_scripts`): handed to the hub in the order it
/// came, placed after the publication it names (the channel log holds it
/// until its readers reach that offset, so an event that overtakes a
/// repair still comes after the publications before it). One of an epoch
/// other than the known one means the channel moved on, as a publication
/// of it would: the channel is reset, then the event delivered.
fn on_event(inner: &Arc<Inner>, channel: &str, payload: &str) {
    let me = &inner.fanout;
    let Some(event) = super::presence_scripts::parse_event(payload) else {
        warn!(%channel, "ignoring a presence event Tether did not write");
        return;
    };
    let Ok(entry) = serde_json::from_str::<tether_protocol::PresenceEntry>(event.entry) else {
        warn!(%channel, "ignoring a presence event whose entry is not one");
        return;
    };
    let frame = crate::channel_log::Event::new(channel, &entry, event.join, event.after);
    let mut wakeups = Vec::new();
    {
        let mut map = me.channels.lock();
        let Some(t) = map.get_mut(channel) else {
            return;
        };
        if let Some(known) = t.epoch.as_deref() {
            if known != event.epoch {
                info!(%channel, old = known, new = event.epoch, "channel epoch changed; resetting its subscribers");
                me.reset(t, event.epoch.into(), event.after, &mut wakeups);
            }
        }
        wakeups.push(me.delivery.deliver_event(channel, frame));
    }
    ring(wakeups);
}

pub(super) fn ring(wakeups: Vec<Wakeup>) {
    for w in wakeups {
        w.ring();
    }
}
