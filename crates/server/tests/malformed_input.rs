//! Malformed or unknown input gets an error reply and the connection stays
//! usable; endless abuse gets a close.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::time::Duration;
use tether_test_util::{
    ws::{Ended, WsClient},
    TestServer,
};

#[tokio::test]
async fn bad_messages_are_answered_and_survived() {
    let server = TestServer::start(&[]).await;
    let (mut c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    let cases = [
        ("{not json", json!(null), "malformed_json"),
        ("[1,2,3]", json!(null), "malformed_json"),
        (r#"{"type":"dance","id":4}"#, json!(4), "unknown_type"),
        (r#"{"id":5}"#, json!(5), "unknown_type"),
        (r#"{"type":"subscribe","id":6}"#, json!(6), "bad_request"),
        (
            r#"{"type":"subscribe","id":7,"channel":"has space"}"#,
            json!(7),
            "invalid_channel",
        ),
        (
            r#"{"type":"publish","id":8,"channel":"x"}"#,
            json!(8),
            "bad_request",
        ),
        (
            r#"{"type":"unsubscribe","id":9,"channel":"never"}"#,
            json!(9),
            "not_subscribed",
        ),
        ("\u{0}\u{1}", json!(null), "malformed_json"),
    ];
    for (frame, id, code) in cases {
        c.send_text(frame).await;
        let reply = c.recv().await;
        assert_eq!(reply["type"], "error", "{frame}");
        assert_eq!(reply["code"], code, "{frame}: {reply}");
        assert_eq!(
            reply.get("id").cloned().unwrap_or(json!(null)),
            id,
            "{frame}"
        );
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Binary frames are not part of the protocol, but do not kill the session.
    c.ws.send(tokio_websockets::Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    assert_eq!(c.recv().await["code"], "unsupported_frame");

    // Still usable: exactly one reply per id.
    let reply = c.subscribe(10, "ok", None).await;
    assert_eq!(reply["type"], "subscribed");
    c.send(json!({"type": "subscribe", "id": 11, "channel": "ok"}))
        .await;
    assert_eq!(c.recv().await["code"], "already_subscribed");
    c.send(json!({"type": "unsubscribe", "id": 12, "channel": "ok"}))
        .await;
    assert_eq!(
        c.recv().await,
        json!({"type": "unsubscribed", "id": 12, "channel": "ok"})
    );
    assert_eq!(c.try_recv(Duration::from_millis(100)).await, None);
}

use futures_util::SinkExt;

#[tokio::test]
async fn endless_garbage_is_closed_with_1008() {
    let server = TestServer::start(&[]).await;
    let (mut c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    for _ in 0..10 {
        c.send_text("garbage").await;
    }
    match c.ended(Duration::from_secs(5)).await {
        Ended::Closed(code, reason) => {
            assert_eq!(code, 1008);
            assert!(reason.contains("invalid"), "{reason}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_message_is_closed_with_1009() {
    let server = TestServer::start(&[("max-message-bytes", "1024")]).await;
    let (mut c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    let big = json!({"type": "publish", "id": 1, "channel": "c", "data": "x".repeat(2000)});
    c.send(big).await;
    assert!(matches!(
        c.ended(Duration::from_secs(5)).await,
        Ended::Closed(1009, _)
    ));
}
