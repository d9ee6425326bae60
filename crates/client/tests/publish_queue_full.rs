//! A full publish queue is an error the caller sees at once, not silent loss.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::time::Duration;
use tether_client::{Client, Error};
use tokio::net::TcpListener;

#[tokio::test]
async fn full_queue_is_an_error() {
    // A listener that never answers keeps the client connecting.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = Client::builder(format!("ws://{addr}/ws"))
        .publish_queue(2)
        .build()
        .expect("client");
    let mut first = Box::pin(client.publish("q", serde_json::json!(1)));
    let mut second = Box::pin(client.publish("q", serde_json::json!(2)));
    // Poll each once: it takes its queue slot, then waits for its ack.
    for f in [&mut first, &mut second] {
        tokio::select! {
            biased;
            r = f => panic!("answered before any connection: {r:?}"),
            () = std::future::ready(()) => {}
        }
    }
    let third = tokio::time::timeout(
        Duration::from_secs(1),
        client.publish("q", serde_json::json!(3)),
    )
    .await
    .expect("answered at once");
    let Err(Error::QueueFull { capacity: third }) = third else {
        panic!("expected QueueFull, got {third:?}");
    };
    assert_eq!(third, 2);
    client.close().await;
    assert_eq!(first.await, Err(Error::Closed));
    assert_eq!(second.await, Err(Error::Closed));
}
