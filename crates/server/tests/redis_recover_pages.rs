//! The Redis recover script reads history in pages sized to its byte
//! budget: a first page of 4 entries, then about what is left of the budget
//! at the entries' average size, so a replay of large publications makes
//! Redis read (into the script) little more than it sends, not 16 entries
//! of up to 64 KiB for every read (docs/limits.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "redis_support/mod.rs"]
mod support;

use serde_json::json;
use std::process::Stdio;
use support::{node_with, publish};
use tether_test_util::{redis::RedisServer, ws::WsClient};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Publications of about 60 KiB in the channel's history.
const STORED: u64 = 20;

#[tokio::test]
async fn a_history_read_asks_for_about_what_its_budget_holds() {
    let redis = RedisServer::start().await;
    let n = node_with(&redis, &["--history-size", "200"]).await;
    let data = json!("p".repeat(60 * 1024));
    let mut epoch = String::new();
    for _ in 0..STORED {
        epoch = publish(&n, "pages", data.clone()).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
    }

    // MONITOR shows the commands the scripts run.
    let port = redis.url().rsplit(':').next().unwrap().to_owned();
    let mut monitor = tokio::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port, "MONITOR"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-cli MONITOR");
    let mut lines = BufReader::new(monitor.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap_or_default();
    assert_eq!(first.trim(), "OK", "MONITOR started");
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line);
        }
        seen
    });

    let (mut ws, _) = WsClient::tether(&n.ws_url()).await;
    let reply = ws.subscribe(1, "pages", Some((&epoch, 0))).await;
    assert_eq!(reply["recovered"], true, "{}", reply["offset"]);
    let mut at = reply["offset"].as_u64().unwrap();
    while at < STORED {
        let m = ws.recv_type("message").await;
        assert_eq!(m["offset"], at + 1, "every offset once, in order");
        at += 1;
    }
    monitor.start_kill().unwrap();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
        .await
        .expect("MONITOR ended")
        .unwrap();

    let scripts = seen
        .iter()
        .filter(|l| l.contains("\"EVALSHA\"") || l.contains("\"EVAL\""))
        .count() as u64;
    let asked: u64 = seen
        .iter()
        .filter(|l| l.contains("\"XRANGE\"") && l.contains("pages"))
        .map(|l| {
            let count = l.rsplit('"').nth(1).unwrap_or_default();
            count
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("no COUNT in {l}"))
        })
        .sum();
    println!("{scripts} reads asked for {asked} entries");
    assert!(scripts >= 2, "the replay took {scripts} reads");
    // Each read asks for what it sends plus about one entry.
    assert!(
        asked <= STORED + 2 * scripts,
        "{scripts} reads asked for {asked} entries to send {STORED}"
    );
}
