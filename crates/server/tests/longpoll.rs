//! Long polling under `/lp/` (docs/longpoll.md): the same protocol as `/ws`
//! over `open` / `send` / `poll`, with positions in every poll so that a lost
//! answer is read again and no sticky sessions are needed. Limits, auth and
//! bad input: `longpoll_limits.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tether_test_util::longpoll::{positions, Lp};
use tether_test_util::{eventually, http, TestServer};

/// Heartbeats long enough that no session expires while a test works; polls
/// short enough that an empty one costs little.
const FLAGS: &[(&str, &str)] = &[
    ("ping-interval", "5s"),
    ("pong-timeout", "5s"),
    ("long-poll-timeout", "400ms"),
];

/// The `(epoch, offset)` of a `subscribed` reply.
fn position_of(subscribed: &Value) -> (String, u64) {
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    (
        subscribed["epoch"].as_str().expect("epoch").to_owned(),
        subscribed["offset"].as_u64().expect("offset"),
    )
}

/// The offsets of the `message` frames of `channel` in a poll answer.
fn offsets(answer: &[Value], channel: &str) -> Vec<u64> {
    answer
        .iter()
        .filter(|m| m["type"] == "message" && m["channel"] == channel)
        .map(|m| m["offset"].as_u64().expect("offset"))
        .collect()
}

async fn publish_n(server: &TestServer, channel: &str, n: u64) {
    for i in 0..n {
        http::publish(server.addr, channel, json!({"i": i})).await;
    }
}

#[tokio::test]
async fn open_welcomes_with_a_client_id_and_every_answer_is_uncached() {
    let server = TestServer::start(FLAGS).await;
    let (lp, welcome) = Lp::open(server.addr).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["version"], 1);
    assert_eq!(welcome["poll_timeout_ms"], 400);
    assert_eq!(welcome["ping_interval_ms"], 5000);
    assert_eq!(welcome["pong_timeout_ms"], 5000);
    assert!(lp.client.len() >= 32, "an unguessable id: {}", lp.client);
    let (other, _) = Lp::open(server.addr).await;
    assert_ne!(lp.client, other.client);
    // Lp checks `Cache-Control: no-store` and `X-Accel-Buffering: no` on
    // every answer; these are the routes' plain answers and refusals.
    assert_eq!(
        lp.send(json!([{"type": "ping"}])).await,
        vec![json!({"type": "pong"})]
    );
    assert_eq!(lp.poll(json!({})).await, Vec::<Value>::new());
    assert_eq!(lp.send_raw("[").await.status, 400);
    assert_eq!(lp.post("/lp/poll", &[], "nope").await.status, 400);
    let anonymous = Lp::with_client(server.addr, "");
    let res = anonymous.post("/lp/send", &[], "[]").await;
    assert_eq!(res.status, 400, "no ?client=: {res:?}");
    assert_eq!(
        http::metric(server.addr, "tether_longpoll_sessions", &[]).await,
        2.0
    );
    // Messages count as on /ws: each one sent in, each reply and
    // publication out (the welcomes included).
    let (in_before, out_before) = (
        http::metric(server.addr, "tether_messages_in_total", &[]).await,
        http::metric(server.addr, "tether_messages_out_total", &[]).await,
    );
    let replies = lp
        .send(json!([{"type": "ping"}, {"type": "subscribe", "id": 1, "channel": "m"}, {"type": "ping"}]))
        .await;
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(
        http::metric(server.addr, "tether_messages_in_total", &[]).await,
        in_before + 3.0
    );
    assert_eq!(
        http::metric(server.addr, "tether_messages_out_total", &[]).await,
        out_before + 3.0
    );
}

#[tokio::test]
async fn client_ids_are_usable_whatever_the_node_id() {
    let long = format!("eu.west:1/{}", "x".repeat(200));
    for node_id in ["eu.west-1", "node 7", "ñ", long.as_str()] {
        let server =
            TestServer::start(&[("node-id", node_id), ("long-poll-timeout", "100ms")]).await;
        let (lp, _) = Lp::open(server.addr).await;
        assert!(lp.client.len() <= 96, "{}", lp.client);
        assert_eq!(
            lp.send(json!([{"type": "ping"}])).await.len(),
            1,
            "{node_id}"
        );
        assert!(lp.poll(json!({})).await.is_empty());
    }
}

