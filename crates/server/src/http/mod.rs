//! The HTTP routes of one listener: the two WebSocket endpoints, long
//! polling, health, readiness, metrics, the demo page; the publish/stats API
//! is in `api.rs`, request bodies with a deadline in `body.rs`.

mod api;
mod body;

pub(crate) use body::body_error;
pub use body::{BodyTimeout, DeadlineBody};

use crate::{
    auth::{self, Grant},
    handshake::{switching_protocols, validate_upgrade, Refusal},
    limits::{Denied, Lane, SocketGuard},
    node::Node,
    transport::{self, websocket::Session},
};
use axum::{
    body::Body,
    extract::{DefaultBodyLimit, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Extension, Router,
};
use hyper_util::rt::TokioIo;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio_websockets::{Config as WsConfig, Limits as WsLimits, ServerBuilder};
use tracing::{debug, info};

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

pub fn router(node: Arc<Node>) -> Router {
    let mut router = Router::new()
        .route("/ws", get(ws_route))
        .route("/api/publish", post(api::publish_route))
        .route("/api/stats", get(api::stats_route))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_route))
        .route("/metrics", get(metrics_route))
        .route("/", get(index_route))
        .route("/tether.js", get(client_route))
        .merge(transport::longpoll::routes(&node));
    if node.config.server.echo {
        router = router.route("/echo", get(echo_route));
    }
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(
            node.config.limits.max_message_bytes + 1024,
        ))
        .with_state(node)
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path();
    let mut res = text(
        StatusCode::NOT_FOUND,
        format!("no route for {path}; WebSocket clients connect to /ws (or /echo)\n"),
    );
    if path.starts_with("/lp/") {
        transport::longpoll::never_cached(res.headers_mut());
    }
    res
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
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

enum Endpoint {
    Tether,
    Echo,
}

async fn ws_route(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerAddr>,
    req: Request,
) -> Response {
    upgrade(node, peer, req, Endpoint::Tether).await
}

async fn echo_route(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerAddr>,
    req: Request,
) -> Response {
    upgrade(node, peer, req, Endpoint::Echo).await
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
/// origin, and a token that verifies (or open access).
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

/// Both WebSocket endpoints pass the same gate: origin, token, handshake
/// rate and the per-address cap; `/echo` has a connection cap of its own.
async fn upgrade(
    node: Arc<Node>,
    from: PeerAddr,
    mut req: Request,
    endpoint: Endpoint,
) -> Response {
    let peer = from.addr;
    let path = req.uri().path().to_owned();
    let accept = match validate_upgrade(req.method(), req.headers()) {
        Ok(a) => a,
        Err(r) => return refuse(&node, peer, &path, r),
    };
    let (token, offered) = auth::token_from_request(req.headers(), req.uri().query());
    let protocol = offered.and_then(|p| HeaderValue::from_str(&p).ok());
    let grant = match gate(&node, req.headers(), token.as_deref()) {
        Ok(grant) => grant,
        Err(g) => return refuse(&node, peer, &path, g.refusal),
    };
    let lane = match endpoint {
        Endpoint::Tether => Lane::Tether,
        Endpoint::Echo => Lane::Echo,
    };
    let permit = match node.admission.admit_on(peer.ip(), Some(&from.socket), lane) {
        Ok(p) => p,
        Err(denied) => return refuse(&node, peer, &path, denied_to_refusal(denied)),
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return refuse(
            &node,
            peer,
            &path,
            Refusal::NotUpgrade("connection cannot be upgraded".into()),
        );
    };
    node.metrics.handshake("accepted");
    let limits = &node.config.limits;
    let max_len = match endpoint {
        Endpoint::Tether => limits.max_message_bytes,
        Endpoint::Echo => node
            .config
            .server
            .echo_max_message_bytes
            .unwrap_or(limits.max_message_bytes),
    };
    let builder = ServerBuilder::new()
        .limits(WsLimits::default().max_payload_len(Some(max_len)))
        .config(WsConfig::default().frame_size(64 * 1024));
    let tasks = node.tasks.clone();
    tasks.clone().spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                debug!(%peer, error = %e, "upgrade failed after 101");
                return;
            }
        };
        let ws = builder.serve(TokioIo::new(upgraded));
        // The connection gets a task of its own, sized for its endpoint
        // alone; this one, which only waited for the upgrade, ends here.
        match endpoint {
            Endpoint::Tether => {
                tasks.spawn(Box::new(Session::new(node, ws, peer, grant, permit)).run());
            }
            Endpoint::Echo => {
                tasks.spawn(transport::echo::run(node, ws, peer, permit));
            }
        }
    });
    switching_protocols(accept, protocol)
}

async fn ready_route(State(node): State<Arc<Node>>) -> Response {
    if node.is_draining() {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
    } else if !node.broker.is_healthy() {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker unreachable\n".into(),
        )
    } else {
        text(StatusCode::OK, "ready\n".into())
    }
}

async fn metrics_route(State(node): State<Arc<Node>>) -> Response {
    node.metrics.channels.set(node.hub.channel_count() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics.render(),
    )
        .into_response()
}

/// The JS client, built from `clients/js` (its `npm run check-dist` keeps
/// this file equal to the sources); the demo page at `/` imports it, and so
/// may a page on an allowed origin (a module script is fetched with CORS).
async fn client_route(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    let mut res = (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../../../clients/js/dist/tether.js"),
    )
        .into_response();
    cross_origin(&node, &headers, &mut res);
    res
}

async fn index_route() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        Body::from(include_str!("../index.html")),
    )
        .into_response()
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
