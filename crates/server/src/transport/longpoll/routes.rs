//! The HTTP side of long polling: `POST /lp/open`, `/lp/send`, `/lp/poll`,
//! with the WebSocket handshake's gate (origin, token, handshake rate,
//! connection caps) and bounded bodies.

use super::{
    close_frame, ending_frame, new_client_id, poll, poll::PollBody, valid_client_id, Busy,
    Registry, STYLE,
};
use crate::hooks::ConnectRequest;
use crate::{
    auth::Grant,
    gate::{
        cross_origin, denied_to_refusal, has_connect_hook, hooks_busy, origin_allowed, refuse,
        Gated, PeerAddr,
    },
    handshake::Refusal,
    limits::Lane,
    node::Node,
    session::{Closing, Out, Session},
};
use axum::{
    body::Body,
    extract::{Request, State},
    http::request::Parts,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Extension, Router,
};
use bytes::Bytes;
use serde_json::value::RawValue;
use std::sync::Arc;
use tether_protocol::CloseCode;

/// Messages one `/lp/send` may carry.
pub const MAX_SEND_MESSAGES: usize = 64;

/// The long-polling routes, with this node's registry of long-polling
/// sessions (kept by the transport: the node holds no transport's state).
pub fn routes(node: &Arc<Node>) -> Router<Arc<Node>> {
    let registry = Arc::new(Registry::default());
    registry.clone().keep(node);
    Router::new()
        .route("/lp/open", post(open_route).options(preflight))
        .route("/lp/send", post(send_route).options(preflight))
        .route("/lp/poll", post(poll_route).options(preflight))
        // Every answer under /lp/, a 405 included (a 404 gets them in the
        // node's fallback).
        .layer(axum::middleware::map_response(
            |mut res: Response| async move {
                never_cached(res.headers_mut());
                res
            },
        ))
        .layer(Extension(registry))
}

/// Never cached, never buffered by a proxy: what every `/lp/` answer says.
pub fn never_cached(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// The `client` query parameter.
fn client_param(req: &Parts) -> Option<String> {
    req.uri
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("client=").map(str::to_owned))
}

/// Makes an answer readable cross-origin when the origin is allowed (any,
/// by default).
fn finish(node: &Node, req_headers: &HeaderMap, mut res: Response) -> Response {
    cross_origin(node, req_headers, &mut res);
    res
}

/// A CORS preflight: allowed for an allowed origin; another gets 403 with
/// the reason (and no CORS header, so its browser stops there).
async fn preflight(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    if let Err(refusal) = origin_allowed(&node.config.auth.allowed_origins, &headers) {
        let res = bad_request(StatusCode::FORBIDDEN, &refusal.message());
        return finish(&node, &headers, res);
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    finish(&node, &headers, res)
}

/// A JSON array of protocol messages; they count as sent, as on `/ws`.
fn json_array(node: &Node, frames: &[Bytes]) -> Response {
    node.metrics.messages_out.inc_by(frames.len() as u64);
    let mut body = Vec::with_capacity(2 + frames.iter().map(|f| f.len() + 1).sum::<usize>());
    body.push(b'[');
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(f);
    }
    body.push(b']');
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}

