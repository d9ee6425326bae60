//! A clean drain sends every session's `disconnect` before the process
//! exits: SIGTERM closes every client with 1012, and by the time `tether`
//! has exited the backend has acknowledged the disconnect of each
//! WebSocket and long-polling session (signed with the secret), even when
//! it answers slowly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod events_support;

use events_support::{by_client, events_in, received, unique, PATH, SECRET};
use serde_json::json;
use std::{collections::BTreeSet, time::Duration};
use tether_test_util::{
    backend::{Backend, Reply},
    longpoll::Lp,
    process::ServerProcess,
    ws::{Ended, WsClient},
};

const CLIENTS: usize = 20;

#[tokio::test]
async fn sigterm_delivers_every_disconnect_before_the_process_exits() {
    let backend = Backend::start().await;
    // Slow, but within the drain timeout.
    backend.respond(|_| {
        Reply::Late(
            Duration::from_millis(300),
            Box::new(Reply::Json(200, json!({}))),
        )
    });
    let url = backend.url(PATH);
    let mut server = ServerProcess::start(&[
        "--events-url",
        &url,
        "--hook-secret",
        SECRET,
        "--drain-timeout",
        "8s",
        "--drain-jitter",
        "1s",
    ])
    .await;
    let ws_url = format!("ws://{}/ws", server.addr);
    let mut clients = Vec::new();
    let mut ids = BTreeSet::new();
    for i in 0..CLIENTS {
        let (mut c, welcome) = WsClient::tether(&ws_url).await;
        c.subscribe(1, &format!("news-{}", i % 3), None).await;
        ids.insert(welcome["client"].as_str().unwrap().to_owned());
        clients.push(c);
    }
    let (lp, _) = Lp::open(server.addr).await;
    let answer = lp
        .send(json!([{"type": "subscribe", "id": 1, "channel": "news-lp"}]))
        .await;
    assert_eq!(answer[0]["type"], "subscribed", "{answer:?}");
    ids.insert(lp.public_client.clone());
    // Every connect and subscribe has reached the backend.
    backend
        .wait_for(Duration::from_secs(10), |r| {
            unique(&events_in(r)).len() >= 2 * ids.len()
        })
        .await;

    server.signal("TERM");
    for c in &mut clients {
        assert!(matches!(
            c.ended(Duration::from_secs(5)).await,
            Ended::Closed(1012, _)
        ));
    }
    let status = tokio::time::timeout(Duration::from_secs(15), server.child.wait())
        .await
        .expect("exits after draining")
        .unwrap();
    assert_eq!(status.code(), Some(0));

    // Nothing waited for: what the backend has now, it had when tether exited.
    let events = unique(&received(&backend));
    let orders = by_client(&events);
    for id in &ids {
        assert_eq!(
            orders.get(id).map(Vec::as_slice),
            Some(&["connect", "subscribe", "unsubscribe", "disconnect"].map(String::from)[..]),
            "{id}"
        );
    }
    for e in events.iter().filter(|e| e["type"] == "disconnect") {
        assert_eq!(e["code"], 1012, "{e}");
        assert!(
            e["reason"]
                .as_str()
                .unwrap()
                .starts_with("server restarting"),
            "{e}"
        );
    }
    for request in backend.received_at(PATH) {
        let timestamp = &request.headers["tether-timestamp"];
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
        let tag = ring::hmac::sign(&key, format!("{timestamp}.{}", request.body).as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(request.headers["tether-signature"], format!("v1={hex}"));
        assert_eq!(request.headers["content-type"], "application/json");
    }
}
