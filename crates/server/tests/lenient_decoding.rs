//! Lenient, exact decoding against a real server: extra or unknown fields
//! in client messages are ignored whatever their names or types (forward
//! compatibility), and every error reply to a request whose `id` could be
//! read carries that `id` — including one refused by the message rate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tether_test_util::{attack::Bystander, ws::WsClient, TestServer};

#[tokio::test]
async fn unknown_fields_are_ignored_and_errors_keep_their_id() {
    let server = TestServer::start(&[("messages-per-second", "1"), ("messages-burst", "12")]).await;
    let mut bystander = Bystander::join(server.addr).await;
    let (mut c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    // Fields a newer client might add, of every JSON type, even with the
    // names of server-side fields.
    c.send_text(r#"{"type":"ping","client":5,"offset":"x","publications":{},"v2":[1,{"a":null}]}"#)
        .await;
    assert_eq!(c.recv().await["type"], "pong");
    c.send_text(r#"{"type":"subscribe","id":1,"channel":"news","code":7,"epoch":false,"extra":{"deep":[[[]]]}}"#)
        .await;
    assert_eq!(c.recv().await["type"], "subscribed");
    c.send_text(r#"{"type":"publish","id":2,"channel":"news","data":{"x":1},"recovered":"no","trace":[1,2]}"#)
        .await;
    let mut replies = vec![c.recv().await, c.recv().await];
    replies.sort_by_key(|r| r["type"].as_str().unwrap_or("").to_owned());
    assert_eq!(replies[0]["type"], "ack", "{replies:?}");
    assert_eq!(replies[1]["type"], "message");
    // Errors keep the id whatever else is wrong.
    let cases = [
        (r#"{"type":5,"id":3}"#, "unknown_type"),
        (r#"{"type":"subscribe","id":4,"channel":7}"#, "bad_request"),
        (
            r#"{"type":"subscribe","id":5,"channel":"a","recover":"x"}"#,
            "bad_request",
        ),
        (
            r#"{"type":"publish","id":6,"channel":"a","data":1,"key":9}"#,
            "bad_request",
        ),
        (
            r#"{"type":"publish","id":7,"channel":"a b","data":1}"#,
            "invalid_channel",
        ),
    ];
    for (frame, code) in cases {
        c.send_text(frame).await;
        let reply = c.recv().await;
        let id: u64 = serde_json::from_str::<serde_json::Value>(frame).unwrap()["id"]
            .as_u64()
            .unwrap();
        assert_eq!(reply["code"], code, "{frame}: {reply}");
        assert_eq!(reply["id"], id, "{frame}: {reply}");
    }
    // Past the burst, a rate-limited request still gets its id back.
    let mut limited = None;
    for id in 100..120u64 {
        c.send(json!({"type": "unsubscribe", "id": id, "channel": "never"}))
            .await;
        let reply = c.recv().await;
        if reply["code"] == "rate_limited" {
            limited = Some((id, reply));
            break;
        }
    }
    let (id, reply) = limited.expect("the burst runs out");
    assert_eq!(reply["id"], id, "{reply}");
    bystander.still_served().await;
}
