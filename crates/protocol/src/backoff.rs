//! Exponential backoff with full jitter, as both clients use it.
//!
//! Pure arithmetic: the caller supplies the random number, so tests are exact.

use std::time::Duration;

/// The reconnect schedule: `random(0, min(max_delay, min_delay * 2^attempt))`,
/// with the first retry at once (or within `min_delay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Base delay; the first retry happens within it. Default 500 ms.
    pub min_delay: Duration,
    /// Cap on any single delay. Default 30 s.
    pub max_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// Upper bound of the delay before retry number `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return self.min_delay.min(self.max_delay);
        }
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.min_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The delay before retry `attempt`, given `unit` uniform in `[0, 1)`,
    /// never below `floor` (a server's `Retry-After` or 1013 hint) and never
    /// above `max_delay`: a hint beyond `max_delay` is cut to it, so a
    /// hostile or misconfigured server cannot park a client for days.
    pub fn delay(&self, attempt: u32, unit: f64, floor: Option<Duration>) -> Duration {
        // `mul_f64` panics on NaN; `clamp` passes NaN through.
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let jittered = self.ceiling(attempt).mul_f64(unit);
        match floor {
            Some(floor) => jittered.max(floor.min(self.max_delay)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), Duration::from_millis(500));
        assert_eq!(b.ceiling(1), Duration::from_millis(1000));
        assert_eq!(b.ceiling(2), Duration::from_millis(2000));
        assert_eq!(b.ceiling(6), Duration::from_secs(30));
        assert_eq!(b.ceiling(200), Duration::from_secs(30));
    }

    #[test]
    fn delay_is_full_jitter_with_a_floor() {
        let b = Backoff::default();
        assert_eq!(b.delay(3, 0.0, None), Duration::ZERO);
        assert_eq!(b.delay(3, 0.5, None), Duration::from_secs(2));
        assert!(b.delay(3, 0.999_999, None) <= b.ceiling(3));
        assert_eq!(
            b.delay(0, 0.0, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_hint_beyond_max_delay_is_cut_to_it() {
        let b = Backoff::default();
        for hint in [
            Duration::from_secs(31),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            assert_eq!(b.delay(0, 0.0, Some(hint)), b.max_delay);
            assert_eq!(b.delay(9, 0.999, Some(hint)), b.max_delay);
        }
        assert_eq!(b.delay(2, f64::NAN, None), Duration::ZERO);
    }
}
