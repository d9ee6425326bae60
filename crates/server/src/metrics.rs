//! Prometheus metrics, served at `/metrics`.

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

type Labels = Vec<(&'static str, String)>;

/// A histogram per label set, all with the same buckets.
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Seconds from 0.25 ms to about 4 s (Redis calls: well under a
/// millisecond when healthy, the 2 s timeout when not).
fn redis_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// How long hook calls took: 1 ms to ~16 s, doubling.
fn hook_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

pub struct Metrics {
    registry: Registry,
    /// Open connections (`/ws`, `/echo`, and long-polling sessions).
    pub connections: Gauge,
    /// Long-polling sessions on this node (also counted in `connections`).
    pub longpoll_sessions: Gauge,
    /// Channels with at least one local subscriber (updated at scrape time).
    pub channels: Gauge,
    /// Handshakes by outcome: `accepted` or the refusal reason.
    pub handshakes: Family<Labels, Counter>,
    /// Connections the server closed, by close code.
    pub closes: Family<Labels, Counter>,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub publications: Counter,
    pub heartbeat_timeouts: Counter,
    pub slow_consumers: Counter,
    /// Repeated idle cuts noticed (see `idle_pattern`): one per warning logged.
    pub idle_cut_patterns: Counter,
    /// Requests or messages refused by a limit, by reason.
    pub refusals: Family<Labels, Counter>,
    /// Channel streams the broker holds (subscribed, or with history or an
    /// offset to remember); capped by `limits.max_channels`.
    pub channel_streams: Gauge,
    /// Bytes of publications held in history; capped by `history.max_bytes`.
    pub history_bytes: Gauge,
    /// Idempotency keys remembered; capped by `history.idempotency_max_keys`.
    pub idempotency_keys: Gauge,
    /// Keys forgotten before their window ended because a cap forced them out.
    pub idempotency_evictions: Counter,
    /// Redis broker: 1 while every Redis connection is up (and so ready).
    pub redis_up: Gauge,
    /// Redis broker: missed publications read back from history, by why they
    /// were missed (`gap`: an offset skipped; `reconnect`: a pub/sub
    /// connection came back; `check`: the periodic check of quiet channels).
    pub redis_repairs: Family<Labels, Counter>,
    /// Redis broker: channels whose stream changed epoch under their local
    /// subscribers (they resynchronise with `recovered: false`).
    pub redis_resets: Counter,
    /// Redis broker: connections re-established, by kind (`command`, `pubsub`).
    pub redis_reconnects: Family<Labels, Counter>,
    /// Presence entries held: one per session subscribed to a channel whose
    /// rule says `presence = true`.
    pub presence_entries: Gauge,
    /// Redis broker: presence refresh calls (one per channel and up to
    /// 1,000 of this node's clients in it, every `presence.ttl / 3`).
    pub presence_refreshes: Counter,
    /// Redis broker: time of presence calls to Redis, by `call` (`write`:
    /// a pipeline of joins and leaves; `refresh`: a pipeline of refreshes;
    /// `read`: a `presence` or `presence_stats`).
    pub presence_redis_seconds: Histograms,
    /// Hook calls by hook and outcome (`ok`, `refused`, `over_capacity`,
    /// `timeout`, `unreachable`, `unavailable`, `bad_answer`).
    pub hook_requests: Family<Labels, Counter>,
    /// How long hook calls took (calls not made are not timed), by hook.
    pub hook_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Lifecycle events waiting for the backend's acknowledgement (queued
    /// and in the batch being sent).
    pub events_queued: Gauge,
    /// Events the backend acknowledged (a 2xx for their batch).
    pub events_sent: Counter,
    /// Events dropped because the queue was full (each reported by a gap).
    pub events_dropped: Counter,
    /// Tries of a batch that failed (timeout, connection error, non-2xx).
    pub events_failures: Counter,
    /// Lapsed nodes this node claimed (Redis broker with events).
    pub nodes_lost: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tether");
        let m = Metrics {
            connections: Gauge::default(),
            longpoll_sessions: Gauge::default(),
            channels: Gauge::default(),
            handshakes: Family::default(),
            closes: Family::default(),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            publications: Counter::default(),
            heartbeat_timeouts: Counter::default(),
            slow_consumers: Counter::default(),
            idle_cut_patterns: Counter::default(),
            refusals: Family::default(),
            channel_streams: Gauge::default(),
            history_bytes: Gauge::default(),
            idempotency_keys: Gauge::default(),
            idempotency_evictions: Counter::default(),
            redis_up: Gauge::default(),
            redis_repairs: Family::default(),
            redis_resets: Counter::default(),
            redis_reconnects: Family::default(),
            presence_entries: Gauge::default(),
            presence_refreshes: Counter::default(),
            presence_redis_seconds: Family::new_with_constructor(redis_seconds),
            hook_requests: Family::default(),
            hook_seconds: Family::new_with_constructor(hook_histogram),
            events_queued: Gauge::default(),
            events_sent: Counter::default(),
            events_dropped: Counter::default(),
            events_failures: Counter::default(),
            nodes_lost: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open connections: WebSocket sessions and long-polling sessions",
            m.connections.clone(),
        );
        registry.register(
            "longpoll_sessions",
            "Long-polling sessions on this node",
            m.longpoll_sessions.clone(),
        );
        registry.register(
            "channels",
            "Channels with local subscribers",
            m.channels.clone(),
        );
        registry.register(
            "handshakes",
            "WebSocket handshakes by outcome",
            m.handshakes.clone(),
        );
        registry.register(
            "closes",
            "Connections closed by the server, by close code",
            m.closes.clone(),
        );
        registry.register(
            "messages_in",
            "Protocol messages received from clients",
            m.messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Protocol messages sent to clients",
            m.messages_out.clone(),
        );
        registry.register(
            "publications",
            "Publications accepted",
            m.publications.clone(),
        );
        registry.register(
            "heartbeat_timeouts",
            "Connections closed for silence (4003)",
            m.heartbeat_timeouts.clone(),
        );
        registry.register(
            "slow_consumers",
            "Connections closed because they fell off their channel's delivery log (4004)",
            m.slow_consumers.clone(),
        );
        registry.register(
            "idle_cut_patterns",
            "Connections from one subnet repeatedly ending without a close frame after the same idle time (an intermediary's idle timeout)",
            m.idle_cut_patterns.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused by a limit or check, by reason",
            m.refusals.clone(),
        );
        registry.register(
            "channel_streams",
            "Channel streams held in memory (subscribed, or with history or an offset to remember)",
            m.channel_streams.clone(),
        );
        registry.register(
            "history_bytes",
            "Bytes of publications held in history",
            m.history_bytes.clone(),
        );
        registry.register(
            "idempotency_keys",
            "Idempotency keys remembered",
            m.idempotency_keys.clone(),
        );
        registry.register(
            "idempotency_evictions",
            "Idempotency keys forgotten before their window ended because a cap forced them out",
            m.idempotency_evictions.clone(),
        );
        registry.register(
            "redis_up",
            "1 while every Redis connection is up (Redis broker)",
            m.redis_up.clone(),
        );
        registry.register(
            "redis_repairs",
            "Missed publications read back from Redis history, by cause",
            m.redis_repairs.clone(),
        );
        registry.register(
            "redis_resets",
            "Channels whose stream changed epoch under local subscribers",
            m.redis_resets.clone(),
        );
        registry.register(
            "redis_reconnects",
            "Redis connections re-established, by kind",
            m.redis_reconnects.clone(),
        );
        registry.register(
            "presence_entries",
            "Presence entries held (sessions subscribed to presence channels)",
            m.presence_entries.clone(),
        );
        registry.register(
            "presence_refreshes",
            "Presence refresh calls to Redis (one per channel and up to 1,000 of this node's clients)",
            m.presence_refreshes.clone(),
        );
        registry.register(
            "presence_redis_seconds",
            "Time of presence calls to Redis, by call (write, refresh, read)",
            m.presence_redis_seconds.clone(),
        );
        registry.register(
            "hook_requests",
            "Calls to the backend's hooks, by hook and outcome",
            m.hook_requests.clone(),
        );
        registry.register(
            "hook_seconds",
            "How long calls to the backend's hooks took, by hook",
            m.hook_seconds.clone(),
        );
        registry.register(
            "events_queued",
            "Lifecycle events waiting for the backend's acknowledgement",
            m.events_queued.clone(),
        );
        registry.register(
            "events_sent",
            "Lifecycle events the backend acknowledged",
            m.events_sent.clone(),
        );
        registry.register(
            "events_dropped",
            "Lifecycle events dropped because the queue was full (reported by gap events)",
            m.events_dropped.clone(),
        );
        registry.register(
            "events_failures",
            "Tries to send a batch of events that failed and are retried",
            m.events_failures.clone(),
        );
        registry.register(
            "nodes_lost",
            "Lapsed nodes this node claimed, sending disconnect (node_lost) for their sessions",
            m.nodes_lost.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Records how long a presence call to Redis took.
    pub fn presence_redis(&self, call: &'static str, took: std::time::Duration) {
        self.presence_redis_seconds
            .get_or_create(&vec![("call", call.to_owned())])
            .observe(took.as_secs_f64());
    }

    pub fn hook_request(&self, hook: &str, outcome: &str) {
        self.hook_requests
            .get_or_create(&vec![
                ("hook", hook.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    pub fn hook_seconds(&self, hook: &str, took: std::time::Duration) {
        self.hook_seconds
            .get_or_create(&vec![("hook", hook.to_owned())])
            .observe(took.as_secs_f64());
    }

    pub fn redis_repair(&self, cause: &str) {
        self.redis_repairs
            .get_or_create(&vec![("cause", cause.to_owned())])
            .inc();
    }

    pub fn redis_reconnect(&self, kind: &str) {
        self.redis_reconnects
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }

    pub fn handshake(&self, outcome: &str) {
        self.handshakes
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    pub fn close(&self, code: u16) {
        self.closes
            .get_or_create(&vec![("code", code.to_string())])
            .inc();
    }

    pub fn refusal(&self, reason: &str) {
        self.refusals
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            out = format!("# encoding failed: {e}\n");
        }
        out
    }
}
