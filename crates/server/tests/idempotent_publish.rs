//! A publish retried with the same idempotency key is stored and delivered once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::time::Duration;
use tether_test_util::{http, ws::WsClient, TestServer};

#[tokio::test]
async fn retried_publish_with_the_same_key_is_stored_once() {
    let server = TestServer::start(&[]).await;
    let url = server.ws_url("/ws");
    let (mut sub, _) = WsClient::tether(&url).await;
    sub.subscribe(1, "chat", None).await;
    let (mut publisher, _) = WsClient::tether(&url).await;
    let msg = json!({"type": "publish", "id": 5, "channel": "chat", "data": "hello", "key": "k-1"});
    publisher.send(msg.clone()).await;
    let first = publisher.recv().await;
    assert_eq!(first, json!({"type": "ack", "id": 5, "offset": 1}));

    // The client did not see the ack (say) and retries on a new connection.
    let (mut retry, _) = WsClient::tether(&url).await;
    retry.send(msg).await;
    assert_eq!(
        retry.recv().await,
        json!({"type": "ack", "id": 5, "offset": 1})
    );

    assert_eq!(sub.recv().await["offset"], 1);
    assert_eq!(
        sub.try_recv(Duration::from_millis(200)).await,
        None,
        "delivered once"
    );

    // A different key is a different publication.
    retry
        .send(json!({"type": "publish", "id": 6, "channel": "chat", "data": "again", "key": "k-2"}))
        .await;
    assert_eq!(retry.recv().await["offset"], 2);
}

#[tokio::test]
async fn http_publish_honours_the_key_too() {
    let server = TestServer::start(&[]).await;
    let body = json!({"channel": "c", "data": 1, "key": "same"}).to_string();
    let a = http::request(server.addr, "POST", "/api/publish", &[], &body)
        .await
        .json();
    let b = http::request(server.addr, "POST", "/api/publish", &[], &body)
        .await
        .json();
    assert_eq!(a["offset"], 1);
    assert_eq!(b, a);
}
