//! A wrong path on a real Tether server: 404 with the server's reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use tether_test_util::TestServer;

#[tokio::test]
async fn a_wrong_path_is_named_with_the_servers_reason() {
    let server = TestServer::start(&[]).await;
    let (code, report) = doctor(&[&server.ws_url("/websocket"), "--timeout", "5s"]).await;
    assert_eq!(code, 1);
    assert_step(&report, "tcp", "pass", None);
    assert_step(&report, "upgrade", "fail", Some("wrong_path"));
    let upgrade = step(&report, "upgrade");
    assert!(
        upgrade["figure"].as_str().unwrap().contains("404"),
        "{upgrade}"
    );
    assert!(
        upgrade["fix"].as_str().unwrap().contains("/ws"),
        "{upgrade}"
    );
}
