//! Long polling against peers that do not play along (docs/longpoll.md,
//! "Limits"): a poll answer stays within its byte bound whatever the poll
//! names, channel names in a poll are checked like a subscribe's, a message
//! over `--max-message-bytes` ends the session with 1009, a session belongs
//! to the token subject that opened it, and every answer under `/lp/` is
//! uncached, 404 and 405 included; bodies of random bytes, deep nesting
//! and huge arrays get 400 or 413 and never hurt the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::{
    collections::HashMap,
    time::{SystemTime, UNIX_EPOCH},
};
use tether_test_util::longpoll::{uncached, Lp};
use tether_test_util::{http, TestServer};

const FLAGS: &[(&str, &str)] = &[
    ("ping-interval", "5s"),
    ("pong-timeout", "5s"),
    ("long-poll-timeout", "300ms"),
];

fn flags(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    FLAGS.iter().chain(extra).copied().collect()
}

/// What a poll answer may carry: 256 KiB of publications, one more past it
/// (at most a 64 KiB message and its frame), and a little framing.
const ANSWER_BOUND: usize = 256 * 1024 + 70 * 1024;

#[tokio::test]
async fn a_poll_answer_stays_bounded_and_every_channel_is_read_in_turn() {
    const CHANNELS: usize = 20;
    const EACH: u64 = 16;
    let server = TestServer::start(&flags(&[
        ("history-size", "32"),
        ("history-max-channel-bytes", "4000000"),
        ("publish-rate-per-ip", "100000"),
        ("publish-burst-per-ip", "100000"),
    ]))
    .await;
    let addr = server.addr;
    // 20 channels of 16 publications of 30 KB: ~9.6 MB of history that one
    // small poll names at once.
    let padding = "x".repeat(30_000);
    let mut positions: HashMap<String, (String, u64)> = HashMap::new();
    for c in 0..CHANNELS {
        let channel = format!("big-{c}");
        for _ in 0..EACH {
            let ack = http::publish(addr, &channel, json!({ "pad": padding })).await;
            positions.insert(
                channel.clone(),
                (ack["epoch"].as_str().unwrap().to_owned(), 0),
            );
        }
    }
    let (lp, _) = Lp::open(addr).await;
    let mut polls = 0;
    while positions.values().any(|(_, offset)| *offset < EACH) {
        polls += 1;
        assert!(polls <= 200, "no progress: {positions:?}");
        let body: serde_json::Map<String, Value> = positions
            .iter()
            .map(|(c, (e, o))| (c.clone(), json!({"epoch": e, "offset": o})))
            .collect();
        let res = lp.poll_raw(&json!({ "channels": body }).to_string()).await;
        assert_eq!(res.status, 200, "{res:?}");
        assert!(
            res.body.len() <= ANSWER_BOUND,
            "a poll answer of {} bytes (bound {ANSWER_BOUND})",
            res.body.len()
        );
        for m in res.json().as_array().unwrap() {
            assert_eq!(m["type"], "message", "{m}");
            let channel = m["channel"].as_str().unwrap();
            let offset = m["offset"].as_u64().unwrap();
            let at = &mut positions.get_mut(channel).unwrap().1;
            assert_eq!(offset, *at + 1, "{channel}: every offset once, in order");
            *at = offset;
        }
    }
    // ~9.6 MB in answers of at most ~256 KiB each.
    assert!(polls >= 30, "{polls} polls");
}

#[tokio::test]
async fn channel_names_in_a_poll_are_checked_like_a_subscribes() {
    let server = TestServer::start(&flags(&[])).await;
    let addr = server.addr;
    let (lp, _) = Lp::open(addr).await;
    let long = "n".repeat(5_000);
    let bad = ["", "has space ☃", long.as_str()];
    let body: serde_json::Map<String, Value> = bad
        .iter()
        .map(|c| (c.to_string(), json!({"epoch": "e", "offset": 0})))
        .collect();
    let answer = lp.poll(json!({ "channels": body })).await;
    assert_eq!(answer.len(), bad.len(), "{answer:?}");
    for m in &answer {
        assert_eq!(
            (&m["type"], &m["code"]),
            (&json!("error"), &json!("invalid_channel")),
            "{m}"
        );
        assert!(bad.contains(&m["channel"].as_str().unwrap()), "{m}");
    }
    let stats = http::request(addr, "GET", "/api/stats", &[], "")
        .await
        .json();
    for c in bad {
        assert!(
            stats["subscribers"].get(c).is_none(),
            "{c:?} was joined: {stats}"
        );
    }
    // The session is still there and serves a valid channel.
    let epoch = http::publish(addr, "fine", json!(1)).await["epoch"].clone();
    let answer = lp
        .poll(json!({"channels": {"fine": {"epoch": epoch, "offset": 0}}}))
        .await;
    assert_eq!(
        (&answer[0]["type"], &answer[0]["offset"]),
        (&json!("message"), &json!(1))
    );
}

