//! A recovery replay cut short by the server: `subscribed` carries only the
//! first publications (its `offset` is the last one carried) and the rest
//! follows at once as ordinary `message` frames. The subscriber sees every
//! offset exactly once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{fake_server, next_event, offsets_until, recv_type, send_text, WELCOME};
use serde_json::{json, Value};
use std::time::Duration;
use tether_client::{Client, Event};
use tether_test_util::STEP;
use tokio::{sync::mpsc, time::timeout};

fn message(offset: u64) -> String {
    format!(r#"{{"type":"message","channel":"r","offset":{offset},"data":{{"n":{offset}}}}}"#)
}

#[tokio::test]
async fn a_cut_replay_continues_with_messages() {
    let (recover_tx, mut recovers) = mpsc::unbounded_channel();
    let addr = fake_server(move |n, mut ws| {
        let recovers = recover_tx.clone();
        async move {
            send_text(&mut ws, WELCOME).await;
            let Some(sub) = recv_type(&mut ws, "subscribe").await else {
                return;
            };
            let id = &sub["id"];
            if n == 0 {
                // A fresh subscribe, three publications, then the connection
                // drops (returning closes the socket without a close frame).
                send_text(&mut ws, &format!(r#"{{"type":"subscribed","id":{id},"channel":"r","epoch":"e","offset":0,"recovered":false,"publications":[]}}"#)).await;
                for offset in 1..=3 {
                    send_text(&mut ws, &message(offset)).await;
                }
                return;
            }
            let _ = recovers.send(sub["recover"].clone());
            // The replay is cut after 5; 6 and 7 follow as messages.
            send_text(&mut ws, &format!(r#"{{"type":"subscribed","id":{id},"channel":"r","epoch":"e","offset":5,"recovered":true,"publications":[{{"offset":4,"data":{{"n":4}}}},{{"offset":5,"data":{{"n":5}}}}]}}"#)).await;
            for offset in 6..=7 {
                send_text(&mut ws, &message(offset)).await;
            }
            while recv_type(&mut ws, "never").await.is_some() {}
        }
    })
    .await;
    let client = Client::builder(format!("ws://{addr}/ws"))
        .min_delay(Duration::from_millis(20))
        .build()
        .expect("client");
    let mut sub = client.subscribe("r").await.expect("subscribe");
    assert!(matches!(
        next_event(&mut sub).await,
        Event::Subscribed {
            offset: 0,
            recovered: false,
            ..
        }
    ));
    assert_eq!(offsets_until(&mut sub, 3).await, [1, 2, 3]);

    let recover = timeout(STEP, recovers.recv())
        .await
        .expect("a resubscribe in time")
        .expect("server alive");
    assert_eq!(recover, json!({"epoch": "e", "offset": 3}));
    match next_event(&mut sub).await {
        Event::Subscribed {
            epoch,
            offset,
            recovered,
        } => assert_eq!((epoch.as_str(), offset, recovered), ("e", 5, true)),
        other => panic!("{other:?}"),
    }
    let mut got = Vec::new();
    while got.last() != Some(&7) {
        match next_event(&mut sub).await {
            Event::Publication(p) => {
                let data: Value = serde_json::from_str(p.data.get()).expect("JSON");
                assert_eq!(data["n"], p.offset, "data travels with its offset");
                got.push(p.offset);
            }
            other => panic!("only publications after the subscribed, got {other:?}"),
        }
    }
    assert_eq!(got, [4, 5, 6, 7]);
}
