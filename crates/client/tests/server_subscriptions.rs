//! Server-side subscriptions (docs/client.md): a `subscribed` without `id`
//! for a channel the client did not ask for starts a subscription whose
//! events come on `Client::server_subscriptions`. After a reconnect the
//! client resubscribes it with recovery like its own; a server that made it
//! again first (and so answers `already_subscribed`) is taken as the
//! answer: the stream continues when nothing was missed, and says
//! `Unrecovered` when something was — never a silent gap. A server that
//! answers the resubscribe with a recovery replays what was missed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{fake_server, fast_client, recv_type, send_text, ServerWs, WELCOME};
use serde_json::Value;
use tether_client::{Client, Error, Event, ServerEvent, ServerSubscriptions};
use tether_test_util::STEP;
use tokio::{sync::mpsc, time::timeout};

const CHANNEL: &str = "user:7";

fn made(offset: u64) -> String {
    format!(
        r#"{{"type":"subscribed","channel":"{CHANNEL}","epoch":"e","offset":{offset},"recovered":false,"publications":[]}}"#
    )
}

fn message(offset: u64) -> String {
    format!(
        r#"{{"type":"message","channel":"{CHANNEL}","offset":{offset},"data":{{"n":{offset}}}}}"#
    )
}

async fn bye(ws: &mut ServerWs) {
    use futures_util::{SinkExt, StreamExt};
    let code = tokio_websockets::CloseCode::SERVICE_RESTART;
    let _ = ws
        .send(tokio_websockets::Message::close(Some(code), "next"))
        .await;
    while ws.next().await.is_some() {}
}

async fn next(events: &mut ServerSubscriptions) -> Event {
    let ServerEvent { channel, event, .. } = timeout(STEP, events.next_event())
        .await
        .expect("an event in time")
        .expect("the client is running");
    assert_eq!(channel, CHANNEL);
    event
}

fn publication(event: Event) -> u64 {
    match event {
        Event::Publication(p) => {
            let data: Value = serde_json::from_str(p.data.get()).expect("JSON");
            assert_eq!(data["n"], p.offset);
            p.offset
        }
        other => panic!("expected a publication, got {other:?}"),
    }
}

