//! `Client::rpc` (docs/client.md, *Rpc*): the request and its answer on the
//! wire, the backend's refusal, a call made while disconnected sent after
//! the reconnect, and a call whose connection died after it was sent failing
//! with `ConnectionLost` instead of being sent again. Against fake servers
//! (the server's rpc hook is the backend's).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{fake_server, fast_client, recv_json, recv_type, send_text, WELCOME};
use serde_json::{json, Value};
use tether_client::{Client, Error, ErrorCode};
use tether_test_util::STEP;
use tokio::{sync::mpsc, time::timeout};

fn answer(id: &Value, result: &str) -> String {
    format!(r#"{{"type":"rpc","id":{id},"result":{result}}}"#)
}

async fn rpc(client: &Client, method: &str, data: Value) -> Result<Value, Error> {
    let raw = timeout(STEP, client.rpc(method, data))
        .await
        .expect("the rpc settles in time")?;
    Ok(serde_json::from_str(raw.get()).expect("a JSON result"))
}

#[tokio::test]
async fn an_rpc_is_answered_with_the_backends_result_or_refusal() {
    let (frames, mut seen) = mpsc::unbounded_channel();
    let addr = fake_server(move |_, mut ws| {
        let frames = frames.clone();
        async move {
            send_text(&mut ws, WELCOME).await;
            while let Some(req) = recv_type(&mut ws, "rpc").await {
                let _ = frames.send(req.clone());
                let reply = match req["method"].as_str() {
                    Some("whoami") => answer(&req["id"], r#"{"user":"ann","n":[1,2]}"#),
                    Some("nothing") => answer(&req["id"], "null"),
                    _ => format!(
                        r#"{{"type":"error","id":{},"code":"forbidden","message":"no such method"}}"#,
                        req["id"]
                    ),
                };
                send_text(&mut ws, &reply).await;
            }
        }
    })
    .await;
    let client = fast_client(&format!("ws://{addr}/ws"));

    let got = rpc(
        &client,
        "whoami",
        json!({"token": "t", "deep": [1, {"a": null}]}),
    )
    .await;
    assert_eq!(got, Ok(json!({"user": "ann", "n": [1, 2]})));
    let sent = seen.recv().await.expect("the request");
    assert_eq!(sent["method"], "whoami");
    assert_eq!(
        sent["data"],
        json!({"token": "t", "deep": [1, {"a": null}]})
    );
    assert!(sent["id"].is_u64(), "{sent}");

    // No data is `null` on the wire; a null result is `null`.
    assert_eq!(rpc(&client, "nothing", Value::Null).await, Ok(Value::Null));
    let sent = seen.recv().await.expect("the request");
    assert_eq!(sent["data"], Value::Null);
    assert!(sent.as_object().expect("an object").contains_key("data"));

    match rpc(&client, "other", json!(1)).await {
        Err(Error::Server { code, message }) => {
            assert_eq!(code, ErrorCode::Forbidden);
            assert_eq!(message, "no such method");
        }
        other => panic!("expected the refusal, got {other:?}"),
    }
    assert_eq!(seen.recv().await.expect("the request")["method"], "other");

    // A method outside 1..=256 bytes is refused before anything is sent.
    for method in [String::new(), "m".repeat(257)] {
        match client.rpc(&method, json!(1)).await {
            Err(Error::InvalidMethod(why)) => assert!(why.contains("1 to 256 bytes"), "{why}"),
            other => panic!("expected InvalidMethod, got {other:?}"),
        }
    }
    assert!(seen.try_recv().is_err(), "nothing else was sent");
    client.close().await;
}

#[tokio::test]
async fn an_rpc_waits_while_disconnected_and_is_never_sent_twice() {
    // Connection 0 never welcomes (the call waits); connection 1 takes the
    // call and dies before answering; connection 2 must not see it again.
    let (frames, mut seen) = mpsc::unbounded_channel::<(usize, Value)>();
    let (go, go_rx) = tokio::sync::watch::channel(false);
    let addr = fake_server(move |n, mut ws| {
        let (frames, mut go) = (frames.clone(), go_rx.clone());
        async move {
            if n == 0 {
                let _ = go.wait_for(|g| *g).await;
                return; // dropped without a welcome
            }
            send_text(&mut ws, WELCOME).await;
            while let Some(frame) = recv_json(&mut ws).await {
                if frame["type"] == "ping" {
                    continue;
                }
                let _ = frames.send((n, frame.clone()));
                if n == 1 && frame["type"] == "rpc" {
                    return; // dies with the rpc unanswered
                }
                if frame["type"] == "publish" {
                    let ack = format!(r#"{{"type":"ack","id":{},"offset":1}}"#, frame["id"]);
                    send_text(&mut ws, &ack).await;
                }
            }
        }
    })
    .await;
    let client = fast_client(&format!("ws://{addr}/ws"));
    let call = {
        let client = client.clone();
        tokio::spawn(async move { client.rpc("charge", json!({"cents": 500})).await })
    };
    // Let the call reach the connection task before any connection is up.
    tokio::task::yield_now().await;
    go.send_replace(true);

    let (conn, frame) = timeout(STEP, seen.recv())
        .await
        .expect("sent")
        .expect("alive");
    assert_eq!((conn, frame["type"].as_str()), (1, Some("rpc")), "{frame}");
    assert_eq!(frame["data"], json!({"cents": 500}));
    match timeout(STEP, call).await.expect("settles").expect("task") {
        Err(Error::ConnectionLost { reason }) => {
            assert!(reason.contains("connection lost"), "{reason}")
        }
        other => panic!("expected ConnectionLost, got {other:?}"),
    }
    // On the next connection a publish goes through, and no rpc before it.
    let offset = timeout(STEP, client.publish("after", json!(1)))
        .await
        .expect("acked in time");
    assert_eq!(offset, Ok(1));
    let (conn, frame) = seen.recv().await.expect("the publish");
    assert_eq!(
        (conn, frame["type"].as_str()),
        (2, Some("publish")),
        "{frame}"
    );
    assert!(seen.try_recv().is_err());
    client.close().await;
}

#[tokio::test]
async fn a_1009_blames_the_larger_of_an_rpc_and_a_publish() {
    // Connection 0 takes a small publish and a large rpc, then closes with
    // 1009; the rpc fails MessageTooBig and the publish is resent and acked.
    let (keys, mut seen) = mpsc::unbounded_channel::<(usize, Value)>();
    let addr = fake_server(move |n, mut ws| {
        let keys = keys.clone();
        async move {
            send_text(&mut ws, WELCOME).await;
            let mut got = 0;
            while let Some(frame) = recv_json(&mut ws).await {
                match frame["type"].as_str() {
                    Some("publish") if n > 0 => {
                        let _ = keys.send((n, frame["key"].clone()));
                        let ack = format!(r#"{{"type":"ack","id":{},"offset":7}}"#, frame["id"]);
                        send_text(&mut ws, &ack).await;
                    }
                    Some("publish") => {
                        let _ = keys.send((n, frame["key"].clone()));
                        got += 1;
                    }
                    Some("rpc") => got += 1,
                    _ => {}
                }
                if n == 0 && got == 2 {
                    use futures_util::SinkExt;
                    let close = tokio_websockets::Message::close(
                        Some(tokio_websockets::CloseCode::MESSAGE_TOO_BIG),
                        "too big",
                    );
                    let _ = ws.send(close).await;
                }
            }
        }
    })
    .await;
    let client = fast_client(&format!("ws://{addr}/ws"));
    let publish = {
        let client = client.clone();
        tokio::spawn(async move { client.publish("small", json!("s")).await })
    };
    let (conn, first_key) = timeout(STEP, seen.recv())
        .await
        .expect("sent")
        .expect("alive");
    assert_eq!(conn, 0);
    let big = json!({"blob": "x".repeat(10_000)});
    match timeout(STEP, client.rpc("upload", big))
        .await
        .expect("settles")
    {
        Err(Error::MessageTooBig { bytes }) => assert!(bytes > 10_000, "{bytes}"),
        other => panic!("expected MessageTooBig, got {other:?}"),
    }
    let acked = timeout(STEP, publish).await.expect("acked").expect("task");
    assert_eq!(acked, Ok(7));
    let (conn, key) = seen.recv().await.expect("resent");
    assert_eq!((conn, key), (1, first_key), "resent with its key");
    client.close().await;
}
