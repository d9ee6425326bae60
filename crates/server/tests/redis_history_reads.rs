//! A history read with `--broker redis` is bounded in bytes, not only in
//! count: a 100-byte poll naming an old offset makes Redis read and send
//! about one answer's worth (256 KiB), and the following polls walk on
//! through the history, every offset once and in order (docs/limits.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

use serde_json::json;
use support::{node_with, publish};
use tether_test_util::{
    attack::Bystander,
    longpoll::{positions, Lp},
    redis::RedisServer,
};

/// Publications of about 60 KiB in the channel's history.
const STORED: u64 = 100;
/// What one poll answer carries at most (`POLL_BYTES`), and what Redis may
/// send for one poll on top of it (one page of the read, the small replies).
const ANSWER: u64 = 256 * 1024;
const SLACK: u64 = 128 * 1024;

#[tokio::test]
async fn a_poll_from_an_old_offset_reads_one_answer_of_history_at_a_time() {
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

    let (lp, _) = Lp::open(n.addr()).await;
    let mut at = 0;
    let mut polls = 0;
    while at < STORED {
        polls += 1;
        assert!(polls <= STORED, "the polls do not move on: at {at}");
        let before = redis.sent_and_scripts().0;
        let answer = lp.poll(positions(&[("tail", &epoch, at)])).await;
        let read = redis.sent_and_scripts().0 - before;
        assert!(
            read <= ANSWER + SLACK,
            "poll {polls} from offset {at}: Redis sent {read} bytes"
        );
        assert!(
            !answer.is_empty(),
            "poll {polls} from {at} answered nothing"
        );
        for m in answer {
            assert_eq!(m["type"], "message", "{m}");
            assert_eq!(m["offset"], at + 1, "every offset once, in order");
            at += 1;
        }
    }
    assert!(polls >= 20, "{polls} polls carried 6 MB");
    bystander.still_served().await;
}
