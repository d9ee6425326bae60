//! The client connects over `wss://`, trusting a certificate given to the builder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::StreamExt;
use std::time::Duration;
use tether_client::{Client, Event};
use tether_test_util::{tls::TestCert, TestServer};

#[tokio::test]
async fn wss_with_a_private_root() {
    let cert = TestCert::self_signed(&["localhost"]);
    let server = TestServer::start_tls(&cert).await;
    let client = Client::builder(format!("wss://localhost:{}/ws", server.addr.port()))
        .root_certificate_pem(cert.pem.clone())
        .build()
        .unwrap();
    let mut sub = client.subscribe("secure").await.unwrap();
    let offset = tokio::time::timeout(
        Duration::from_secs(10),
        client.publish("secure", serde_json::json!({"x": 1})),
    )
    .await
    .expect("ack in time")
    .expect("published");
    assert_eq!(offset, 1);
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = sub.next().await {
            if let Event::Publication(p) = ev {
                return p.offset;
            }
        }
        0
    })
    .await
    .expect("delivered");
    assert_eq!(got, 1);
}

#[tokio::test]
async fn wss_without_trusting_the_certificate_does_not_connect() {
    let cert = TestCert::self_signed(&["localhost"]);
    let server = TestServer::start_tls(&cert).await;
    let client = Client::builder(format!("wss://localhost:{}/ws", server.addr.port()))
        .max_attempts(1)
        .min_delay(Duration::from_millis(10))
        .build()
        .unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        client.publish("x", serde_json::json!(1)),
    )
    .await
    .expect("gives up in time");
    assert!(result.is_err(), "an untrusted certificate must not connect");
}
