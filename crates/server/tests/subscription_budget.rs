//! Subscriptions have a node-wide bound: `--max-subscriptions-total`, of
//! which the sessions of one address may hold `--max-subscriptions-per-ip`,
//! over every connection and long-polling session. Past either, a
//! subscribe is answered `too_many_subscriptions`; a subscription given up
//! (unsubscribe, a closed connection) frees its place. A bystander on
//! 127.0.0.2 stays served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::net::IpAddr;
use tether_test_util::{attack::Bystander, eventually, longpoll::Lp, ws::WsClient, TestServer};

const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

/// Subscribes `count` channels named `prefix-N` on `c`; returns how many
/// were subscribed, checking every refusal is `too_many_subscriptions`.
async fn subscribe_many(c: &mut WsClient, prefix: &str, count: u64) -> (u64, Vec<Value>) {
    let (mut ok, mut refusals) = (0, Vec::new());
    for n in 0..count {
        c.send(json!({"type": "subscribe", "id": n + 1, "channel": format!("{prefix}-{n}")}))
            .await;
        let reply = c.recv().await;
        match reply["type"].as_str() {
            Some("subscribed") => ok += 1,
            _ => {
                assert_eq!(reply["code"], "too_many_subscriptions", "{reply}");
                refusals.push(reply);
            }
        }
    }
    (ok, refusals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_bounded_on_the_node_and_per_address() {
    let server = TestServer::start(&[
        ("max-subscriptions-total", "30"),
        ("max-subscriptions-per-ip", "20"),
    ])
    .await;
    let addr = server.addr;
    let url = server.ws_url("/ws");
    let mut bystander = Bystander::join(addr).await;

    // One address, over three connections: 20 places, no more.
    let mut attackers = Vec::new();
    let mut held = 0;
    for i in 0..3 {
        let (mut c, _) = WsClient::tether(&url).await;
        let (ok, refusals) = subscribe_many(&mut c, &format!("a{i}"), 10).await;
        held += ok;
        if let Some(r) = refusals.first() {
            assert_eq!(
                r["message"],
                "your address holds its maximum of 20 subscriptions; unsubscribe first"
            );
        }
        attackers.push(c);
    }
    assert_eq!(held, 20);
    // A long-polling session of the same address joins through the same
    // engine: refused too.
    let (lp, _) = Lp::open(addr).await;
    let replies = lp
        .send(json!([{"type": "subscribe", "id": 1, "channel": "lp-0"}]))
        .await;
    assert!(
        replies
            .iter()
            .any(|r| r["code"] == "too_many_subscriptions"),
        "{replies:?}"
    );

    // Another address takes what is left of the node's 30 (the bystander
    // holds one), then meets the node's bound.
    let mut other = WsClient::connect_from(OTHER, &url).await.expect("connect");
    assert_eq!(other.recv().await["type"], "welcome");
    let (ok, refusals) = subscribe_many(&mut other, "b", 12).await;
    assert_eq!(ok, 9);
    assert_eq!(
        refusals[0]["message"],
        "the server holds its maximum of 30 subscriptions; retry later"
    );
    assert_eq!(server.node.admission.subscriptions(), 30);
    bystander.still_served().await;

    // Places come back: by unsubscribe, and when a connection ends.
    attackers[0]
        .send(json!({"type": "unsubscribe", "id": 99, "channel": "a0-0"}))
        .await;
    assert_eq!(attackers[0].recv().await["type"], "unsubscribed");
    assert_eq!(server.node.admission.subscriptions(), 29);
    drop(attackers);
    let node = server.node.clone();
    eventually("closed connections give their places back", || {
        let n = node.admission.subscriptions();
        async move { n == 10 }
    })
    .await;
    let reply = bystander.client.subscribe(2, "bystander-2", None).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    bystander.still_served().await;
}