#[tokio::test]
async fn a_publication_answers_a_waiting_poll_at_once_and_an_empty_poll_waits() {
    let server = TestServer::start(&[
        ("ping-interval", "5s"),
        ("pong-timeout", "5s"),
        ("long-poll-timeout", "3s"),
    ])
    .await;
    let (lp, _) = Lp::open(server.addr).await;
    let replies = lp
        .send(json!([{"type": "subscribe", "id": 1, "channel": "news"}]))
        .await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["id"], 1);
    assert_eq!(replies[0]["recovered"], false);
    let (epoch, offset) = position_of(&replies[0]);
    assert_eq!(offset, 0);

    let started = Instant::now();
    let waiting = tokio::spawn({
        let lp = lp.clone();
        let body = positions(&[("news", &epoch, 0)]);
        async move { lp.poll(body).await }
    });
    publish_n(&server, "news", 1).await;
    let answer = waiting.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "answered when the publication came, not at the timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0]["type"], "message");
    assert_eq!(answer[0]["channel"], "news");
    assert_eq!(answer[0]["offset"], 1);
    assert_eq!(answer[0]["data"], json!({"i": 0}));

    // Nothing after offset 1: `[]` once the poll timeout has passed.
    let started = Instant::now();
    assert!(lp.poll(positions(&[("news", &epoch, 1)])).await.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_lost_answer_is_read_again_and_offsets_are_contiguous() {
    let server = TestServer::start(FLAGS).await;
    let (lp, _) = Lp::open(server.addr).await;
    let replies = lp
        .send(json!([{"type": "subscribe", "id": 1, "channel": "c"}]))
        .await;
    let (epoch, _) = position_of(&replies[0]);
    publish_n(&server, "c", 3).await;

    let first = lp.poll(positions(&[("c", &epoch, 0)])).await;
    assert_eq!(offsets(&first, "c"), vec![1, 2, 3]);
    // The answer was lost: the same positions read the same messages.
    let again = lp.poll(positions(&[("c", &epoch, 0)])).await;
    assert_eq!(again, first);
    // Part of it was applied: the rest is read.
    let rest = lp.poll(positions(&[("c", &epoch, 2)])).await;
    assert_eq!(offsets(&rest, "c"), vec![3]);

    // Advancing: every offset once, none skipped.
    let mut seen = vec![1, 2, 3];
    let mut at = 3;
    for round in 0..5 {
        publish_n(&server, "c", round % 3 + 1).await;
        let answer = lp.poll(positions(&[("c", &epoch, at)])).await;
        let got = offsets(&answer, "c");
        assert!(!got.is_empty(), "round {round}: {answer:?}");
        seen.extend(&got);
        at = *got.last().unwrap();
    }
    assert_eq!(seen, (1..=seen.len() as u64).collect::<Vec<_>>());
    assert!(lp.poll(positions(&[("c", &epoch, at)])).await.is_empty());

    // Once read, the node's log drops what was sent (every 32 appends);
    // an answer lost then is read again from history.
    publish_n(&server, "c", 40).await;
    let top = at + 40;
    let answer = lp.poll(positions(&[("c", &epoch, at)])).await;
    assert_eq!(offsets(&answer, "c"), (at + 1..=top).collect::<Vec<_>>());
    publish_n(&server, "c", 40).await;
    let answer = lp.poll(positions(&[("c", &epoch, 0)])).await;
    assert_eq!(offsets(&answer, "c"), (1..=top + 40).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_replay_longer_than_one_reply_continues_through_the_next_poll() {
    let server = TestServer::start(FLAGS).await;
    let chunk = "x".repeat(10_000);
    for _ in 0..10 {
        http::publish(server.addr, "big", json!(chunk)).await;
    }
    let (lp, _) = Lp::open(server.addr).await;
    let (epoch, _) = position_of(
        &lp.send(json!([{"type": "subscribe", "id": 1, "channel": "big"}]))
            .await[0],
    );
    // Recovering all ten (100 KB) from offset 0: the reply carries what
    // fits in 64 KiB, and its offset is where that leaves the client.
    let recover = json!({"epoch": epoch, "offset": 0});
    let replies = lp
        .send(json!([{"type": "subscribe", "id": 2, "channel": "big", "recover": recover}]))
        .await;
    assert_eq!(replies.len(), 1, "nothing but the reply: {}", replies.len());
    let (_, at) = position_of(&replies[0]);
    let carried: Vec<u64> = replies[0]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert!((1..10).contains(&at), "{at}");
    assert_eq!(carried, (1..=at).collect::<Vec<_>>());
    let answer = lp.poll(positions(&[("big", &epoch, at)])).await;
    assert_eq!(offsets(&answer, "big"), (at + 1..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_position_history_cannot_serve_resyncs_the_client() {
    let server = TestServer::start(&[
        ("ping-interval", "5s"),
        ("pong-timeout", "5s"),
        ("long-poll-timeout", "400ms"),
        ("history-size", "3"),
    ])
    .await;
    publish_n(&server, "h", 10).await;
    let (lp, _) = Lp::open(server.addr).await;
    let replies = lp
        .send(json!([{"type": "subscribe", "id": 1, "channel": "h"}]))
        .await;
    let (epoch, offset) = position_of(&replies[0]);
    assert_eq!(offset, 10);

    // A wrong epoch: an id-less `subscribed`, recovered:false, the current
    // epoch and offset.
    let answer = lp.poll(positions(&[("h", "0000000000000000", 4)])).await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    let resync = &answer[0];
    assert_eq!(resync["type"], "subscribed");
    assert!(resync.get("id").is_none(), "{resync}");
    assert_eq!(resync["channel"], "h");
    assert_eq!(resync["recovered"], false);
    assert_eq!(position_of(resync), (epoch.clone(), 10));

    // The right epoch, but older than the history keeps (8..=10).
    let answer = lp.poll(positions(&[("h", &epoch, 2)])).await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0]["recovered"], false);
    assert!(answer[0].get("id").is_none());
    assert_eq!(position_of(&answer[0]), (epoch.clone(), 10));

    // Ahead of the channel (offset 50 of 10): resynced too, not left to
    // skip offsets 11..=50 when they come.
    let answer = lp.poll(positions(&[("h", &epoch, 50)])).await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0]["recovered"], false);
    assert_eq!(position_of(&answer[0]), (epoch.clone(), 10));

    // The client continues from there.
    publish_n(&server, "h", 1).await;
    let answer = lp.poll(positions(&[("h", &epoch, 10)])).await;
    assert_eq!(offsets(&answer, "h"), vec![11]);

    // A client unknown to this node with a position too old: the same.
    let stranger = Lp::with_client(server.addr, "n0-stranger-too-old");
    let answer = stranger.poll(positions(&[("h", &epoch, 1)])).await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0]["recovered"], false);
    assert_eq!(position_of(&answer[0]), (epoch, 11));
}

