//! Configuration: defaults < TOML file < `TETHER_SECTION_KEY` environment < flags.
//!
//! Every setting is listed once in [`KEYS`]; the CLI builds its `serve` flags
//! from that table and the environment is read from it, so a key cannot exist
//! in one place and be missing in another.

use serde::{Deserialize, Serialize};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// One configurable setting: where it lives in TOML, its flag, and its help.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub section: &'static str,
    pub key: &'static str,
    /// Long flag name without the dashes.
    pub flag: &'static str,
    /// True for switches such as `--no-echo` that take no value.
    pub switch: bool,
    pub help: &'static str,
}

impl Key {
    /// `TETHER_SECTION_KEY`.
    pub fn env_var(&self) -> String {
        format!("TETHER_{}_{}", self.section, self.key).to_uppercase()
    }
}

const fn k(
    section: &'static str,
    key: &'static str,
    flag: &'static str,
    help: &'static str,
) -> Key {
    Key {
        section,
        key,
        flag,
        switch: false,
        help,
    }
}

/// Every setting. `--no-echo` and `--allow-anonymous` are switches that set
/// `server.echo = false` and `auth.allow_anonymous = true`.
pub const KEYS: &[Key] = &[
    k("server", "listen", "listen", "address to listen on; port 0 picks a free port [default: 127.0.0.1:8080]"),
    Key { switch: true, ..k("server", "echo", "no-echo", "turn off the /echo diagnostic endpoint") },
    k("server", "echo_max_message_bytes", "echo-max-message-bytes", "largest message /echo accepts (default: the value of --max-message-bytes)"),
    k("server", "echo_max_connections", "echo-max-connections", "connections /echo holds at once, apart from /ws [default: 1000]"),
    k("server", "drain_timeout", "drain-timeout", "how long shutdown waits for clients to leave [default: 10s]"),
    k("server", "drain_jitter", "drain-jitter", "clients told to reconnect within a random delay up to this [default: 5s]"),
    k("server", "node_id", "node-id", "this node's id in stats and logs [default: random]"),
    k("heartbeat", "ping_interval", "ping-interval", "server ping period [default: 25s]"),
    k("heartbeat", "pong_timeout", "pong-timeout", "extra silence tolerated after a ping before closing with 4003 [default: 10s]"),
    k("history", "size", "history-size", "publications kept per channel for recovery; 0 disables [default: 100]"),
    k("history", "ttl", "history-ttl", "how long a publication stays in history [default: 10m]"),
    k("history", "meta_ttl", "history-meta-ttl", "how long an idle channel keeps its epoch and offset [default: 24h]"),
    k("history", "max_channel_bytes", "history-max-channel-bytes", "history bytes kept per channel; the oldest go first [default: 1048576]"),
    k("history", "max_bytes", "history-max-bytes", "history bytes kept on the node in all; past it new history is refused [default: 268435456]"),
    k("history", "idempotency_window", "idempotency-window", "how long a publish's idempotency key is honoured [default: 5m]"),
    k("history", "idempotency_max_keys", "idempotency-max-keys", "idempotency keys remembered on the node in all [default: 100000]"),
    k("limits", "max_connections", "max-connections", "connections the node accepts in all [default: 50000]"),
    k("limits", "max_connections_per_ip", "max-connections-per-ip", "sockets one client address holds (WebSocket or HTTP) [default: 5000]"),
    k("limits", "ipv6_prefix", "ipv6-prefix", "IPv6 clients are grouped by this prefix length for per-address limits [default: 64]"),
    k("limits", "max_channels", "max-channels", "channels the node holds in memory (subscribed or with history) [default: 100000]"),
    k("limits", "max_subscriptions", "max-subscriptions", "subscriptions one connection may hold [default: 1024]"),
    k("limits", "publish_rate_per_ip", "publish-rate-per-ip", "POST /api/publish requests per second from one address, sustained [default: 1000]"),
    k("limits", "publish_burst_per_ip", "publish-burst-per-ip", "POST /api/publish requests one address may send at once [default: 2000]"),
    k("limits", "handshake_rate_per_ip", "handshake-rate-per-ip", "new connections per second from one IP, sustained [default: 100]"),
    k("limits", "handshake_burst_per_ip", "handshake-burst-per-ip", "new connections one IP may open at once [default: 200]"),
    k("limits", "max_message_bytes", "max-message-bytes", "largest message a client may send; larger closes with 1009 [default: 65536]"),
    k("limits", "messages_per_second", "messages-per-second", "messages per second one connection may send [default: 100]"),
    k("limits", "messages_burst", "messages-burst", "messages one connection may send at once [default: 200]"),
    k("limits", "send_queue", "send-queue", "messages queued for one slow client before closing it with 4004 [default: 1024]"),
    k("limits", "handshake_timeout", "handshake-timeout", "time allowed for TLS, request headers and a request body [default: 10s]"),
    k("limits", "write_timeout", "write-timeout", "time allowed for one write to a client [default: 10s]"),
    k("auth", "allowed_origins", "allowed-origins", "comma-separated Origin allow-list, e.g. https://app.example.com,https://*.example.com [default: any]"),
    k("auth", "jwt_secret", "jwt-secret", "HS256 secret for client tokens"),
    k("auth", "jwt_public_key", "jwt-public-key", "PEM file with the RS256 public key for client tokens"),
    k("auth", "api_key", "api-key", "bearer key required by /api/publish and /api/stats"),
    Key { switch: true, ..k("auth", "allow_anonymous", "allow-anonymous", "accept clients without a token, even when auth is configured or the listener is not loopback") },
    k("tls", "cert", "tls-cert", "PEM certificate chain; serves wss:// and https://"),
    k("tls", "key", "tls-key", "PEM private key for --tls-cert"),
    k("proxy", "trusted", "trusted-proxies", "comma-separated CIDRs of proxies whose Forwarded/X-Forwarded-For (or PROXY header) names the client [default: none]"),
    Key { switch: true, ..k("proxy", "protocol", "proxy-protocol", "expect a PROXY protocol v1/v2 header from peers in --trusted-proxies") },
    k("broker", "kind", "broker", "memory (one node) or redis (many nodes) [default: memory]"),
    k("broker", "redis_url", "redis-url", "Redis URL for --broker redis [default: redis://127.0.0.1:6379]"),
    k("log", "format", "log-format", "text or json [default: text]"),
    k("log", "level", "log-level", "tracing filter, e.g. info or tether_server=debug [default: info]"),
];

