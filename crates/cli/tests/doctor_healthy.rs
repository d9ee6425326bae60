//! Healthy servers pass every step: Tether's /ws and /echo, and a foreign
//! RFC 6455 echo server; `--compare` of two healthy URLs finds no difference.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use tether_test_util::TestServer;

#[tokio::test]
async fn a_healthy_tether_server_passes_every_step() {
    let server = TestServer::start(&[("ping-interval", "1s")]).await;
    let (code, report) =
        doctor(&[&server.ws_url("/ws"), "--pings", "10", "--idle", "2500ms"]).await;
    assert_healthy(code, &report);
    assert!(step(&report, "first_message")["figure"]
        .as_str()
        .unwrap()
        .contains("welcome"));
    assert_eq!(report["rtt"]["sent"], 10);
    assert_eq!(report["rtt"]["lost"], 0);
    assert!(
        report["rtt"]["p99_ms"].as_f64().unwrap() >= report["rtt"]["median_ms"].as_f64().unwrap()
    );
    assert_eq!(report["idle"]["how"], "survived");
    assert!(
        report["idle"]["server_pings"].as_u64().unwrap() >= 1,
        "{report:#}"
    );

    let (code, report) = doctor(&[&server.ws_url("/echo")]).await;
    assert_healthy(code, &report);
    assert!(step(&report, "first_message")["figure"]
        .as_str()
        .unwrap()
        .contains("echo"));
}

#[tokio::test]
async fn a_healthy_foreign_echo_server_passes_every_step() {
    let addr = foreign_echo_server().await;
    let (code, report) = doctor(&[&format!("ws://{addr}/"), "--idle", "1s"]).await;
    assert_healthy(code, &report);
    assert!(step(&report, "rtt")["figure"]
        .as_str()
        .unwrap()
        .contains("protocol ping"));
    let (code, report) = doctor(&[&format!("ws://{addr}/echo")]).await;
    assert_healthy(code, &report);
}

#[tokio::test]
async fn compare_of_two_healthy_urls_finds_no_difference() {
    let server = TestServer::start(&[]).await;
    let addr = foreign_echo_server().await;
    let (code, report) = doctor(&[
        &server.ws_url("/echo"),
        "--compare",
        &format!("ws://{addr}/echo"),
    ])
    .await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    assert!(report["first_difference"].is_null(), "{report:#}");
    assert_eq!(report["a"]["ok"], true);
    assert_eq!(report["b"]["ok"], true);
}