fn bad_request(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// The WebSocket handshake's gate (draining, origin, token) for a
/// long-polling request, and one rule of its own: a token must name its
/// subject.
fn gate(node: &Node, req: &Parts) -> Result<Grant, Gated> {
    let (token, _) = crate::auth::token_from_request(&req.headers, req.uri.query());
    let grant = crate::gate::gate(node, &req.headers, token.as_deref())?;
    // A session is its subject's (a request for it with another subject is
    // refused): a token without one would make every sub-less token, and a
    // tokenless request, the owner of every sub-less session. On `/ws` the
    // socket is the session and needs no owner; here the client id is
    // learnable, so the subject must be something an outsider cannot present.
    // (With a connect hook the backend says who the session is, once.)
    if token.is_some() && node.verifier.is_some() && !has_subject(&grant) && !has_connect_hook(node)
    {
        return Err(Gated {
            refusal: Refusal::Unauthorized(
                "long polling needs a token with a `sub` claim (a session belongs to its \
                 subject); issue tokens with `sub`, or use the WebSocket"
                    .into(),
            ),
            token_expired: false,
            expired_user: None,
        });
    }
    Ok(grant)
}

fn has_subject(grant: &Grant) -> bool {
    grant.user.as_deref().is_some_and(|s| !s.is_empty())
}

/// A new engine session for `peer`, under the connection limits.
fn admit(node: &Arc<Node>, peer: &PeerAddr, grant: Grant) -> Result<Session, Refusal> {
    let permit = node
        .admission
        .admit_on(peer.addr.ip(), None, Lane::LongPoll)
        .map_err(denied_to_refusal)?;
    node.metrics.handshake("accepted");
    Ok(Session::new(node.clone(), grant, permit, STYLE))
}

async fn open_route(
    State(node): State<Arc<Node>>,
    Extension(registry): Extension<Arc<Registry>>,
    Extension(peer): Extension<PeerAddr>,
    req: Request,
) -> Response {
    let (req, _) = req.into_parts();
    let headers = req.headers.clone();
    let admitted = gate(&node, &req)
        .map_err(|g| g.refusal)
        .and_then(|g| Ok((ask_connect(&node, &peer, &req)?, g)))
        .and_then(|(connect, g)| Ok((connect, admit(&node, &peer, g)?)));
    let res = match admitted {
        Err(r) => refuse(&node, peer.addr, "/lp/open", r),
        Ok((connect, mut engine)) => {
            let client = new_client_id(&node);
            match connected(&node, &mut engine, connect, &client, true).await {
                // The `close` the connect hook's refusal is, as one message.
                Err(c) => (
                    [(header::CONTENT_TYPE, "application/json")],
                    ending_frame(&node, &c),
                )
                    .into_response(),
                Ok(()) => {
                    // The `welcome` of every transport, with how long a poll waits.
                    let welcome = engine.welcome(client.clone()).encode();
                    drop(registry.insert(&node, &client, engine));
                    ([(header::CONTENT_TYPE, "application/json")], welcome).into_response()
                }
            }
        }
    };
    finish(&node, &headers, res)
}

/// With a connect hook: what it will be shown of this request (`None`
/// without one). Refused 400 for a bad `data` query parameter, 503 when the
/// node has no room for the call.
fn ask_connect(
    node: &Node,
    peer: &PeerAddr,
    req: &Parts,
) -> Result<Option<ConnectRequest>, Refusal> {
    let Some(hooks) = node.hooks.as_ref().filter(|_| has_connect_hook(node)) else {
        return Ok(None);
    };
    let data = crate::hooks::data_param(req.uri.query()).map_err(Refusal::BadRequest)?;
    if !hooks.has_room() {
        return Err(hooks_busy());
    }
    let (token, _) = crate::auth::token_from_request(&req.headers, req.uri.query());
    Ok(Some(hooks.connect_request(
        "longpoll",
        peer.addr.ip(),
        &req.headers,
        token,
        data,
    )))
}

/// Asks the connect hook (when there is one) about a new session for
/// `client`, and gives the engine its answer; the hook's server-side
/// subscriptions are announced by the session's first request when
/// `announce` (a session `/lp/open` made; one re-created on another node
/// holds them as its client names them). Awaited in the request: nothing
/// exists yet that a dropped request would leave behind but the permit in
/// `engine`, dropped with it.
async fn connected(
    node: &Node,
    engine: &mut Session,
    connect: Option<ConnectRequest>,
    client: &str,
    announce: bool,
) -> Result<(), Closing> {
    let Some(mut request) = connect else {
        return Ok(());
    };
    request.client = crate::session::public_id(client);
    let grant = crate::session::connect(node, &request).await?;
    if announce {
        engine.connected(grant);
    } else {
        engine.set_grant(grant);
    }
    Ok(())
}

/// The session a send or poll names: this node's, or a new one (no sticky
/// sessions: the client's earlier requests may have gone to another node),
/// marked busy for the request. `Err` is the response to give instead.
async fn session_for(
    node: &Arc<Node>,
    registry: &Registry,
    peer: &PeerAddr,
    req: &Parts,
    client: Option<String>,
) -> Result<Busy, Response> {
    let Some(client) = client.filter(|c| valid_client_id(c)) else {
        return Err(bad_request(
            StatusCode::BAD_REQUEST,
            "?client=ID is missing or malformed (the id from /lp/open's welcome)",
        ));
    };
    let grant = match gate(node, req) {
        Ok(g) => g,
        // An expired token ends the session with 4002, as on a WebSocket,
        // on whichever node the request reaches (the client refreshes its
        // token); other refusals are plain HTTP answers.
        Err(g) if g.token_expired => {
            let c = Closing::token_expired();
            // Only the session's own subject ends it: another user's expired
            // token on a learned client id ends nothing, and neither does a
            // token without a subject (no session is a sub-less token's).
            let subject = g.expired_user.filter(|s| !s.is_empty());
            if let (Some(session), Some(subject)) = (registry.enter(&client), subject) {
                let owner = session.state.lock().await.engine.grant.user.clone();
                if owner.as_deref() == Some(subject.as_str()) {
                    registry.remove(node, &client, c.clone());
                }
            }
            return Err(json_array(node, &[ending_frame(node, &c)]));
        }
        Err(g) => return Err(refuse(node, peer.addr, req.uri.path(), g.refusal)),
    };
    let session = match registry.enter(&client) {
        Some(s) => s,
        None => {
            let admitted = ask_connect(node, peer, req)
                .and_then(|connect| Ok((connect, admit(node, peer, grant.clone())?)));
            let (connect, mut engine) = match admitted {
                Ok(a) => a,
                Err(r) => return Err(refuse(node, peer.addr, req.uri.path(), r)),
            };
            if let Err(c) = connected(node, &mut engine, connect, &client, false).await {
                return Err(json_array(node, &[ending_frame(node, &c)]));
            }
            registry.insert(node, &client, engine)
        }
    };
    // With a connect hook the session is who the hook said when it was
    // made; the client id (128 random bits) is its credential, as for a
    // tokenless session.
    if has_connect_hook(node) {
        return Ok(session);
    }
    let mut state = session.state.lock().await;
    // A session belongs to the token subject that opened it: another user
    // who learned the client id cannot act in it (nor a user who logged in
    // as someone else: they open a new session).
    if state.engine.grant.user != grant.user {
        node.metrics.refusal("longpoll_other_user");
        return Err(bad_request(
            StatusCode::CONFLICT,
            "this client id belongs to a session of another user; open a new one with /lp/open",
        ));
    }
    // A refreshed token replaces the old one, and what it no longer allows
    // is left now (the next poll naming it answers `forbidden`).
    let revoked = state.engine.set_grant(grant);
    if !revoked.is_empty() {
        tracing::debug!(client = %session.client, ?revoked, "refreshed token: channels left");
    }
    drop(state);
    Ok(session)
}

/// Reads a body of at most `limit` bytes (`bound` says how it is set),
/// answering 413 / 400 / 408 itself.
async fn body_of(
    node: &Node,
    peer: &PeerAddr,
    body: Body,
    limit: usize,
    bound: &str,
) -> Result<Bytes, Response> {
    let Some(_receiving) = node.admission.receive_body(peer.addr.ip()) else {
        node.metrics.refusal("bodies_in_flight");
        let mut res = bad_request(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many request bodies from your address are still arriving; retry in 1 s",
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(res);
    };
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| crate::body::body_error(node, peer.addr, &e, bound))
}

async fn send_route(
    State(node): State<Arc<Node>>,
    Extension(registry): Extension<Arc<Registry>>,
    Extension(peer): Extension<PeerAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let res = send(&node, &registry, &peer, &parts, body).await;
    finish(&node, &parts.headers, res)
}

async fn send(
    node: &Arc<Node>,
    registry: &Arc<Registry>,
    peer: &PeerAddr,
    req: &Parts,
    body: Body,
) -> Response {
    let session = match session_for(node, registry, peer, req, client_param(req)).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    let limit = 4 * node.config.limits.max_message_bytes + 1024;
    let bound = "4 × --max-message-bytes + 1 KiB";
    let body = match body_of(node, peer, body, limit, bound).await {
        Ok(b) => b,
        Err(res) => return res,
    };
    let messages: Vec<Box<RawValue>> = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return bad_request(
                StatusCode::BAD_REQUEST,
                &format!("the body must be a JSON array of protocol messages: {e}"),
            )
        }
    };
    if messages.len() > MAX_SEND_MESSAGES {
        return bad_request(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "{} messages in one send; at most {MAX_SEND_MESSAGES}",
                messages.len()
            ),
        );
    }
    let client = session.client.clone();
    let handled = session.run(node, {
        let (node, registry) = (node.clone(), registry.clone());
        move |mut state| async move {
            if let Some(c) = &state.closed {
                return vec![close_frame(c)];
            }
            let mut out = Out::new();
            // The session's expiry (or its refresh), then what the connect
            // hook subscribed it to, before any reply.
            let checked = state.engine.check_expiry().await;
            if let Err(c) = checked {
                out.push(ending_frame(&node, &c));
                state.closed = Some(c.clone());
                drop(state);
                registry.remove(&node, &client, c);
                return out;
            }
            state.engine.announce(&mut out).await;
            let max = node.config.limits.max_message_bytes;
            for message in messages {
                let text = message.get();
                // As on a WebSocket, a message over the limit ends the session (1009).
                let handled = if text.len() > max {
                    Err(Closing::new(
                        CloseCode::MessageTooBig,
                        format!("message of {} bytes exceeds the limit of {max}", text.len()),
                    ))
                } else {
                    state.engine.on_text(text, &mut out).await
                };
                if let Err(c) = handled {
                    out.push(ending_frame(&node, &c));
                    state.closed = Some(c.clone());
                    drop(state);
                    registry.remove(&node, &client, c);
                    return out;
                }
            }
            out
        }
    });
    match handled.await {
        Some(out) => json_array(node, &out),
        None => engine_failed(),
    }
}

