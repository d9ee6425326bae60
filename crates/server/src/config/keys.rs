//! The table of every setting ([`KEYS`]): its TOML section and key, its
//! flag, its environment variable and its help.

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
    k("heartbeat", "long_poll_timeout", "long-poll-timeout", "how long a long poll (/lp/poll) waits for publications before answering [] [default: 25s]"),
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
    k("limits", "max_long_poll_sessions", "max-long-poll-sessions", "long-polling sessions the node holds in all, apart from --max-connections [default: 10000]"),
    k("limits", "max_long_poll_sessions_per_ip", "max-long-poll-sessions-per-ip", "long-polling sessions one client address holds [default: 1000]"),
    k("limits", "ipv6_prefix", "ipv6-prefix", "IPv6 clients are grouped by this prefix length for per-address limits [default: 64]"),
    k("limits", "max_channels", "max-channels", "channels the node holds: with a local subscriber (any broker), or with history (memory broker) [default: 100000]"),
    k("limits", "max_subscriptions", "max-subscriptions", "subscriptions one connection may hold [default: 1024]"),
    k("limits", "max_subscriptions_total", "max-subscriptions-total", "subscriptions the node holds in all, over every connection and long-polling session [default: 1000000]"),
    k("limits", "max_subscriptions_per_ip", "max-subscriptions-per-ip", "subscriptions the connections of one client address hold in all [default: 100000]"),
    k("limits", "new_channel_rate_per_ip", "new-channel-rate-per-ip", "new channels per second one address may create (a publish that creates one at the broker, memory or Redis, or a subscribe that adds one to the node), sustained [default: 100]"),
    k("limits", "new_channel_burst_per_ip", "new-channel-burst-per-ip", "new channels one address may create at once [default: 1000]"),
    k("limits", "publish_rate_per_ip", "publish-rate-per-ip", "POST /api/publish requests per second from one address, sustained [default: 1000]"),
    k("limits", "publish_burst_per_ip", "publish-burst-per-ip", "POST /api/publish requests one address may send at once [default: 2000]"),
    k("limits", "handshake_rate_per_ip", "handshake-rate-per-ip", "new connections per second from one IP, sustained [default: 100]"),
    k("limits", "handshake_burst_per_ip", "handshake-burst-per-ip", "new connections one IP may open at once [default: 200]"),
    k("limits", "max_message_bytes", "max-message-bytes", "largest message a client may send; larger closes with 1009 [default: 65536]"),
    k("limits", "messages_per_second", "messages-per-second", "messages per second one connection may send [default: 100]"),
    k("limits", "messages_burst", "messages-burst", "messages one connection may send at once [default: 200]"),
    k("limits", "send_queue", "send-queue", "publications a subscriber may fall behind its channel before it is closed with 4004 [default: 4096]"),
    k("limits", "handshake_timeout", "handshake-timeout", "time allowed for TLS, request headers and a request body [default: 10s]"),
    k("limits", "write_timeout", "write-timeout", "time allowed for one write to a client [default: 10s]"),
    k("auth", "allowed_origins", "allowed-origins", "comma-separated Origin allow-list, e.g. https://app.example.com,https://*.example.com [default: any]"),
    k("auth", "jwt_secret", "jwt-secret", "HS256 secret for client tokens"),
    k("auth", "jwt_public_key", "jwt-public-key", "PEM file with the RS256 public key for client tokens"),
    k("auth", "api_key", "api-key", "bearer key required by /api/publish and /api/stats"),
    Key { switch: true, ..k("auth", "allow_anonymous", "allow-anonymous", "accept clients without a token, even when auth is configured or the listener is not loopback") },
    k("tls", "cert", "tls-cert", "PEM certificate chain; serves wss:// and https://"),
    k("tls", "key", "tls-key", "PEM private key for --tls-cert"),
    k("proxy", "trusted", "trusted-proxies", "comma-separated CIDRs of proxies whose --forwarded-header (or PROXY header) names the client [default: none]"),
    k("proxy", "forwarded_header", "forwarded-header", "the one header trusted proxies name the client in: x-forwarded-for or forwarded (RFC 7239); the other is ignored [default: x-forwarded-for]"),
    Key { switch: true, ..k("proxy", "protocol", "proxy-protocol", "expect a PROXY protocol v1/v2 header from peers in --trusted-proxies") },
    k("broker", "kind", "broker", "memory (one node) or redis (many nodes) [default: memory]"),
    k("broker", "redis_url", "redis-url", "Redis URL for --broker redis, e.g. redis://:password@10.0.0.7:6379/0 [default: redis://127.0.0.1:6379]"),
    k("broker", "redis_prefix", "redis-prefix", "prefix of every Redis key and pub/sub channel (letters, digits, _ . - only) [default: tether]"),
    k("broker", "redis_check_interval", "redis-check-interval", "how often quiet channels are compared with Redis and pub/sub connections pinged [default: 5s]"),
    k("presence", "ttl", "presence-ttl", "how long a crashed or cut-off node's clients stay present with --broker redis (each node refreshes its own every ttl/3) [default: 30s]"),
    k("hooks", "connect", "hook-connect", "URL called for every new connection before its welcome; its answer is the connection's user and permissions, or a refusal (docs/hooks.md)"),
    k("hooks", "subscribe", "hook-subscribe", "URL deciding subscribes to channels whose [[channels]] rule says subscribe_hook = true"),
    k("hooks", "publish", "hook-publish", "URL deciding (and able to replace) publishes to channels whose rule says publish_hook = true"),
    k("hooks", "rpc", "hook-rpc", "URL answering clients' rpc requests"),
    k("hooks", "refresh", "hook-refresh", "URL called before a session's expiry to extend it"),
    k("hooks", "timeout", "hook-timeout", "how long one hook call may take, connecting included [default: 2s]"),
    k("hooks", "concurrency", "hook-concurrency", "hook calls in flight on the node at once; past it a call is refused at once (503, or over_capacity) [default: 256]"),
    k("hooks", "secret", "hook-secret", "signs every hook and event request (HMAC-SHA256); required with any hook or --events-url"),
    k("hooks", "cookies", "hook-cookies", "comma-separated cookie names the connect hook is shown [default: none]"),
    k("hooks", "headers", "hook-headers", "comma-separated request header names the connect hook is shown [default: none]"),
    k("broker", "node_ttl", "node-ttl", "with --broker redis and --events-url: a node whose liveness key is not refreshed for this long is declared lost, and a surviving node sends disconnect (node_lost) for its sessions [default: 15s]"),
    k("events", "url", "events-url", "URL that lifecycle events (connect, disconnect, subscribe, unsubscribe) are POSTed to in batches, http:// only (docs/events.md)"),
    k("events", "queue", "events-queue", "events held while the backend is slow or down; past it the oldest are dropped, counted and reported by a gap event [default: 100000]"),
    k("events", "timeout", "events-timeout", "time allowed for one POST of a batch of events [default: 10s]"),
    k("events", "retry_max", "events-retry-max", "longest wait between retries of a batch the backend has not acknowledged [default: 10s]"),
    k("log", "format", "log-format", "text or json [default: text]"),
    k("log", "level", "log-level", "tracing filter, e.g. info or tether_server=debug [default: info]"),
];