/// The effective configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub heartbeat: HeartbeatConfig,
    pub history: HistoryConfig,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub proxy: ProxyConfig,
    pub broker: BrokerConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub echo: bool,
    /// `None`: the same as `limits.max_message_bytes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo_max_message_bytes: Option<usize>,
    pub echo_max_connections: usize,
    #[serde(with = "duration")]
    pub drain_timeout: Duration,
    #[serde(with = "duration")]
    pub drain_jitter: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            echo: true,
            echo_max_message_bytes: None,
            echo_max_connections: 1000,
            drain_timeout: Duration::from_secs(10),
            drain_jitter: Duration::from_secs(5),
            node_id: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    #[serde(with = "duration")]
    pub pong_timeout: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    pub size: usize,
    #[serde(with = "duration")]
    pub ttl: Duration,
    #[serde(with = "duration")]
    pub meta_ttl: Duration,
    pub max_channel_bytes: usize,
    pub max_bytes: usize,
    #[serde(with = "duration")]
    pub idempotency_window: Duration,
    pub idempotency_max_keys: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            size: 100,
            ttl: Duration::from_secs(600),
            meta_ttl: Duration::from_secs(24 * 3600),
            max_channel_bytes: 1024 * 1024,
            max_bytes: 256 * 1024 * 1024,
            idempotency_window: Duration::from_secs(300),
            idempotency_max_keys: 100_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub ipv6_prefix: u8,
    pub max_channels: usize,
    pub max_subscriptions: usize,
    pub publish_rate_per_ip: f64,
    pub publish_burst_per_ip: u32,
    pub handshake_rate_per_ip: f64,
    pub handshake_burst_per_ip: u32,
    pub max_message_bytes: usize,
    pub messages_per_second: f64,
    pub messages_burst: u32,
    pub send_queue: usize,
    #[serde(with = "duration")]
    pub handshake_timeout: Duration,
    #[serde(with = "duration")]
    pub write_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 50_000,
            max_connections_per_ip: 5_000,
            ipv6_prefix: 64,
            max_channels: 100_000,
            max_subscriptions: 1024,
            publish_rate_per_ip: 1000.0,
            publish_burst_per_ip: 2000,
            handshake_rate_per_ip: 100.0,
            handshake_burst_per_ip: 200,
            max_message_bytes: 64 * 1024,
            messages_per_second: 100.0,
            messages_burst: 200,
            send_queue: 1024,
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(deserialize_with = "list::deserialize")]
    pub allowed_origins: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    pub allow_anonymous: bool,
}

