//! Channel state is bounded: a churn of channel names leaves nothing behind,
//! the node holds at most `--max-channels` channels and
//! `--history-max-bytes` of history (refusing explicitly with
//! `over_capacity` at the cap), a connection holds at most
//! `--max-subscriptions`, and a long recovery replay is never one huge reply.
//! Meanwhile a well-behaved client on 127.0.0.2 is served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::net::SocketAddr;
use tether_test_util::{
    attack::{rss_kib, Bystander},
    eventually, http,
    process::ServerProcess,
    ws::WsClient,
    TestServer,
};

async fn gauge(addr: SocketAddr, name: &str) -> f64 {
    http::metric(addr, name, &[]).await
}

async fn try_publish(addr: SocketAddr, channel: &str, data: Value) -> (u16, Value) {
    http::try_publish(addr, &json!({"channel": channel, "data": data})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_churn_of_channel_names_leaves_nothing_behind() {
    // The churn is what is tested, not the rates: both are lifted.
    let server = ServerProcess::start(&[
        "--messages-per-second",
        "1000000",
        "--messages-burst",
        "1000000",
        "--new-channel-rate-per-ip",
        "1000000",
        "--new-channel-burst-per-ip",
        "1000000",
    ])
    .await;
    let (addr, pid) = (server.addr, server.child.id().expect("pid"));
    let mut bystander = Bystander::join(addr).await;
    assert_eq!(gauge(addr, "tether_channel_streams").await, 1.0);
    let before = rss_kib(pid);
    let (mut c, _) = WsClient::tether(&format!("ws://{addr}/ws")).await;
    // 5,000 distinct names, each subscribed with a recovery position on a
    // channel that never existed, then left; pipelined in batches.
    for batch in 0..10u64 {
        for i in 0..500u64 {
            let n = batch * 500 + i;
            c.send(
                json!({"type": "subscribe", "id": 2 * n + 1, "channel": format!("churn-{n}"),
                          "recover": {"epoch": "made-up", "offset": 7}}),
            )
            .await;
            c.send(
                json!({"type": "unsubscribe", "id": 2 * n + 2, "channel": format!("churn-{n}")}),
            )
            .await;
        }
        for _ in 0..1000 {
            let reply = c.recv().await;
            assert!(
                reply["type"] == "subscribed" || reply["type"] == "unsubscribed",
                "{reply}"
            );
            if reply["type"] == "subscribed" {
                assert_eq!(
                    reply["recovered"], false,
                    "a made-up epoch is never recovered"
                );
            }
        }
    }
    // The last leave gives the node's interest back in a task (a leave
    // awaits nothing): wait for it rather than read the gauge at once.
    eventually("only the bystander's channel is held", || async {
        gauge(addr, "tether_channel_streams").await == 1.0
    })
    .await;
    let after = rss_kib(pid);
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    bystander.still_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_cap_refuses_new_channels_explicitly() {
    let server = ServerProcess::start(&["--max-channels", "20"]).await;
    let addr = server.addr;
    let mut bystander = Bystander::join(addr).await;
    let (mut accepted, mut refused) = (0, 0);
    for n in 0..40 {
        match try_publish(addr, &format!("ch-{n}"), json!(n)).await {
            (200, _) => accepted += 1,
            (503, body) => {
                assert_eq!(body["error"], "over_capacity", "{body}");
                refused += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // The bystander's channel is one of the 20.
    assert_eq!((accepted, refused), (19, 21));
    assert_eq!(gauge(addr, "tether_channel_streams").await, 20.0);
    // A new subscription is refused too, with its id; existing channels work.
    let (mut c, _) = WsClient::tether(&format!("ws://{addr}/ws")).await;
    c.send(json!({"type": "subscribe", "id": 5, "channel": "one-more"}))
        .await;
    let reply = c.recv().await;
    assert_eq!(
        (
            reply["type"].as_str(),
            reply["code"].as_str(),
            reply["id"].as_u64()
        ),
        (Some("error"), Some("over_capacity"), Some(5))
    );
    assert_eq!(try_publish(addr, "ch-0", json!("again")).await.0, 200);
    assert!(
        http::metric(
            addr,
            "tether_refusals_total",
            &[("reason", "channels_full")]
        )
        .await
            >= 22.0
    );
    bystander.still_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_bounded_in_bytes() {
    let server = ServerProcess::start(&[
        "--history-size",
        "1000",
        "--history-max-channel-bytes",
        "262144",
        "--history-max-bytes",
        "2097152",
    ])
    .await;
    let (addr, pid) = (server.addr, server.child.id().expect("pid"));
    let mut bystander = Bystander::join(addr).await;
    // Give the bystander's channel history of its own: at the node's cap a
    // channel can still make room by dropping its own oldest entries.
    bystander.still_served().await;
    let before = rss_kib(pid);
    let payload = "h".repeat(50 * 1024);
    let mut refused = 0;
    // 10 MB offered: 10 channels x 20 publications of 50 KiB.
    for n in 0..200 {
        let (status, body) = try_publish(addr, &format!("hist-{}", n / 20), json!(payload)).await;
        match status {
            200 => {}
            503 => {
                assert_eq!(body["error"], "over_capacity", "{body}");
                refused += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
        assert!(gauge(addr, "tether_history_bytes").await <= 2_097_152.0);
    }
    assert!(refused > 0, "the node's history cap was reached");
    assert!(
        http::metric(addr, "tether_refusals_total", &[("reason", "history_full")]).await >= 1.0
    );
    let after = rss_kib(pid);
    assert!(
        after < before + 10 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    bystander.still_served().await;
}

#[tokio::test]
async fn a_long_replay_is_not_one_huge_reply() {
    let server = TestServer::start(&[
        ("history-size", "1000"),
        ("history-max-channel-bytes", "4194304"),
    ])
    .await;
    let payload = "r".repeat(20 * 1024);
    let mut epoch = String::new();
    for _ in 0..100 {
        epoch = http::publish(server.addr, "big", json!(payload)).await["epoch"]
            .as_str()
            .expect("epoch")
            .to_owned();
    }
    let (mut c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    let reply = c.subscribe(1, "big", Some((&epoch, 0))).await;
    assert_eq!(reply["recovered"], true);
    assert!(
        reply.to_string().len() < 66 * 1024,
        "a subscribed reply carries at most 64 KiB of publications"
    );
    let carried: Vec<u64> = reply["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| p["offset"].as_u64().expect("offset"))
        .collect();
    assert!(!carried.is_empty() && carried.len() < 100);
    assert_eq!(
        reply["offset"].as_u64(),
        carried.last().copied(),
        "offset is where the reply leaves the client"
    );
    // The rest follows as ordinary messages: every offset once, in order.
    let mut seen = carried;
    while seen.len() < 100 {
        let m = c.recv_type("message").await;
        seen.push(m["offset"].as_u64().expect("offset"));
    }
    assert_eq!(seen, (1..=100).collect::<Vec<u64>>());
    assert!(
        c.try_recv(std::time::Duration::from_millis(200))
            .await
            .is_none(),
        "nothing twice"
    );
}

#[tokio::test]
async fn the_subscription_cap_has_its_own_error_code() {
    let server = TestServer::start(&[("max-subscriptions", "3")]).await;
    let mut bystander = Bystander::join(server.addr).await;
    let (mut c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    for (id, ch) in [(1, "a"), (2, "b"), (3, "c")] {
        assert_eq!(c.subscribe(id, ch, None).await["type"], "subscribed");
    }
    let refused = c.subscribe(4, "d", None).await;
    assert_eq!(refused["code"], "too_many_subscriptions", "{refused}");
    c.send(json!({"type": "unsubscribe", "id": 5, "channel": "a"}))
        .await;
    assert_eq!(c.recv().await["type"], "unsubscribed");
    assert_eq!(c.subscribe(6, "d", None).await["type"], "subscribed");
    bystander.still_served().await;
}
