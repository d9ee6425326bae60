//! The connect hook (docs/hooks.md, "connect"): a connection authenticated
//! by its session cookie, on `/ws` and `/lp/`, with a JWT key configured
//! and no token; the hook is shown only the cookies and headers listed,
//! and the request is signed; its answer is the connection's user and
//! permissions; a refusal closes with the backend's code and reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hooks_support/mod.rs"]
mod hooks_support;

use hooks_support::{assert_signed, bodies, encode, node};
use serde_json::{json, Value};
use tether_test_util::{
    backend::{Backend, Reply},
    longpoll::Lp,
    ws::{Ended, WsClient},
    STEP,
};

/// Lets in the session cookie `s3cret` as ann, who may use `room:*`.
fn cookie_backend(backend: &Backend) {
    backend.respond(|r| {
        let body = r.json();
        if body["cookies"]["session"] == "s3cret" {
            Reply::Json(
                200,
                json!({"user": "ann", "info": {"name": "Ann"},
                       "subscribe": ["room:*"], "publish": ["room:*"]}),
            )
        } else {
            Reply::Json(
                403,
                json!({"error": {"code": 4403, "reason": "no session"}}),
            )
        }
    });
}

const FLAGS: &[(&str, &str)] = &[
    ("hook-cookies", "session"),
    ("hook-headers", "x-tenant"),
    ("jwt-secret", "jwt-key"),
];

