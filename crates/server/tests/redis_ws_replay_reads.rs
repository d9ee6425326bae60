//! A `/ws` subscribe recovering a long gap with `--broker redis` reads
//! history a page at a time: its `subscribed` reply carries at most 64 KiB,
//! and each later turn of the session asks Redis for at most 256 KiB (plus
//! one publication), so a 100-byte request never makes Redis send a
//! channel's whole history (6 MB here) in one answer (docs/limits.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

use serde_json::json;
use support::{node_with, publish};
use tether_test_util::{attack::Bystander, redis::RedisServer, ws::WsClient};

/// Publications of about 60 KiB in the channel's history.
const STORED: u64 = 100;
/// What Redis may send for one history read: a page (256 KiB), the
/// publication that passes it, the reply's framing.
const PER_READ: u64 = 384 * 1024;

#[tokio::test]
async fn a_ws_replay_reads_history_a_page_at_a_time() {
    let redis = RedisServer::start().await;
    let n = node_with(&redis, &["--history-size", "200"]).await;
    let mut bystander = Bystander::join(n.addr()).await;
    let data = json!("h".repeat(60 * 1024));
    let mut epoch = String::new();
    for _ in 0..STORED {
        epoch = publish(&n, "tail", data.clone()).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }

    let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
    let (sent_before, scripts_before) = redis.sent_and_scripts();
    let reply = ws.subscribe(1, "tail", Some((&epoch, 0))).await;
    assert_eq!(reply["recovered"], true, "{}", reply["offset"]);
    // The session's next turns read on meanwhile: the reads are counted
    // from before the subscribe.
    let mut at = reply["offset"].as_u64().unwrap();
    let mut last = redis.sent_and_scripts();
    let mut largest = 0;
    while at < STORED {
        let m = ws.recv_type("message").await;
        assert_eq!(m["offset"], at + 1, "every offset once, in order");
        at += 1;
        let now = redis.sent_and_scripts();
        // Between two messages one read (or none) was made: its size.
        if now.1 == last.1 + 1 {
            largest = largest.max(now.0 - last.0);
        }
        last = now;
    }
    let reads = last.1 - scripts_before;
    let average = (last.0 - sent_before) / reads.max(1);
    assert!(reads >= 20, "{reads} reads carried 6 MB");
    // A large reply leaves Redis in parts, so part of one read may be
    // counted with the next: one interval may show up to two.
    assert!(
        average <= PER_READ && largest <= 2 * PER_READ,
        "Redis sent {average} bytes per history read on average, {largest} at most"
    );
    // Then the log takes over.
    publish(&n, "tail", json!("live")).await;
    let m = ws.recv_type("message").await;
    assert_eq!(
        (m["offset"].clone(), m["data"].clone()),
        (json!(101), json!("live"))
    );
    bystander.still_served().await;
}
