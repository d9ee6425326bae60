//! Refused origins, logged once each: a page on an origin missing from
//! `--allowed-origins` retries for ever (its browser hides the 403 behind a
//! network error), so the operator is told once per origin, with the flag
//! to set, without a line per retry and without memory growing with every
//! origin an attacker invents.

use parking_lot::Mutex;
use std::collections::HashSet;
use tracing::warn;

/// Distinct origins remembered; past this, one last line says more were
/// refused and nothing more is remembered or logged.
pub const MAX_REMEMBERED: usize = 256;

#[derive(Default)]
pub struct RefusedOrigins {
    seen: Mutex<HashSet<Box<str>>>,
}

impl RefusedOrigins {
    /// Logs a warning the first time `origin` is refused; returns whether
    /// it did.
    pub fn note(&self, origin: &str) -> bool {
        // Quoted back at most this long: the header is the peer's text.
        let origin: String = origin.chars().take(200).collect();
        let mut seen = self.seen.lock();
        if seen.contains(origin.as_str()) || seen.len() > MAX_REMEMBERED {
            return false;
        }
        if seen.len() == MAX_REMEMBERED {
            // A marker that is never an origin: the next refusal is silent.
            seen.insert("".into());
            drop(seen);
            warn!(
                "more than {MAX_REMEMBERED} origins refused; not logging each: \
                 check --allowed-origins"
            );
            return false;
        }
        seen.insert(origin.as_str().into());
        drop(seen);
        warn!(
            %origin,
            "refused a request from origin {origin}: it is not in --allowed-origins \
             (TETHER_AUTH_ALLOWED_ORIGINS); add it there to let pages on it connect \
             (logged once per origin)"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_origin_and_bounded() {
        let r = RefusedOrigins::default();
        assert!(r.note("https://a.example"));
        assert!(!r.note("https://a.example"));
        for i in 1..MAX_REMEMBERED {
            assert!(r.note(&format!("https://{i}.example")));
        }
        assert!(!r.note("https://one-too-many.example"));
        assert!(!r.note("https://another.example"));
        assert_eq!(r.seen.lock().len(), MAX_REMEMBERED + 1);
    }
}
