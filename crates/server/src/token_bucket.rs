//! A token bucket, behind every rate limit: handshakes and API publishes
//! per client address, messages per session.

use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// The longest wait [`TokenBucket::take`] advises. A rate so small that
    /// the next token is further away (or one that is 0 or not a number,
    /// which `Config::validate` refuses anyway) says "a day", never panics.
    pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        // Keep the arithmetic below finite: NaN or a negative rate never
        // refills, an infinite one refills at once.
        let rate = if rate.is_nan() || rate <= 0.0 {
            0.0
        } else {
            rate.min(f64::MAX)
        };
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        // `elapsed * rate` may be +inf for a huge rate; `min` brings it back.
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes one token, or says how long until one is available (at most
    /// [`TokenBucket::MAX_WAIT`]).
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.peek(now)?;
        self.tokens -= 1.0;
        Ok(())
    }

    /// Whether a token is available, taking none; else how long until one is.
    pub fn peek(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            // A tiny rate makes this +inf or beyond what a Duration holds;
            // a zero rate makes it +inf. Both saturate instead of panicking.
            let wait = (1.0 - self.tokens) / self.rate;
            Err(Duration::try_from_secs_f64(wait)
                .unwrap_or(Self::MAX_WAIT)
                .min(Self::MAX_WAIT))
        }
    }

    /// Takes one token for something already done after a [`TokenBucket::peek`]:
    /// a race with another taker leaves a debt (at most a burst) that
    /// refills like any other.
    pub fn charge(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(-self.burst);
    }

    /// Whether the bucket holds its whole burst (nothing taken lately).
    pub(crate) fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 1, t0);
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert!(wait <= Duration::from_millis(500) && wait > Duration::from_millis(400));
        assert!(b.take(t0 + Duration::from_millis(500)).is_ok());
    }

    #[test]
    fn a_peek_takes_nothing_and_a_charge_may_leave_a_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1.0, 1, t0);
        assert!(b.peek(t0).is_ok());
        assert!(b.peek(t0).is_ok(), "peeking took nothing");
        b.charge(t0);
        b.charge(t0);
        let wait = b.peek(t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(1900),
            "one token of debt: {wait:?}"
        );
        assert!(b.peek(t0 + Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn absurd_rates_saturate_instead_of_panicking() {
        let t0 = Instant::now();
        for rate in [
            1e-300,
            1e-320, // subnormal
            f64::MIN_POSITIVE,
            0.0,
            -1.0,
            f64::NAN,
            f64::NEG_INFINITY,
        ] {
            let mut b = TokenBucket::new(rate, 1, t0);
            assert!(b.take(t0).is_ok(), "{rate}: the burst is there");
            let wait = b.take(t0).unwrap_err();
            assert_eq!(wait, TokenBucket::MAX_WAIT, "{rate}");
            // Much later the bucket is still total (and a tiny rate has refilled nothing).
            let later = t0 + Duration::from_secs(3600);
            assert_eq!(b.take(later).unwrap_err(), TokenBucket::MAX_WAIT, "{rate}");
        }
        for rate in [f64::MAX, f64::INFINITY] {
            let mut b = TokenBucket::new(rate, 1, t0);
            assert!(b.take(t0).is_ok());
            let wait = b.take(t0).unwrap_err();
            assert!(wait <= Duration::from_nanos(1), "{rate}: {wait:?}");
            assert!(b.take(t0 + Duration::from_millis(1)).is_ok(), "{rate}");
        }
        // A small but sane rate advises its real wait.
        let mut b = TokenBucket::new(0.001, 1, t0);
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert!(wait > Duration::from_secs(999) && wait <= Duration::from_secs(1000));
    }
}
