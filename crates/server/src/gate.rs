//! The gate every client request passes before it may hold a session (a
//! WebSocket upgrade, a long-polling request): who sent it, not draining, an
//! allowed origin (and the CORS answer for one), a token that verifies; and
//! the refusal, answered and logged once. Shared by the edge and the
//! transports, so it sits below both.

use crate::{
    auth::{self, Grant},
    handshake::Refusal,
    limits::{Denied, SocketGuard},
    node::Node,
};
use axum::{
    http::{header, HeaderMap, HeaderValue},
    response::Response,
};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tracing::info;

/// Who sent a request, put into every request by the listener.
#[derive(Clone)]
pub struct PeerAddr {
    /// The client's address: the TCP peer, or, when the peer is a trusted
    /// proxy, the client it named (PROXY header, or the one header
    /// `--forwarded-header` names). Every per-address limit and log line uses it.
    pub addr: SocketAddr,
    /// The socket's place in the admission counts; an upgrade takes it over.
    pub socket: Arc<SocketGuard>,
}

impl std::fmt::Debug for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PeerAddr").field(&self.addr).finish()
    }
}

/// Answers a refused handshake (a WebSocket upgrade, `/lp/open`, or a
/// long-polling request that would create a session), counted and logged.
pub(crate) fn refuse(node: &Node, peer: SocketAddr, path: &str, refusal: Refusal) -> Response {
    node.metrics.handshake(refusal.outcome());
    info!(%peer, path, status = refusal.status().as_u16(), reason = %refusal.message(), "handshake refused");
    refusal.into_response()
}

pub fn denied_to_refusal(denied: Denied) -> Refusal {
    let retry = Duration::from_secs(1) + Duration::from_millis(fastrand::u64(0..4000));
    match denied {
        Denied::NodeFull => Refusal::Unavailable {
            reason: "node_full",
            message: "server at its connection limit".into(),
            retry_after: retry,
        },
        Denied::FileLimit => Refusal::Unavailable {
            reason: "file_limit",
            message: "server near its open-file limit".into(),
            retry_after: retry,
        },
        Denied::EchoFull => Refusal::Unavailable {
            reason: "echo_full",
            message: "/echo is at its connection limit".into(),
            retry_after: retry,
        },
        Denied::IpFull => Refusal::Unavailable {
            reason: "ip_full",
            message: "too many connections from your address".into(),
            retry_after: retry,
        },
        Denied::LongPollFull => Refusal::Unavailable {
            reason: "longpoll_full",
            message: "server at its long-polling session limit (--max-long-poll-sessions)".into(),
            retry_after: retry,
        },
        Denied::LongPollIpFull => Refusal::Unavailable {
            reason: "longpoll_ip_full",
            message: "too many long-polling sessions from your address \
                      (--max-long-poll-sessions-per-ip)"
                .into(),
            retry_after: retry,
        },
        Denied::HandshakeRate { retry_after } => Refusal::RateLimited { retry_after },
    }
}

fn draining_refusal() -> Refusal {
    Refusal::Unavailable {
        reason: "draining",
        message: "server is restarting".into(),
        retry_after: Duration::from_secs(1) + Duration::from_millis(fastrand::u64(0..4000)),
    }
}

