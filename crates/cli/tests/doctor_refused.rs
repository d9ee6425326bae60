//! Nothing listening: the TCP step fails at once with `connection_refused`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[tokio::test]
async fn nothing_listening_is_named_connection_refused() {
    let port = free_port();
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (code, report) = doctor(&[&url, "--timeout", "3s"]).await;
    assert_eq!(code, 1);
    assert_eq!(report["ok"], false);
    assert_step(&report, "url", "pass", None);
    assert_step(&report, "dns", "pass", None);
    assert_step(&report, "tcp", "fail", Some("connection_refused"));
    assert!(step(&report, "tcp")["cause"]
        .as_str()
        .unwrap()
        .contains("nothing is listening"));
    // Everything after the failure is reported as not run.
    assert_step(&report, "upgrade", "skip", None);
    assert_step(&report, "rtt", "skip", None);
}
