//! Checks on a loaded configuration: values that parse but cannot work
//! together, out-of-range rates and durations, and exposure without auth.

use super::{duration, input::Names, BrokerKind, Config, ConfigError};
use std::time::Duration;

/// The smallest rate (per second) a rate setting accepts: one per 1000 s.
/// Smaller values are almost certainly a typo, and make waits overflow.
pub const MIN_RATE: f64 = 0.001;

/// The longest duration any setting accepts (one year): every duration is
/// added to the current time somewhere, and that must not overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

impl Config {
    /// Checks values that parse but cannot work together. Every refusal
    /// names the setting the way the user gave it (`names`): flag,
    /// environment variable or file key, with what was typed.
    pub(super) fn validate(&self, names: &Names<'_>) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let fmt = duration::format;
        let (hb, lim, hist) = (&self.heartbeat, &self.limits, &self.history);
        for (key, d) in [
            ("heartbeat.ping_interval", hb.ping_interval),
            ("heartbeat.pong_timeout", hb.pong_timeout),
        ] {
            if d < Duration::from_millis(100) {
                return bad(format!(
                    "{}: must be at least 100ms",
                    names.value(key, fmt(d))
                ));
            }
        }
        if lim.max_message_bytes < 64 {
            let given = names.value("limits.max_message_bytes", lim.max_message_bytes);
            return bad(format!("{given}: must be at least 64"));
        }
        // A cap of 0 is never meant: it refuses everything it counts.
        for (key, n, refuses) in [
            (
                "limits.max_connections",
                lim.max_connections,
                "every connection",
            ),
            (
                "limits.max_connections_per_ip",
                lim.max_connections_per_ip,
                "every connection",
            ),
            ("limits.max_channels", lim.max_channels, "every channel"),
            (
                "limits.max_subscriptions",
                lim.max_subscriptions,
                "every subscribe",
            ),
            (
                "limits.handshake_burst_per_ip",
                lim.handshake_burst_per_ip as usize,
                "every handshake",
            ),
            (
                "limits.publish_burst_per_ip",
                lim.publish_burst_per_ip as usize,
                "every API publish",
            ),
            (
                "limits.messages_burst",
                lim.messages_burst as usize,
                "every message",
            ),
            ("limits.send_queue", lim.send_queue, "every subscriber"),
            (
                "limits.max_subscriptions_total",
                lim.max_subscriptions_total,
                "every subscribe",
            ),
            (
                "limits.max_subscriptions_per_ip",
                lim.max_subscriptions_per_ip,
                "every subscribe",
            ),
            (
                "limits.new_channel_burst_per_ip",
                lim.new_channel_burst_per_ip as usize,
                "every new channel",
            ),
            (
                "limits.max_long_poll_sessions",
                lim.max_long_poll_sessions,
                "every long-polling session",
            ),
            (
                "limits.max_long_poll_sessions_per_ip",
                lim.max_long_poll_sessions_per_ip,
                "every long-polling session",
            ),
        ] {
            if n == 0 {
                return bad(format!(
                    "{}: must be at least 1 (0 would refuse {refuses})",
                    names.value(key, n)
                ));
            }
        }
        for (key, rate) in [
            ("limits.messages_per_second", lim.messages_per_second),
            ("limits.handshake_rate_per_ip", lim.handshake_rate_per_ip),
            ("limits.publish_rate_per_ip", lim.publish_rate_per_ip),
            (
                "limits.new_channel_rate_per_ip",
                lim.new_channel_rate_per_ip,
            ),
        ] {
            // `inf` and `nan` are valid TOML floats, so both can arrive from
            // a flag or a file.
            if !rate.is_finite() || rate < MIN_RATE {
                return bad(format!(
                    "{}: must be a finite number of at least {MIN_RATE} per second (one per \
                     1000 s), not {rate}",
                    names.value(key, rate)
                ));
            }
        }
        for (key, d) in [
            ("server.drain_timeout", self.server.drain_timeout),
            ("server.drain_jitter", self.server.drain_jitter),
            ("heartbeat.ping_interval", hb.ping_interval),
            ("heartbeat.pong_timeout", hb.pong_timeout),
            ("heartbeat.long_poll_timeout", hb.long_poll_timeout),
            ("history.ttl", hist.ttl),
            ("history.meta_ttl", hist.meta_ttl),
            ("history.idempotency_window", hist.idempotency_window),
            ("limits.handshake_timeout", lim.handshake_timeout),
            ("limits.write_timeout", lim.write_timeout),
        ] {
            // Durations are added to `Instant::now()`; a value of billions of
            // years (`--ping-interval 18446744073709551615`) would overflow.
            if d > MAX_DURATION {
                return bad(format!(
                    "{}: must be at most {} (365 days), not {}",
                    names.value(key, fmt(d)),
                    fmt(MAX_DURATION),
                    fmt(d)
                ));
            }
        }
        // A zero timeout is never meant: a long poll of 0 answers at once
        // and its client polls again at once; a handshake or write timeout
        // of 0 cuts every connection. (The heartbeat has its floors above.)
        for (key, d) in [
            ("heartbeat.long_poll_timeout", hb.long_poll_timeout),
            ("limits.handshake_timeout", lim.handshake_timeout),
            ("limits.write_timeout", lim.write_timeout),
        ] {
            if d.is_zero() {
                let given = names.value(key, fmt(d));
                return bad(format!("{given}: must be above 0, e.g. 1s"));
            }
        }
        // A publication must fit in its channel's history, and a channel's
        // history in the node's: otherwise history silently holds nothing.
        let largest = lim.max_message_bytes + 1024;
        if hist.max_channel_bytes < largest {
            return bad(format!(
                "{}: must be at least {} + 1024 ({largest}) so that one publication fits",
                names.value("history.max_channel_bytes", hist.max_channel_bytes),
                names.name("limits.max_message_bytes"),
            ));
        }
        if hist.max_bytes < hist.max_channel_bytes {
            return bad(format!(
                "{}: must be at least {} ({})",
                names.value("history.max_bytes", hist.max_bytes),
                names.name("history.max_channel_bytes"),
                hist.max_channel_bytes
            ));
        }
        if !(1..=128).contains(&lim.ipv6_prefix) {
            return bad(format!(
                "{}: must be 1 to 128 (64: one subscriber's network)",
                names.value("limits.ipv6_prefix", lim.ipv6_prefix)
            ));
        }
        if let Err(e) = crate::client_addr::TrustedProxies::parse(&self.proxy.trusted) {
            return bad(format!(
                "{}: bad entry {e}",
                names.value("proxy.trusted", "none")
            ));
        }
        if self.proxy.protocol && self.proxy.trusted.is_empty() {
            return bad(format!(
                "{} needs {}: the PROXY header is only read from trusted peers (e.g. \
                 --trusted-proxies 10.0.0.5 for your HAProxy)",
                names.name("proxy.protocol"),
                names.name("proxy.trusted"),
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            let (given, missing) = match self.tls.cert {
                Some(_) => ("tls.cert", "tls.key"),
                None => ("tls.key", "tls.cert"),
            };
            return bad(format!(
                "{}: TLS needs {} too",
                names.value(given, ""),
                names.name(missing)
            ));
        }
        self.hooks.validate(names)?;
        self.validate_exposure()?;
        // Entries are refreshed every ttl / 3 in one pipelined pass: under
        // 1s that is a pass every few hundred ms for nothing; past 1h a
        // crashed node's clients would linger for an hour.
        let ttl = self.presence.ttl;
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(3600) {
            return bad(format!(
                "{}: must be 1s to 1h",
                names.value("presence.ttl", fmt(ttl))
            ));
        }
        self.validate_events(names)?;
        if self.broker.kind == BrokerKind::Redis {
            let url = &self.broker.redis_url;
            if let Err(e) = redis::Client::open(url.as_str()) {
                return bad(format!(
                    "{}: {e} (expected redis://[:password@]host[:port][/db])",
                    names.value("broker.redis_url", format!("{url:?}"))
                ));
            }
            let prefix = &self.broker.redis_prefix;
            if prefix.is_empty()
                || prefix.len() > 64
                || !prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            {
                return bad(format!(
                    "{}: 1 to 64 letters, digits, '_', '.' or '-'",
                    names.value("broker.redis_prefix", format!("{prefix:?}"))
                ));
            }
            let every = self.broker.redis_check_interval;
            if every < Duration::from_millis(100) || every > Duration::from_secs(3600) {
                return bad(format!(
                    "{}: expected 100ms to 1h",
                    names.value("broker.redis_check_interval", fmt(every))
                ));
            }
        }
        Ok(())
    }

    /// A listener other people can reach needs both halves of auth: JWT or
    /// a connect hook for `/ws` and `/lp/`, and an API key for the publish
    /// API. Either one missing leaves that half open to anyone, so it is
    /// refused like no auth at all, unless `--allow-anonymous` says the
    /// openness is intended.
    fn validate_exposure(&self) -> Result<(), ConfigError> {
        let listen = self.server.listen;
        if listen.ip().is_loopback() || self.auth.allow_anonymous {
            return Ok(());
        }
        let clients_authenticated = self.auth.jwt_configured() || self.hooks.connect.is_some();
        let why = match (clients_authenticated, self.auth.api_key.is_some()) {
            (true, true) => return Ok(()),
            (false, false) => format!(
                "refusing to listen on {listen} without authentication: anyone who can reach it \
                 could subscribe and publish. Configure --jwt-secret/--jwt-public-key (or \
                 --hook-connect) and --api-key, or pass --allow-anonymous if that is what you \
                 want"
            ),
            (true, false) => format!(
                "refusing to listen on {listen} with {} but no --api-key: anyone who can \
                 reach it could publish to any channel through POST /api/publish. Add \
                 --api-key KEY, or pass --allow-anonymous if that is what you want",
                if self.auth.jwt_configured() {
                    "a JWT key"
                } else {
                    "a connect hook"
                }
            ),
            (false, true) => format!(
                "refusing to listen on {listen} with --api-key but no JWT key or connect hook: \
                 anyone who can reach it could connect to /ws and subscribe and publish without \
                 a token. Add --jwt-secret, --jwt-public-key or --hook-connect, or pass \
                 --allow-anonymous if that is what you want"
            ),
        };
        Err(ConfigError::Invalid(why))
    }
}
