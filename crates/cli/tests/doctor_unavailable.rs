//! A server at its connection limit: 503 with Retry-After, both shown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use tether_test_util::{ws::WsClient, TestServer};

#[tokio::test]
async fn a_full_server_is_named_with_its_retry_after() {
    let server = TestServer::start(&[("max-connections", "1")]).await;
    let (_held, _welcome) = WsClient::tether(&server.ws_url("/ws")).await;
    let (code, report) = doctor(&[&server.ws_url("/ws"), "--timeout", "5s"]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_step(&report, "upgrade", "fail", Some("unavailable"));
    let s = step(&report, "upgrade");
    assert!(s["figure"].as_str().unwrap().contains("503"), "{s}");
    assert!(s["figure"].as_str().unwrap().contains("Retry-After"), "{s}");
    assert!(s["cause"].as_str().unwrap().contains("retry after"), "{s}");
}