#[tokio::test]
async fn a_session_cookie_authenticates_a_websocket() {
    let backend = Backend::start().await;
    cookie_backend(&backend);
    let server = node(&backend, &[("hook-connect", "/connect")], FLAGS).await;
    let data = encode(r#"{"room":"lobby"}"#);
    let url = server.ws_url(&format!("/ws?data={data}"));
    let headers = [
        ("Cookie", "tracking=abc; session=s3cret"),
        ("X-Tenant", "t1"),
        ("X-Other", "not shown"),
        ("Origin", "http://app.example"),
    ];
    let mut ws = WsClient::try_connect(&url, &headers).await.unwrap();
    let welcome = ws.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let seen = backend.received_at("/connect");
    assert_eq!(seen.len(), 1);
    assert_signed(&seen[0]);
    assert_eq!(
        seen[0].json(),
        json!({
            "client": welcome["client"],
            "transport": "websocket",
            "address": "127.0.0.1",
            "origin": "http://app.example",
            "cookies": {"session": "s3cret"},
            "headers": {"x-tenant": "t1"},
            "token": null,
            "data": {"room": "lobby"},
        })
    );
    // The answer's permissions, read like a token's claims.
    assert_eq!(ws.subscribe(1, "room:1", None).await["type"], "subscribed");
    let refused = ws.subscribe(2, "news", None).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    ws.send(json!({"type": "publish", "id": 3, "channel": "room:1", "data": 1}))
        .await;
    assert_eq!(ws.recv_type("ack").await["id"], 3);

    // Without the cookie: the backend's close code and reason.
    let mut ws = WsClient::try_connect(&server.ws_url("/ws"), &[("Cookie", "session=stale")])
        .await
        .unwrap();
    assert_eq!(
        ws.ended(STEP).await,
        Ended::Closed(4403, "no session".into())
    );
    // A token is still verified when one is given, and shown to the hook.
    let bad = WsClient::try_connect(&server.ws_url("/ws?token=a.b.c"), &[]).await;
    assert!(bad.is_err(), "a bad token is refused before the hook");
    assert_eq!(backend.received_at("/connect").len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_cookie_authenticates_long_polling_and_a_refusal_is_a_close() {
    let backend = Backend::start().await;
    cookie_backend(&backend);
    let server = node(&backend, &[("hook-connect", "/connect")], FLAGS).await;
    let cookie = [("Cookie", "session=s3cret")];
    let (lp, welcome) = Lp::open_with(server.addr, &cookie).await;
    let seen = bodies(&backend, "/connect");
    assert_eq!(seen[0]["transport"], "longpoll");
    assert_eq!(seen[0]["client"], welcome["public_client"]);
    assert_eq!(seen[0]["cookies"], json!({"session": "s3cret"}));
    let replies = lp
        .send(json!([{"type": "subscribe", "id": 1, "channel": "room:1"},
                     {"type": "subscribe", "id": 2, "channel": "news"}]))
        .await;
    assert_eq!(replies[0]["type"], "subscribed", "{replies:?}");
    assert_eq!(replies[1]["code"], "forbidden", "{replies:?}");

    // Refused: `/lp/open` answers the `close` instead of the welcome.
    let mut open = Lp::with_client(server.addr, "");
    open.headers = vec![("Cookie".into(), "session=stale".into())];
    let res = open.post("/lp/open", &[], "").await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(
        res.json(),
        json!({"type": "close", "code": 4403, "reason": "no session"})
    );
    // A request naming an unknown client (another node's session) is
    // asked about too: no cookie, no session.
    let stranger = Lp::with_client(server.addr, "n9-0123456789abcdef");
    let answer = stranger.send(json!([{"type": "ping"}])).await;
    assert_eq!(
        answer,
        vec![json!({"type": "close", "code": 4403, "reason": "no session"})]
    );
    let mut known = Lp::with_client(server.addr, "n9-0123456789abcdef");
    known.headers = vec![("Cookie".into(), "session=s3cret".into())];
    let answer = known.send(json!([{"type": "ping"}])).await;
    assert_eq!(answer, vec![json!({"type": "pong"})]);
    server.shutdown().await;
}

#[tokio::test]
async fn server_side_subscriptions_come_first_and_deliver() {
    let backend = Backend::start().await;
    backend.respond(|_| {
        Reply::Json(
            200,
            json!({"user": "ann", "channels": ["user:ann"], "subscribe": []}),
        )
    });
    let server = node(&backend, &[("hook-connect", "/connect")], &[]).await;
    tether_test_util::http::publish(server.addr, "user:ann", json!("before")).await;
    let (mut ws, _) = WsClient::tether(&server.ws_url("/ws")).await;
    let announced = ws.recv().await;
    assert_eq!(announced["type"], "subscribed", "{announced}");
    assert!(announced.get("id").is_none(), "{announced}");
    assert_eq!(announced["channel"], "user:ann");
    assert_eq!(announced["offset"], 1);
    tether_test_util::http::publish(server.addr, "user:ann", json!("after")).await;
    let m = ws.recv().await;
    assert_eq!(
        (m["type"].as_str(), &m["data"]),
        (Some("message"), &json!("after"))
    );
    // The client takes it over (as after a reconnect): answered afresh
    // from its position, not `already_subscribed`, although its grant's
    // `subscribe` allows nothing else.
    let again = ws
        .subscribe(
            1,
            "user:ann",
            Some((announced["epoch"].as_str().unwrap(), 1)),
        )
        .await;
    assert_eq!(again["recovered"], true, "{again}");
    assert_eq!(again["publications"][0]["data"], "after", "{again}");
    assert_eq!(ws.subscribe(2, "user:bob", None).await["code"], "forbidden");

    // Long polling: the first poll announces them, and later polls name them.
    let (lp, _) = Lp::open(server.addr).await;
    let first = lp.poll(json!({"channels": {}})).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["type"], "subscribed");
    assert_eq!(first[0]["channel"], "user:ann");
    let (epoch, offset) = (
        first[0]["epoch"].as_str().unwrap().to_owned(),
        first[0]["offset"].as_u64().unwrap(),
    );
    tether_test_util::http::publish(server.addr, "user:ann", json!("lp")).await;
    let next = lp
        .poll(tether_test_util::longpoll::positions(&[(
            "user:ann", &epoch, offset,
        )]))
        .await;
    assert_eq!(next[0]["data"], "lp", "{next:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_data_parameter_is_refused_400_before_the_hook() {
    let backend = Backend::start().await;
    let server = node(&backend, &[("hook-connect", "/connect")], &[]).await;
    for query in [
        "data=%5B1%5D",
        "data=%7Bnot",
        &format!("data={}", "x".repeat(4097)),
    ] {
        let localhost = "127.0.0.1".parse().unwrap();
        let res =
            tether_test_util::http::upgrade_from(localhost, server.addr, &format!("/ws?{query}"))
                .await;
        assert_eq!(res.status, 400, "{query}: {res:?}");
        assert!(
            res.body
                .starts_with("bad request: the `data` query parameter"),
            "{res:?}"
        );
        let lp = Lp::with_client(server.addr, "");
        let (name, value) = query.split_once('=').unwrap();
        let res = lp.post("/lp/open", &[(name, value)], "").await;
        assert_eq!(res.status, 400, "{query}: {res:?}");
    }
    assert!(backend.received().is_empty(), "{:?}", backend.received());
    // Without a connect hook, `data` is nobody's and is not looked at.
    let plain = tether_test_util::TestServer::start(&[]).await;
    let url = plain.ws_url("/ws?data=%5B1%5D");
    let (_ws, welcome) = WsClient::tether(&url).await;
    assert_eq!(welcome["type"], Value::from("welcome"));
    plain.shutdown().await;
    server.shutdown().await;
}