#[tokio::test]
async fn server_side_subscriptions_survive_reconnects_without_silent_gaps() {
    // What each connection's resubscribe carried as `recover`.
    let (recovers, mut recover_rx) = mpsc::unbounded_channel::<Value>();
    let addr = fake_server(move |n, mut ws| {
        let recovers = recovers.clone();
        async move {
            send_text(&mut ws, WELCOME).await;
            match n {
                // First connection: the server makes it, at 3; 4 follows.
                0 => {
                    send_text(&mut ws, &made(3)).await;
                    send_text(&mut ws, &message(4)).await;
                }
                // Made again at 4 (nothing missed): the resubscribe is
                // answered already_subscribed.
                1 => {
                    send_text(&mut ws, &made(4)).await;
                    let sub = recv_type(&mut ws, "subscribe").await.expect("resubscribe");
                    let _ = recovers.send(sub["recover"].clone());
                    let refusal = format!(
                        r#"{{"type":"error","id":{},"code":"already_subscribed","message":"already subscribed to \"{CHANNEL}\""}}"#,
                        sub["id"]
                    );
                    send_text(&mut ws, &refusal).await;
                    send_text(&mut ws, &message(5)).await;
                }
                // Made again at 6 with 7 sent before the answer: 6 and 7
                // were missed, and the answer says already_subscribed.
                2 => {
                    send_text(&mut ws, &made(6)).await;
                    let sub = recv_type(&mut ws, "subscribe").await.expect("resubscribe");
                    let _ = recovers.send(sub["recover"].clone());
                    send_text(&mut ws, &message(7)).await;
                    let refusal = format!(
                        r#"{{"type":"error","id":{},"code":"already_subscribed","message":"x"}}"#,
                        sub["id"]
                    );
                    send_text(&mut ws, &refusal).await;
                    send_text(&mut ws, &message(8)).await;
                }
                // Not made again (the backend no longer lists it): the
                // resubscribe recovers 9 and 10.
                _ => {
                    let sub = recv_type(&mut ws, "subscribe").await.expect("resubscribe");
                    let _ = recovers.send(sub["recover"].clone());
                    let replay = format!(
                        r#"{{"type":"subscribed","id":{},"channel":"{CHANNEL}","epoch":"e","offset":10,"recovered":true,"publications":[{{"offset":9,"data":{{"n":9}}}},{{"offset":10,"data":{{"n":10}}}}]}}"#,
                        sub["id"]
                    );
                    send_text(&mut ws, &replay).await;
                    send_text(&mut ws, &message(11)).await;
                    common::recv_json(&mut ws).await;
                    return;
                }
            }
            bye(&mut ws).await;
        }
    })
    .await;
    let client = fast_client(&format!("ws://{addr}/ws"));
    let mut events = client.server_subscriptions().expect("the stream, once");
    assert!(client.server_subscriptions().is_none());

    let first = next(&mut events).await;
    assert!(
        matches!(&first, Event::Subscribed { epoch, offset: 3, recovered: false } if epoch == "e"),
        "{first:?}"
    );
    assert_eq!(publication(next(&mut events).await), 4);

    // Connection 1: resubscribed from 4, made again at 4: nothing missed.
    let again = next(&mut events).await;
    assert!(
        matches!(
            again,
            Event::Subscribed {
                offset: 4,
                recovered: true,
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(
        recover_rx.recv().await,
        Some(serde_json::json!({"epoch": "e", "offset": 4}))
    );
    assert_eq!(publication(next(&mut events).await), 5);

    // Connection 2: made again at 6, 7 held back: the gap is said, at 7.
    let gap = next(&mut events).await;
    assert!(
        matches!(gap, Event::Unrecovered { offset: 7, .. }),
        "{gap:?}"
    );
    assert_eq!(
        recover_rx.recv().await,
        Some(serde_json::json!({"epoch": "e", "offset": 5}))
    );
    assert_eq!(publication(next(&mut events).await), 8);

    // Connection 3: an ordinary recovering resubscribe.
    let back = next(&mut events).await;
    assert!(
        matches!(
            back,
            Event::Subscribed {
                offset: 10,
                recovered: true,
                ..
            }
        ),
        "{back:?}"
    );
    assert_eq!(
        recover_rx.recv().await,
        Some(serde_json::json!({"epoch": "e", "offset": 8}))
    );
    for offset in [9, 10, 11] {
        assert_eq!(publication(next(&mut events).await), offset);
    }

    // The application cannot subscribe to it as well.
    match client.subscribe(CHANNEL).await {
        Err(Error::AlreadySubscribed(c)) => assert_eq!(c, CHANNEL),
        other => panic!("expected AlreadySubscribed, got {other:?}"),
    }
    client.close().await;
    assert!(timeout(STEP, events.next_event())
        .await
        .expect("ends")
        .is_none());
}

#[tokio::test]
async fn without_the_stream_server_side_events_are_dropped_and_nothing_stalls() {
    // More events than the stream's buffer, never read: the client still
    // answers its own requests.
    let addr = fake_server(|_, mut ws| async move {
        send_text(&mut ws, WELCOME).await;
        send_text(&mut ws, &made(0)).await;
        for offset in 1..=50 {
            send_text(&mut ws, &message(offset)).await;
        }
        while let Some(p) = recv_type(&mut ws, "publish").await {
            let ack = format!(r#"{{"type":"ack","id":{},"offset":1}}"#, p["id"]);
            send_text(&mut ws, &ack).await;
        }
    })
    .await;
    let client: Client = tether_client::Client::builder(format!("ws://{addr}/ws"))
        .subscription_buffer(4)
        .build()
        .expect("client");
    let acked = timeout(STEP, client.publish("other", serde_json::json!(1)))
        .await
        .expect("not stalled");
    assert_eq!(acked, Ok(1));
    client.close().await;
}
