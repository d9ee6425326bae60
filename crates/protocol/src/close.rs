//! Close codes the server sends, and the reconnect semantics that go with each.
//!
//! This table is the single source of truth: the server picks codes from it, the
//! Rust client obeys it, and the JS client's copy is checked against
//! `vectors/close_codes.json`, which a test here generates from it.

use std::{fmt, ops::RangeInclusive, time::Duration};

/// What a client does after a connection ends with a given code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Do not reconnect: the server (or the app) ended the session on purpose.
    Never,
    /// Reconnect following the backoff schedule.
    WithBackoff,
    /// Reconnect with backoff, but only after the application supplied a fresh token.
    AfterTokenRefresh,
}

/// A WebSocket close code as Tether uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: normal closure.
    Normal,
    /// 1001: the server is shutting down.
    GoingAway,
    /// 1006: never sent; what a client sees when TCP died without a close frame.
    Abnormal,
    /// 1008: policy violation (bad origin, forbidden).
    PolicyViolation,
    /// 1009: a message was larger than the server accepts.
    MessageTooBig,
    /// 1011: internal server error.
    InternalError,
    /// 1012: service restart (graceful drain); reconnect after a jittered delay.
    ServiceRestart,
    /// 1013: try again later (overload); honour the advised delay.
    TryAgainLater,
    /// 4001: no or invalid credentials.
    Unauthorized,
    /// 4002: the token expired while connected.
    TokenExpired,
    /// 4003: the peer was silent longer than `ping_interval + pong_timeout`.
    HeartbeatTimeout,
    /// 4004: the connection fell too far behind its channel (slow consumer).
    SlowConsumer,
    /// 4005: the peer sent more messages than its rate allows.
    RateLimited,
    /// Any other code (including the 1002/1003/1007 protocol errors).
    Other(u16),
}

/// Application refusals a client retries: a backend (the connect hook) may
/// close a connection with any code here that Tether does not name itself
/// (4001-4005 keep their meaning), and clients reconnect with backoff.
pub const RETRY_REFUSALS: RangeInclusive<u16> = 4000..=4499;

/// Application refusals that are final: clients stop reconnecting, as after
/// 4001 or 1008, until the application starts them again.
pub const FINAL_REFUSALS: RangeInclusive<u16> = 4500..=4999;

/// Every named code, in numeric order (used to generate the shared vector file).
pub const ALL: [CloseCode; 13] = [
    CloseCode::Normal,
    CloseCode::GoingAway,
    CloseCode::Abnormal,
    CloseCode::PolicyViolation,
    CloseCode::MessageTooBig,
    CloseCode::InternalError,
    CloseCode::ServiceRestart,
    CloseCode::TryAgainLater,
    CloseCode::Unauthorized,
    CloseCode::TokenExpired,
    CloseCode::HeartbeatTimeout,
    CloseCode::SlowConsumer,
    CloseCode::RateLimited,
];

impl CloseCode {
    /// The numeric code on the wire.
    pub fn as_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::Abnormal => 1006,
            CloseCode::PolicyViolation => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::ServiceRestart => 1012,
            CloseCode::TryAgainLater => 1013,
            CloseCode::Unauthorized => 4001,
            CloseCode::TokenExpired => 4002,
            CloseCode::HeartbeatTimeout => 4003,
            CloseCode::SlowConsumer => 4004,
            CloseCode::RateLimited => 4005,
            CloseCode::Other(code) => code,
        }
    }

    /// The named code for a number, or `Other`.
    pub fn from_u16(code: u16) -> Self {
        ALL.iter()
            .copied()
            .find(|c| c.as_u16() == code)
            .unwrap_or(CloseCode::Other(code))
    }

    /// What the client does next: the named codes' rule, else the rule of
    /// the range the code falls in ([`RETRY_REFUSALS`], [`FINAL_REFUSALS`]),
    /// else reconnect with backoff.
    pub fn reconnect(self) -> Reconnect {
        match self {
            CloseCode::Normal | CloseCode::PolicyViolation | CloseCode::Unauthorized => {
                Reconnect::Never
            }
            CloseCode::TokenExpired => Reconnect::AfterTokenRefresh,
            CloseCode::Other(code) if FINAL_REFUSALS.contains(&code) => Reconnect::Never,
            _ => Reconnect::WithBackoff,
        }
    }

    /// A short machine name, used in metrics labels and logs.
    pub fn name(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::GoingAway => "going_away",
            CloseCode::Abnormal => "abnormal",
            CloseCode::PolicyViolation => "policy_violation",
            CloseCode::MessageTooBig => "message_too_big",
            CloseCode::InternalError => "internal_error",
            CloseCode::ServiceRestart => "service_restart",
            CloseCode::TryAgainLater => "try_again_later",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::TokenExpired => "token_expired",
            CloseCode::HeartbeatTimeout => "heartbeat_timeout",
            CloseCode::SlowConsumer => "slow_consumer",
            CloseCode::RateLimited => "rate_limited",
            CloseCode::Other(code) if RETRY_REFUSALS.contains(&code) => "app_refusal",
            CloseCode::Other(code) if FINAL_REFUSALS.contains(&code) => "app_refusal_final",
            CloseCode::Other(_) => "other",
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_u16(), self.name())
    }
}

/// The delay a server advises in a close reason (`... retry_after_ms=N`), sent
/// with 1012 (a jittered reconnect delay) and 1013 (a floor for the backoff).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryHint(pub Duration);

impl RetryHint {
    const KEY: &'static str = "retry_after_ms=";

