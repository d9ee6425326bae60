//! How `tether sub` and `tether pub` show delays and close reasons: in
//! words, not the protocol's machine-readable `retry_after_ms=N` suffix.

use std::time::Duration;
use tether_protocol::RetryHint;

/// `480 ms`, `1.5 s`, `2 min 5 s`.
pub fn delay(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        let tenths = (ms + 50) / 100;
        match tenths % 10 {
            0 => format!("{} s", tenths / 10),
            t => format!("{}.{t} s", tenths / 10),
        }
    } else {
        let s = d.as_secs();
        match s % 60 {
            0 => format!("{} min", s / 60),
            r => format!("{} min {r} s", s / 60),
        }
    }
}

/// A close reason with its retry hint, if any, in words:
/// `restarting retry_after_ms=1500` → `restarting (the server asks to retry in 1.5 s)`.
pub fn reason(text: &str) -> String {
    match RetryHint::split(text) {
        (rest, Some(RetryHint(after))) => {
            format!("{rest} (the server asks to retry in {})", delay(after))
        }
        (rest, None) => rest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_read_as_words() {
        let ms = Duration::from_millis;
        assert_eq!(delay(ms(0)), "0 ms");
        assert_eq!(delay(ms(123)), "123 ms");
        assert_eq!(delay(ms(1500)), "1.5 s");
        assert_eq!(delay(ms(30_000)), "30 s");
        assert_eq!(delay(ms(125_000)), "2 min 5 s");
    }

    #[test]
    fn retry_hints_read_as_words() {
        assert_eq!(
            reason("closed with 1013 (try again later): busy retry_after_ms=123"),
            "closed with 1013 (try again later): busy (the server asks to retry in 123 ms)"
        );
        assert_eq!(reason("connection lost: reset"), "connection lost: reset");
    }
}
