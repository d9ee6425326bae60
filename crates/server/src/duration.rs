//! Durations as people write them: `25s`, `500ms`, `10m`, `24h`, `1h30m`
//! (or a whole number of seconds). Printed the way the docs write them, in
//! a form that parses back to the same value.

use serde::{de, Deserializer, Serializer};
use std::{fmt, time::Duration};

/// What a duration setting accepts, for error messages.
pub const ACCEPTED: &str = "a duration like 25s, 500ms, 10m or 24h";

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(Visitor)
}

/// Parses what a user wrote; `None` when it is not a duration.
pub fn parse(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

/// `24h`, `10m`, `25s`, `500ms`, `1h30m`, `1s500ms`: hours at most (the
/// docs write `24h`, not `1day`), no spaces, nothing that is zero.
pub fn format(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1000 % 1000), "us"),
        (u64::from(nanos % 1000), "ns"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

/// For `Option<Duration>` fields that are skipped when `None`.
pub mod option {
    use serde::{Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::deserialize(d).map(Some)
    }
}

struct Visitor;

impl de::Visitor<'_> for Visitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ACCEPTED)
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(secs))
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
        u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("expected {ACCEPTED}, not a negative number")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse(text).ok_or_else(|| E::custom(format!("expected {ACCEPTED}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_durations_read_like_the_docs_and_parse_back() {
        let ms = Duration::from_millis;
        for (d, text) in [
            (Duration::from_secs(24 * 3600), "24h"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(25), "25s"),
            (ms(500), "500ms"),
            (Duration::from_secs(5400), "1h30m"),
            (ms(1500), "1s500ms"),
            (Duration::new(0, 1_001), "1us1ns"),
            (Duration::ZERO, "0s"),
            (Duration::from_secs(365 * 24 * 3600), "8760h"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Some(d), "{text}");
        }
        assert_eq!(parse("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("soon"), None);
    }
}
