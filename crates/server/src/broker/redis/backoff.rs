//! Reconnect delays: exponential from 100 ms to 5 s, with full jitter, so
//! many nodes that lost the same Redis do not come back in step.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(5);

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
        let step = FIRST.saturating_mul(1u32 << self.attempts.min(16)).min(MAX);
        self.attempts = self.attempts.saturating_add(1);
        step.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
