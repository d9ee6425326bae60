//! The node-wide heartbeat ticker: one timer for every WebSocket session.
//!
//! A tokio timer per connection costs its entry in the task's state (and a
//! registration in the timer wheel) for every idle connection. Instead each
//! session writes on its doorbell when it next needs a heartbeat check —
//! the next ping, the silence limit, the token's expiry — and one task,
//! ticking at a quarter of the shorter of the ping interval and the pong
//! timeout, wakes the sessions whose time has come. A ping may go out up to
//! one tick late; the silence limit is enforced within one tick of it. The
//! same registry carries the drain to every session.

use crate::doorbell::{Doorbell, DRAIN, TICK};
use parking_lot::Mutex;
use std::{
    sync::{Arc, Weak},
    time::Duration,
};
use tokio::time::Instant;

pub struct Ticker {
    /// The clock's origin: deadlines are milliseconds since it.
    origin: Instant,
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    bells: Vec<Weak<Doorbell>>,
    free: Vec<u32>,
}

impl Ticker {
    pub fn new() -> Self {
        Ticker {
            origin: Instant::now(),
            slots: Mutex::default(),
        }
    }

    /// The tick period for these heartbeat settings.
    pub fn period(ping_interval: Duration, pong_timeout: Duration) -> Duration {
        (ping_interval.min(pong_timeout) / 4).max(Duration::from_millis(5))
    }

    /// Milliseconds on the ticker's clock at `at`.
    pub fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// Adds a session's doorbell; the slot is freed by [`Ticker::remove`].
    pub fn add(&self, bell: &Arc<Doorbell>) -> u32 {
        let mut slots = self.slots.lock();
        let weak = Arc::downgrade(bell);
        if let Some(i) = slots.free.pop() {
            slots.bells[i as usize] = weak;
            return i;
        }
        slots.bells.push(weak);
        (slots.bells.len() - 1) as u32
    }

    pub fn remove(&self, slot: u32) {
        let mut slots = self.slots.lock();
        if let Some(b) = slots.bells.get_mut(slot as usize) {
            *b = Weak::new();
            slots.free.push(slot);
        }
    }

    /// Wakes every session whose deadline is at or before `now`.
    pub fn tick(&self, now: Instant) {
        let now = self.ms(now);
        self.each(|bell| {
            if bell.deadline() <= now {
                bell.signal(TICK);
            }
        });
    }

    /// Tells every session the node drains.
    pub fn drain(&self) {
        self.each(|bell| bell.signal(DRAIN));
    }

    fn each(&self, mut f: impl FnMut(&Doorbell)) {
        let slots = self.slots.lock();
        for weak in &slots.bells {
            if let Some(bell) = weak.upgrade() {
                f(&bell);
            }
        }
    }
}

impl Default for Ticker {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wakes_only_sessions_whose_deadline_came_and_drains_all() {
        let ticker = Ticker::new();
        let (soon, later) = (Arc::new(Doorbell::new()), Arc::new(Doorbell::new()));
        let (a, _b) = (ticker.add(&soon), ticker.add(&later));
        soon.set_deadline(100);
        later.set_deadline(10_000);
        tokio::time::advance(Duration::from_millis(150)).await;
        ticker.tick(Instant::now());
        assert_eq!((soon.take_events(), later.take_events()), (TICK, 0));
        ticker.drain();
        assert_eq!((soon.take_events(), later.take_events()), (DRAIN, DRAIN));
        ticker.remove(a);
        ticker.drain();
        assert_eq!(soon.take_events(), 0, "a removed session is not told");
        let c = ticker.add(&soon);
        assert_eq!(c, a, "a freed slot is reused");
    }
}
