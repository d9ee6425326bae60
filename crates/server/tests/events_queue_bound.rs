//! The events queue is bounded (`--events-queue`): while the backend is
//! down, clients that come and go fill it, the oldest waiting events are
//! dropped and counted, and one `gap` event takes their place in the order.
//! Attack test (CONTRIBUTING "Every bound has an attack test"): the bound
//! holds, the server stays alive, a bystander on 127.0.0.2 is served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod events_support;

use events_support::{flags, received, unique, visit};
use std::time::Duration;
use tether_test_util::{attack::Bystander, backend::Backend, eventually, http, TestServer};

const QUEUE: usize = 50;
const CLIENTS: usize = 200;

fn metric(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

fn seq(id: &str) -> u64 {
    id.rsplit('-').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_and_reports_a_gap_in_their_place() {
    let mut backend = Backend::start().await;
    let mut args = flags(&backend);
    args.extend([
        ("events-queue".into(), QUEUE.to_string()),
        ("events-retry-max".into(), "200ms".into()),
        ("handshake-rate-per-ip".into(), "100000".into()),
        ("handshake-burst-per-ip".into(), "100000".into()),
    ]);
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (&**k, &**v)).collect();
    let server = TestServer::start(&args).await;
    let mut bystander = Bystander::join(server.addr).await;
    backend.down().await;

    let url = server.ws_url("/ws");
    for i in 0..CLIENTS {
        visit(&url, &format!("churn-{}", i % 5)).await;
    }
    let metrics = || async {
        http::request(server.addr, "GET", "/metrics", &[], "")
            .await
            .body
    };
    let m = metrics().await;
    let (queued, dropped) = (
        metric(&m, "tether_events_queued"),
        metric(&m, "tether_events_dropped_total"),
    );
    // The bystander's two and four per visitor: the batch in flight
    // (taken before the queue filled) and the queue hold the rest.
    let made = 2 + 4 * CLIENTS as i64;
    assert!(
        queued <= (QUEUE + tether_server::events::BATCH_MAX) as i64,
        "{queued} events held, over the bound"
    );
    assert!(
        dropped >= made - queued,
        "{dropped} dropped, {queued} held of {made}"
    );
    assert_eq!(
        queued + dropped,
        made,
        "every event is held or counted dropped"
    );
    bystander.still_served().await;

    backend.up().await;
    eventually("everything held is delivered", || async {
        metric(&metrics().await, "tether_events_queued") == 0
    })
    .await;
    let events = unique(&received(&backend));
    let gaps: Vec<_> = events.iter().filter(|e| e["type"] == "gap").collect();
    assert!(!gaps.is_empty(), "the drops are reported");
    let mut reported = 0;
    for gap in &gaps {
        assert_eq!(gap["node"], server.node.id.as_str());
        assert_eq!(gap["id"], gap["first_id"]);
        let (first, last) = (
            seq(gap["first_id"].as_str().unwrap()),
            seq(gap["last_id"].as_str().unwrap()),
        );
        let n = gap["dropped"].as_u64().unwrap();
        assert_eq!(last - first + 1, n, "a gap's events are consecutive: {gap}");
        reported += n;
    }
    assert_eq!(reported, dropped as u64, "every drop is reported, once");
    // In their place: every sequence number once, delivered or in a gap,
    // in the order of arrival.
    let mut next = seq(events[0]["id"].as_str().unwrap());
    let start = next;
    for e in &events {
        let id = e["id"].as_str().unwrap();
        assert_eq!(seq(id), next, "{id} out of place");
        next += if e["type"] == "gap" {
            e["dropped"].as_u64().unwrap()
        } else {
            1
        };
    }
    assert_eq!(
        next - start,
        made as u64,
        "every event delivered or reported"
    );
    let behind_last_gap = events
        .iter()
        .rev()
        .take_while(|e| e["type"] != "gap")
        .count();
    assert!(
        behind_last_gap <= QUEUE + tether_server::events::BATCH_MAX,
        "{behind_last_gap} events behind the last gap"
    );
    bystander.still_served().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_comes_and_goes_cannot_grow_the_node_while_the_backend_hangs() {
    let backend = Backend::start().await;
    backend.respond(|_| tether_test_util::backend::Reply::Hang);
    let mut args = flags(&backend);
    args.extend([
        ("events-queue".into(), QUEUE.to_string()),
        ("events-timeout".into(), "300ms".into()),
        ("drain-timeout".into(), "1s".into()),
        ("handshake-rate-per-ip".into(), "100000".into()),
        ("handshake-burst-per-ip".into(), "100000".into()),
    ]);
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (&**k, &**v)).collect();
    let server = TestServer::start(&args).await;
    let mut bystander = Bystander::join(server.addr).await;
    let url = server.ws_url("/ws");
    for i in 0..CLIENTS {
        visit(&url, &format!("churn-{i}")).await;
    }
    let metrics = || async {
        http::request(server.addr, "GET", "/metrics", &[], "")
            .await
            .body
    };
    let m = metrics().await;
    let bound = (QUEUE + tether_server::events::BATCH_MAX) as i64;
    assert!(metric(&m, "tether_events_queued") <= bound);
    assert!(metric(&m, "tether_events_dropped_total") > 0);
    eventually("a hanging call timed out, and is retried", || async {
        metric(&metrics().await, "tether_events_failures_total") >= 2
    })
    .await;
    bystander.still_served().await;
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("a hanging backend does not hold the drain past its timeout");
}
