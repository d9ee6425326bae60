//! The reconnect policy: after a connection ends, whether and when to try
//! again. Pure decisions with no I/O and no clock; randomness comes from an
//! injected [`Jitter`] so the schedule is tested exactly.

use std::{sync::Arc, time::Duration};
use tether_protocol::{Backoff, CloseCode, Reconnect, RetryHint};

/// A source of uniform random numbers in `[0, 1)`, used for full jitter.
pub type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

/// How a connection (or an attempt at one) ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ended {
    /// The server sent a close frame.
    Closed { code: CloseCode, reason: String },
    /// The connection died without a close frame (what browsers call 1006):
    /// connect failure, I/O error, EOF, or silence past the heartbeat limit.
    Lost { reason: String },
    /// The handshake got an HTTP answer other than `101 Switching Protocols`.
    Refused {
        status: u16,
        retry_after: Option<Duration>,
        reason: String,
    },
}

impl Ended {
    /// The code reported for this ending (the close code, 1006 for a lost
    /// connection, the HTTP status of a refused handshake) and one line
    /// saying what happened.
    pub(crate) fn describe(&self) -> (u16, String) {
        match self {
            Ended::Closed { code, reason } => {
                (code.as_u16(), format!("closed with {code}: {reason}"))
            }
            Ended::Lost { reason } => (
                CloseCode::Abnormal.as_u16(),
                format!("connection lost: {reason}"),
            ),
            Ended::Refused { status, reason, .. } => (
                *status,
                format!("handshake refused with HTTP {status}: {reason}"),
            ),
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Wait `delay`, then make retry number `attempt` (1-based); refresh the
    /// token first when `refresh_token` is set (after 4002). `code` and
    /// `reason` say why the connection ended, as in `Stop`.
    Retry {
        attempt: u32,
        delay: Duration,
        refresh_token: bool,
        code: u16,
        reason: String,
    },
    /// Stop for good, reporting `code` and `reason`.
    Stop { code: u16, reason: String },
}

/// HTTP statuses that retrying cannot fix: the request itself is wrong
/// (400, 404) or the credentials or origin are (401, 403).
const PERMANENT_STATUSES: [u16; 4] = [400, 401, 403, 404];

pub(crate) struct Policy {
    backoff: Backoff,
    max_attempts: Option<u32>,
    jitter: Jitter,
    /// Retries made since the last successful connection.
    attempt: u32,
}

impl Policy {
    pub fn new(backoff: Backoff, max_attempts: Option<u32>, jitter: Jitter) -> Self {
        Policy {
            backoff,
            max_attempts,
            jitter,
            attempt: 0,
        }
    }

    /// A connection was established (welcome received): the next failure
    /// starts the schedule from the beginning.
    pub fn connected(&mut self) {
        self.attempt = 0;
    }

    pub fn next(&mut self, ended: &Ended) -> Decision {
        let (code, reason) = ended.describe();
        let (floor, reconnect) = match ended {
            // 1013 advises a floor; 1012 carries the server's jittered
            // delay. Any code carrying a hint is honoured the same way:
            // waited out, then our own jitter on top (`Backoff::delay`),
            // so clients given the same hint do not return all at once.
            Ended::Closed { code, reason } => {
                (RetryHint::parse(reason).map(|h| h.0), code.reconnect())
            }
            Ended::Lost { .. } => (None, Reconnect::WithBackoff),
            Ended::Refused {
                status,
                retry_after,
                ..
            } => (
                *retry_after,
                if PERMANENT_STATUSES.contains(status) {
                    Reconnect::Never
                } else {
                    Reconnect::WithBackoff
                },
            ),
        };
        if reconnect == Reconnect::Never {
            return Decision::Stop { code, reason };
        }
        if self.max_attempts.is_some_and(|max| self.attempt >= max) {
            return Decision::Stop {
                code,
                reason: format!("gave up after {} attempts; last: {reason}", self.attempt),
            };
        }
        let delay = self.backoff.delay(self.attempt, (self.jitter)(), floor);
        self.attempt += 1;
        Decision::Retry {
            attempt: self.attempt,
            delay,
            refresh_token: reconnect == Reconnect::AfterTokenRefresh,
            code,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn lost() -> Ended {
        Ended::Lost {
            reason: "reset".into(),
        }
    }

    fn closed(code: u16, reason: &str) -> Ended {
        Ended::Closed {
            code: CloseCode::from_u16(code),
            reason: reason.into(),
        }
    }

    /// A policy whose randomness replays `units` in order (then repeats the last).
    fn policy(units: &[f64], max_attempts: Option<u32>) -> Policy {
        let units = Mutex::new(units.to_vec());
        let jitter: Jitter = Arc::new(move || {
            let mut u = units.lock().unwrap_or_else(|e| e.into_inner());
            if u.len() > 1 {
                u.remove(0)
            } else {
                u.first().copied().unwrap_or(0.0)
            }
        });
        let backoff = Backoff {
            min_delay: MS(100),
            max_delay: MS(1000),
        };
        Policy::new(backoff, max_attempts, jitter)
    }

    fn delays(p: &mut Policy, n: usize, ended: &Ended) -> Vec<Duration> {
        (0..n)
            .map(|_| match p.next(ended) {
                Decision::Retry { delay, .. } => delay,
                other => panic!("expected a retry, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn delays_grow_exponentially_up_to_max_delay() {
        // At the top of the jitter range the delay is the ceiling less the
        // last, floored, millisecond.
        let mut p = policy(&[0.999_999_999], None);
        assert_eq!(
            delays(&mut p, 6, &lost()),
            [MS(99), MS(199), MS(399), MS(799), MS(999), MS(999)]
        );
    }

    #[test]
    fn delays_are_full_jitter_within_bounds() {
        let mut p = policy(&[0.0, 0.5, 0.25, 0.5, 0.1], None);
        assert_eq!(
            delays(&mut p, 5, &lost()),
            [MS(0), MS(100), MS(100), MS(400), MS(100)]
        );
        // Many random draws all stay inside [0, ceiling(attempt)].
        let mut p = Policy::new(
            Backoff {
                min_delay: MS(100),
                max_delay: MS(1000),
            },
            None,
            Arc::new(fastrand::f64),
        );
        for (attempt, d) in delays(&mut p, 200, &lost()).into_iter().enumerate() {
            let ceiling = MS((100u64 << attempt.min(10)).min(1000));
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
        }
    }

    #[test]
    fn first_retry_is_at_once_or_within_min_delay() {
        let mut p = policy(&[0.0], None);
        assert_eq!(delays(&mut p, 1, &lost()), [Duration::ZERO]);
        let mut p = policy(&[0.999], None);
        assert!(delays(&mut p, 1, &lost())[0] < MS(100));
    }

    #[test]
    fn a_connection_resets_the_schedule() {
        let mut p = policy(&[0.5], None);
        assert_eq!(delays(&mut p, 3, &lost()), [MS(50), MS(100), MS(200)]);
        p.connected();
        assert_eq!(delays(&mut p, 1, &lost()), [MS(50)]);
    }

    #[test]
    fn attempt_limit_stops() {
        let mut p = policy(&[0.0], Some(2));
        assert_eq!(delays(&mut p, 2, &lost()).len(), 2);
        match p.next(&lost()) {
            Decision::Stop { code, reason } => {
                assert_eq!(code, 1006);
                assert!(reason.contains("gave up after 2 attempts"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn try_again_later_hint_is_a_floor_with_jitter_above() {
        let mut p = policy(&[0.0], None);
        let ended = closed(1013, "overloaded retry_after_ms=700");
        assert_eq!(delays(&mut p, 1, &ended), [MS(700)]);
        // The jitter (ceilings 100, 200 ms) is added to the floor, never
        // instead of it: clients told the same 700 ms spread over 700-800 ms.
        let mut p = policy(&[0.5], None);
        assert_eq!(delays(&mut p, 2, &ended), [MS(750), MS(800)]);
        // However small the hint, it is waited out before the jitter.
        let mut p = policy(&[0.5], None);
        let ended = closed(1013, "overloaded retry_after_ms=10");
        assert_eq!(delays(&mut p, 2, &ended), [MS(60), MS(110)]);
    }

    #[test]
    fn service_restart_hint_is_honoured() {
        let mut p = policy(&[0.0], None);
        let ended = closed(1012, "server restarting; reconnect retry_after_ms=321");
        assert_eq!(delays(&mut p, 1, &ended), [MS(321)]);
        let mut p = policy(&[0.5], None);
        assert_eq!(delays(&mut p, 1, &ended), [MS(371)]);
    }

    #[test]
    fn hints_beyond_max_delay_are_cut_to_it() {
        // max_delay is 1000 ms in these tests.
        for reason in [
            "overloaded retry_after_ms=86400000",
            "overloaded retry_after_ms=18446744073709551615",
            "overloaded retry_after_ms=99999999999999999999999999",
        ] {
            // The jitter on top cannot carry it past the cut either.
            for (code, unit) in [(1012, 0.0), (1013, 0.0), (1012, 0.999), (1013, 0.999)] {
                let mut p = policy(&[unit], None);
                assert_eq!(
                    delays(&mut p, 1, &closed(code, reason)),
                    [MS(1000)],
                    "{code} {reason} {unit}"
                );
            }
        }
        let mut p = policy(&[0.0], None);
        let ended = Ended::Refused {
            status: 503,
            retry_after: Some(Duration::from_secs(u64::MAX)),
            reason: "busy".into(),
        };
        assert_eq!(delays(&mut p, 1, &ended), [MS(1000)]);
    }

    #[test]
    fn retry_after_on_429_and_503_is_a_floor() {
        for status in [429, 503] {
            let mut p = policy(&[0.0], None);
            let ended = Ended::Refused {
                status,
                retry_after: Some(MS(800)),
                reason: "busy".into(),
            };
            assert_eq!(delays(&mut p, 1, &ended), [MS(800)]);
            let mut p = policy(&[0.5], None);
            assert_eq!(delays(&mut p, 1, &ended), [MS(850)]);
        }
    }

    #[test]
    fn close_codes_are_obeyed() {
        // 4500-4999: an application's final refusal (a connect hook's).
        for code in [1000, 1008, 4001, 4500, 4999] {
            let mut p = policy(&[0.0], None);
            assert!(
                matches!(p.next(&closed(code, "bye")), Decision::Stop { code: c, .. } if c == code),
                "{code}"
            );
        }
        // 4000-4499: an application's refusal for now.
        for code in [1001, 1006, 1009, 1011, 4003, 4004, 4005, 4000, 4403, 4499] {
            let mut p = policy(&[0.0], None);
            assert!(
                matches!(
                    p.next(&closed(code, "x")),
                    Decision::Retry {
                        refresh_token: false,
                        ..
                    }
                ),
                "{code}"
            );
        }
        let mut p = policy(&[0.0], None);
        assert!(matches!(
            p.next(&closed(4002, "token expired")),
            Decision::Retry {
                refresh_token: true,
                ..
            }
        ));
    }

    #[test]
    fn a_retry_says_why_the_connection_ended() {
        let mut p = policy(&[0.0], None);
        let Decision::Retry { code, reason, .. } = p.next(&closed(1013, "busy retry_after_ms=5"))
        else {
            panic!("1013 is retried");
        };
        assert_eq!(code, 1013);
        assert!(
            reason.contains("1013") && reason.contains("busy"),
            "{reason}"
        );
        let Decision::Retry { code, reason, .. } = p.next(&lost()) else {
            panic!("a lost connection is retried");
        };
        assert_eq!((code, reason.as_str()), (1006, "connection lost: reset"));
    }

    #[test]
    fn permanent_http_refusals_stop() {
        for status in [400, 401, 403, 404] {
            let mut p = policy(&[0.0], None);
            let ended = Ended::Refused {
                status,
                retry_after: None,
                reason: "no".into(),
            };
            assert!(matches!(p.next(&ended), Decision::Stop { code, .. } if code == status));
        }
    }
}
