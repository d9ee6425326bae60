//! `--compare ws://direct wss://proxied` where both pass: the TLS step that
//! does not apply to ws:// is no difference, and the text shows every
//! figure whole (it was cut at 48 characters).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::time::Duration;
use tether_test_util::{process::tether_bin, tls::TestCert, TestServer};

#[tokio::test]
async fn ws_against_wss_with_both_passing_has_no_difference() {
    let plain = TestServer::start(&[]).await;
    let cert = TestCert::self_signed(&["localhost"]);
    let tls = TestServer::start_tls(&cert).await;
    let a = plain.ws_url("/ws");
    let b = format!("wss://localhost:{}/ws", tls.addr.port());
    let ca = cert.cert_path.to_string_lossy().into_owned();
    let args = [a.as_str(), "--compare", &b, "--ca-file", &ca];

    let (code, report) = doctor(&args).await;
    assert_eq!(code, 0, "{report:#}");
    assert!(report["first_difference"].is_null(), "{report:#}");

    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(tether_bin())
            .arg("doctor")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no difference between A and B"), "{text}");
    // Each side's figure appears whole, however long (timings differ
    // between the two runs, so look at the figures' far ends).
    let ends = |prefix: &str, end: &str| {
        text.lines()
            .filter(|l| l.contains(prefix))
            .all(|l| l.ends_with(end))
    };
    assert_eq!(text.matches("welcome in ").count(), 2, "{text}");
    assert!(ends("welcome in ", "protocol v1"), "{text}");
    assert!(ends("pings (", " 0 lost"), "{text}");
}
