//! `tether sub` prints one JSON line per publication and `tether pub`
//! prints the ack, both against a real server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use tether_test_util::{TestServer, STEP};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    time::timeout,
};

const BIN: &str = env!("CARGO_BIN_EXE_tether");

async fn publish(url: &str, json: &str) -> serde_json::Value {
    let out = timeout(
        STEP,
        Command::new(BIN).args(["pub", url, "cli", json]).output(),
    )
    .await
    .expect("pub in time")
    .expect("run tether pub");
    assert!(
        out.status.success(),
        "tether pub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("pub prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_prints_what_pub_publishes() {
    let server = TestServer::start(&[]).await;
    let url = server.ws_url("/ws");
    let mut sub = Command::new(BIN)
        .args(["sub", &url, "cli", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run tether sub");
    // Publish only once the subscription is confirmed (reported on stderr).
    let mut stderr = BufReader::new(sub.stderr.take().expect("stderr")).lines();
    timeout(STEP, async {
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            if line.contains("subscribed to cli") {
                return;
            }
        }
        panic!("tether sub exited before subscribing");
    })
    .await
    .expect("subscribed in time");

    assert_eq!(
        publish(&url, r#"{"text":"hi"}"#).await,
        serde_json::json!({"channel": "cli", "offset": 1})
    );
    assert_eq!(publish(&url, "42").await["offset"], 2);

    let out = timeout(STEP, sub.wait_with_output())
        .await
        .expect("sub exits after --count")
        .expect("sub output");
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(
        lines,
        [
            serde_json::json!({"channel": "cli", "offset": 1, "data": {"text": "hi"}}),
            serde_json::json!({"channel": "cli", "offset": 2, "data": 42}),
        ]
    );
}

#[tokio::test]
async fn pub_rejects_invalid_json() {
    let out = Command::new(BIN)
        .args(["pub", "ws://127.0.0.1:1/ws", "cli", "{not json"])
        .output()
        .await
        .expect("run tether pub");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not JSON"));
}
