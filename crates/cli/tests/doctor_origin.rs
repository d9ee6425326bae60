//! A refused origin: `tether serve --allowed-origins https://good.example`
//! and the doctor sending `Origin: https://evil.example`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use tether_test_util::process::ServerProcess;

#[tokio::test]
async fn a_refused_origin_is_named_and_an_allowed_one_passes() {
    let server = ServerProcess::start(&["--allowed-origins", "https://good.example"]).await;
    let url = format!("ws://{}/ws", server.addr);
    let (code, report) = doctor(&[
        &url,
        "--origin",
        "https://evil.example",
        "--page-origin",
        "http://evil.example",
    ])
    .await;
    assert_eq!(code, 1);
    assert_step(&report, "upgrade", "fail", Some("origin_refused"));
    let s = step(&report, "upgrade");
    assert!(s["figure"].as_str().unwrap().contains("403"), "{s}");
    assert!(
        s["fix"].as_str().unwrap().contains("--allowed-origins"),
        "{s}"
    );

    let (code, report) = doctor(&[
        &url,
        "--origin",
        "https://good.example",
        "--page-origin",
        "http://good.example",
    ])
    .await;
    assert_healthy(code, &report);
}

#[tokio::test]
async fn ws_from_an_https_page_needs_wss() {
    let server = ServerProcess::start(&[]).await;
    let url = format!("ws://{}/ws", server.addr);
    let (code, report) = doctor(&[&url, "--origin", "https://app.example"]).await;
    assert_eq!(code, 1);
    assert_step(&report, "url", "fail", Some("mixed_content"));
    // The network layers still run: the socket itself works from here.
    assert_step(&report, "upgrade", "pass", None);
}