    /// Appends the hint to a human-readable reason. Close reasons are capped at
    /// 123 bytes by RFC 6455, so the text is truncated (on a char boundary) first.
    pub fn append_to(self, reason: &str) -> String {
        let hint = format!(" {}{}", Self::KEY, self.0.as_millis());
        let mut text = reason.to_owned();
        while text.len() + hint.len() > 123 {
            text.pop();
        }
        text + &hint
    }

    /// Splits a close reason into its human text and its hint, so a tool can
    /// show `retry in 1.5 s` instead of the machine-readable suffix.
    pub fn split(reason: &str) -> (&str, Option<Self>) {
        match (Self::parse(reason), reason.rfind(Self::KEY)) {
            (Some(hint), Some(at)) => (reason[..at].trim_end(), Some(hint)),
            _ => (reason, None),
        }
    }

    /// Finds a hint in a close reason.
    pub fn parse(reason: &str) -> Option<Self> {
        let start = reason.rfind(Self::KEY)? + Self::KEY.len();
        let digits: String = reason[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if digits.is_empty() {
            return None;
        }
        // More digits than a u64 holds is still "a very long delay" (which
        // the backoff then cuts to its `max_delay`), not "no hint".
        let ms = digits.parse::<u64>().unwrap_or(u64::MAX);
        Some(RetryHint(Duration::from_millis(ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in ALL {
            assert_eq!(CloseCode::from_u16(code.as_u16()), code);
        }
        assert_eq!(CloseCode::from_u16(1002), CloseCode::Other(1002));
    }

    #[test]
    fn reconnect_semantics_follow_the_design_table() {
        assert_eq!(CloseCode::Normal.reconnect(), Reconnect::Never);
        assert_eq!(CloseCode::PolicyViolation.reconnect(), Reconnect::Never);
        assert_eq!(CloseCode::Unauthorized.reconnect(), Reconnect::Never);
        assert_eq!(
            CloseCode::TokenExpired.reconnect(),
            Reconnect::AfterTokenRefresh
        );
        for code in [1001, 1006, 1009, 1011, 1012, 1013, 4003, 4004, 4005] {
            assert_eq!(
                CloseCode::from_u16(code).reconnect(),
                Reconnect::WithBackoff,
                "{code}"
            );
        }
    }

    #[test]
    fn application_refusals_follow_their_range() {
        for code in [4000, 4006, 4403, 4499] {
            assert_eq!(
                CloseCode::from_u16(code).reconnect(),
                Reconnect::WithBackoff,
                "{code}"
            );
        }
        for code in [4500, 4501, 4903, 4999] {
            assert_eq!(
                CloseCode::from_u16(code).reconnect(),
                Reconnect::Never,
                "{code}"
            );
        }
        assert_eq!(CloseCode::from_u16(4403).to_string(), "4403 (app_refusal)");
        assert_eq!(
            CloseCode::from_u16(4503).to_string(),
            "4503 (app_refusal_final)"
        );
        // Outside both ranges an unnamed code is retried.
        for code in [1002, 3000, 3999, 5000] {
            assert_eq!(
                CloseCode::from_u16(code).reconnect(),
                Reconnect::WithBackoff,
                "{code}"
            );
        }
    }

    #[test]
    fn retry_hint_round_trips_and_fits_a_close_frame() {
        let long = "x".repeat(200);
        let reason = RetryHint(Duration::from_millis(1234)).append_to(&long);
        assert!(reason.len() <= 123);
        assert_eq!(
            RetryHint::parse(&reason),
            Some(RetryHint(Duration::from_millis(1234)))
        );
        assert_eq!(RetryHint::parse("server restarting"), None);
        assert_eq!(
            RetryHint::split("restarting retry_after_ms=1234"),
            ("restarting", Some(RetryHint(Duration::from_millis(1234))))
        );
        assert_eq!(
            RetryHint::split("x retry_after_ms="),
            ("x retry_after_ms=", None)
        );
        assert_eq!(RetryHint::parse("x retry_after_ms="), None);
        assert_eq!(
            RetryHint::parse("x retry_after_ms=99999999999999999999999"),
            Some(RetryHint(Duration::from_millis(u64::MAX)))
        );
    }

    fn policy(r: Reconnect) -> &'static str {
        match r {
            Reconnect::Never => "never",
            Reconnect::WithBackoff => "backoff",
            Reconnect::AfterTokenRefresh => "after_token_refresh",
        }
    }

    /// The vector file is what the JS client checks its own table against:
    /// the named codes, the ranges of application refusals, and the rule for
    /// every other code.
    #[test]
    fn close_code_vectors_match_this_table() {
        let text = include_str!("../vectors/close_codes.json");
        let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let rows = v["codes"].as_array().cloned().unwrap_or_default();
        assert_eq!(rows.len(), ALL.len());
        for (row, code) in rows.iter().zip(ALL) {
            assert_eq!(row["code"], code.as_u16());
            assert_eq!(row["name"], code.name());
            assert_eq!(row["reconnect"], policy(code.reconnect()), "{code}");
        }
        let ranges = v["ranges"].as_array().cloned().unwrap_or_default();
        assert_eq!(ranges.len(), 2);
        for (row, range) in ranges.iter().zip([RETRY_REFUSALS, FINAL_REFUSALS]) {
            assert_eq!(row["from"], *range.start());
            assert_eq!(row["to"], *range.end());
            assert_eq!(row["name"], CloseCode::Other(*range.start()).name());
            // Every unnamed code of the range follows the row.
            for code in range.map(CloseCode::from_u16) {
                if let CloseCode::Other(_) = code {
                    assert_eq!(row["reconnect"], policy(code.reconnect()), "{code}");
                }
            }
        }
        for code in [1002, 1003, 1007, 3000, 5000] {
            let code = CloseCode::from_u16(code);
            assert_eq!(v["otherwise"], policy(code.reconnect()), "{code}");
        }
    }
}
