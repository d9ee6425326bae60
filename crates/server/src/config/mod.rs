//! Configuration: defaults < TOML file < `TETHER_SECTION_KEY` environment < flags.
//!
//! Every setting is listed once in [`KEYS`]; the CLI builds its `serve` flags
//! from that table and the environment is read from it, so a key cannot exist
//! in one place and be missing in another.
//!
//! This module holds the settings' types and [`load`]; the key table is in
//! `keys`, the checks on a loaded configuration in `validate` (tested in
//! `validate_tests`), and the
//! `address` and `list` serde helpers in files of their own (`duration` is
//! `crate::duration`, shared with the channel rules);
//! `input` turns what the user typed into values and refusals in their terms,
//! and `channels` reads the `[[channels]]` rules with their line numbers.

use serde::{Deserialize, Serialize};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

mod address;
mod channels;
mod events;
pub(crate) use crate::duration;
mod hooks;
mod input;
mod keys;
mod list;
mod suggest;
#[cfg(test)]
mod tests;
mod validate;
#[cfg(test)]
mod validate_tests;

pub use events::{parse_url as events_url, EventsConfig};
pub use hooks::{check_url as check_hook_url, HooksConfig, MAX_HOOK_TIMEOUT};
pub use input::NOT_SETTINGS;
use input::{Given, Origin};
pub use keys::{Key, KEYS};
pub use validate::{MAX_DURATION, MIN_RATE};

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
    pub presence: PresenceConfig,
    pub hooks: HooksConfig,
    pub events: EventsConfig,
    pub log: LogConfig,
    /// `[[channels]]` rules, only from the file (see `channel_rules`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<crate::channel_rules::ChannelRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(deserialize_with = "address::deserialize")]
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
    /// How long a long poll waits for publications before answering `[]`.
    #[serde(with = "duration")]
    pub long_poll_timeout: Duration,
}

impl HeartbeatConfig {
    /// How long a client may stay silent (no message, pong or poll) before
    /// it counts as gone: `ping_interval + pong_timeout`, on every transport.
    pub fn silence_limit(&self) -> Duration {
        self.ping_interval + self.pong_timeout
    }
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(10),
            long_poll_timeout: Duration::from_secs(25),
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
            idempotency_window: tether_protocol::DEFAULT_IDEMPOTENCY_WINDOW,
            idempotency_max_keys: 100_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Long-polling sessions on the node: a budget of their own, apart from
    /// `max_connections`, so sessions cannot take WebSockets' places.
    pub max_long_poll_sessions: usize,
    /// Of which the sessions of one client address may hold.
    pub max_long_poll_sessions_per_ip: usize,
    pub ipv6_prefix: u8,
    pub max_channels: usize,
    pub max_subscriptions: usize,
    /// Subscriptions held on the node in all (every session).
    pub max_subscriptions_total: usize,
    /// Of which the sessions of one client address may hold.
    pub max_subscriptions_per_ip: usize,
    /// New channels per second one address may make the node hold.
    pub new_channel_rate_per_ip: f64,
    pub new_channel_burst_per_ip: u32,
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
            max_long_poll_sessions: 10_000,
            max_long_poll_sessions_per_ip: 1_000,
            ipv6_prefix: 64,
            max_channels: 100_000,
            max_subscriptions: 1024,
            max_subscriptions_total: 1_000_000,
            max_subscriptions_per_ip: 100_000,
            new_channel_rate_per_ip: 100.0,
            new_channel_burst_per_ip: 1000,
            publish_rate_per_ip: 1000.0,
            publish_burst_per_ip: 2000,
            handshake_rate_per_ip: 100.0,
            handshake_burst_per_ip: 200,
            max_message_bytes: 64 * 1024,
            messages_per_second: 100.0,
            messages_burst: 200,
            send_queue: 4096,
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
    /// The one header a trusted proxy names the client in.
    pub forwarded_header: ForwardedHeader,
}

