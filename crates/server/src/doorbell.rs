//! A connection's doorbell: which of its subscriptions have something new
//! to write, and whether the connection is finished.
//!
//! Publications are not queued here: they stay in their channel's log,
//! shared by every subscriber ([`crate::channel_log`]). A ring only names the
//! subscription (once until the session reads it), so the doorbell holds at
//! most one entry per subscription, and nothing at all while idle.

use crate::channel_log::Cursor;
use parking_lot::Mutex;
use std::sync::{
    atomic::{AtomicU64, AtomicU8, Ordering},
    Arc,
};
use tokio::sync::{futures::Notified, Notify};

#[derive(Default)]
pub struct Doorbell {
    state: Mutex<State>,
    /// Wakes the connection's task.
    notify: Notify,
    /// Node events for the session ([`TICK`], [`DRAIN`]), taken when it wakes.
    events: AtomicU8,
    /// When the session next needs its heartbeat check, on the node's
    /// clock ([`crate::heartbeat::Ticker`]): the node-wide ticker wakes it
    /// then, so no session holds a timer of its own.
    deadline_ms: AtomicU64,
}

/// The session's heartbeat deadline has come.
pub const TICK: u8 = 1;
/// The node drains: close with 1012.
pub const DRAIN: u8 = 2;

#[derive(Default)]
struct State {
    dirty: Vec<Arc<Cursor>>,
    /// The session is gone: rings are dropped.
    finished: bool,
}

/// The session ended; nothing is taken any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished;

impl Doorbell {
    pub fn new() -> Self {
        Self::default()
    }

    /// Names a subscription with something new (called once per read by
    /// [`Cursor::ring`]; never blocks for long).
    pub fn ring(&self, cursor: Arc<Cursor>) {
        let mut state = self.state.lock();
        if state.finished {
            return;
        }
        let was_empty = state.dirty.is_empty();
        state.dirty.push(cursor);
        drop(state);
        if was_empty {
            self.notify.notify_one();
        }
    }

    /// Moves the rung subscriptions into `out`.
    pub fn take(&self, out: &mut Vec<Arc<Cursor>>) -> Result<(), Finished> {
        let mut state = self.state.lock();
        if state.finished {
            return Err(Finished);
        }
        if out.is_empty() {
            std::mem::swap(out, &mut state.dirty);
        } else {
            out.append(&mut state.dirty);
        }
        Ok(())
    }

    /// Raises node events and wakes the session.
    pub fn signal(&self, events: u8) {
        self.events.fetch_or(events, Ordering::AcqRel);
        self.notify.notify_one();
    }

    /// The events raised since the last call.
    pub fn take_events(&self) -> u8 {
        self.events.swap(0, Ordering::AcqRel)
    }

    pub fn set_deadline(&self, ms: u64) {
        self.deadline_ms.store(ms, Ordering::Release);
    }

    pub fn deadline(&self) -> u64 {
        self.deadline_ms.load(Ordering::Acquire)
    }

    /// Resolves when there may be something to take.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// The session ended: drop what is rung and refuse further rings (the
    /// cursors hold the doorbell, and the doorbell would hold them).
    pub fn finish(&self) {
        let mut state = self.state.lock();
        state.finished = true;
        state.dirty = Vec::new();
    }
}
