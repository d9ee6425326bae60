//! The backend API: `POST /api/publish`, `GET /api/stats` and
//! `GET /api/presence[_stats]?channel=`, behind an optional API key.

use super::PeerAddr;
use crate::body::{api_error, body_error};
use crate::{
    broker::BrokerError,
    node::{Node, PresenceRefusal, PublishError},
};
use axum::{
    extract::{Query, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};
use serde_json::json;
use std::sync::Arc;

/// Checks `Authorization: Bearer <api key>` when an API key is configured.
fn check_api_key(node: &Node, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(expected) = node.config.auth.api_key.as_deref() else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(key) if constant_time_eq(key.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => {
            node.metrics.refusal("api_key_wrong");
            Err(Box::new(api_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong API key",
            )))
        }
        None => {
            node.metrics.refusal("api_key_missing");
            Err(Box::new(api_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this endpoint needs `Authorization: Bearer <api key>`",
            )))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An API error that tells the client when to retry.
fn api_error_retry(status: StatusCode, code: &str, message: &str, retry_secs: u64) -> Response {
    let mut res = api_error(status, code, message);
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_secs));
    res
}

pub(super) async fn publish_route(
    State(node): State<Arc<Node>>,
    Extension(peer): Extension<PeerAddr>,
    req: Request,
) -> Response {
    if let Err(r) = check_api_key(&node, req.headers()) {
        return *r;
    }
    // Counted per client address before the body is read, so a flood costs
    // the server a header parse per request and nothing more.
    if let Err(wait) = node.admission.take_publish(peer.addr.ip()) {
        node.metrics.refusal("publish_rate");
        let secs = crate::handshake::retry_secs(wait);
        return api_error_retry(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &format!("too many publishes from your address; retry in {secs} s"),
            secs,
        );
    }
    // A body is held in memory while it arrives: at most MAX_BODIES_PER_IP
    // of them per client address at once.
    let Some(_receiving) = node.admission.receive_body(peer.addr.ip()) else {
        node.metrics.refusal("bodies_in_flight");
        return api_error_retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &format!(
                "{} publish bodies from your address are still arriving; retry in 1 s",
                crate::limits::MAX_BODIES_PER_IP
            ),
            1,
        );
    };
    let limit = node.config.limits.max_message_bytes + 1024;
    let body = match axum::body::to_bytes(req.into_body(), limit).await {
        Ok(b) => b,
        Err(e) => return body_error(&node, peer.addr, &e, "--max-message-bytes plus 1 KiB"),
    };
    // The same decoder and checks as a WebSocket `publish`.
    let body =
        match tether_protocol::decode_publish_body(&body, node.config.limits.max_message_bytes) {
            Ok(b) => b,
            Err(e) => return api_error(StatusCode::BAD_REQUEST, e.code.as_str(), &e.message),
        };
    // A publish that creates the channel also takes a token from the
    // address's bucket of new channels (`Node::publish`).
    match node
        .publish(
            peer.addr.ip(),
            &body.channel,
            &body.data,
            body.key.as_deref(),
        )
        .await
    {
        Ok(out) => Json(json!({"offset": out.offset, "epoch": out.epoch})).into_response(),
        Err(PublishError::NewChannels(wait)) => {
            let secs = crate::handshake::retry_secs(wait);
            api_error_retry(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &format!("too many new channels from your address; retry in {secs} s"),
                secs,
            )
        }
        Err(PublishError::Broker(e @ BrokerError::OverCapacity(_))) => api_error_retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "over_capacity",
            &e.to_string(),
            5,
        ),
        Err(PublishError::Broker(e)) => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &e.to_string(),
        ),
    }
}

pub(super) async fn stats_route(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    if let Err(r) = check_api_key(&node, &headers) {
        return *r;
    }
    let channels = node.hub.channel_counts();
    let subscribers: serde_json::Map<String, serde_json::Value> = channels
        .iter()
        .map(|(c, n)| (c.clone(), json!(n)))
        .collect();
    Json(json!({
        "node": node.id,
        "connections": node.admission.connections(),
        "channels": channels.len(),
        "subscribers": subscribers,
        "subscriptions": node.admission.subscriptions(),
        "draining": node.is_draining(),
    }))
    .into_response()
}

/// `?channel=C` of the presence routes.
#[derive(serde::Deserialize)]
pub(super) struct ChannelQuery {
    channel: Option<String>,
}

/// `GET /api/presence?channel=C`: `{"channel":C,"clients":[...]}`, as the
/// protocol's `presence` answer without `type` and `id`.
pub(super) async fn presence_route(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    query: Result<Query<ChannelQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let channel = match presence_channel(&node, &headers, query) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match node.presence(&channel).await {
        Ok(clients) => Json(json!({"channel": channel, "clients": clients})).into_response(),
        Err(e) => presence_error(&e),
    }
}

/// `GET /api/presence_stats?channel=C`: `{"channel":C,"clients":N,"users":M}`.
pub(super) async fn presence_stats_route(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    query: Result<Query<ChannelQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let channel = match presence_channel(&node, &headers, query) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match node.presence_stats(&channel).await {
        Ok(s) => Json(json!({"channel": channel, "clients": s.clients, "users": s.users}))
            .into_response(),
        Err(e) => presence_error(&e),
    }
}

/// The API key, then the `channel` the query names.
fn presence_channel(
    node: &Node,
    headers: &HeaderMap,
    query: Result<Query<ChannelQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<String, Box<Response>> {
    check_api_key(node, headers)?;
    query.ok().and_then(|Query(q)| q.channel).ok_or_else(|| {
        Box::new(api_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "name the channel: ?channel=NAME",
        ))
    })
}

/// 400 for a bad channel or too many to list, 404 for a channel without
/// presence, 503 when the broker cannot answer.
fn presence_error(e: &PresenceRefusal) -> Response {
    let (status, code) = match e {
        PresenceRefusal::InvalidChannel(_) => (StatusCode::BAD_REQUEST, "invalid_channel"),
        PresenceRefusal::TooMany(..) => (StatusCode::BAD_REQUEST, "bad_request"),
        PresenceRefusal::Disabled(_) => (StatusCode::NOT_FOUND, "bad_request"),
        PresenceRefusal::Broker(BrokerError::OverCapacity(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "over_capacity")
        }
        PresenceRefusal::Broker(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    api_error(status, code, &e.to_string())
}
