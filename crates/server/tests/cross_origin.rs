//! Cross-origin pages (docs/security.md, "Origin allow-list"; docs/browser.md):
//! with the default empty `--allowed-origins` any origin may connect, so a
//! page on any origin can import `/tether.js` and reach `/lp/` (CORS answers
//! echo its Origin); with an allow-list, another origin is refused — with no
//! CORS header — and logged once, at warn, with the flag to set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use tether_test_util::{http, process::ServerProcess};

const OTHER: &str = "http://other.example";
const APP: &str = "https://app.example.com";
const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn preflight(addr: SocketAddr, path: &str, origin: &str) -> http::HttpResponse {
    let headers = [
        ("Origin", origin),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "authorization"),
    ];
    http::request(addr, "OPTIONS", path, &headers, "").await
}

async fn from(addr: SocketAddr, method: &str, path: &str, origin: &str) -> http::HttpResponse {
    let headers = [("Origin", origin), ("Content-Type", "text/plain")];
    http::request(addr, method, path, &headers, "").await
}

/// The answer is readable by a page on `origin`.
#[track_caller]
fn readable_by(res: &http::HttpResponse, origin: &str) {
    let h = &res.headers;
    assert_eq!(
        res.header("Access-Control-Allow-Origin"),
        Some(origin),
        "{h:?}"
    );
    assert!(
        res.header("Vary").is_some_and(|v| v.contains("Origin")),
        "{h:?}"
    );
}

#[tokio::test]
async fn by_default_any_origin_may_import_the_client_and_long_poll() {
    let server = ServerProcess::start(&["--long-poll-timeout", "300ms"]).await;
    let addr = server.addr;
    for path in ["/lp/open", "/lp/send", "/lp/poll"] {
        let res = preflight(addr, path, OTHER).await;
        assert_eq!(res.status, 204, "{path}: {res:?}");
        readable_by(&res, OTHER);
        assert!(res
            .header("Access-Control-Allow-Headers")
            .is_some_and(|h| h.contains("authorization")));
    }
    let open = from(addr, "POST", "/lp/open", OTHER).await;
    assert_eq!(open.status, 200, "{open:?}");
    readable_by(&open, OTHER);
    assert_eq!(
        open.header("Access-Control-Expose-Headers"),
        Some("Retry-After")
    );
    let client = open.json()["client"].as_str().unwrap().to_owned();
    let poll = http::request(
        addr,
        "POST",
        &format!("/lp/poll?client={client}"),
        &[("Origin", OTHER), ("Content-Type", "text/plain")],
        "{}",
    )
    .await;
    assert_eq!(poll.status, 200, "{poll:?}");
    readable_by(&poll, OTHER);
    let script = from(addr, "GET", "/tether.js", OTHER).await;
    assert_eq!(script.status, 200);
    readable_by(&script, OTHER);
}

#[tokio::test]
async fn with_an_allow_list_another_origin_is_refused_and_logged_once() {
    let log = std::env::temp_dir().join(format!("tether-origin-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let server =
        ServerProcess::start_with_ulimit(&["--allowed-origins", APP], "-n 1024", Some(file)).await;
    let addr = server.addr;

    // The allowed origin reads everything.
    let open = from(addr, "POST", "/lp/open", APP).await;
    assert_eq!(open.status, 200, "{open:?}");
    readable_by(&open, APP);
    readable_by(&preflight(addr, "/lp/open", APP).await, APP);
    readable_by(&from(addr, "GET", "/tether.js", APP).await, APP);

    // Another origin, again and again (a client retrying): refused, no CORS
    // header anywhere, one warning.
    for _ in 0..3 {
        let res = preflight(addr, "/lp/open", OTHER).await;
        assert_eq!(res.status, 403, "{res:?}");
        assert_eq!(res.header("Access-Control-Allow-Origin"), None);
        let res = from(addr, "POST", "/lp/open", OTHER).await;
        assert_eq!(res.status, 403, "{res:?}");
        assert!(res.body.contains("not in the allowed origins"), "{res:?}");
        assert_eq!(res.header("Access-Control-Allow-Origin"), None);
        let res = from(addr, "GET", "/tether.js", OTHER).await;
        assert_eq!(
            res.header("Access-Control-Allow-Origin"),
            None,
            "{:?}",
            res.headers
        );
        let origin = format!("Origin: {OTHER}");
        let (res, _) = http::upgrade_with(LOCAL, addr, "/ws", &[&origin]).await;
        assert_eq!(res.status, 403, "{res:?}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&format!("from origin {OTHER}")))
        .collect();
    assert_eq!(warnings.len(), 1, "logged once: {text}");
    assert!(warnings[0].contains("--allowed-origins"), "{}", warnings[0]);
    assert!(!text.contains(&format!("from origin {APP}")), "{text}");
    let _ = std::fs::remove_file(&log);
}
