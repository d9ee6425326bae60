//! The connect data (docs/client.md, *Connect data*): a JSON object sent as
//! the WebSocket URL's `data=` query parameter on every connect, for the
//! backend's connect hook; a closure is asked again before each attempt; an
//! object over 4 KiB URL-encoded is refused before anything is sent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{wait_state, WELCOME};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use tether_client::{Client, Error, State};
use tether_test_util::STEP;
use tokio::{net::TcpListener, sync::mpsc, time::timeout};
use tokio_websockets::{Message, ServerBuilder};

/// A server that welcomes every connection, reports its request URI, and
/// closes it with 1012 (so the client reconnects at once) when `bounce`.
async fn recording_server(bounce: bool) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (uris, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let uris = uris.clone();
            tokio::spawn(async move {
                let Ok((req, mut ws)) = ServerBuilder::new().accept(tcp).await else {
                    return;
                };
                let _ = uris.send(req.uri().to_string());
                let _ = ws.send(Message::text(WELCOME)).await;
                if bounce {
                    let code = tokio_websockets::CloseCode::SERVICE_RESTART;
                    let _ = ws.send(Message::close(Some(code), "again")).await;
                }
                while ws.next().await.is_some() {}
            });
        }
    });
    (format!("ws://{addr}/ws?x=1"), rx)
}

/// The JSON carried by a request URI's `data=` parameter.
fn data_of(uri: &str) -> Value {
    let encoded = uri
        .split_once("&data=")
        .map(|(_, d)| d)
        .unwrap_or_else(|| panic!("no data= in {uri}"));
    let mut bytes = Vec::new();
    let mut rest = encoded.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(&tail[..2]).expect("hex");
            bytes.push(u8::from_str_radix(hex, 16).expect("hex"));
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    serde_json::from_slice(&bytes).expect("data is JSON")
}

fn builder(url: &str) -> tether_client::ClientBuilder {
    Client::builder(url)
        .min_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(50))
}

async fn next_uri(uris: &mut mpsc::UnboundedReceiver<String>) -> String {
    timeout(STEP, uris.recv())
        .await
        .expect("a connection in time")
        .expect("server alive")
}

#[tokio::test]
async fn fixed_data_goes_on_every_connect() {
    let (url, mut uris) = recording_server(true).await;
    let data = json!({"room": "a b&c", "n": 1, "é": ["x"]});
    let client = builder(&url)
        .connect_data(data.clone())
        .build()
        .expect("client");
    for _ in 0..2 {
        let uri = next_uri(&mut uris).await;
        assert!(uri.starts_with("/ws?x=1&data=%7B"), "{uri}");
        assert_eq!(data_of(&uri), data);
    }
    client.close().await;
}

#[tokio::test]
async fn a_data_closure_is_asked_before_each_attempt() {
    let (url, mut uris) = recording_server(true).await;
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let client = builder(&url)
        .connect_data_fn(move || json!({"attempt": counter.fetch_add(1, Ordering::Relaxed)}))
        .build()
        .expect("client");
    for n in 0..3 {
        assert_eq!(data_of(&next_uri(&mut uris).await), json!({"attempt": n}));
    }
    client.close().await;
}

#[tokio::test]
async fn data_the_server_would_refuse_is_refused_here() {
    let (url, mut uris) = recording_server(false).await;
    // Over 4 KiB URL-encoded (each quote is 3 bytes): refused at build.
    let big = json!({"k": "\"".repeat(1400)});
    match builder(&url).connect_data(big).build() {
        Err(Error::InvalidConnectData(why)) => {
            assert!(
                why.contains("bytes URL-encoded; the server accepts at most 4096"),
                "{why}"
            )
        }
        Err(other) => panic!("expected InvalidConnectData, got {other:?}"),
        Ok(_) => panic!("expected InvalidConnectData, got a client"),
    }
    match builder(&url).connect_data(json!([1, 2])).build() {
        Err(Error::InvalidConnectData(why)) => assert!(why.contains("an array"), "{why}"),
        Err(other) => panic!("expected InvalidConnectData, got {other:?}"),
        Ok(_) => panic!("expected InvalidConnectData, got a client"),
    }
    // A closure's bad answer fails the attempt (said in the state) and is
    // asked again; nothing reaches the server until it is usable.
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let client = builder(&url)
        .connect_data_fn(move || match counter.fetch_add(1, Ordering::Relaxed) {
            0 => json!("not an object"),
            _ => json!({"ok": true}),
        })
        .build()
        .expect("client");
    let mut state = client.state();
    let retry = wait_state(&mut state, "reconnecting", |s| {
        matches!(s, State::Reconnecting { .. })
    })
    .await;
    let State::Reconnecting { code, reason, .. } = retry else {
        unreachable!()
    };
    assert_eq!(code, 1006);
    assert!(
        reason.contains("invalid connect data: expected a JSON object, got a string"),
        "{reason}"
    );
    assert_eq!(data_of(&next_uri(&mut uris).await), json!({"ok": true}));
    wait_state(&mut state, "connected", |s| *s == State::Connected).await;
    assert!(
        uris.try_recv().is_err(),
        "one connection reached the server"
    );
    client.close().await;
}