/// The answer when engine work panicked (a bug): nothing the client did.
pub(super) fn engine_failed() -> Response {
    bad_request(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error handling the request; retry",
    )
}

/// Decodes a poll's body: a JSON object (serde would also take a struct
/// from an array, `[]` included) naming at most `max` channels; `Err` is the
/// status and reason to answer.
fn poll_body(body: &[u8], max: usize) -> Result<PollBody, (StatusCode, String)> {
    let decoded = match body.trim_ascii_start().first() {
        Some(b'{') => serde_json::from_slice::<PollBody>(body).map_err(|e| e.to_string()),
        _ => Err("not a JSON object".into()),
    };
    match decoded {
        Err(e) => Err((
            StatusCode::BAD_REQUEST,
            format!("the body must be {{\"channels\":{{NAME:{{\"epoch\":E,\"offset\":N}}}}}}: {e}"),
        )),
        Ok(body) if body.channels.len() > max => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a poll names {} channels; at most {max} (--max-subscriptions)",
                body.channels.len()
            ),
        )),
        Ok(body) => Ok(body),
    }
}

async fn poll_route(
    State(node): State<Arc<Node>>,
    Extension(registry): Extension<Arc<Registry>>,
    Extension(peer): Extension<PeerAddr>,
    req: Request,
) -> Response {
    let (req, body) = req.into_parts();
    let headers = req.headers.clone();
    let client = client_param(&req);
    let res = match session_for(&node, &registry, &peer, &req, client).await {
        Err(res) => res,
        Ok(session) => {
            let max = node.config.limits.max_subscriptions;
            let bound = "320 bytes per --max-subscriptions + 1 KiB";
            match body_of(&node, &peer, body, max * 320 + 1024, bound).await {
                Err(res) => res,
                Ok(body) => match poll_body(&body, max) {
                    Err((status, reason)) => bad_request(status, &reason),
                    Ok(body) => {
                        json_array(&node, &poll::poll(&node, &registry, &session, body).await)
                    }
                },
            }
        }
    };
    finish(&node, &headers, res)
}
