//! A real nginx that proxies without the upgrade headers (its default:
//! HTTP/1.0 to the backend, hop-by-hop headers dropped). The backend then
//! answers 400 and the doctor names the missing proxy_set_header lines;
//! `--compare` with the direct URL points at the upgrade layer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use tether_test_util::TestServer;

#[tokio::test]
async fn nginx_without_upgrade_headers_is_named_and_compare_points_at_it() {
    let server = TestServer::start(&[]).await;
    let nginx = Nginx::start(&format!("proxy_pass http://{};", server.addr)).await;

    let (code, report) = doctor(&[&nginx.url("/ws"), "--timeout", "5s"]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_step(&report, "tcp", "pass", None);
    assert_step(&report, "upgrade", "fail", Some("upgrade_headers_dropped"));
    let s = step(&report, "upgrade");
    assert!(s["figure"].as_str().unwrap().contains("400"), "{s}");
    assert!(
        s["fix"]
            .as_str()
            .unwrap()
            .contains("proxy_set_header Upgrade $http_upgrade"),
        "{s}"
    );

    let direct = server.ws_url("/ws");
    let (code, report) = doctor(&[&direct, "--compare", &nginx.url("/ws")]).await;
    assert_eq!(code, 1, "{report:#}");
    let diff = &report["first_difference"];
    assert_eq!(diff["step"], "upgrade", "{report:#}");
    assert_eq!(diff["a"], "pass");
    assert_eq!(diff["b_finding"], "upgrade_headers_dropped");
    assert_eq!(report["a"]["ok"], true);
}