#[tokio::test]
async fn a_poll_from_a_client_this_node_never_saw_is_served_from_history() {
    let server = TestServer::start(FLAGS).await;
    // The client's session lives on "another node": here, it only knows the
    // channel's position.
    let (lp, _) = Lp::open(server.addr).await;
    let (epoch, _) = position_of(
        &lp.send(json!([{"type": "subscribe", "id": 1, "channel": "s"}]))
            .await[0],
    );
    publish_n(&server, "s", 5).await;

    let stranger = Lp::with_client(server.addr, "n2-0123456789abcdef0123456789abcdef");
    let answer = stranger.poll(positions(&[("s", &epoch, 2)])).await;
    assert_eq!(offsets(&answer, "s"), vec![3, 4, 5], "{answer:?}");
    assert_eq!(answer[0]["data"], json!({"i": 2}));
    // Now it holds the channel here: later publications reach it.
    let waiting = tokio::spawn({
        let stranger = stranger.clone();
        let body = positions(&[("s", &epoch, 5)]);
        async move { stranger.poll(body).await }
    });
    publish_n(&server, "s", 1).await;
    assert_eq!(offsets(&waiting.await.unwrap(), "s"), vec![6]);
    let stats = http::request(server.addr, "GET", "/api/stats", &[], "").await;
    assert_eq!(stats.json()["subscribers"]["s"], 2, "{}", stats.body);
}

