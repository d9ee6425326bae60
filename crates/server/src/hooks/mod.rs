//! Calls to the operator's backend: hooks (connect, subscribe, publish,
//! rpc, refresh) and lifecycle events. Only URLs from the configuration are
//! ever called, never one a client names.
//!
//! This layer knows HTTP, JSON and the signature; it knows nothing of
//! sessions: the engine asks, and decides what an answer means. Every call
//! ends in a typed answer or a [`HookError`] that says what to tell the
//! client — a refusal the backend gave, or a failure with a retryable error
//! code — within `--hook-timeout`, and a call past `--hook-concurrency` is
//! not made at all (`over_capacity`). Docs: `docs/hooks.md`.

mod answers;
mod client;
mod connect;
mod tls;

pub use answers::{truncate, Answer, ConnectAnswer};
pub use client::{sign, signature, CallError, HookClient, SIGNATURE_HEADER, TIMESTAMP_HEADER};
pub use connect::{data_param, ConnectRequest, MAX_DATA_BYTES};

use crate::{config::HooksConfig, metrics::Metrics};
use bytes::Bytes;
use http::Uri;
use serde_json::value::RawValue;
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
use tether_protocol::ErrorCode;

/// One of the hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Connect,
    Subscribe,
    Publish,
    Rpc,
    Refresh,
}

impl Hook {
    /// Its name in metrics, logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Subscribe => "subscribe",
            Hook::Publish => "publish",
            Hook::Rpc => "rpc",
            Hook::Refresh => "refresh",
        }
    }
}

/// What the client is told when a call gave no allowing answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookError {
    /// The backend refused (`{"error":{"code":N,"reason":R}}`, or
    /// `{"allow":false}`): a close code for connect and refresh, an error
    /// code for the others, with the backend's reason.
    Refused { code: Refusal, reason: String },
    /// No usable answer: `over_capacity` (not called: too many calls in
    /// flight), `unavailable` (timeout, unreachable, 5xx) or `internal`
    /// (an answer that is not what docs/hooks.md says) — all retryable —
    /// and a sentence naming the hook and what went wrong.
    Failed { code: ErrorCode, message: String },
}

/// The code of a backend's refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A WebSocket close code: 1008 or 4000-4999 (connect, refresh).
    Close(u16),
    /// A Tether error code (subscribe, publish, rpc).
    Error(ErrorCode),
}

/// A call under way, owning all it needs: a transport may keep it beside
/// the connection and poll it while it serves deliveries.
pub type Call = Pin<Box<dyn Future<Output = Result<Answer, HookError>> + Send>>;

/// The configured hooks and the client that calls them.
pub struct Hooks {
    client: HookClient,
    urls: [Option<Uri>; 5],
    /// Cookie names the connect hook is shown.
    cookies: Vec<String>,
    /// Header names (lower case) the connect hook is shown.
    headers: Vec<http::HeaderName>,
    metrics: Arc<Metrics>,
    timeout: Duration,
    /// When a failure was last logged at `warn`, per hook: a dead backend
    /// under load would otherwise log every call.
    warned: parking_lot::Mutex<[Option<Instant>; 5]>,
}