impl AuthConfig {
    /// Whether clients must present a token.
    pub fn jwt_configured(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_public_key.is_some()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

/// Proxies in front of the node, whose word on the client's address is taken.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// CIDRs (`10.0.0.0/8`, `::1/128`, or a bare address).
    #[serde(deserialize_with = "list::deserialize")]
    pub trusted: Vec<String>,
    /// Read a PROXY protocol v1/v2 header from trusted peers.
    pub protocol: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub kind: BrokerKind,
    pub redis_url: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            kind: BrokerKind::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// The smallest rate (per second) a rate setting accepts: one per 1000 s.
/// Smaller values are almost certainly a typo, and make waits overflow.
pub const MIN_RATE: f64 = 0.001;

/// The longest duration any setting accepts (one year): every duration is
/// added to the current time somewhere, and that must not overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a configuration could not be used; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Where a value came from, for error messages.
fn describe(key: &Key, origin: &str) -> String {
    match origin {
        "env" => format!("{} ({}.{})", key.env_var(), key.section, key.key),
        "flag" => format!("--{} ({}.{})", key.flag, key.section, key.key),
        _ => format!("{}.{}", key.section, key.key),
    }
}

/// Reads a scalar the way a user writes it on a command line: a TOML literal
/// when it is one (`100`, `true`, `1.5`), otherwise a string (`25s`, `127.0.0.1:80`).
fn parse_scalar(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)),
            ) => v,
            _ => toml::Value::String(raw.to_owned()),
        },
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn set(table: &mut toml::Table, key: &Key, value: toml::Value) {
    let section = table
        .entry(key.section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(section) = section {
        section.insert(key.key.to_owned(), value);
    }
}

fn switch_value(key: &Key) -> toml::Value {
    // `--no-echo` means echo = false; other switches mean true.
    toml::Value::Boolean(!key.flag.starts_with("no-"))
}

/// Builds the effective configuration.
///
/// `flags` are `(flag name, value)` pairs from the command line; switches carry
/// an empty value. `env` is the process environment (injected for tests).
pub fn load(
    file: Option<&std::path::Path>,
    env: impl Fn(&str) -> Option<String>,
    flags: &[(String, String)],
) -> Result<Config, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            text.parse::<toml::Table>()
                .map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?
        }
        None => toml::Table::new(),
    };
    let mut origins: Vec<(&Key, &str)> = Vec::new();
    for key in KEYS {
        if let Some(raw) = env(&key.env_var()) {
            set(&mut table, key, parse_scalar(&raw));
            origins.push((key, "env"));
        }
    }
    for (flag, raw) in flags {
        let key = KEYS
            .iter()
            .find(|k| k.flag == flag)
            .ok_or_else(|| ConfigError::Invalid(format!("unknown flag --{flag}")))?;
        let value = if key.switch {
            switch_value(key)
        } else {
            parse_scalar(raw)
        };
        set(&mut table, key, value);
        origins.push((key, "flag"));
    }
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            // Name the flag or variable the bad value came from, when we know it.
            let msg = e.message().to_owned();
            let culprit = origins
                .iter()
                .rev()
                .find(|(k, _)| msg.contains(k.key) || e.to_string().contains(k.key));
            match culprit {
                Some((key, origin)) => {
                    ConfigError::Invalid(format!("{}: {msg}", describe(key, origin)))
                }
                None => ConfigError::Invalid(e.to_string().trim().replace('\n', " ")),
            }
        })?;
    config.validate()?;
    Ok(config)
}

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
                    "{name} must be at most {}d (365 days), not {}s",
                    MAX_DURATION.as_secs() / 86_400,
                    d.as_secs()
                ));
            }
        }
        if self.limits.ipv6_prefix > 128 {
            return bad(format!(
                "limits.ipv6_prefix is a prefix length, 0 to 128, not {}",
                self.limits.ipv6_prefix
            ));
        }
        if self.limits.publish_rate_per_ip.is_nan() || self.limits.publish_rate_per_ip <= 0.0 {
            return bad("limits.publish_rate_per_ip must be positive".into());
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
            return bad(
                "--broker redis is not available in this build yet; use --broker memory".into(),
            );
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

    /// The configuration as TOML, as `--print-config` shows it (secrets masked).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.auth.jwt_secret.is_some() {
            shown.auth.jwt_secret = Some("<set>".into());
        }
        if shown.auth.api_key.is_some() {
            shown.auth.api_key = Some("<set>".into());
        }
        toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}

