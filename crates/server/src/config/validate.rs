//! Checks on a loaded configuration: values that parse but cannot work
//! together, out-of-range rates and durations, and exposure without auth.

use super::{duration, BrokerKind, Config, ConfigError};
use std::time::Duration;

/// The smallest rate (per second) a rate setting accepts: one per 1000 s.
/// Smaller values are almost certainly a typo, and make waits overflow.
pub const MIN_RATE: f64 = 0.001;

/// The longest duration any setting accepts (one year): every duration is
/// added to the current time somewhere, and that must not overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

impl Config {
    /// Checks values that parse but cannot work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.heartbeat.ping_interval < Duration::from_millis(100) {
            return bad("heartbeat.ping_interval must be at least 100ms".into());
        }
        if self.heartbeat.pong_timeout < Duration::from_millis(100) {
            return bad("heartbeat.pong_timeout must be at least 100ms".into());
        }
        if self.limits.send_queue == 0 {
            return bad("limits.send_queue must be at least 1".into());
        }
        if self.limits.max_message_bytes < 64 {
            return bad("limits.max_message_bytes must be at least 64".into());
        }
        for (name, rate) in [
            (
                "limits.messages_per_second",
                self.limits.messages_per_second,
            ),
            (
                "limits.handshake_rate_per_ip",
                self.limits.handshake_rate_per_ip,
            ),
            (
                "limits.publish_rate_per_ip",
                self.limits.publish_rate_per_ip,
            ),
            (
                "limits.new_channel_rate_per_ip",
                self.limits.new_channel_rate_per_ip,
            ),
        ] {
            // `inf` and `nan` are valid TOML floats, so both can arrive from
            // a flag or a file.
            if !rate.is_finite() || rate < MIN_RATE {
                return bad(format!(
                    "{name} must be a finite number of at least {MIN_RATE} per second (one per \
                     1000 s), not {rate}"
                ));
            }
        }
        for (name, d) in [
            ("server.drain_timeout", self.server.drain_timeout),
            ("server.drain_jitter", self.server.drain_jitter),
            ("heartbeat.ping_interval", self.heartbeat.ping_interval),
            ("heartbeat.pong_timeout", self.heartbeat.pong_timeout),
            (
                "heartbeat.long_poll_timeout",
                self.heartbeat.long_poll_timeout,
            ),
            ("history.ttl", self.history.ttl),
            ("history.meta_ttl", self.history.meta_ttl),
            (
                "history.idempotency_window",
                self.history.idempotency_window,
            ),
            ("limits.handshake_timeout", self.limits.handshake_timeout),
            ("limits.write_timeout", self.limits.write_timeout),
        ] {
            // Durations are added to `Instant::now()`; a value of billions of
            // years (`--ping-interval 18446744073709551615`) would overflow.
            if d > MAX_DURATION {
                return bad(format!(
                    "{name} must be at most {} (365 days), not {}",
                    duration::format(MAX_DURATION),
                    duration::format(d)
                ));
            }
        }
        // A zero timeout is never meant: a long poll of 0 answers at once
        // and its client polls again at once; a handshake or write timeout
        // of 0 cuts every connection. (The heartbeat has its floors above.)
        for (name, flag, d) in [
            (
                "heartbeat.long_poll_timeout",
                "--long-poll-timeout",
                self.heartbeat.long_poll_timeout,
            ),
            (
                "limits.handshake_timeout",
                "--handshake-timeout",
                self.limits.handshake_timeout,
            ),
            (
                "limits.write_timeout",
                "--write-timeout",
                self.limits.write_timeout,
            ),
        ] {
            if d.is_zero() {
                return bad(format!("{name} ({flag}) must be above 0, e.g. 1s"));
            }
        }
        // A publication must fit in its channel's history, and a channel's
        // history in the node's: otherwise history silently holds nothing.
        let largest = self.limits.max_message_bytes + 1024;
        if self.history.max_channel_bytes < largest {
            return bad(format!(
                "history.max_channel_bytes (--history-max-channel-bytes) is {}; it must be at                  least --max-message-bytes + 1024 ({largest}) so that one publication fits",
                self.history.max_channel_bytes
            ));
        }
        if self.history.max_bytes < self.history.max_channel_bytes {
            return bad(format!(
                "history.max_bytes (--history-max-bytes) is {}; it must be at least                  --history-max-channel-bytes ({})",
                self.history.max_bytes, self.history.max_channel_bytes
            ));
        }
        if !(1..=128).contains(&self.limits.ipv6_prefix) {
            return bad(format!(
                "limits.ipv6_prefix (--ipv6-prefix) is {}; it must be 1 to 128 (64: one subscriber's network)",
                self.limits.ipv6_prefix
            ));
        }
        if let Err(e) = crate::client_addr::TrustedProxies::parse(&self.proxy.trusted) {
            return bad(format!("proxy.trusted (--trusted-proxies): {e}"));
        }
        if self.proxy.protocol && self.proxy.trusted.is_empty() {
            return bad(
                "--proxy-protocol needs --trusted-proxies: the PROXY header is only read from \
                 trusted peers (e.g. --trusted-proxies 10.0.0.5 for your HAProxy)"
                    .into(),
            );
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return bad("TLS needs both --tls-cert and --tls-key".into());
        }
        self.validate_exposure()?;
        if self.broker.kind == BrokerKind::Redis {
            if let Err(e) = redis::Client::open(self.broker.redis_url.as_str()) {
                return bad(format!(
                    "--redis-url {:?}: {e} (expected redis://[:password@]host[:port][/db])",
                    self.broker.redis_url
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
                    "--redis-prefix {prefix:?}: 1 to 64 letters, digits, '_', '.' or '-'"
                ));
            }
            let every = self.broker.redis_check_interval;
            if every < std::time::Duration::from_millis(100)
                || every > std::time::Duration::from_secs(3600)
            {
                return bad(format!(
                    "--redis-check-interval {}: expected 100ms to 1h",
                    duration::format(every)
                ));
            }
        }
        Ok(())
    }

    /// A listener other people can reach needs both halves of auth: JWT for
    /// `/ws` and an API key for the publish API. Either one missing leaves
    /// that half open to anyone, so it is refused like no auth at all,
    /// unless `--allow-anonymous` says the openness is intended.
    fn validate_exposure(&self) -> Result<(), ConfigError> {
        let listen = self.server.listen;
        if listen.ip().is_loopback() || self.auth.allow_anonymous {
            return Ok(());
        }
        let why = match (self.auth.jwt_configured(), self.auth.api_key.is_some()) {
            (true, true) => return Ok(()),
            (false, false) => format!(
                "refusing to listen on {listen} without authentication: anyone who can reach it \
                 could subscribe and publish. Configure --jwt-secret/--jwt-public-key and \
                 --api-key, or pass --allow-anonymous if that is what you want"
            ),
            (true, false) => format!(
                "refusing to listen on {listen} with a JWT key but no --api-key: anyone who can \
                 reach it could publish to any channel through POST /api/publish. Add \
                 --api-key KEY, or pass --allow-anonymous if that is what you want"
            ),
            (false, true) => format!(
                "refusing to listen on {listen} with --api-key but no JWT key: anyone who can \
                 reach it could connect to /ws and subscribe and publish without a token. Add \
                 --jwt-secret or --jwt-public-key, or pass --allow-anonymous if that is what \
                 you want"
            ),
        };
        Err(ConfigError::Invalid(why))
    }
}