/// How often a hook's failures are logged at `warn` at most (the others at
/// `debug`; the metrics count every one).
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Hooks {
    /// The hooks `config` sets, or `None` when it sets none. URLs were
    /// checked when the configuration was loaded.
    pub fn from_config(
        config: &HooksConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Self>, String> {
        if config.urls().next().is_none() {
            return Ok(None);
        }
        let url = |u: &Option<String>| -> Result<Option<Uri>, String> {
            u.as_deref()
                .map(|u| crate::config::check_hook_url(u).map_err(|e| format!("hook URL {u}: {e}")))
                .transpose()
        };
        let urls = [
            url(&config.connect)?,
            url(&config.subscribe)?,
            url(&config.publish)?,
            url(&config.rpc)?,
            url(&config.refresh)?,
        ];
        let secret = config.secret.as_deref().unwrap_or_default();
        let client = HookClient::new(secret, config.timeout, config.concurrency);
        if let Some((key, url)) = config.urls().find(|(_, u)| u.starts_with("https:")) {
            if let Some(why) = client.https_unusable() {
                return Err(format!("{key} {url}: https cannot be used: {why}"));
            }
        }
        Ok(Some(Hooks {
            client,
            urls,
            cookies: config.cookies.clone(),
            headers: config
                .headers
                .iter()
                .filter_map(|h| http::HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            metrics,
            timeout: config.timeout,
            warned: Default::default(),
        }))
    }

    /// Whether `hook` is configured.
    pub fn has(&self, hook: Hook) -> bool {
        self.url(hook).is_some()
    }

    fn url(&self, hook: Hook) -> Option<&Uri> {
        self.urls[hook as usize].as_ref()
    }

    /// `--hook-timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a call would find a free slot now: the WebSocket handshake
    /// and `/lp/open` are refused 503 before anything is done otherwise.
    pub fn has_room(&self) -> bool {
        self.client.has_room()
    }

    /// Asks whether `client` (of `user`) may subscribe to `channel`.
    pub fn subscribe(self: &Arc<Self>, client: &str, user: Option<&str>, channel: &str) -> Call {
        let body = serde_json::json!({"client": client, "user": user, "channel": channel});
        self.call(Hook::Subscribe, body, answers::subscribe)
    }

    /// Asks whether `client` may publish `data` to `channel` (and what to
    /// store instead, if the backend says).
    pub fn publish(
        self: &Arc<Self>,
        client: &str,
        user: Option<&str>,
        channel: &str,
        data: &RawValue,
        key: Option<&str>,
    ) -> Call {
        let mut body = serde_json::json!({
            "client": client, "user": user, "channel": channel, "data": data,
        });
        if let Some(key) = key {
            body["key"] = key.into();
        }
        self.call(Hook::Publish, body, answers::publish)
    }

    /// Asks the backend to answer `client`'s call of `method`.
    pub fn rpc(
        self: &Arc<Self>,
        client: &str,
        user: Option<&str>,
        method: &str,
        data: &RawValue,
    ) -> Call {
        let body = serde_json::json!({
            "client": client, "user": user, "method": method, "data": data,
        });
        self.call(Hook::Rpc, body, answers::rpc)
    }

    /// Asks for a new expiry for `client`'s session, which ends at `expire_at`.
    pub fn refresh(
        self: &Arc<Self>,
        client: &str,
        user: Option<&str>,
        expire_at: SystemTime,
    ) -> Call {
        let body = serde_json::json!({
            "client": client, "user": user, "expire_at": answers::unix_seconds(expire_at),
        });
        self.call(Hook::Refresh, body, answers::refresh)
    }

    /// Asks who a new connection is (docs/hooks.md, "connect").
    /// `max_channels` bounds the server-side subscriptions it may name.
    pub fn connect(self: &Arc<Self>, request: &ConnectRequest, max_channels: usize) -> Call {
        let body = request.body();
        self.call(Hook::Connect, body, move |a| {
            answers::connect(a, max_channels)
        })
    }

    /// POSTs `body` to `hook`'s URL and reads the answer with `read`,
    /// counting and timing the call.
    fn call<F>(self: &Arc<Self>, hook: Hook, body: serde_json::Value, read: F) -> Call
    where
        F: FnOnce(&[u8]) -> Result<Answer, String> + Send + 'static,
    {
        let hooks = self.clone();
        let body = Bytes::from(body.to_string());
        Box::pin(async move {
            let Some(url) = hooks.url(hook) else {
                return Err(HookError::Failed {
                    code: ErrorCode::Internal,
                    message: format!("no {} hook is configured", hook.name()),
                });
            };
            let started = Instant::now();
            let posted = hooks.client.post(url, body).await;
            if !matches!(posted, Err(CallError::Busy)) {
                hooks.metrics.hook_seconds(hook.name(), started.elapsed());
            }
            let (outcome, result) = hooks.settle(hook, posted, read);
            hooks.metrics.hook_request(hook.name(), outcome);
            if let Err(HookError::Failed { message, .. }) = &result {
                hooks.log_failure(hook, message);
            }
            result
        })
    }

    /// What a call's HTTP result means: its outcome label and the answer
    /// or error.
    fn settle<F>(
        &self,
        hook: Hook,
        posted: Result<Bytes, CallError>,
        read: F,
    ) -> (&'static str, Result<Answer, HookError>)
    where
        F: FnOnce(&[u8]) -> Result<Answer, String>,
    {
        let name = hook.name();
        let failed = |code, message: String| HookError::Failed { code, message };
        let body = match posted {
            Ok(body) => body,
            Err(CallError::Busy) => {
                return (
                    "over_capacity",
                    Err(failed(
                        ErrorCode::OverCapacity,
                        format!("too many backend calls in flight; the {name} hook was not called; retry later"),
                    )),
                )
            }
            Err(CallError::Timeout(t)) => {
                return (
                    "timeout",
                    Err(failed(
                        ErrorCode::Unavailable,
                        format!("the {name} hook did not answer within {} ms; retry", t.as_millis()),
                    )),
                )
            }
            Err(CallError::Unreachable(why)) => {
                return (
                    "unreachable",
                    Err(failed(
                        ErrorCode::Unavailable,
                        format!("the {name} hook could not be reached ({why}); retry"),
                    )),
                )
            }
            Err(CallError::Status(status, body)) if (400..500).contains(&status) => {
                return match answers::refusal(hook, &body) {
                    Some(Ok(refused)) => ("refused", Err(refused)),
                    Some(Err(why)) => ("bad_answer", Err(bad_answer(name, &why))),
                    None => (
                        "bad_answer",
                        Err(bad_answer(
                            name,
                            &format!("HTTP {status} without an {{\"error\":...}} body"),
                        )),
                    ),
                };
            }
            Err(CallError::Status(status, _)) => {
                return (
                    "unavailable",
                    Err(failed(
                        ErrorCode::Unavailable,
                        format!("the {name} hook answered HTTP {status}; retry"),
                    )),
                )
            }
            Err(CallError::Unreadable(why)) => {
                return ("bad_answer", Err(bad_answer(name, &why)));
            }
        };
        match answers::refusal(hook, &body) {
            Some(Ok(refused)) => return ("refused", Err(refused)),
            Some(Err(why)) => return ("bad_answer", Err(bad_answer(name, &why))),
            None => {}
        }
        match read(&body) {
            Ok(Answer::Denied) => (
                "refused",
                Err(HookError::Refused {
                    code: Refusal::Error(ErrorCode::Forbidden),
                    reason: format!("refused by the {name} hook"),
                }),
            ),
            Ok(answer) => ("ok", Ok(answer)),
            Err(why) => ("bad_answer", Err(bad_answer(name, &why))),
        }
    }

    fn log_failure(&self, hook: Hook, message: &str) {
        let now = Instant::now();
        let mut warned = self.warned.lock();
        let last = &mut warned[hook as usize];
        if last.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            *last = Some(now);
            drop(warned);
            tracing::warn!(hook = hook.name(), "{message} (further failures of this hook within 10 s are logged at debug; tether_hook_requests_total counts them)");
        } else {
            tracing::debug!(hook = hook.name(), "{message}");
        }
    }
}

/// An answer that is not what docs/hooks.md says: `internal`, retryable.
fn bad_answer(hook: &str, why: &str) -> HookError {
    HookError::Failed {
        code: ErrorCode::Internal,
        message: format!("the {hook} hook's answer is unusable: {why}"),
    }
}