/// Durations as people write them: `25s`, `500ms`, `1h 30m`.
mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Seconds(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {t:?} ({e}); write it like 25s, 500ms or 1m"
                ))
            }),
        }
    }
}

/// A list written either as a TOML array or as a comma-separated string.
mod list {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            Text(String),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::List(v) => v,
            Raw::Text(t) => t
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_load_with_nothing_given() {
        let c = load(None, no_env, &[]).expect("defaults are valid");
        assert_eq!(c.heartbeat.ping_interval, Duration::from_secs(25));
        assert_eq!(c.server.listen.port(), 8080);
        assert!(c.server.echo);
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let dir = std::env::temp_dir().join(format!("tether-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let file = dir.join("t.toml");
        std::fs::write(
            &file,
            "[heartbeat]\nping_interval = \"5s\"\npong_timeout = \"3s\"\n[limits]\nsend_queue = 7\n",
        )
        .expect("write");
        let env: HashMap<String, String> = [
            ("TETHER_HEARTBEAT_PING_INTERVAL", "4s"),
            ("TETHER_LIMITS_SEND_QUEUE", "8"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        let flags = vec![
            ("ping-interval".to_owned(), "1500ms".to_owned()),
            ("no-echo".to_owned(), String::new()),
            (
                "allowed-origins".to_owned(),
                "https://a.example, https://*.b.example".to_owned(),
            ),
        ];
        let c = load(Some(&file), |k| env.get(k).cloned(), &flags).expect("valid");
        assert_eq!(c.heartbeat.ping_interval, Duration::from_millis(1500));
        assert_eq!(c.heartbeat.pong_timeout, Duration::from_secs(3));
        assert_eq!(c.limits.send_queue, 8);
        assert!(!c.server.echo);
        assert_eq!(
            c.auth.allowed_origins,
            vec!["https://a.example", "https://*.b.example"]
        );
    }

    #[test]
    fn bad_values_name_their_source() {
        let flags = vec![("ping-interval".to_owned(), "soon".to_owned())];
        let err = load(None, no_env, &flags).unwrap_err().to_string();
        assert!(err.contains("--ping-interval"), "{err}");
        assert!(err.contains("25s"), "{err}");
    }

    #[test]
    fn public_bind_without_auth_is_refused_unless_anonymous() {
        let flags = vec![("listen".to_owned(), "0.0.0.0:8080".to_owned())];
        let err = load(None, no_env, &flags).unwrap_err().to_string();
        assert!(err.contains("--allow-anonymous"), "{err}");
        let mut flags = flags;
        flags.push(("allow-anonymous".to_owned(), String::new()));
        assert!(load(None, no_env, &flags).is_ok());
    }

    fn flags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn public_bind_needs_both_halves_of_auth() {
        let public = ("listen", "0.0.0.0:8080");
        let jwt_only = load(None, no_env, &flags(&[public, ("jwt-secret", "s")]))
            .unwrap_err()
            .to_string();
        assert!(jwt_only.contains("no --api-key"), "{jwt_only}");
        assert!(jwt_only.contains("Add --api-key"), "{jwt_only}");
        let rsa_only = load(
            None,
            no_env,
            &flags(&[("listen", "[::]:8080"), ("jwt-public-key", "/k.pem")]),
        )
        .unwrap_err()
        .to_string();
        assert!(rsa_only.contains("no --api-key"), "{rsa_only}");
        let key_only = load(None, no_env, &flags(&[public, ("api-key", "k")]))
            .unwrap_err()
            .to_string();
        assert!(key_only.contains("no JWT key"), "{key_only}");
        assert!(key_only.contains("Add --jwt-secret"), "{key_only}");
        for err in [&jwt_only, &key_only] {
            assert!(err.contains("--allow-anonymous"), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        let both = flags(&[public, ("jwt-secret", "s"), ("api-key", "k")]);
        assert!(load(None, no_env, &both).is_ok());
        for half in [("jwt-secret", "s"), ("api-key", "k")] {
            let open = flags(&[public, half, ("allow-anonymous", "")]);
            assert!(load(None, no_env, &open).is_ok(), "{half:?}");
            // Loopback stays as easy as before.
            let local = flags(&[("listen", "127.0.0.1:8080"), half]);
            assert!(load(None, no_env, &local).is_ok(), "{half:?}");
        }
    }

    #[test]
    fn absurd_rates_are_refused() {
        for key in [
            "messages-per-second",
            "handshake-rate-per-ip",
            "publish-rate-per-ip",
        ] {
            for value in [
                "1e-300", "1e-320", "0.0009", "0", "-1", "nan", "inf", "-inf",
            ] {
                let err = load(None, no_env, &flags(&[(key, value)]))
                    .map(|_| ())
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("at least 0.001"), "--{key} {value}: {err}");
                assert!(err.contains(&key.replace('-', "_")), "{err}");
            }
            assert!(load(None, no_env, &flags(&[(key, "0.001")])).is_ok());
            assert!(load(None, no_env, &flags(&[(key, "1e9")])).is_ok());
        }
    }

    #[test]
    fn absurd_durations_are_refused() {
        for key in ["ping-interval", "history-ttl", "write-timeout"] {
            let err = load(None, no_env, &flags(&[(key, "9223372036854775807")]))
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(err.contains("must be at most 365d"), "--{key}: {err}");
        }
        assert!(load(None, no_env, &flags(&[("history-meta-ttl", "365d")])).is_ok());
        let err = load(None, no_env, &flags(&[("ipv6-prefix", "129")]))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("0 to 128"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_validated() {
        let flags = vec![(
            "trusted-proxies".to_owned(),
            "10.0.0.0/8, 192.168.1.300".to_owned(),
        )];
        let err = load(None, no_env, &flags).unwrap_err().to_string();
        assert!(
            err.contains("192.168.1.300") && err.contains("--trusted-proxies"),
            "{err}"
        );
        let flags = vec![(
            "trusted-proxies".to_owned(),
            "10.0.0.0/8,::1,127.0.0.1".to_owned(),
        )];
        let c = load(None, no_env, &flags).expect("CIDRs and bare addresses");
        assert_eq!(c.proxy.trusted.len(), 3);
        let flags = vec![("proxy-protocol".to_owned(), String::new())];
        let err = load(None, no_env, &flags).unwrap_err().to_string();
        assert!(err.contains("--trusted-proxies"), "{err}");
        let flags = vec![("ipv6-prefix".to_owned(), "129".to_owned())];
        let err = load(None, no_env, &flags).unwrap_err().to_string();
        assert!(err.contains("ipv6_prefix"), "{err}");
    }

    #[test]
    fn print_config_round_trips_and_masks_secrets() {
        let flags = vec![("api-key".to_owned(), "hunter2".to_owned())];
        let c = load(None, no_env, &flags).expect("valid");
        let text = c.to_toml();
        assert!(!text.contains("hunter2"));
        let back: Config = toml::from_str(&text).expect("printed config parses");
        assert_eq!(back.heartbeat.ping_interval, c.heartbeat.ping_interval);
    }

    /// docs/configuration.md documents every flag and variable.
    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../../../docs/configuration.md");
        for key in KEYS {
            assert!(
                doc.contains(&format!("`--{}`", key.flag)),
                "--{} undocumented",
                key.flag
            );
            assert!(
                doc.contains(&key.env_var()),
                "{} undocumented",
                key.env_var()
            );
        }
    }

    #[test]
    fn every_key_has_a_unique_flag_and_env_var() {
        let mut flags: Vec<_> = KEYS.iter().map(|k| k.flag).collect();
        flags.sort_unstable();
        flags.dedup();
        assert_eq!(flags.len(), KEYS.len());
        // every key exists in the printed default config or is optional
        let printed = Config::default().to_toml();
        for key in KEYS
            .iter()
            .filter(|k| !k.help.contains("[default: random]"))
        {
            let optional = !key.help.contains("[default:") && !key.switch;
            assert!(
                optional || printed.contains(&format!("{} =", key.key)),
                "{}",
                key.key
            );
        }
    }
}
