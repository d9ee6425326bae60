//! A real nginx with `proxy_read_timeout 3s` in front of `tether serve`.
//! With a server that pings rarely, the idle probe is cut after about 3 s
//! and the doctor names the fix; the server itself notices the pattern and
//! counts it. With `--ping-interval 1s` the same proxy keeps the
//! connection open through the whole probe.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use tether_test_util::{eventually, http, process::ServerProcess};

fn location(backend: std::net::SocketAddr) -> String {
    format!(
        "proxy_pass http://{backend};\n proxy_http_version 1.1;\n proxy_set_header Upgrade $http_upgrade;\n proxy_set_header Connection \"upgrade\";\n proxy_read_timeout 3s;"
    )
}

#[tokio::test]
async fn an_idle_cut_after_3s_is_reported_with_the_fix_and_noticed_by_the_server() {
    let server = ServerProcess::start(&["--ping-interval", "60s"]).await;
    let nginx = Nginx::start(&location(server.addr)).await;
    let url = nginx.url("/ws");
    let args = [url.as_str(), "--idle", "8s", "--pings", "2"];
    // Three clients from one address, cut the same way: one report each,
    // and the pattern the server should notice by itself.
    let (a, b, c) = tokio::join!(doctor(&args), doctor(&args), doctor(&args));
    for (code, report) in [a, b, c] {
        assert_eq!(code, 1, "{report:#}");
        assert_step(&report, "rtt", "pass", None);
        assert_step(&report, "idle", "fail", Some("idle_timeout"));
        let after = report["idle"]["after_s"].as_f64().unwrap();
        assert!(
            (2.5..4.5).contains(&after),
            "cut after {after} s: {report:#}"
        );
        let how = report["idle"]["how"].as_str().unwrap();
        assert!(how == "fin" || how == "rst", "{report:#}");
        let s = step(&report, "idle");
        assert!(s["cause"].as_str().unwrap().contains("~3 s"), "{s}");
        let fix = s["fix"].as_str().unwrap();
        assert!(
            fix.contains("proxy_read_timeout") && fix.contains("ping_interval"),
            "{s}"
        );
    }
    eventually("tether_idle_cut_patterns_total 1", || async {
        let metrics = http::request(server.addr, "GET", "/metrics", &[], "")
            .await
            .body;
        metrics
            .lines()
            .any(|l| l == "tether_idle_cut_patterns_total 1")
    })
    .await;
}

#[tokio::test]
async fn a_server_pinging_every_second_survives_the_same_proxy() {
    let server = ServerProcess::start(&["--ping-interval", "1s"]).await;
    let nginx = Nginx::start(&location(server.addr)).await;
    let (code, report) = doctor(&[&nginx.url("/ws"), "--idle", "6s"]).await;
    assert_healthy(code, &report);
    assert_eq!(report["idle"]["how"], "survived");
    assert!(
        report["idle"]["server_pings"].as_u64().unwrap() >= 4,
        "{report:#}"
    );
}
