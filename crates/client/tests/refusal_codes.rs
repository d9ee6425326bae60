//! An application's refusal (a backend's connect hook closing the
//! connection before the welcome, docs/hooks.md): 4500-4999 end the client
//! like 4001, 4000-4499 are retried with backoff.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::wait_state;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tether_client::{Client, Error, State};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_websockets::{CloseCode, Message, ServerBuilder};

/// A server that closes every connection with `code` right after the
/// upgrade, before any welcome (as a connect hook's refusal does); reports
/// each accepted connection.
async fn refusing_server(code: u16) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (accepted, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = accepted.send(());
            tokio::spawn(async move {
                let Ok((_req, mut ws)) = ServerBuilder::new().accept(tcp).await else {
                    return;
                };
                let code = CloseCode::try_from(code).expect("valid close code");
                let _ = ws
                    .send(Message::close(Some(code), "refused by the backend"))
                    .await;
                while ws.next().await.is_some() {}
            });
        }
    });
    (addr, rx)
}

fn client(addr: std::net::SocketAddr) -> Client {
    Client::builder(format!("ws://{addr}/ws"))
        .min_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(50))
        .build()
        .expect("client")
}

#[tokio::test]
async fn a_final_refusal_stops_the_client() {
    for code in [4500, 4999] {
        let (addr, mut accepted) = refusing_server(code).await;
        let client = client(addr);
        let mut state = client.state();
        let end = wait_state(&mut state, "disconnected", |s| {
            matches!(s, State::Disconnected { .. })
        })
        .await;
        assert_eq!(
            end,
            State::Disconnected {
                code,
                reason: format!("closed with {code} (app_refusal_final): refused by the backend")
            }
        );
        assert!(accepted.recv().await.is_some());
        assert!(
            accepted.try_recv().is_err(),
            "{code}: exactly one connection"
        );
        match client.publish("x", serde_json::json!(1)).await {
            Err(Error::Disconnected { code: c, .. }) => assert_eq!(c, code),
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_refusal_for_now_is_retried_with_backoff() {
    for code in [4000, 4403, 4499] {
        let (addr, mut accepted) = refusing_server(code).await;
        let client = client(addr);
        let mut state = client.state();
        let retry = wait_state(&mut state, "reconnecting", |s| {
            matches!(s, State::Reconnecting { .. })
        })
        .await;
        let State::Reconnecting { code: c, .. } = retry else {
            unreachable!()
        };
        assert_eq!(c, code);
        // It comes back, again and again.
        for _ in 0..3 {
            tokio::time::timeout(tether_test_util::STEP, accepted.recv())
                .await
                .expect("another attempt")
                .expect("server alive");
        }
        client.close().await;
    }
}
