//! A backend that is slow, down, or answers garbage (docs/hooks.md,
//! "Failures"): every call is answered within `--hook-timeout` with an
//! error code that says retrying helps — `unavailable` for a timeout, a
//! backend that cannot be reached or a 5xx, `internal` for an answer that
//! is not what the docs say — and a connect hook that cannot decide closes
//! with 1013 (with a retry hint) or 1011. Each counted by outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hooks_support/mod.rs"]
mod hooks_support;

use hooks_support::node;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tether_test_util::{
    backend::{Backend, Reply},
    http,
    ws::{Ended, WsClient},
    TestServer, STEP,
};

const TIMEOUT: &str = "400ms";

async fn rpc(ws: &mut WsClient, id: u64) -> (Value, Duration) {
    let started = Instant::now();
    ws.send(json!({"type": "rpc", "id": id, "method": "m"}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(reply["id"], id, "{reply}");
    (reply, started.elapsed())
}

#[tokio::test]
async fn every_failure_is_answered_in_time_with_a_retryable_code() {
    let mut backend = Backend::start().await;
    let server = node(
        &backend,
        &[("hook-rpc", "/rpc")],
        &[("hook-timeout", TIMEOUT)],
    )
    .await;
    let (mut ws, _) = WsClient::tether(&server.ws_url("/ws")).await;
    let cases: Vec<(Reply, &str, &str)> = vec![
        (
            Reply::Late(
                Duration::from_secs(30),
                Box::new(Reply::Json(200, json!({"result": 1}))),
            ),
            "unavailable",
            "the rpc hook did not answer within 400 ms; retry",
        ),
        (Reply::Hang, "unavailable", "did not answer within 400 ms"),
        (
            Reply::Json(503, json!({})),
            "unavailable",
            "the rpc hook answered HTTP 503; retry",
        ),
        (
            Reply::Raw(200, "<html>oops</html>".into()),
            "internal",
            "the rpc hook's answer is unusable: not a JSON object",
        ),
        (
            Reply::Raw(200, "[1]".into()),
            "internal",
            "not a JSON object",
        ),
        (
            Reply::Json(404, json!({"detail": "no route"})),
            "internal",
            "HTTP 404 without an {\"error\":...} body",
        ),
        (
            Reply::Json(200, json!({"error": {"code": "dance", "reason": "x"}})),
            "internal",
            "`error.code` \"dance\" is not a Tether error code",
        ),
        (
            Reply::Raw(200, format!("{{\"result\":\"{}\"}}", "x".repeat(1 << 20))),
            "internal",
            "longer than 1048576 bytes",
        ),
        (Reply::Close, "unavailable", "could not be reached"),
        (
            Reply::Json(200, json!({"error": {"code": 4100, "reason": "not yours"}})),
            "forbidden",
            "not yours",
        ),
    ];
    for (i, (reply, code, says)) in cases.into_iter().enumerate() {
        backend.respond(move |_| reply.clone());
        let (answer, took) = rpc(&mut ws, i as u64).await;
        assert_eq!(answer["code"], code, "case {i}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(says), "case {i}: {message}");
        assert!(
            took < Duration::from_millis(400 + 600),
            "case {i} took {took:?}"
        );
    }
    // Down: nothing listens, the connection is refused.
    backend.down().await;
    let (answer, took) = rpc(&mut ws, 100).await;
    assert_eq!(answer["code"], "unavailable", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{answer}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Up again: answered again.
    backend.up().await;
    backend.respond(|_| Reply::Json(200, json!({"result": "back"})));
    assert_eq!(rpc(&mut ws, 101).await.0["result"], "back");
    let addr = server.addr;
    let count = |outcome: &'static str| async move {
        http::metric(
            addr,
            "tether_hook_requests_total",
            &[("hook", "rpc"), ("outcome", outcome)],
        )
        .await
    };
    assert_eq!(count("timeout").await, 2.0);
    assert_eq!(count("bad_answer").await, 5.0);
    assert_eq!(count("ok").await, 1.0);
    assert_eq!(count("refused").await, 1.0);
    assert!(count("unreachable").await >= 2.0);
    assert!(
        http::metric(server.addr, "tether_hook_seconds_count", &[("hook", "rpc")]).await >= 10.0
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_connect_hook_that_cannot_decide_closes_1013_or_1011_in_time() {
    let mut backend = Backend::start().await;
    let server = node(
        &backend,
        &[("hook-connect", "/connect")],
        &[("hook-timeout", TIMEOUT)],
    )
    .await;
    let url = server.ws_url("/ws");
    for (reply, code, says) in [
        (
            Reply::Hang,
            1013,
            "the connect hook did not answer within 400 ms",
        ),
        (
            Reply::Json(500, json!({})),
            1013,
            "the connect hook answered HTTP 500",
        ),
        (
            Reply::Raw(200, "garbage".into()),
            1011,
            "the connect hook's answer is unusable",
        ),
        (
            Reply::Json(200, json!({"channels": ["a b"]})),
            1011,
            "the connect hook's answer is unusable",
        ),
        (Reply::Json(200, json!({"info": "x"})), 1011, "unusable"),
        (
            Reply::Json(200, json!({"error": {"code": 1011}})),
            1011,
            "unusable",
        ),
    ] {
        backend.respond(move |_| reply.clone());
        let started = Instant::now();
        let mut ws = WsClient::connect(&url).await;
        let ended = ws.ended(STEP).await;
        let Ended::Closed(got, reason) = ended else {
            panic!("{says}: {ended:?}");
        };
        assert_eq!(got, code, "{reason}");
        assert!(reason.contains(says), "{reason}");
        if code == 1013 {
            assert!(reason.contains("retry_after_ms="), "{reason}");
        }
        assert!(reason.len() <= 123, "{reason}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    backend.down().await;
    let mut ws = WsClient::connect(&url).await;
    match ws.ended(STEP).await {
        Ended::Closed(1013, reason) => assert!(reason.contains("could not be reached"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Long polling: the same close, as `/lp/open`'s answer.
    let res = tether_test_util::longpoll::Lp::with_client(server.addr, "")
        .post("/lp/open", &[], "")
        .await;
    assert_eq!(res.json()["code"], 1013, "{res:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn no_connection_is_held_for_a_refused_or_failed_connect() {
    let backend = Backend::start().await;
    backend.respond(|_| {
        Reply::Json(
            200,
            json!({"error": {"code": 4001, "reason": "who are you"}}),
        )
    });
    let server = node(&backend, &[("hook-connect", "/connect")], &[]).await;
    for _ in 0..20 {
        let mut ws = WsClient::connect(&server.ws_url("/ws")).await;
        assert_eq!(
            ws.ended(STEP).await,
            Ended::Closed(4001, "who are you".into())
        );
    }
    let stats = stats(&server).await;
    assert_eq!(stats["connections"], 0, "{stats}");
    assert_eq!(
        http::metric(server.addr, "tether_closes_total", &[("code", "4001")]).await,
        20.0
    );
    server.shutdown().await;
}

async fn stats(server: &TestServer) -> Value {
    http::request(server.addr, "GET", "/api/stats", &[], "")
        .await
        .json()
}