#[tokio::test]
async fn retried_sends_are_applied_once() {
    let server = TestServer::start(FLAGS).await;
    let (lp, _) = Lp::open(server.addr).await;
    let publish = json!([{"type": "publish", "id": 7, "channel": "r", "data": {"n": 1}}]);
    let first = lp.send(publish.clone()).await;
    assert_eq!(first, vec![json!({"type": "ack", "id": 7, "offset": 1})]);
    // The answer was lost; the client retries the same POST.
    assert_eq!(lp.send(publish.clone()).await, first);
    assert_eq!(http::publish(server.addr, "r", json!(0)).await["offset"], 2);
    // The same id from another client is another publication.
    let (other, _) = Lp::open(server.addr).await;
    assert_eq!(other.send(publish).await[0]["offset"], 3);

    let subscribe = json!([{"type": "subscribe", "id": 1, "channel": "r"}]);
    let a = lp.send(subscribe.clone()).await;
    let b = lp.send(subscribe).await;
    assert_eq!(a[0]["type"], "subscribed");
    assert_eq!(b, a, "a retried subscribe is answered again");
    let stats = http::request(server.addr, "GET", "/api/stats", &[], "").await;
    assert_eq!(
        stats.json()["subscribers"]["r"],
        1,
        "held once: {}",
        stats.body
    );

    let unsubscribe = json!([{"type": "unsubscribe", "id": 2, "channel": "r"}]);
    let expected = vec![json!({"type": "unsubscribed", "id": 2, "channel": "r"})];
    assert_eq!(lp.send(unsubscribe.clone()).await, expected);
    assert_eq!(lp.send(unsubscribe).await, expected, "not held any more");
    let never = json!([{"type": "unsubscribe", "id": 3, "channel": "never"}]);
    assert_eq!(lp.send(never).await[0]["type"], "unsubscribed");
    let stats = http::request(server.addr, "GET", "/api/stats", &[], "").await;
    assert!(
        stats.json()["subscribers"].get("r").is_none(),
        "{}",
        stats.body
    );
}