#[tokio::test]
async fn a_message_over_max_message_bytes_ends_the_session_with_1009() {
    let server = TestServer::start(&flags(&[("max-message-bytes", "1024")])).await;
    let addr = server.addr;
    let (lp, _) = Lp::open(addr).await;
    // A ping padded past the limit (unknown fields are ignored, not its size).
    let big = json!([{"type": "ping", "pad": "p".repeat(2_000)}]);
    let answer = lp.send(big).await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(
        (&answer[0]["type"], &answer[0]["code"]),
        (&json!("close"), &json!(1009))
    );
    assert!(answer[0]["reason"]
        .as_str()
        .unwrap()
        .contains("exceeds the limit of 1024"));
    assert_eq!(
        http::metric(addr, "tether_longpoll_sessions", &[]).await,
        0.0
    );
    assert_eq!(
        http::metric(addr, "tether_closes_total", &[("code", "1009")]).await,
        1.0
    );
    // A message within the limit is answered as usual.
    let (lp, _) = Lp::open(addr).await;
    let answer = lp
        .send(json!([{"type": "ping", "pad": "p".repeat(500)}]))
        .await;
    assert_eq!(answer[0]["type"], "pong", "{answer:?}");
}

const SECRET: &str = "lp-hostile-secret";

fn bearer(sub: &str) -> String {
    bearer_for(sub, 600)
}

/// A token of `sub` expiring `secs` from now (in the past when negative).
fn bearer_for(sub: &str, secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let exp = now + secs;
    let token = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": exp, "publish": ["mine"]}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_session_belongs_to_the_token_subject_that_opened_it() {
    let server = TestServer::start(&flags(&[("jwt-secret", SECRET)])).await;
    let addr = server.addr;
    let alice_token = bearer("alice");
    let (alice, _) = Lp::open_with(addr, &[("Authorization", &alice_token)]).await;
    assert_eq!(
        alice
            .send(json!([{"type": "subscribe", "id": 1, "channel": "mine"}]))
            .await[0]["type"],
        "subscribed"
    );
    // Bob, with a valid token of his own and alice's client id.
    let bob = Lp {
        headers: vec![("Authorization".into(), bearer("bob"))],
        ..alice.clone()
    };
    let publish = json!([{"type": "publish", "id": 9, "channel": "mine", "data": "bob's"}]);
    let res = bob.send_raw(&publish.to_string()).await;
    assert_eq!(res.status, 409, "{res:?}");
    assert!(res.body.contains("another user"), "{res:?}");
    assert_eq!(bob.poll_raw("{}").await.status, 409);
    assert!(
        http::metric(
            addr,
            "tether_refusals_total",
            &[("reason", "longpoll_other_user")]
        )
        .await
            >= 2.0
    );
    // Nothing of bob's was applied: alice's id 9 is hers, her channel held.
    let answer = alice
        .send(json!([{"type": "publish", "id": 9, "channel": "mine", "data": "alice's"}]))
        .await;
    assert_eq!(
        (&answer[0]["type"], &answer[0]["offset"]),
        (&json!("ack"), &json!(1))
    );
    let stats = http::request(addr, "GET", "/api/stats", &[], "")
        .await
        .json();
    assert_eq!(stats["subscribers"]["mine"], 1, "{stats}");
    // Bob's expired token on alice's id: bob is told 4002, alice's session
    // lives on; alice's own expired token ends it.
    let bob_expired = Lp {
        headers: vec![("Authorization".into(), bearer_for("bob", -5))],
        ..alice.clone()
    };
    let answer = bob_expired.poll(json!({})).await;
    assert_eq!(
        (&answer[0]["type"], &answer[0]["code"]),
        (&json!("close"), &json!(4002))
    );
    assert_eq!(
        http::metric(addr, "tether_longpoll_sessions", &[]).await,
        1.0
    );
    let answer = alice.send(json!([{"type": "ping"}])).await;
    assert_eq!(answer, vec![json!({"type": "pong"})]);
    let alice_expired = Lp {
        headers: vec![("Authorization".into(), bearer_for("alice", -5))],
        ..alice.clone()
    };
    let answer = alice_expired.poll(json!({})).await;
    assert_eq!(answer[0]["code"], 4002);
    assert_eq!(
        http::metric(addr, "tether_longpoll_sessions", &[]).await,
        0.0
    );
}

