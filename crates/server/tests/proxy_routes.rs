//! Every proxy config in the docs (nginx and HAProxy, read from docs/*.md by
//! `doc_proxies`) routes everything Tether serves: `/ws`, the long-polling
//! fallback under `/lp/` (a 404 there stops the browser client for good),
//! the demo page `/`, `/tether.js` and `/api/publish`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod doc_proxies;

use doc_proxies::DocProxy;
use serde_json::json;
use tether_test_util::{http, longpoll::positions, TestServer};

#[tokio::test]
async fn a_documented_proxy_routes_every_tether_path() {
    doc_proxies::each(every_path_answers).await;
}

async fn every_path_answers(doc: DocProxy) {
    let flags = doc.server_flags(&[("long-poll-timeout", "300ms")]);
    let server = TestServer::start(&flags).await;
    let proxy = doc.start(server.addr).await;
    let (origin, via) = (&doc.origin, proxy.addr());

    let page = http::request(via, "GET", "/", &[], "").await;
    assert_eq!(page.status, 200, "{origin}: GET /: {page:?}");
    assert!(
        page.body.contains("tether.js"),
        "{origin}: not the demo page"
    );
    let js = http::request(via, "GET", "/tether.js", &[], "").await;
    assert_eq!(js.status, 200, "{origin}: GET /tether.js: {}", js.status);

    let (res, _ws) =
        http::upgrade_with(std::net::Ipv4Addr::LOCALHOST.into(), via, "/ws", &[]).await;
    assert_eq!(res.status, 101, "{origin}: /ws: {res:?}");

    // Raw requests rather than `Lp`: nginx keeps `X-Accel-Buffering` (an
    // instruction to it) from the client, which `Lp` checks for.
    let lp = |path: String, body: String| async move {
        let headers = [("Content-Type", "text/plain")];
        let res = http::request(via, "POST", &path, &headers, &body).await;
        assert_eq!(res.status, 200, "{path}: {res:?}");
        assert_eq!(res.header("Cache-Control"), Some("no-store"), "{res:?}");
        res.json()
    };
    let welcome = lp("/lp/open".into(), String::new()).await;
    let client = welcome["client"].as_str().unwrap().to_owned();
    let subscribe = json!([{"type": "subscribe", "id": 1, "channel": "news"}]);
    let replies = lp(format!("/lp/send?client={client}"), subscribe.to_string()).await;
    assert_eq!(replies[0]["type"], "subscribed", "{origin}: {replies}");
    let epoch = replies[0]["epoch"].as_str().unwrap().to_owned();

    let body = json!({"channel": "news", "data": {"n": 1}}).to_string();
    let headers = [("Content-Type", "application/json")];
    let res = http::request(via, "POST", "/api/publish", &headers, &body).await;
    assert_eq!(res.status, 200, "{origin}: POST /api/publish: {res:?}");

    let at = positions(&[("news", &epoch, 0)]).to_string();
    let answer = lp(format!("/lp/poll?client={client}"), at).await;
    assert_eq!(
        answer[0]["data"],
        json!({"n": 1}),
        "{origin}: /lp/poll: {answer}"
    );
}
