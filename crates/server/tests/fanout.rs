//! A publication reaches every subscriber of its channel, in offset order,
//! and nobody else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tether_test_util::{http, ws::WsClient, TestServer};

#[tokio::test]
async fn publications_fan_out_to_every_subscriber_in_order() {
    let server = TestServer::start(&[]).await;
    let url = server.ws_url("/ws");
    let mut subscribers = Vec::new();
    for i in 0..50 {
        let (mut c, _) = WsClient::tether(&url).await;
        let reply = c.subscribe(i, "news", None).await;
        assert_eq!(reply["type"], "subscribed");
        assert_eq!(reply["offset"], 0);
        subscribers.push(c);
    }
    let (mut other, _) = WsClient::tether(&url).await;
    other.subscribe(1, "sports", None).await;

    for n in 1..=20 {
        let ack = http::publish(server.addr, "news", json!({"n": n})).await;
        assert_eq!(ack["offset"], n);
    }
    for c in &mut subscribers {
        for n in 1..=20u64 {
            let m = c.recv().await;
            assert_eq!(m["type"], "message");
            assert_eq!(m["channel"], "news");
            assert_eq!(m["offset"], n);
            assert_eq!(m["data"]["n"], n);
        }
    }
    assert_eq!(
        other.try_recv(std::time::Duration::from_millis(200)).await,
        None
    );

    let stats = http::request(server.addr, "GET", "/api/stats", &[], "")
        .await
        .json();
    assert_eq!(stats["subscribers"]["news"], 50);
    assert_eq!(stats["connections"], 51);
}

#[tokio::test]
async fn a_client_publish_is_acked_and_delivered() {
    let server = TestServer::start(&[]).await;
    let url = server.ws_url("/ws");
    let (mut sub, _) = WsClient::tether(&url).await;
    sub.subscribe(1, "chat", None).await;
    let (mut publisher, _) = WsClient::tether(&url).await;
    publisher
        .send(json!({"type": "publish", "id": 3, "channel": "chat", "data": {"text": "hi"}}))
        .await;
    let ack = publisher.recv().await;
    assert_eq!(ack, json!({"type": "ack", "id": 3, "offset": 1}));
    let m = sub.recv().await;
    assert_eq!(m["data"]["text"], "hi");
}