#[tokio::test]
async fn a_newer_poll_answers_the_older_one_with_nothing() {
    let server = TestServer::start(&[
        ("ping-interval", "20s"),
        ("pong-timeout", "20s"),
        ("long-poll-timeout", "8s"),
    ])
    .await;
    let (lp, _) = Lp::open(server.addr).await;
    let (epoch, _) = position_of(
        &lp.send(json!([{"type": "subscribe", "id": 1, "channel": "n"}]))
            .await[0],
    );
    let body = positions(&[("n", &epoch, 0)]);
    let started = Instant::now();
    let mut a = tokio::spawn({
        let (lp, body) = (lp.clone(), body.clone());
        async move { lp.poll(body).await }
    });
    let mut b = tokio::spawn({
        let (lp, body) = (lp.clone(), body.clone());
        async move { lp.poll(body).await }
    });
    // Whichever reached the server first is the older: it answers `[]` at
    // once, long before the 8 s timeout; the newer one keeps waiting.
    let (older, newer) = tokio::select! {
        r = &mut a => (r.unwrap(), b),
        r = &mut b => (r.unwrap(), a),
    };
    assert!(older.is_empty(), "{older:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    publish_n(&server, "n", 1).await;
    assert_eq!(offsets(&newer.await.unwrap(), "n"), vec![1]);
}

#[tokio::test]
async fn a_session_that_stops_polling_expires_and_leaves_its_channels() {
    let server = TestServer::start(&[
        ("ping-interval", "200ms"),
        ("pong-timeout", "200ms"),
        ("long-poll-timeout", "100ms"),
    ])
    .await;
    let addr = server.addr;
    let (lp, _) = Lp::open(addr).await;
    assert_eq!(
        lp.send(json!([{"type": "subscribe", "id": 1, "channel": "gone"}]))
            .await[0]["type"],
        "subscribed"
    );
    let subscribers = || async move {
        let stats = http::request(addr, "GET", "/api/stats", &[], "").await;
        stats.json()["subscribers"]["gone"].as_u64().unwrap_or(0)
    };
    // Still alive right after: it was just heard from.
    assert_eq!(subscribers().await, 1);
    assert_eq!(
        http::metric(addr, "tether_longpoll_sessions", &[]).await,
        1.0
    );
    assert_eq!(http::metric(addr, "tether_connections", &[]).await, 1.0);
    let started = Instant::now();
    eventually("the session expires", || async {
        http::metric(addr, "tether_longpoll_sessions", &[]).await == 0.0
            && http::metric(addr, "tether_connections", &[]).await == 0.0
    })
    .await;
    // Silence 400 ms, swept every 100 ms: gone within ~0.5 s (2 s allows
    // for a loaded machine; the old bound was the 10 s of `eventually`).
    assert!(
        (Duration::from_millis(300)..Duration::from_secs(2)).contains(&started.elapsed()),
        "after ping_interval + pong_timeout, within a sweep: {:?}",
        started.elapsed()
    );
    eventually("its subscription leaves the hub", || async {
        subscribers().await == 0
    })
    .await;
    assert!(http::metric(addr, "tether_heartbeat_timeouts_total", &[]).await >= 1.0);

    // The client comes back with its positions: what it missed is read from
    // history, as from any node.
    let epoch = http::publish(addr, "gone", json!(1)).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = lp.poll(positions(&[("gone", &epoch, 0)])).await;
    assert_eq!(offsets(&answer, "gone"), vec![1]);
    assert_eq!(
        http::metric(addr, "tether_longpoll_sessions", &[]).await,
        1.0
    );
}

#[tokio::test]
async fn polling_keeps_a_session_alive_past_the_silence_limit() {
    let server = TestServer::start(&[
        ("ping-interval", "200ms"),
        ("pong-timeout", "200ms"),
        ("long-poll-timeout", "600ms"),
    ])
    .await;
    let (lp, _) = Lp::open(server.addr).await;
    let (epoch, _) = position_of(
        &lp.send(json!([{"type": "subscribe", "id": 1, "channel": "k"}]))
            .await[0],
    );
    // Back-to-back empty polls, each longer than the 400 ms silence limit:
    // a session is not expired while a poll waits.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1600) {
        assert!(lp.poll(positions(&[("k", &epoch, 0)])).await.is_empty());
    }
    assert_eq!(
        http::metric(server.addr, "tether_heartbeat_timeouts_total", &[]).await,
        0.0
    );
    assert_eq!(
        http::metric(server.addr, "tether_longpoll_sessions", &[]).await,
        1.0
    );
}

#[tokio::test]
async fn a_poll_that_no_longer_names_a_channel_unsubscribes_it() {
    let server = TestServer::start(FLAGS).await;
    let (lp, _) = Lp::open(server.addr).await;
    let replies = lp
        .send(json!([
            {"type": "subscribe", "id": 1, "channel": "a"},
            {"type": "subscribe", "id": 2, "channel": "b"},
        ]))
        .await;
    let (ea, _) = position_of(&replies[0]);
    let (eb, _) = position_of(&replies[1]);
    publish_n(&server, "a", 1).await;
    publish_n(&server, "b", 1).await;
    let answer = lp.poll(positions(&[("a", &ea, 0), ("b", &eb, 0)])).await;
    assert_eq!(
        (offsets(&answer, "a"), offsets(&answer, "b")),
        (vec![1], vec![1])
    );
    assert!(lp.poll(positions(&[("a", &ea, 1)])).await.is_empty());
    let stats = http::request(server.addr, "GET", "/api/stats", &[], "").await;
    let subscribers = &stats.json()["subscribers"];
    assert_eq!(subscribers["a"], 1, "{subscribers}");
    assert!(subscribers.get("b").is_none(), "{subscribers}");
}
