//! The HTTP routes of one listener: the two WebSocket endpoints, long
//! polling, health, readiness, metrics, the demo page; the publish/stats API
//! is in `api.rs`; the gate a session's request passes is `crate::gate`,
//! request bodies with a deadline `crate::body`.

mod api;

pub use crate::body::{BodyTimeout, DeadlineBody};

pub use crate::gate::PeerAddr;
use crate::{
    auth,
    gate::{cross_origin, denied_to_refusal, gate, has_connect_hook, hooks_busy, refuse},
    handshake::{switching_protocols, validate_upgrade, Refusal},
    limits::Lane,
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
use std::sync::Arc;
use tokio_websockets::{Config as WsConfig, Limits as WsLimits, ServerBuilder};
use tracing::debug;

pub fn router(node: Arc<Node>) -> Router {
    let mut router = Router::new()
        .route("/ws", get(ws_route))
        .route("/api/publish", post(api::publish_route))
        .route("/api/stats", get(api::stats_route))
        .route("/api/presence", get(api::presence_route))
        .route("/api/presence_stats", get(api::presence_stats_route))
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
    // With a connect hook, what it is shown; refused 503 at once when the
    // node has no room for the call.
    let connect = match (&endpoint, node.hooks.as_ref()) {
        (Endpoint::Tether, Some(hooks)) if has_connect_hook(&node) => {
            let data = match crate::hooks::data_param(req.uri().query()) {
                Ok(data) => data,
                Err(why) => return refuse(&node, peer, &path, Refusal::BadRequest(why)),
            };
            if !hooks.has_room() {
                return refuse(&node, peer, &path, hooks_busy());
            }
            let request =
                hooks.connect_request("websocket", peer.ip(), req.headers(), token.clone(), data);
            Some(Box::new(request))
        }
        _ => None,
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
                let session = Session::new(node, ws, peer, grant, permit).with_connect(connect);
                tasks.spawn(Box::new(session).run());
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
