//! Long polling's limits, auth and bad input (docs/longpoll.md, "Limits"):
//! the WebSocket handshake's refusals, bounded bodies with one-line
//! reasons, the message rate with strikes, the drain's 1012, and bodies
//! that are not what they should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::{
    net::IpAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tether_test_util::longpoll::{positions, uncached, Lp};
use tether_test_util::{eventually, http, process::ServerProcess, TestServer};

const SECRET: &str = "lp-test-secret";

const FLAGS: &[(&str, &str)] = &[
    ("ping-interval", "5s"),
    ("pong-timeout", "5s"),
    ("long-poll-timeout", "400ms"),
];

fn flags(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    FLAGS.iter().chain(extra).copied().collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A refusal: `status`, the headers of every `/lp/` answer, and a one-line
/// reason.
#[track_caller]
fn refused(res: &http::HttpResponse, status: u16) -> String {
    assert_eq!(res.status, status, "{res:?}");
    uncached(res);
    let reason = res.body.trim_end();
    assert!(
        !reason.is_empty() && !reason.contains('\n'),
        "one line: {:?}",
        res.body
    );
    reason.to_owned()
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[tokio::test]
async fn a_token_is_required_and_its_claims_are_enforced() {
    let server = TestServer::start(&flags(&[("jwt-secret", SECRET)])).await;
    let anonymous = Lp::with_client(server.addr, "");
    let reason = refused(&anonymous.post("/lp/open", &[], "").await, 401);
    assert!(reason.contains("token is required"), "{reason}");
    let forged = Lp {
        headers: vec![("Authorization".into(), "Bearer a.b.c".into())],
        ..anonymous.clone()
    };
    refused(&forged.post("/lp/open", &[], "").await, 401);

    let t =
        token(json!({"sub": "u", "exp": now() + 600, "subscribe": ["news"], "publish": ["chat"]}));
    let bearer = format!("Bearer {t}");
    let (lp, welcome) = Lp::open_with(server.addr, &[("Authorization", &bearer)]).await;
    assert_eq!(welcome["type"], "welcome");
    let replies = lp
        .send(json!([
            {"type": "subscribe", "id": 1, "channel": "news"},
            {"type": "subscribe", "id": 2, "channel": "secret"},
            {"type": "publish", "id": 3, "channel": "news", "data": 1},
            {"type": "publish", "id": 4, "channel": "chat", "data": 2},
        ]))
        .await;
    assert_eq!(replies[0]["type"], "subscribed", "{replies:?}");
    assert_eq!(
        (&replies[1]["code"], &replies[1]["id"]),
        (&json!("forbidden"), &json!(2))
    );
    assert_eq!(
        (&replies[2]["code"], &replies[2]["id"]),
        (&json!("forbidden"), &json!(3))
    );
    assert_eq!(replies[3], json!({"type": "ack", "id": 4, "offset": 1}));

    // Every request carries the token: without it, 401 even for a live session.
    let bare = Lp::with_client(server.addr, &lp.client);
    refused(&bare.send_raw(r#"[{"type":"ping"}]"#).await, 401);
    refused(&bare.poll_raw("{}").await, 401);
    // `?token=` works as well; a poll naming a forbidden channel gets an
    // error naming it.
    let by_query = Lp::with_client(server.addr, &lp.client);
    let epoch = replies[0]["epoch"].as_str().unwrap();
    let res = by_query
        .post(
            "/lp/poll",
            &[("token", &t)],
            &positions(&[("secret", epoch, 0)]).to_string(),
        )
        .await;
    assert_eq!(res.status, 200, "{res:?}");
    let answer = res.json();
    assert_eq!(answer[0]["code"], "forbidden", "{answer}");
    assert_eq!(answer[0]["channel"], "secret", "{answer}");

    // A refreshed token replaces the old one.
    let wider = token(json!({"sub": "u", "exp": now() + 600, "publish": ["news"]}));
    let refreshed = Lp {
        headers: vec![("Authorization".into(), format!("Bearer {wider}"))],
        ..lp.clone()
    };
    let replies = refreshed
        .send(json!([{"type": "publish", "id": 5, "channel": "news", "data": 3}]))
        .await;
    assert_eq!(replies[0]["type"], "ack", "{replies:?}");
}

#[tokio::test]
async fn a_token_that_expires_under_a_live_session_closes_it_with_4002() {
    let server = TestServer::start(&[
        ("jwt-secret", SECRET),
        ("ping-interval", "20s"),
        ("pong-timeout", "20s"),
        ("long-poll-timeout", "15s"),
    ])
    .await;
    let addr = server.addr;
    // A request with an expired token, for a live session.
    let good = format!("Bearer {}", token(json!({"sub": "u", "exp": now() + 600})));
    let (lp, _) = Lp::open_with(addr, &[("Authorization", &good)]).await;
    let stale = Lp {
        headers: vec![(
            "Authorization".into(),
            format!("Bearer {}", token(json!({"sub": "u", "exp": now() - 5}))),
        )],
        ..lp.clone()
    };
    let answer = stale.poll(json!({})).await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0]["type"], "close");
    assert_eq!(answer[0]["code"], 4002);
    assert!(answer[0]["reason"].as_str().unwrap().contains("expired"));
    assert_eq!(
        http::metric(addr, "tether_longpoll_sessions", &[]).await,
        0.0
    );
    // No session any more (as on a node that never had it): 4002 again, so
    // the client refreshes its token instead of giving up on a 401.
    let answer = stale.poll(json!({})).await;
    assert_eq!(
        (&answer[0]["type"], &answer[0]["code"]),
        (&json!("close"), &json!(4002))
    );

    // A token that expires while a poll waits: the poll answers the close
    // at the expiry, not at the 15 s poll timeout.
    let short = format!("Bearer {}", token(json!({"sub": "u", "exp": now() + 2})));
    let (lp, _) = Lp::open_with(addr, &[("Authorization", &short)]).await;
    let started = Instant::now();
    let answer = lp.poll(json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(
        (&answer[0]["type"], &answer[0]["code"]),
        (&json!("close"), &json!(4002))
    );
    assert_eq!(
        http::metric(addr, "tether_longpoll_sessions", &[]).await,
        0.0
    );
    assert_eq!(http::metric(addr, "tether_connections", &[]).await, 0.0);
    assert_eq!(
        http::metric(addr, "tether_closes_total", &[("code", "4002")]).await,
        3.0
    );
}

#[tokio::test]
async fn a_token_refreshed_while_a_poll_waits_keeps_the_session() {
    let server = TestServer::start(&[
        ("jwt-secret", SECRET),
        ("ping-interval", "20s"),
        ("pong-timeout", "20s"),
        ("long-poll-timeout", "3s"),
    ])
    .await;
    let addr = server.addr;
    let epoch = http::publish(addr, "t", json!(1)).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let short = format!("Bearer {}", token(json!({"sub": "u", "exp": now() + 2})));
    let lp = Lp {
        headers: vec![("Authorization".into(), short)],
        ..Lp::with_client(addr, "n4-refresh-0123456789abcdef")
    };
    let started = Instant::now();
    let waiting = tokio::spawn({
        let lp = lp.clone();
        let body = positions(&[("t", &epoch, 1)]);
        async move { lp.poll(body).await }
    });
    eventually("the poll has joined its channel", || async {
        let stats = http::request(addr, "GET", "/api/stats", &[], "").await;
        stats.json()["subscribers"]["t"] == 1
    })
    .await;
    let fresh = format!("Bearer {}", token(json!({"sub": "u", "exp": now() + 600})));
    let refreshed = Lp {
        headers: vec![("Authorization".into(), fresh)],
        ..lp.clone()
    };
    assert_eq!(refreshed.send(json!([{"type": "ping"}])).await.len(), 1);
    // The first token expires while the poll waits; the session lives on
    // with the second, and the poll ends at its timeout.
    let answer = waiting.await.unwrap();
    assert_eq!(answer, Vec::<Value>::new());
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        http::metric(addr, "tether_longpoll_sessions", &[]).await,
        1.0
    );
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_refused() {
    let server = TestServer::start(&flags(&[("allowed-origins", "https://app.example.com")])).await;
    let addr = server.addr;
    let evil = Lp {
        headers: vec![("Origin".into(), "https://evil.example.com".into())],
        ..Lp::with_client(addr, "")
    };
    let reason = refused(&evil.post("/lp/open", &[], "").await, 403);
    assert!(reason.contains("origin"), "{reason}");

    let (lp, _) = Lp::open_with(addr, &[("Origin", "https://app.example.com")]).await;
    let res = lp.send_raw(r#"[{"type":"ping"}]"#).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("Access-Control-Allow-Origin"),
        Some("https://app.example.com")
    );
    assert!(res.header("Vary").is_some_and(|v| v.contains("Origin")));
    // Scripts on that origin may read Retry-After (the client's backoff floor).
    assert_eq!(
        res.header("Access-Control-Expose-Headers"),
        Some("Retry-After")
    );
    // The same client from a page on another origin.
    let hijacked = Lp {
        headers: vec![("Origin".into(), "https://evil.example.com".into())],
        ..lp.clone()
    };
    refused(&hijacked.poll_raw("{}").await, 403);
    // Not a browser (no Origin): allowed, with no CORS header.
    let (plain, _) = Lp::open(addr).await;
    let res = plain.send_raw("[]").await;
    assert_eq!(
        (res.status, res.header("Access-Control-Allow-Origin")),
        (200, None)
    );

    for path in ["/lp/open", "/lp/send", "/lp/poll"] {
        let res = http::request(
            addr,
            "OPTIONS",
            path,
            &[
                ("Origin", "https://app.example.com"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "authorization"),
            ],
            "",
        )
        .await;
        assert_eq!(res.status, 204, "{path}: {res:?}");
        uncached(&res);
        assert_eq!(
            res.header("Access-Control-Allow-Origin"),
            Some("https://app.example.com")
        );
        assert!(res
            .header("Access-Control-Allow-Methods")
            .is_some_and(|m| m.contains("POST")));
        assert!(res
            .header("Access-Control-Allow-Headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("authorization")));
    }
}

#[tokio::test]
async fn sessions_count_against_the_per_address_cap() {
    // A session is a place of the address's session share, apart from the
    // sockets carrying its requests.
    let server = TestServer::start(&flags(&[("max-long-poll-sessions-per-ip", "2")])).await;
    let addr = server.addr;
    let open_from = |source: IpAddr| async move {
        http::request_from(source, addr, "POST", "/lp/open", &[], "").await
    };
    let first = open_from(ip(2)).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(open_from(ip(2)).await.status, 200);
    let res = open_from(ip(2)).await;
    let reason = refused(&res, 503);
    assert!(
        reason.contains("too many long-polling sessions from your address"),
        "{reason}"
    );
    assert!(res
        .header("Retry-After")
        .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    assert_eq!(
        http::metric(addr, "tether_longpoll_sessions", &[]).await,
        2.0
    );
    assert_eq!(http::metric(addr, "tether_connections", &[]).await, 2.0);
    assert!(
        http::metric(
            addr,
            "tether_handshakes_total",
            &[("outcome", "longpoll_ip_full")]
        )
        .await
            >= 1.0
    );
    // Another address is not affected; the sessions held still work.
    assert_eq!(open_from(ip(3)).await.status, 200);
    let client = first.json()["client"].as_str().unwrap().to_owned();
    let res = http::request_from(
        ip(2),
        addr,
        "POST",
        &format!("/lp/send?client={client}"),
        &[],
        r#"[{"type":"ping"}]"#,
    )
    .await;
    assert_eq!(
        (res.status, res.body.as_str()),
        (200, r#"[{"type":"pong"}]"#)
    );
}

#[tokio::test]
async fn bodies_over_their_bounds_get_413() {
    let server = TestServer::start(&flags(&[
        ("max-message-bytes", "1024"),
        ("max-subscriptions", "4"),
    ]))
    .await;
    let (lp, _) = Lp::open(server.addr).await;
    let ping = json!({"type": "ping"});
    let answer = lp.send(Value::Array(vec![ping.clone(); 64])).await;
    assert_eq!(answer.len(), 64);
    let reason = refused(
        &lp.send_raw(&Value::Array(vec![ping; 65]).to_string()).await,
        413,
    );
    assert!(reason.contains("64"), "{reason}");
    // 4 × --max-message-bytes (+ 1 KiB of framing) per send.
    let big = json!([{"type": "publish", "id": 1, "channel": "b", "data": "x".repeat(5200)}]);
    refused(&lp.send_raw(&big.to_string()).await, 413);
    // A poll names at most --max-subscriptions channels.
    let five: Vec<(String, u64)> = (0..5).map(|i| (format!("c{i}"), 0)).collect();
    let names: Vec<(&str, &str, u64)> = five.iter().map(|(c, o)| (c.as_str(), "e", *o)).collect();
    let reason = refused(&lp.poll_raw(&positions(&names).to_string()).await, 413);
    assert!(reason.contains('4'), "{reason}");
    let huge = format!(
        r#"{{"channels":{{"a":{{"epoch":"{}","offset":0}}}}}}"#,
        "e".repeat(8000)
    );
    refused(&lp.poll_raw(&huge).await, 413);
    // Still usable.
    assert_eq!(lp.send(json!([{"type": "ping"}])).await.len(), 1);
}

#[tokio::test]
async fn malformed_bodies_and_client_ids_get_400_with_a_reason() {
    let server = TestServer::start(FLAGS).await;
    let (lp, _) = Lp::open(server.addr).await;
    for body in [
        "",
        "{}",
        "\"ping\"",
        "[1,",
        "[{\"type\":\"ping\"}] x",
        "null",
    ] {
        let res = lp.send_raw(body).await;
        assert_eq!(res.status, 400, "send {body:?}: {}", res.body);
        refused(&res, 400);
    }
    for body in [
        "",
        "[]",
        "{\"channels\":5}",
        "{\"channels\":{\"a\":{\"epoch\":1,\"offset\":0}}}",
        "{\"channels\":{\"a\":{\"epoch\":\"e\",\"offset\":-1}}}",
        "{\"channels\":{\"a\":{\"epoch\":\"e\"}}}",
    ] {
        let res = lp.poll_raw(body).await;
        assert_eq!(res.status, 400, "poll {body:?}: {}", res.body);
        refused(&res, 400);
    }
    // Messages that are not protocol messages are answered like on /ws.
    let answer = lp.send(json!([{"type": "dance", "id": 4}, 7])).await;
    assert_eq!(answer[0]["code"], "unknown_type", "{answer:?}");
    assert_eq!(answer[0]["id"], 4);
    assert_eq!(answer[1]["code"], "malformed_json", "{answer:?}");

    let long = "a".repeat(97);
    for query in ["", "?client=", "?client=a%20b", "?client=../x", "?x=1"] {
        for route in ["/lp/send", "/lp/poll"] {
            let res =
                http::request(server.addr, "POST", &format!("{route}{query}"), &[], "[]").await;
            let reason = refused(&res, 400);
            assert!(reason.contains("client"), "{route}{query}: {reason}");
        }
    }
    let res = http::request(
        server.addr,
        "POST",
        &format!("/lp/poll?client={long}"),
        &[],
        "{}",
    )
    .await;
    refused(&res, 400);
    assert_eq!(
        http::metric(server.addr, "tether_longpoll_sessions", &[]).await,
        1.0
    );
}

#[tokio::test]
async fn strikes_over_the_message_rate_end_the_session_with_4005() {
    let server = TestServer::start(&flags(&[
        ("messages-per-second", "0.001"),
        ("messages-burst", "1"),
    ]))
    .await;
    let (lp, _) = Lp::open(server.addr).await;
    let answer = lp
        .send(Value::Array(vec![json!({"type": "ping"}); 12]))
        .await;
    assert_eq!(answer.len(), 12, "{answer:?}");
    assert_eq!(answer[0]["type"], "pong");
    for refusal in &answer[1..11] {
        assert_eq!(refusal["code"], "rate_limited", "{refusal}");
    }
    assert_eq!(answer[11]["type"], "close");
    assert_eq!(answer[11]["code"], 4005);
    let closes = http::metric(server.addr, "tether_closes_total", &[("code", "4005")]).await;
    assert_eq!(closes, 1.0);
    assert_eq!(
        http::metric(server.addr, "tether_longpoll_sessions", &[]).await,
        0.0
    );

    // Polls take tokens too: a poll flood is refused at once, then closed.
    let (lp, _) = Lp::open(server.addr).await;
    assert!(lp.poll(json!({})).await.is_empty());
    for _ in 0..9 {
        let answer = lp.poll(json!({})).await;
        assert_eq!(answer.len(), 1, "{answer:?}");
        assert_eq!(answer[0]["code"], "rate_limited");
    }
    let answer = lp.poll(json!({})).await;
    assert_eq!(answer.last().unwrap()["code"], 4005, "{answer:?}");
}

#[tokio::test]
async fn a_drain_answers_a_waiting_poll_with_1012() {
    let mut server = ServerProcess::start(&[
        "--long-poll-timeout",
        "20s",
        "--drain-timeout",
        "5s",
        "--drain-jitter",
        "1s",
    ])
    .await;
    let addr = server.addr;
    let epoch = http::publish(addr, "d", json!(1)).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    // A client new to this node: its poll joins "d" (nothing after offset 1)
    // and waits.
    let lp = Lp::with_client(addr, "n9-drain-0123456789abcdef");
    let started = Instant::now();
    let waiting = tokio::spawn({
        let lp = lp.clone();
        let body = positions(&[("d", &epoch, 1)]);
        async move { lp.poll(body).await }
    });
    eventually("the poll has joined its channel", || async {
        let stats = http::request(addr, "GET", "/api/stats", &[], "").await;
        stats.json()["subscribers"]["d"] == 1
    })
    .await;
    server.signal("TERM");
    let answer = waiting.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(
        (&answer[0]["type"], &answer[0]["code"]),
        (&json!("close"), &json!(1012))
    );
    let reason = answer[0]["reason"].as_str().unwrap();
    let hint = tether_protocol::RetryHint::parse(reason).expect("a reconnect hint");
    assert!(hint.0 <= Duration::from_secs(1), "{reason}");
    let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .expect("exits after draining")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
}
