//! Offsets at the end of the u64 range (which no real channel reaches) do
//! not crash the client: a publication at `u64::MAX` is delivered once, and
//! nothing can follow it (a repeat is dropped as already delivered).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{fake_server, next_event, recv_json, send_text, WELCOME};
use futures_util::{FutureExt, StreamExt};
use tether_client::{Client, Event};
use tether_test_util::STEP;
use tokio::time::timeout;

#[tokio::test]
async fn offsets_at_u64_max_are_survived() {
    let addr = fake_server(|_, mut ws| async move {
        send_text(&mut ws, WELCOME).await;
        let max = u64::MAX;
        while let Some(req) = recv_json(&mut ws).await {
            let id = &req["id"];
            match req["type"].as_str() {
                Some("subscribe") => {
                    let before = max - 1;
                    send_text(&mut ws, &format!(r#"{{"type":"subscribed","id":{id},"channel":"x","epoch":"e","offset":{before},"recovered":false,"publications":[]}}"#)).await;
                    for _ in 0..2 {
                        send_text(&mut ws, &format!(r#"{{"type":"message","channel":"x","offset":{max},"data":"end"}}"#)).await;
                    }
                }
                Some("publish") => {
                    send_text(&mut ws, &format!(r#"{{"type":"ack","id":{id},"offset":{max}}}"#)).await;
                }
                _ => {}
            }
        }
    })
    .await;
    let client = Client::builder(format!("ws://{addr}/ws"))
        .build()
        .expect("client");
    let mut sub = client.subscribe("x").await.expect("subscribe");
    assert!(matches!(
        next_event(&mut sub).await,
        Event::Subscribed { offset, .. } if offset == u64::MAX - 1
    ));
    match next_event(&mut sub).await {
        Event::Publication(p) => assert_eq!((p.offset, p.data.get()), (u64::MAX, "\"end\"")),
        other => panic!("{other:?}"),
    }
    // Frames are handled in order: once the ack is in, the repeated
    // `message` has been handled too, and it produced no event.
    let acked = timeout(STEP, client.publish("x", serde_json::json!(1)))
        .await
        .expect("an answer in time");
    assert_eq!(acked, Ok(u64::MAX));
    assert!(
        sub.next().now_or_never().is_none(),
        "the repeat was delivered"
    );
}