/// Which header names the client (`--forwarded-header`). Only this one is
/// read, even from trusted proxies: a proxy overwrites the header it sets but
/// passes the other one through as the client wrote it, so reading both would
/// let a client pick its own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`, what the configs in docs/deployment.md set.
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=...`.
    #[serde(rename = "forwarded")]
    Forwarded,
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
    /// Prefix of every Redis key and pub/sub channel Tether uses.
    pub redis_prefix: String,
    /// How often quiet channels are compared with Redis and pub/sub
    /// connections pinged.
    #[serde(with = "duration")]
    pub redis_check_interval: Duration,
    /// How long a node's liveness key lives unless refreshed (the node
    /// registry that `--events-url` keeps with this broker).
    #[serde(with = "duration")]
    pub node_ttl: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            kind: BrokerKind::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_prefix: "tether".into(),
            redis_check_interval: Duration::from_secs(5),
            node_ttl: Duration::from_secs(15),
        }
    }
}

/// Presence across nodes (`--broker redis`; the memory broker's presence
/// is exact and needs nothing).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// How long an entry stays in Redis without its node refreshing it
    /// (each node refreshes its own every `ttl / 3`): the bound on how long
    /// a crashed or cut-off node's clients stay present.
    #[serde(with = "duration")]
    pub ttl: Duration,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            ttl: Duration::from_secs(30),
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
/// Every value is checked alone first, so a refusal names the flag,
/// variable or file key it came from and what that setting accepts.
pub fn load(
    file: Option<&std::path::Path>,
    env: impl Fn(&str) -> Option<String>,
    flags: &[(String, String)],
) -> Result<Config, ConfigError> {
    let mut given: Vec<Given> = Vec::new();
    let mut noted = channels::Noted::default();
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let table = text
                .parse::<toml::Table>()
                .map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?;
            noted = channels::check(&text, path)?;
            input::check_file_keys(&table, path)?;
            for key in KEYS {
                let value = table.get(key.section).and_then(|s| s.get(key.key));
                if let Some(value) = value {
                    let g = Given {
                        key,
                        origin: Origin::File(path),
                        typed: value.to_string(),
                    };
                    input::check(key, value).map_err(|why| g.refused(&why))?;
                    given.push(g);
                }
            }
            table
        }
        None => toml::Table::new(),
    };
    let from_env = KEYS
        .iter()
        .filter_map(|key| env(&key.env_var()).map(|raw| (key, Origin::Env, raw)));
    let mut from_flags = Vec::new();
    for (flag, raw) in flags {
        let key = KEYS
            .iter()
            .find(|k| k.flag == flag)
            .ok_or_else(|| ConfigError::Invalid(format!("unknown flag --{flag}")))?;
        from_flags.push((key, Origin::Flag, raw.clone()));
    }
    for (key, origin, raw) in from_env.collect::<Vec<_>>().into_iter().chain(from_flags) {
        let g = Given {
            key,
            origin,
            typed: raw.clone(),
        };
        let value = if key.switch && matches!(origin, Origin::Flag) {
            switch_value(key)
        } else {
            input::typed(key, &raw).map_err(|why| g.refused(&why))?
        };
        set(&mut table, key, value);
        given.push(g);
    }
    // Each value passed alone; together they can only fail on a bug here.
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
    config.validate(&input::Names { given: &given })?;
    let names = input::Names { given: &given };
    for (at, url, key) in [
        (
            noted.subscribe_hook,
            &config.hooks.subscribe,
            "hooks.subscribe",
        ),
        (noted.publish_hook, &config.hooks.publish, "hooks.publish"),
    ] {
        if let (Some(at), None) = (at, url) {
            return Err(ConfigError::Invalid(format!(
                "{at}: needs {} URL, the backend that decides them (docs/hooks.md)",
                names.name(key)
            )));
        }
    }
    Ok(config)
}

/// Refuses `TETHER_*` variables that look like settings but are none; call
/// it with the names in the environment before [`load`].
pub fn check_env_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), ConfigError> {
    input::check_env_names(names)
}

impl Config {
    /// The configuration as TOML, as `--print-config` shows it (secrets masked).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.auth.jwt_secret.is_some() {
            shown.auth.jwt_secret = Some("<set>".into());
        }
        if shown.auth.api_key.is_some() {
            shown.auth.api_key = Some("<set>".into());
        }
        if shown.hooks.secret.is_some() {
            shown.hooks.secret = Some("<set>".into());
        }
        toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}
