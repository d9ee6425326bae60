//! Reconnect delays to Redis: the clients' schedule (`tether_protocol::Backoff`,
//! doubling from 100 ms to 5 s), counted per connection, with the jitter in
//! the upper half of each step so that many nodes that lost the same Redis
//! neither come back in step nor retry at once.

use std::time::Duration;

const SCHEDULE: tether_protocol::Backoff = tether_protocol::Backoff {
    min_delay: Duration::from_millis(100),
    max_delay: Duration::from_secs(5),
};

pub struct Backoff {
    attempts: u32,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff { attempts: 0 }
    }

    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The next delay: a random point in the upper half of the current step.
    pub fn next(&mut self) -> Duration {
        let delay = SCHEDULE.delay(self.attempts, 0.5 + fastrand::f64() * 0.5, None);
        self.attempts = self.attempts.saturating_add(1);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = SCHEDULE.min_delay;
    const MAX: Duration = SCHEDULE.max_delay;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new();
        let first = b.next();
        assert!(first >= FIRST / 2 && first <= FIRST);
        for _ in 0..40 {
            let d = b.next();
            assert!(d <= MAX && d >= Duration::from_millis(50));
        }
        assert!(b.next() >= MAX / 2, "capped at MAX, never below half of it");
        b.reset();
        assert!(b.next() <= FIRST);
    }
}