#[tokio::test]
async fn every_answer_under_lp_is_uncached_404_and_405_included() {
    let server = TestServer::start(&flags(&[])).await;
    let addr = server.addr;
    let wrong_method = http::request(addr, "GET", "/lp/poll", &[], "").await;
    assert_eq!(wrong_method.status, 405, "{wrong_method:?}");
    uncached(&wrong_method);
    let no_route = http::request(addr, "POST", "/lp/nope", &[], "").await;
    assert_eq!(no_route.status, 404, "{no_route:?}");
    uncached(&no_route);
    // Outside /lp/ nothing changes.
    let elsewhere = http::request(addr, "GET", "/nope", &[], "").await;
    assert_eq!(elsewhere.status, 404);
    assert_eq!(elsewhere.header("X-Accel-Buffering"), None);
}

#[tokio::test]
async fn a_poll_waits_25_s_by_default_under_proxies_60_s() {
    let server = TestServer::start(&[]).await;
    let (_, welcome) = Lp::open(server.addr).await;
    assert_eq!(welcome["poll_timeout_ms"], 25_000, "{welcome}");
}

/// `POST path` with raw bytes as the body.
async fn post_bytes(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> http::HttpResponse {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    http::raw(addr, &req).await
}

#[tokio::test]
async fn bad_input_gets_400_or_413_and_never_hurts_the_server() {
    let server = TestServer::start(FLAGS).await;
    let addr = server.addr;
    let (lp, _) = Lp::open(addr).await;
    let send = format!("/lp/send?client={}", lp.client);
    let poll = format!("/lp/poll?client={}", lp.client);
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..40 {
        let len = rng.usize(1..2000);
        let body: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        for path in [&send, &poll] {
            let res = post_bytes(addr, path, &body).await;
            assert_eq!(res.status, 400, "round {round} {path}: {res:?}");
            uncached(&res);
        }
    }
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_data = format!(
        r#"[{{"type":"publish","id":1,"channel":"d","data":{}1{}}}]"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let deep_poll = format!(
        r#"{{"channels":{{"a":{}{}}}}}"#,
        "{\"x\":".repeat(10_000),
        "}".repeat(10_000)
    );
    let huge_array = format!("[{}1]", "1,".repeat(1_000_000));
    let huge_poll = format!(
        r#"{{"channels":{{"a":{{"epoch":"{}","offset":0}}}}}}"#,
        "e".repeat(1 << 20)
    );
    for (path, body) in [
        (&send, &deep_array),
        (&poll, &deep_array),
        (&send, &deep_data),
        (&poll, &deep_poll),
        (&send, &huge_array),
        (&poll, &huge_poll),
    ] {
        let res = post_bytes(addr, path, body.as_bytes()).await;
        assert!(
            [200, 400, 413].contains(&res.status),
            "{path} {}…: {res:?}",
            &body[..40]
        );
        uncached(&res);
        if res.status == 200 {
            // The deep `data`: a well-formed message (`data` is stored raw,
            // as on /ws), acked or refused, not a bad body; the 200 KB deep
            // array: one message over --max-message-bytes, 1009 as on /ws.
            assert_eq!(path, &send, "{}", res.body);
            let first = &res.json()[0];
            let kind = first["type"].as_str().unwrap();
            assert!(
                ["ack", "error"].contains(&kind) || (kind == "close" && first["code"] == 1009),
                "{}",
                res.body
            );
        }
    }
    // The server and the session are fine.
    assert_eq!(
        lp.send(json!([{"type": "ping"}])).await,
        vec![json!({"type": "pong"})]
    );
    assert_eq!(
        http::request(addr, "GET", "/healthz", &[], "").await.status,
        200
    );
}

#[tokio::test]
async fn an_accepted_poll_starts_the_strikes_over() {
    // One token a second, none stored beyond one (a poll waits 300 ms).
    let server = TestServer::start(&flags(&[
        ("messages-per-second", "1"),
        ("messages-burst", "1"),
    ]))
    .await;
    let (lp, _) = Lp::open(server.addr).await;
    let over_rate_polls = |n| {
        let lp = lp.clone();
        async move {
            for _ in 0..n {
                let answer = lp.poll(json!({})).await;
                assert_eq!(answer[0]["code"], "rate_limited", "{answer:?}");
            }
        }
    };
    assert!(lp.poll(json!({})).await.is_empty(), "the burst's token");
    over_rate_polls(9).await;
    // The bucket's rate (not a synchronisation): a token is there again.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert!(
        lp.poll(json!({})).await.is_empty(),
        "accepted: strikes start over"
    );
    over_rate_polls(9).await;
    // 18 refusals, never 10 in a row: the session lives.
    assert_eq!(
        http::metric(server.addr, "tether_longpoll_sessions", &[]).await,
        1.0
    );
    assert_eq!(
        http::metric(server.addr, "tether_closes_total", &[("code", "4005")]).await,
        0.0
    );
}
