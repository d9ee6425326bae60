//! A subscribe the server refused for now (`unavailable`: its Redis broker is
//! unreachable; `internal`, `over_capacity`) keeps its subscription: the
//! client reports `RefusedWillRetry` and subscribes again on the same
//! connection, from the same recovery position, after a delay that grows
//! with each refusal in a row and starts over after a success. A final
//! refusal (`forbidden`, ...) ends the stream with `Refused` and is not
//! retried; dropping the subscription cancels a pending retry. A real server
//! answers `unavailable` only with its broker down, so a scripted one plays
//! the broker's outage here.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{
    fake_server, next_event, offsets_until, recv_json, recv_type, send_text, wait_state, WELCOME,
};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};
use tether_client::{Client, ErrorCode, Event, State};
use tether_test_util::STEP;
use tokio::{
    sync::mpsc::{self, UnboundedReceiver},
    time::timeout,
};

const MS: fn(u64) -> Duration = Duration::from_millis;

fn refuse(id: &Value, code: &str) -> String {
    format!(
        r#"{{"type":"error","id":{id},"code":"{code}","message":"broker unreachable; retry with backoff"}}"#
    )
}

fn subscribed(id: &Value, channel: &str, offset: u64, recovered: bool, pubs: &str) -> String {
    format!(
        r#"{{"type":"subscribed","id":{id},"channel":"{channel}","epoch":"e","offset":{offset},"recovered":{recovered},"publications":[{pubs}]}}"#
    )
}

/// A client whose jitter replays `units` in order (then repeats the last),
/// so every backoff delay is known.
fn client(url: &str, min_delay: Duration, units: &'static [f64]) -> Client {
    let next = AtomicUsize::new(0);
    Client::builder(url)
        .min_delay(min_delay)
        .max_delay(MS(2000))
        .jitter(move || units[next.fetch_add(1, Ordering::Relaxed).min(units.len() - 1)])
        .build()
        .expect("client")
}

/// A subscribe frame as the server saw it: on which connection, when, and
/// from which recovery position.
#[derive(Debug)]
struct Seen {
    conn: usize,
    at: Instant,
    recover: Value,
}

async fn next_seen(seen: &mut UnboundedReceiver<Seen>) -> Seen {
    timeout(STEP, seen.recv())
        .await
        .expect("a subscribe in time")
        .expect("server alive")
}

fn refused_will_retry(event: Event) -> (ErrorCode, u32, Duration) {
    match event {
        Event::RefusedWillRetry {
            code,
            attempt,
            next_delay,
            ..
        } => (code, attempt, next_delay),
        other => panic!("expected RefusedWillRetry, got {other:?}"),
    }
}

#[tokio::test]
async fn unavailable_is_retried_with_growing_delays_from_the_same_position() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let addr = fake_server(move |n, mut ws| {
        let seen = seen_tx.clone();
        async move {
            send_text(&mut ws, WELCOME).await;
            // Connection 0 delivers 1..=3 and drops; connection 1 refuses the
            // recovering subscribe three times, then replays 4 and 5 and
            // drops; connection 2 refuses once, then accepts.
            let refusals = match n {
                0 => 0,
                1 => 3,
                _ => 1,
            };
            for i in 0..=refusals {
                let Some(sub) = recv_type(&mut ws, "subscribe").await else {
                    return;
                };
                let id = &sub["id"];
                let _ = seen.send(Seen {
                    conn: n,
                    at: Instant::now(),
                    recover: sub["recover"].clone(),
                });
                if i < refusals {
                    send_text(&mut ws, &refuse(id, "unavailable")).await;
                    continue;
                }
                match n {
                    0 => {
                        send_text(&mut ws, &subscribed(id, "r", 0, false, "")).await;
                        for offset in 1..=3 {
                            send_text(&mut ws, &format!(r#"{{"type":"message","channel":"r","offset":{offset},"data":{offset}}}"#)).await;
                        }
                    }
                    1 => {
                        let pubs = r#"{"offset":4,"data":4},{"offset":5,"data":5}"#;
                        send_text(&mut ws, &subscribed(id, "r", 5, true, pubs)).await;
                    }
                    _ => {
                        send_text(&mut ws, &subscribed(id, "r", 5, true, "")).await;
                        while recv_json(&mut ws).await.is_some() {}
                    }
                }
            }
        }
    })
    .await;
    // Half the ceiling each time: retries after 20, 40, 80 ms.
    let client = client(&format!("ws://{addr}/ws"), MS(40), &[0.5]);
    let mut sub = client.subscribe("r").await.expect("subscribe");
    assert!(matches!(
        next_event(&mut sub).await,
        Event::Subscribed { offset: 0, .. }
    ));
    assert_eq!(offsets_until(&mut sub, 3).await, [1, 2, 3]);
    assert_eq!(next_seen(&mut seen).await.conn, 0);

    // The resubscribe after the reconnect, refused three times.
    let mut asked = vec![next_seen(&mut seen).await];
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        let (code, n, delay) = refused_will_retry(next_event(&mut sub).await);
        assert_eq!((code, n), (ErrorCode::Unavailable, attempt));
        delays.push(delay);
        asked.push(next_seen(&mut seen).await);
    }
    assert_eq!(delays, [MS(20), MS(40), MS(80)]);
    for (i, pair) in asked.windows(2).enumerate() {
        let waited = pair[1].at - pair[0].at;
        assert!(
            waited >= delays[i],
            "retry {} came after {waited:?}, before its delay {:?}",
            i + 1,
            delays[i]
        );
    }
    for s in &asked {
        assert_eq!(s.conn, 1, "every retry on the same connection: {asked:?}");
        assert_eq!(s.recover, json!({"epoch": "e", "offset": 3}), "{asked:?}");
    }
    match next_event(&mut sub).await {
        Event::Subscribed {
            offset, recovered, ..
        } => assert_eq!((offset, recovered), (5, true)),
        other => panic!("{other:?}"),
    }
    assert_eq!(offsets_until(&mut sub, 5).await, [4, 5]);

    // Success started the count over: the next refusal waits the first delay.
    let (code, attempt, delay) = refused_will_retry(next_event(&mut sub).await);
    assert_eq!((code, attempt, delay), (ErrorCode::Unavailable, 1, MS(20)));
    let first = next_seen(&mut seen).await;
    let retry = next_seen(&mut seen).await;
    assert_eq!((first.conn, retry.conn), (2, 2));
    assert_eq!(retry.recover, json!({"epoch": "e", "offset": 5}));
    assert!(matches!(
        next_event(&mut sub).await,
        Event::Subscribed {
            offset: 5,
            recovered: true,
            ..
        }
    ));
}

