//! `tether pub` and `tether sub` say why: a publish to a dead server fails
//! at once with the cause instead of waiting out `--timeout`; `sub`'s
//! reconnecting line names the cause and the delay in words; close reasons
//! show "retry in …", not the raw `retry_after_ms=` suffix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    process::Stdio,
    time::{Duration, Instant},
};
use tether_test_util::{process::ServerProcess, TestServer, STEP};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{ChildStderr, Command},
    time::timeout,
};

const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// A loopback port nothing listens on (bound, then released).
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("ws://{}/ws", l.local_addr().unwrap())
}

/// Runs `tether pub ARGS`; returns the exit code, stderr and how long it took.
async fn publish(args: &[&str]) -> (i32, String, Duration) {
    let started = Instant::now();
    let out = timeout(STEP * 4, Command::new(BIN).arg("pub").args(args).output())
        .await
        .expect("pub finished")
        .expect("run tether pub");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr, started.elapsed())
}

/// The next stderr line of `tether sub` that contains `needle`.
async fn line_with(lines: &mut Lines<BufReader<ChildStderr>>, needle: &str) -> String {
    timeout(STEP, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("tether sub exited before a line with {needle:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no line with {needle:?} in time"))
}

#[tokio::test]
async fn pub_to_a_dead_server_fails_at_once_with_the_cause() {
    let (code, stderr, took) = publish(&[&dead_url(), "ch", "1", "--timeout", "30s"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {stderr}");
    assert!(
        stderr.contains("cannot reach") && stderr.contains("refused"),
        "{stderr}"
    );
}

#[tokio::test]
async fn pub_with_a_bad_token_fails_at_once_with_the_status() {
    let server = TestServer::start(&[("jwt-secret", "s3cret-s3cret-s3cret-s3cret-s3cret")]).await;
    let url = server.ws_url("/ws");
    let (code, stderr, took) =
        publish(&[&url, "ch", "1", "--timeout", "30s", "--token", "not-a-jwt"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {stderr}");
    assert!(stderr.contains("401"), "{stderr}");
}

#[tokio::test]
async fn sub_says_why_it_reconnects_and_when() {
    let mut sub = Command::new(BIN)
        .args(["sub", &dead_url(), "ch"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run tether sub");
    let mut lines = BufReader::new(sub.stderr.take().unwrap()).lines();
    let line = line_with(&mut lines, "reconnecting").await;
    assert!(line.contains("refused"), "no cause in {line:?}");
    assert!(
        line.contains("reconnecting in ") && (line.contains(" ms ") || line.contains(" s ")),
        "no delay in words in {line:?}"
    );
}

#[tokio::test]
async fn a_server_restart_reads_retry_in_not_retry_after_ms() {
    let server = ServerProcess::start(&["--drain-timeout", "2s", "--drain-jitter", "300ms"]).await;
    let url = format!("ws://{}/ws", server.addr);
    let mut sub = Command::new(BIN)
        .args(["sub", &url, "ch"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run tether sub");
    let mut lines = BufReader::new(sub.stderr.take().unwrap()).lines();
    line_with(&mut lines, "subscribed to ch").await;
    server.signal("TERM");
    let line = line_with(&mut lines, "reconnecting").await;
    assert!(line.contains("1012"), "no close code in {line:?}");
    assert!(line.contains("the server asks to retry in "), "{line:?}");
    assert!(!line.contains("retry_after_ms"), "{line:?}");
}
