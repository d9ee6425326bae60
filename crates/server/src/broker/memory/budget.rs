//! The memory budget: what a history entry costs, pruning a stream to its
//! count, age, byte and key limits, forgetting idle streams at the channel
//! cap, and fitting a new publication or idempotency key into the node's
//! totals.

use super::{MemoryBroker, Stream, MAX_KEYS_PER_CHANNEL};
use crate::broker::{BrokerError, Publication};
use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

/// Bytes a history entry costs beyond its frame (queue slot, Arc, struct).
const ENTRY_OVERHEAD: usize = 96;
/// At the channel cap with nothing to forget, look again at most this often
/// (a scan visits every stream).
const EVICTION_RESCAN: Duration = Duration::from_secs(1);

/// The memory a history entry is charged for.
pub(super) fn cost(p: &Publication) -> usize {
    p.frame.len() + p.channel.len() + ENTRY_OVERHEAD
}

impl MemoryBroker {
    /// Drops expired, over-count and over-bytes history and expired or
    /// over-cap keys, keeping the node-wide gauges in step.
    pub(super) fn prune(&self, s: &mut Stream, now: Instant) {
        let cfg = &self.cfg;
        while let Some((at, p)) = s.history.front() {
            let over = s.history.len() > s.size || s.history_bytes > cfg.max_channel_bytes;
            if !over && now.saturating_duration_since(*at) < s.ttl {
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
    pub(super) fn release(&self, s: &Stream) {
        self.metrics.channel_streams.dec();
        self.metrics.history_bytes.dec_by(s.history_bytes as i64);
        self.metrics
            .idempotency_keys
            .dec_by(s.key_order.len() as i64);
        if s.top > 0 {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(super) fn at_channel_cap(&self) -> bool {
        self.metrics.channel_streams.get() >= self.max_channels as i64
    }

    /// At the channel cap, forgets idle streams (no subscriber, no history)
    /// so that a new channel fits. Takes one shard lock at a time; never
    /// called with a shard locked.
    pub(super) fn make_room(&self, channel: &str) {
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
        if self.forget_where(now, Stream::is_idle) == 0 {
            *self.barren_scan.lock() = Some(now);
        }
    }

    /// Prunes every stream and forgets those `forget` picks, one shard lock
    /// at a time; returns how many were forgotten.
    pub(super) fn forget_where(&self, now: Instant, forget: impl Fn(&Stream) -> bool) -> usize {
        let mut forgotten = 0;
        for shard in self.shards.iter() {
            shard.lock().retain(|_, s| {
                self.prune(s, now);
                let gone = forget(s);
                if gone {
                    self.release(s);
                    forgotten += 1;
                }
                !gone
            });
        }
        forgotten
    }

    /// Whether a publication of `c` bytes can fit the node's history
    /// budget, counting what this stream could give up of its own. Checks
    /// only: nothing changes until every check of a publish has passed.
    pub(super) fn check_history(&self, stream: &Stream, c: usize) -> Result<(), BrokerError> {
        let max = self.cfg.max_bytes;
        let used = self.metrics.history_bytes.get().max(0) as usize;
        if used.saturating_sub(stream.history_bytes) + c > max {
            self.metrics.refusal("history_full");
            return Err(BrokerError::OverCapacity(format!(
                "the server's history is full ({max} bytes); retry later"
            )));
        }
        Ok(())
    }

    /// Drops this stream's own oldest entries until `c` more bytes fit.
    pub(super) fn make_history_room(&self, stream: &mut Stream, c: usize) {
        while self.metrics.history_bytes.get().max(0) as usize + c > self.cfg.max_bytes {
            let Some((_, p)) = stream.history.pop_front() else {
                break;
            };
            let freed = cost(&p);
            stream.history_bytes -= freed;
            self.metrics.history_bytes.dec_by(freed as i64);
        }
    }

    fn keys_full(&self) -> bool {
        self.metrics.idempotency_keys.get() >= self.cfg.idempotency_max_keys as i64
    }

    /// Whether one more idempotency key can be remembered: below the
    /// node-wide cap, or by forgetting one of this stream's own. Checks only.
    pub(super) fn check_key(&self, stream: &Stream) -> Result<(), BrokerError> {
        if !self.keys_full() || !stream.key_order.is_empty() {
            return Ok(());
        }
        self.metrics.refusal("idempotency_keys_full");
        Err(BrokerError::OverCapacity(format!(
            "the server remembers its maximum of {} idempotency keys; retry later",
            self.cfg.idempotency_max_keys
        )))
    }

    /// At the node-wide cap, forgets this stream's oldest key (counted: it
    /// goes before its window ends).
    pub(super) fn make_key_room(&self, stream: &mut Stream) {
        if self.keys_full() && self.forget_oldest_key(stream) {
            self.metrics.idempotency_evictions.inc();
        }
    }
}