#[tokio::test]
async fn final_refusals_end_the_stream_without_a_retry() {
    // The server refuses each channel with the code it is named after.
    let addr = fake_server(|_, mut ws| async move {
        send_text(&mut ws, WELCOME).await;
        while let Some(req) = recv_json(&mut ws).await {
            match req["type"].as_str() {
                Some("subscribe") => {
                    let code = req["channel"].as_str().unwrap_or_default().to_owned();
                    send_text(&mut ws, &refuse(&req["id"], &code)).await;
                }
                Some("publish") => {
                    let ack = format!(r#"{{"type":"ack","id":{},"offset":1}}"#, req["id"]);
                    send_text(&mut ws, &ack).await;
                }
                _ => {}
            }
        }
    })
    .await;
    let client = client(&format!("ws://{addr}/ws"), MS(20), &[0.0]);
    for (channel, expected) in [
        ("forbidden", ErrorCode::Forbidden),
        ("too_many_subscriptions", ErrorCode::TooManySubscriptions),
        ("bad_request", ErrorCode::BadRequest),
    ] {
        let mut sub = client.subscribe(channel).await.expect("subscribe");
        match next_event(&mut sub).await {
            Event::Refused { code, .. } => assert_eq!(code, expected),
            other => panic!("{channel}: expected Refused, got {other:?}"),
        }
        let end = timeout(STEP, sub.next()).await.expect("the stream ends");
        assert!(end.is_none(), "{channel}: no retry after a final refusal");
    }
    // A refused channel is free again: subscribing anew is the app's call.
    let mut again = client.subscribe("forbidden").await.expect("subscribe");
    assert!(matches!(
        next_event(&mut again).await,
        Event::Refused {
            code: ErrorCode::Forbidden,
            ..
        }
    ));
}

#[tokio::test]
async fn dropping_the_subscription_cancels_its_pending_retry() {
    // Every frame after the two refusals, up to `b`'s retry.
    let (frames_tx, mut frames) = mpsc::unbounded_channel();
    let addr = fake_server(move |_, mut ws| {
        let frames = frames_tx.clone();
        async move {
            send_text(&mut ws, WELCOME).await;
            for _ in 0..2 {
                let Some(sub) = recv_type(&mut ws, "subscribe").await else {
                    return;
                };
                send_text(&mut ws, &refuse(&sub["id"], "unavailable")).await;
            }
            let mut between = Vec::new();
            while let Some(frame) = recv_json(&mut ws).await {
                if frame["type"] == "subscribe" && frame["channel"] == "b" {
                    send_text(&mut ws, &subscribed(&frame["id"], "b", 0, false, "")).await;
                    let _ = frames.send(between);
                    break;
                }
                between.push(frame);
            }
            while recv_json(&mut ws).await.is_some() {}
        }
    })
    .await;
    // `a` is refused first and would retry after 500 ms; `b` after 900 ms.
    let client = client(&format!("ws://{addr}/ws"), MS(1000), &[0.5, 0.9]);
    // Connected first, so the subscribes go out in this order (a restore
    // after connecting sends them in no particular order).
    wait_state(&mut client.state(), "connected", |s| *s == State::Connected).await;
    let mut a = client.subscribe("a").await.expect("subscribe a");
    let mut b = client.subscribe("b").await.expect("subscribe b");
    let (_, _, a_delay) = refused_will_retry(next_event(&mut a).await);
    drop(a);
    let (_, _, b_delay) = refused_will_retry(next_event(&mut b).await);
    assert_eq!((a_delay, b_delay), (MS(500), MS(900)));

    assert!(matches!(next_event(&mut b).await, Event::Subscribed { .. }));
    let between = timeout(STEP, frames.recv())
        .await
        .expect("b retried in time")
        .expect("server alive");
    // Neither a retry for `a` (due before `b`'s) nor an unsubscribe: while
    // a retry waits, the server holds no subscription to end.
    assert!(
        between.iter().all(|f| f["channel"] != "a"),
        "frames for the dropped subscription: {between:?}"
    );
}
