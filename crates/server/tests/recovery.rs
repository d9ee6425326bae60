//! After a disconnect, a recovering subscribe returns exactly the missed
//! publications; when history cannot cover the gap it says `recovered:false`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::time::Duration;
use tether_test_util::{http, ws::WsClient, TestServer};

/// Subscribes once, notes the channel's epoch, and disconnects.
async fn current_epoch(url: &str, channel: &str) -> String {
    let (mut c, _) = WsClient::tether(url).await;
    let reply = c.subscribe(1, channel, None).await;
    reply["epoch"].as_str().expect("epoch").to_owned()
}

fn offsets(reply: &serde_json::Value) -> Vec<u64> {
    reply["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| p["offset"].as_u64().expect("offset"))
        .collect()
}

#[tokio::test]
async fn recovers_exactly_the_missed_messages() {
    let server = TestServer::start(&[]).await;
    let url = server.ws_url("/ws");
    let (mut c, _) = WsClient::tether(&url).await;
    let first = c.subscribe(1, "feed", None).await;
    let epoch = first["epoch"].as_str().expect("epoch").to_owned();
    for n in 1..=3 {
        http::publish(server.addr, "feed", json!(n)).await;
    }
    let mut last = 0;
    for _ in 0..3 {
        last = c.recv_type("message").await["offset"]
            .as_u64()
            .expect("offset");
    }
    assert_eq!(last, 3);
    drop(c); // the connection dies

    for n in 4..=9 {
        http::publish(server.addr, "feed", json!(n)).await;
    }
    let (mut c, _) = WsClient::tether(&url).await;
    let reply = c.subscribe(2, "feed", Some((&epoch, last))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["epoch"], epoch.as_str());
    assert_eq!(reply["offset"], 9);
    assert_eq!(offsets(&reply), vec![4, 5, 6, 7, 8, 9]);
    assert_eq!(reply["publications"][0]["data"], 4);

    // Live messages continue right after the recovered ones, without duplicates.
    http::publish(server.addr, "feed", json!(10)).await;
    let m = c.recv_type("message").await;
    assert_eq!(m["offset"], 10);
    assert_eq!(c.try_recv(Duration::from_millis(100)).await, None);
}

#[tokio::test]
async fn nothing_missed_recovers_with_no_publications() {
    let server = TestServer::start(&[]).await;
    let url = server.ws_url("/ws");
    http::publish(server.addr, "feed", json!("a")).await;
    let (mut c, _) = WsClient::tether(&url).await;
    let reply = c.subscribe(1, "feed", None).await;
    assert_eq!(reply["offset"], 1);
    let epoch = reply["epoch"].as_str().expect("epoch").to_owned();
    let (mut c2, _) = WsClient::tether(&url).await;
    let again = c2.subscribe(1, "feed", Some((&epoch, 1))).await;
    assert_eq!(again["recovered"], true);
    assert_eq!(offsets(&again), Vec::<u64>::new());
}

#[tokio::test]
async fn unknown_epoch_is_not_recovered() {
    let server = TestServer::start(&[]).await;
    let (mut c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    http::publish(server.addr, "feed", json!(1)).await;
    let reply = c.subscribe(1, "feed", Some(("some-old-epoch", 0))).await;
    assert_eq!(reply["recovered"], false);
    assert_eq!(offsets(&reply), Vec::<u64>::new());
}

#[tokio::test]
async fn expired_history_is_not_recovered() {
    let server = TestServer::start(&[("history-ttl", "300ms")]).await;
    let url = server.ws_url("/ws");
    let epoch = current_epoch(&url, "feed").await;
    http::publish(server.addr, "feed", json!(1)).await;
    http::publish(server.addr, "feed", json!(2)).await;
    tokio::time::sleep(Duration::from_millis(400)).await; // let the history expire (the TTL is the subject)
    let (mut c, _) = WsClient::tether(&url).await;
    let reply = c.subscribe(2, "feed", Some((&epoch, 0))).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["offset"], 2, "offsets survive history expiry");
}

#[tokio::test]
async fn trimmed_history_is_not_recovered() {
    let server = TestServer::start(&[("history-size", "3")]).await;
    let url = server.ws_url("/ws");
    let epoch = current_epoch(&url, "feed").await;
    for n in 1..=5 {
        http::publish(server.addr, "feed", json!(n)).await;
    }
    let (mut c, _) = WsClient::tether(&url).await;
    let lost = c.subscribe(2, "feed", Some((&epoch, 1))).await;
    assert_eq!(lost["recovered"], false);
    let (mut c2, _) = WsClient::tether(&url).await;
    let fine = c2.subscribe(3, "feed", Some((&epoch, 2))).await;
    assert_eq!(fine["recovered"], true);
    assert_eq!(offsets(&fine), vec![3, 4, 5]);
}
