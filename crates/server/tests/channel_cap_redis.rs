//! `--max-channels` binds with `--broker redis` too: the node holds a log
//! and a Redis subscription per channel with a local subscriber, and a
//! subscribe that would add one past the cap is refused with
//! `over_capacity` before anything is made in Redis. A bystander on
//! 127.0.0.2 whose channel was already held stays served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use tether_test_util::{
    attack::Bystander, eventually, redis::RedisServer, ws::WsClient, TestServer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_cap_holds_with_redis() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let server = TestServer::start(&[
        ("broker", "redis"),
        ("redis-url", &url),
        ("redis-check-interval", "300ms"),
        ("max-channels", "6"),
    ])
    .await;
    let addr = server.addr;
    let node = server.node.clone();
    eventually("the node reaches Redis", || {
        let ready = node.is_ready();
        async move { ready }
    })
    .await;
    let mut bystander = Bystander::join(addr).await;
    let (mut c, _) = WsClient::tether(&server.ws_url("/ws")).await;
    let (mut subscribed, mut refused) = (0, 0);
    for n in 0..12u64 {
        c.send(json!({"type": "subscribe", "id": n + 1, "channel": format!("cap-{n}")}))
            .await;
        let reply = c.recv().await;
        assert_eq!(reply["id"], n + 1, "{reply}");
        match reply["type"].as_str() {
            Some("subscribed") => subscribed += 1,
            _ => {
                assert_eq!(reply["code"], "over_capacity", "{reply}");
                assert_eq!(
                    reply["message"],
                    "the server holds its maximum of 6 channels; retry later"
                );
                refused += 1;
            }
        }
    }
    // The bystander's channel is one of the six.
    assert_eq!((subscribed, refused), (5, 7));
    assert_eq!(server.node.hub.channel_count(), 6);
    // Nothing was subscribed in Redis for the refused channels.
    let live = redis.cli(&["PUBSUB", "CHANNELS", "*cap-*"]);
    assert_eq!(live.lines().filter(|l| !l.is_empty()).count(), 5, "{live}");
    // Leaving one makes room for another.
    c.send(json!({"type": "unsubscribe", "id": 100, "channel": "cap-0"}))
        .await;
    assert_eq!(c.recv().await["type"], "unsubscribed");
    let reply = c.subscribe(101, "cap-new", None).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    bystander.still_served().await;
}
