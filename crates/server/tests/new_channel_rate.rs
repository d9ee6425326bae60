//! One address cannot fill `--max-channels` and lock everyone else out of
//! new channels: the channels it makes the node hold (a publish to a
//! channel the node does not hold, on the API or a connection, or a
//! subscribe that adds a channel) take tokens from a bucket per address
//! (`--new-channel-rate-per-ip`, `--new-channel-burst-per-ip`). Past it: 429
//! `rate_limited` on the API, the error `over_capacity` on the protocol
//! (which clients retry with backoff). A
//! bystander on 127.0.0.2 still creates new channels and publishes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tether_test_util::{
    attack::{Bystander, BYSTANDER_IP},
    http,
    ws::WsClient,
    TestServer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_makes_channels_fast_is_refused_and_others_are_not() {
    let server = TestServer::start(&[
        ("max-channels", "40"),
        ("new-channel-rate-per-ip", "0.01"),
        ("new-channel-burst-per-ip", "10"),
    ])
    .await;
    let addr = server.addr;
    let mut bystander = Bystander::join(addr).await;

    // The attacker publishes to ever new channels over the API: the burst,
    // then 429 with Retry-After, long before the node's cap.
    let (mut accepted, mut limited) = (0, 0);
    for n in 0..60 {
        let body = json!({"channel": format!("flood-{n}"), "data": n});
        let res = http::request(
            addr,
            "POST",
            "/api/publish",
            &[("Content-Type", "application/json")],
            &body.to_string(),
        )
        .await;
        match res.status {
            200 => accepted += 1,
            429 => {
                assert_eq!(res.json()["error"], "rate_limited", "{}", res.body);
                assert!(res.header("Retry-After").is_some());
                limited += 1;
            }
            other => panic!("unexpected {other}: {}", res.body),
        }
    }
    assert_eq!((accepted, limited), (10, 50));
    // A channel it already made still takes its publishes.
    assert_eq!(
        http::try_publish(addr, &json!({"channel": "flood-0", "data": 1}))
            .await
            .0,
        200
    );
    // On a connection: a publish or a subscribe that adds a channel alike.
    let (mut c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    c.send(json!({"type": "publish", "id": 1, "channel": "ws-new", "data": 1}))
        .await;
    let reply = c.recv().await;
    assert_eq!(
        (reply["id"].as_u64(), reply["code"].as_str()),
        (Some(1), Some("over_capacity")),
        "{reply}"
    );
    c.send(json!({"type": "subscribe", "id": 2, "channel": "ws-new-sub"}))
        .await;
    let reply = c.recv().await;
    assert_eq!(
        (reply["id"].as_u64(), reply["code"].as_str()),
        (Some(2), Some("over_capacity")),
        "{reply}"
    );
    // Subscribing a channel that has a subscriber here adds nothing: accepted.
    let reply = c.subscribe(3, "bystander", None).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert!(
        http::metric(
            addr,
            "tether_refusals_total",
            &[("reason", "new_channel_rate")]
        )
        .await
            >= 52.0
    );

    // The bystander still makes new channels: by publishing and by
    // subscribing.
    let answer = http::publish_from(BYSTANDER_IP, addr, "bystander-new", json!(1)).await;
    assert_eq!(answer["offset"], 1);
    let reply = bystander.client.subscribe(2, "bystander-sub", None).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    bystander.still_served().await;
}