/// Checks the `Origin` header against the allow-list. Requests without an
/// Origin (non-browser clients) pass: the header only protects browsers.
pub fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> Result<(), Refusal> {
    if allowed.is_empty() {
        return Ok(());
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let ok = allowed
        .iter()
        .any(|pattern| origin_matches(pattern, origin));
    if ok {
        Ok(())
    } else {
        Err(Refusal::Forbidden(format!(
            "origin {origin} is not in the allowed origins"
        )))
    }
}

/// Lets a page on another origin read the answer when its origin is allowed
/// (any origin while `--allowed-origins` is empty, as for `/ws`): the Origin
/// is echoed (never `*`, so the answer depends on it, hence `Vary`) and
/// `Retry-After` is exposed, the client's backoff floor. A refused origin
/// gets no CORS header, so its page sees a network error: it is logged
/// once, with the flag to set.
pub(crate) fn cross_origin(node: &Node, req: &HeaderMap, res: &mut Response) {
    let h = res.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = req.get(header::ORIGIN) else {
        return;
    };
    if origin_allowed(&node.config.auth.allowed_origins, req).is_err() {
        note_refused_origin(node, req);
        return;
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Retry-After"),
    );
}

/// Logs the request's origin as refused, once per origin.
pub(crate) fn note_refused_origin(node: &Node, req: &HeaderMap) {
    if let Some(origin) = req.get(header::ORIGIN) {
        node.refused_origins
            .note(&String::from_utf8_lossy(origin.as_bytes()));
    }
}

/// `https://app.example.com` matches exactly; `https://*.example.com` matches
/// any subdomain (not the apex); `*` matches everything.
fn origin_matches(pattern: &str, origin: &str) -> bool {
    if pattern == "*" || pattern.eq_ignore_ascii_case(origin) {
        return true;
    }
    match pattern.split_once("://*.") {
        Some((scheme, domain)) => origin
            .strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .is_some_and(|host| {
                host.len() > domain.len() + 1
                    && host
                        .to_ascii_lowercase()
                        .ends_with(&format!(".{}", domain.to_ascii_lowercase()))
            }),
        None => false,
    }
}

/// Why a request did not pass [`gate`].
pub(crate) struct Gated {
    pub refusal: Refusal,
    /// The token was valid but expired: a live long-polling session ends
    /// with 4002 rather than a plain 401.
    pub token_expired: bool,
    /// The expired token's subject: it ends a long-polling session only
    /// when that session is this subject's.
    pub expired_user: Option<String>,
}

/// The gate every client request passes before it may hold a session (a
/// WebSocket upgrade, a long-polling request): not draining, an allowed
/// origin, and a token that verifies (or open access). With a connect hook
/// a token is optional (the hook decides who the client is; one given is
/// still verified), and the grant returned here is replaced by the hook's.
pub(crate) fn gate(node: &Node, headers: &HeaderMap, token: Option<&str>) -> Result<Grant, Gated> {
    let refused = |refusal| Gated {
        refusal,
        token_expired: false,
        expired_user: None,
    };
    if node.is_draining() {
        return Err(refused(draining_refusal()));
    }
    if let Err(r) = origin_allowed(&node.config.auth.allowed_origins, headers) {
        note_refused_origin(node, headers);
        return Err(refused(r));
    }
    match &node.verifier {
        None => Ok(Grant::anonymous()),
        Some(_) if token.is_none() && has_connect_hook(node) => Ok(Grant::anonymous()),
        Some(verifier) => verifier.verify(token).map_err(|e| {
            let token_expired = matches!(e, auth::AuthError::Expired);
            Gated {
                token_expired,
                expired_user: token
                    .filter(|_| token_expired)
                    .and_then(|t| verifier.expired_subject(t)),
                refusal: Refusal::Unauthorized(e.to_string()),
            }
        }),
    }
}

/// Whether the connect hook decides who clients are.
pub(crate) fn has_connect_hook(node: &Node) -> bool {
    node.hooks
        .as_ref()
        .is_some_and(|h| h.has(crate::hooks::Hook::Connect))
}

/// The refusal of a handshake when the node cannot call its connect hook
/// now (`--hook-concurrency` calls in flight): 503, retry shortly.
pub(crate) fn hooks_busy() -> Refusal {
    Refusal::Unavailable {
        reason: "hooks_busy",
        message: "too many calls to the backend in flight (--hook-concurrency)".into(),
        retry_after: Duration::from_secs(1) + Duration::from_millis(fastrand::u64(0..4000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns() {
        assert!(origin_matches("https://a.example", "https://a.example"));
        assert!(origin_matches(
            "https://*.example.com",
            "https://app.example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "https://example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "http://app.example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "https://evilexample.com"
        ));
        assert!(!origin_matches(
            "https://a.example",
            "https://a.example.evil"
        ));
    }
}
