//! Connections cut again and again by a proxy (RST and FIN alternately)
//! while a backend keeps publishing through the HTTP API: the subscriber
//! ends with every offset exactly once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{fast_client, offsets_until, wait_state};
use std::time::Duration;
use tether_client::{Event, State};
use tether_test_util::{
    http,
    proxy::{Cut, Proxy},
    TestServer,
};

const TOTAL: u64 = 300;
const CUTS: u64 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_offset_arrives_once_in_order_across_cuts() {
    let server = TestServer::start(&[]).await;
    let proxy = Proxy::start(server.addr).await;
    let client = fast_client(&proxy.ws_url("/ws"));
    let mut state = client.state();
    let mut sub = client.subscribe("cuts").await.expect("subscribe");
    assert!(matches!(
        common::next_event(&mut sub).await,
        Event::Subscribed { offset: 0, .. }
    ));

    let addr = server.addr;
    let publisher = tokio::spawn(async move {
        for i in 1..=TOTAL {
            let ack = http::publish(addr, "cuts", serde_json::json!({ "n": i })).await;
            assert_eq!(ack["offset"], i);
            // Paced so that publishing spans all the cuts (not a sync point).
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });

    let cutter = async {
        for n in 1..=CUTS {
            wait_state(&mut state, "connected", |s| *s == State::Connected).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
            proxy.cut(if n % 2 == 0 { Cut::Fin } else { Cut::Reset });
            // The cut connection is replaced by a new one through the proxy.
            proxy.wait_accepted(n + 1).await;
        }
    };
    let (got, ()) = tokio::join!(offsets_until(&mut sub, TOTAL), cutter);
    publisher.await.expect("publisher");

    let expected: Vec<u64> = (1..=TOTAL).collect();
    assert_eq!(got, expected, "every offset exactly once, in order");
    assert!(
        proxy.accepted() > CUTS,
        "the client reconnected after each cut"
    );
}
