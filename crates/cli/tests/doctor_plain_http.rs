//! A plain HTTP server answering 200 with a page: the upgrade step says a
//! proxy (or a web page) swallowed the upgrade.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[tokio::test]
async fn a_200_with_a_body_points_at_the_upgrade_headers() {
    let addr = plain_http_server().await;
    let url = format!("ws://{addr}/ws");
    let (code, report) = doctor(&[&url, "--timeout", "5s"]).await;
    assert_eq!(code, 1);
    assert_step(&report, "upgrade", "fail", Some("plain_http_response"));
    let s = step(&report, "upgrade");
    assert!(s["figure"].as_str().unwrap().contains("HTTP 200"), "{s}");
    assert!(
        s["fix"]
            .as_str()
            .unwrap()
            .contains("proxy_set_header Upgrade"),
        "{s}"
    );
}
