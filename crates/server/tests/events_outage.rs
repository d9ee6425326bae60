//! Lifecycle events survive a backend outage: 1,000 clients connect,
//! subscribe and leave while the events backend is down for 10 s; once it
//! is back every event arrives, each client's in order, duplicates only by
//! id (docs/events.md, "Guarantees").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod events_support;

use events_support::{by_client, events_in, flags, received, unique, visit, PATH};
use std::time::Duration;
use tether_test_util::{backend::Backend, eventually, http, TestServer};

const CLIENTS: usize = 1_000;
const OUTAGE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_in_order_after_a_10s_outage() {
    let mut backend = Backend::start().await;
    let mut args = flags(&backend);
    args.extend([
        ("events-retry-max".into(), "1s".into()),
        ("handshake-rate-per-ip".into(), "100000".into()),
        ("handshake-burst-per-ip".into(), "100000".into()),
    ]);
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (&**k, &**v)).collect();
    let server = TestServer::start(&args).await;
    let url = server.ws_url("/ws");

    backend.down().await;
    let down_since = tokio::time::Instant::now();
    let mut clients = Vec::with_capacity(CLIENTS);
    for batch in 0..CLIENTS / 100 {
        let visits: Vec<_> = (0..100)
            .map(|i| {
                let url = url.clone();
                tokio::spawn(async move {
                    visit(&url, &format!("room-{}", (batch * 100 + i) % 7)).await
                })
            })
            .collect();
        for v in visits {
            clients.push(v.await.unwrap());
        }
    }
    let metrics = || async {
        http::request(server.addr, "GET", "/metrics", &[], "")
            .await
            .body
    };
    eventually("every event queued, none sent", || async {
        let m = metrics().await;
        m.contains(&format!("tether_events_queued {}", 4 * CLIENTS))
            && m.contains("tether_events_sent_total 0")
    })
    .await;
    assert!(
        metrics().await.contains("tether_events_dropped_total 0"),
        "4,000 events fit in the default queue"
    );
    assert!(backend.received_at(PATH).is_empty(), "the backend was down");
    tokio::time::sleep_until(down_since + OUTAGE).await;
    backend.up().await;

    backend
        .wait_for(Duration::from_secs(30), |r| {
            unique(&events_in(r)).len() >= 4 * CLIENTS
        })
        .await;
    let all = received(&backend);
    let events = unique(&all);
    assert_eq!(events.len(), 4 * CLIENTS, "one of each kind per client");
    let orders = by_client(&events);
    assert_eq!(orders.len(), CLIENTS);
    for client in &clients {
        assert_eq!(
            orders[client],
            ["connect", "subscribe", "unsubscribe", "disconnect"],
            "{client}'s events in order"
        );
    }
    for e in &events {
        assert_eq!(e["node"], server.node.id.as_str());
        assert!(e["id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}-", server.node.id)));
        assert!(e["at_ms"].as_u64().unwrap() > 0);
        if e["type"] == "disconnect" {
            assert_eq!(e["code"], 1000, "{e}");
            assert_eq!(e["reason"], "bye", "{e}");
            assert!(e["duration_ms"].is_u64(), "{e}");
        }
        if e["type"] == "subscribe" || e["type"] == "unsubscribe" {
            assert!(e["channel"].as_str().unwrap().starts_with("room-"), "{e}");
        }
    }
    eventually(
        "the queue is empty and everything counted as sent",
        || async {
            let m = metrics().await;
            m.contains("tether_events_queued 0")
                && m.contains(&format!("tether_events_sent_total {}", 4 * CLIENTS))
        },
    )
    .await;
    assert!(
        !metrics().await.contains("tether_events_failures_total 0"),
        "the outage was noticed"
    );
    server.shutdown().await;
}
