//! The settings of lifecycle events (`[events]`) and their checks; the
//! secret that signs them is the hooks' (`[hooks] secret`, `hooks.rs`).

use super::{duration, input::Names, BrokerKind, Config, ConfigError, MAX_DURATION};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[events]`: lifecycle events POSTed to the backend (docs/events.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Where batches go; no events at all without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Events held at most while the backend does not acknowledge them.
    pub queue: usize,
    /// One POST's deadline.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// The longest wait between two tries of a batch.
    #[serde(with = "duration")]
    pub retry_max: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            url: None,
            queue: 100_000,
            timeout: Duration::from_secs(10),
            retry_max: Duration::from_secs(10),
        }
    }
}

/// Why `url` cannot be an events URL, or its parsed form.
pub fn parse_url(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("not a URL ({e}); expected http://host:port/path"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "https:// is not supported for events yet: send them to an http:// \
                 endpoint on a trusted network (a local proxy may add TLS)"
                    .into(),
            )
        }
        _ => return Err("expected http://host:port/path".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL names no host; expected http://host:port/path".into());
    }
    Ok(uri)
}

impl Config {
    /// `--events-url` is a usable http:// URL and comes with a secret; the
    /// queue, timeouts and the node TTL are in range.
    pub(super) fn validate_events(&self, names: &Names<'_>) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let fmt = duration::format;
        let ev = &self.events;
        if let Some(url) = &ev.url {
            if let Err(why) = parse_url(url) {
                return bad(format!("{}: {why}", names.value("events.url", "")));
            }
            if self.hooks.secret.as_deref().is_none_or(str::is_empty) {
                return bad(format!(
                    "{} needs {}: every event request is signed, so that the backend can \
                     refuse forgeries (docs/events.md)",
                    names.name("events.url"),
                    names.name("hooks.secret"),
                ));
            }
        }
        if ev.queue == 0 {
            return bad(format!(
                "{}: must be at least 1 (0 would drop every event)",
                names.value("events.queue", ev.queue)
            ));
        }
        for (key, d, least) in [
            ("events.timeout", ev.timeout, Duration::from_millis(100)),
            ("events.retry_max", ev.retry_max, Duration::from_millis(100)),
        ] {
            if d < least || d > MAX_DURATION {
                return bad(format!(
                    "{}: expected {} to {}",
                    names.value(key, fmt(d)),
                    fmt(least),
                    fmt(MAX_DURATION)
                ));
            }
        }
        let ttl = self.broker.node_ttl;
        if self.broker.kind == BrokerKind::Redis
            && (ttl < Duration::from_secs(1) || ttl > Duration::from_secs(3600))
        {
            return bad(format!(
                "{}: expected 1s to 1h",
                names.value("broker.node_ttl", fmt(ttl))
            ));
        }
        Ok(())
    }
}
