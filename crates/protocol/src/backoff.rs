//! Exponential backoff with full jitter, as both clients use it.
//!
//! Pure arithmetic: the caller supplies the random number, so tests are exact.
//! The JS client (`clients/js/src/backoff.ts`) does the same arithmetic; both
//! are checked against `vectors/backoff.json`, whose header states the rule.

use std::time::Duration;

/// The reconnect schedule: `random(0, min(max_delay, min_delay * 2^attempt))`,
/// with the first retry at once (or within `min_delay`); a server's advised
/// delay is added to that jitter as a floor (see [`Backoff::delay`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Base delay; the first retry happens within it. Default 500 ms.
    pub min_delay: Duration,
    /// Cap on any single delay, advised delays included. Default 30 s.
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

/// The largest doubling: JS keeps `minDelay * 2^52` exact (its numbers are
/// binary64), and any real schedule hits `max_delay` long before.
const MAX_DOUBLINGS: u32 = 52;

impl Backoff {
    /// Upper bound of the delay before retry `attempt` (0-based):
    /// `min(max_delay, min_delay * 2^min(attempt, 52))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let max = self.max_delay.as_nanos();
        // In u128 nanoseconds, saturating: `min_delay * 2^52` may be more
        // than a Duration holds, and the cut to max_delay brings it back.
        let nanos = self
            .min_delay
            .as_nanos()
            .saturating_mul(1u128 << attempt.min(MAX_DOUBLINGS))
            .min(max);
        if nanos == max {
            return self.max_delay;
        }
        // Below max_delay, so the whole seconds fit its u64.
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        Duration::new(secs, (nanos % 1_000_000_000) as u32)
    }

    /// The delay before retry `attempt`, given `unit` uniform in `[0, 1)`
    /// (NaN counts as 0; other values are clamped to `[0, 1]`), in whole
    /// milliseconds.
    ///
    /// Without a `floor`: full jitter, `floor(ceiling * unit)`.
    ///
    /// With a `floor` (a server's `Retry-After`, or the `retry_after_ms` of a
    /// 1012 or 1013 close): `min(max_delay, min(floor, max_delay) + jitter)`.
    /// The floor is waited out first, so no client returns earlier than the
    /// server asked; the jitter on top spreads the clients that got the same
    /// hint (every client a restart or an overload turned away) instead of
    /// bringing them back at the same instant; and the cut to `max_delay`
    /// means a hostile or misconfigured server cannot park a client for days.
    ///
    /// Whole milliseconds, computed as the JS client does: the jitter is the
    /// binary64 product of the ceiling in whole ms and `unit`, floored; the
    /// floor and `max_delay` count in whole ms (sub-ms parts dropped). So
    /// both clients give the same delay for the same inputs, to the ms.
    pub fn delay(&self, attempt: u32, unit: f64, floor: Option<Duration>) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let max = self.max_delay.as_millis();
        let ceiling = self.ceiling(attempt).as_millis();
        // `as` from f64 saturates; the `min` keeps a ceiling beyond 2^53 ms,
        // which binary64 rounds, from rounding above itself.
        let jitter = ((ceiling as f64 * unit).floor() as u128).min(ceiling);
        let ms = match floor {
            Some(floor) => (floor.as_millis().min(max) + jitter).min(max),
            None => jitter,
        };
        // Past u64::MAX ms (585 million years) only with such a max_delay:
        // saturating is as good as exact there.
        Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), MS(500));
        assert_eq!(b.ceiling(1), MS(1000));
        assert_eq!(b.ceiling(2), MS(2000));
        assert_eq!(b.ceiling(6), Duration::from_secs(30));
        assert_eq!(b.ceiling(200), Duration::from_secs(30));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
        // Sub-ms parts survive in the ceiling; only the delay is whole ms.
        let fine = Backoff {
            min_delay: Duration::from_micros(1500),
            max_delay: Duration::MAX,
        };
        assert_eq!(fine.ceiling(1), Duration::from_micros(3000));
        assert_eq!(
            fine.ceiling(u32::MAX),
            Duration::from_micros(1500) * (1 << 26) * (1 << 26)
        );
    }

    #[test]
    fn delay_is_full_jitter_without_a_floor() {
        let b = Backoff::default();
        assert_eq!(b.delay(3, 0.0, None), Duration::ZERO);
        assert_eq!(b.delay(3, 0.5, None), MS(2000));
        assert_eq!(b.delay(3, 0.999_999, None), MS(3999));
        assert_eq!(b.delay(2, f64::NAN, None), Duration::ZERO);
    }

    #[test]
    fn a_floor_is_waited_out_then_jittered_above() {
        let b = Backoff::default();
        let hint = Some(Duration::from_secs(5));
        // Never earlier than the server asked ...
        assert_eq!(b.delay(0, 0.0, hint), Duration::from_secs(5));
        // ... and clients given the same hint spread over the jitter above it
        // (a jittered delay does not replace the floor: it adds to it).
        assert_eq!(b.delay(0, 0.5, hint), MS(5250));
        assert_eq!(b.delay(3, 0.5, Some(MS(10))), MS(2010));
        assert_eq!(b.delay(3, 0.5, Some(Duration::ZERO)), b.delay(3, 0.5, None));
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
        // Floor plus jitter past max_delay is cut too.
        assert_eq!(b.delay(9, 0.5, Some(MS(29_000))), b.max_delay);
    }

    #[test]
    fn delays_are_whole_milliseconds() {
        let b = Backoff {
            min_delay: Duration::from_micros(1500),
            max_delay: Duration::from_micros(10_500),
        };
        // ceiling(2) is 6 ms; 6 * 0.999 = 5.994, floored.
        assert_eq!(b.delay(2, 0.999, None), MS(5));
        // The cap counts in whole ms: 10.5 ms is 10.
        assert_eq!(b.delay(9, 1.0, None), MS(10));
        assert_eq!(b.delay(0, 0.0, Some(Duration::from_micros(2999))), MS(2));
        assert_eq!(b.delay(0, 0.0, Some(Duration::MAX)), MS(10));
    }

    /// `vectors/backoff.json` is what the JS client checks its `Backoff`
    /// against: the same inputs give the same ceiling and delay, to the ms.
    #[test]
    fn backoff_vectors_match_this_arithmetic() {
        let text = include_str!("../vectors/backoff.json");
        let file: serde_json::Value = serde_json::from_str(text).unwrap();
        let cases = file["cases"].as_array().unwrap();
        assert!(cases.len() >= 30, "{} cases", cases.len());
        let ms = |v: &serde_json::Value| MS(v.as_u64().unwrap());
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let b = Backoff {
                min_delay: ms(&case["min_delay_ms"]),
                max_delay: ms(&case["max_delay_ms"]),
            };
            let attempt = u32::try_from(case["attempt"].as_u64().unwrap()).unwrap();
            let unit = case["unit"].as_f64().unwrap();
            let floor = (!case["floor_ms"].is_null()).then(|| ms(&case["floor_ms"]));
            assert_eq!(
                b.ceiling(attempt),
                ms(&case["ceiling_ms"]),
                "{name}: ceiling"
            );
            assert_eq!(
                b.delay(attempt, unit, floor),
                ms(&case["delay_ms"]),
                "{name}: delay"
            );
        }
    }
}
