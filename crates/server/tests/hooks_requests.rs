//! The subscribe, publish and rpc hooks (docs/hooks.md): subscribes to
//! channels whose rule says `subscribe_hook` allowed or refused by the
//! backend (with its code and reason), publishes refused or their data
//! replaced, an rpc answered — on `/ws` and `/lp/` — and channels without
//! the rule never asked about. While a WebSocket's request waits for the
//! backend, its publications keep arriving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hooks_support/mod.rs"]
mod hooks_support;

use hooks_support::{assert_signed, bodies, wait_for};
use serde_json::json;
use std::time::Duration;
use tether_test_util::{
    backend::{Backend, Reply},
    http,
    longpoll::{positions, Lp},
    ws::WsClient,
    TestServer,
};

const RULES: &str = "[[channels]]\npattern = \"vip:*\"\nsubscribe_hook = true\n\n\
                     [[channels]]\npattern = \"chat:*\"\npublish_hook = true\n";

/// A node with every request hook on `backend` and the rules above.
async fn node(backend: &Backend) -> TestServer {
    let dir = std::env::temp_dir().join(format!("tether-hook-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.toml", backend.addr.port()));
    std::fs::write(&file, RULES).unwrap();
    let flags: Vec<(String, String)> = [
        ("hook-subscribe", backend.url("/subscribe")),
        ("hook-publish", backend.url("/publish")),
        ("hook-rpc", backend.url("/rpc")),
        ("hook-secret", hooks_support::SECRET.into()),
        ("listen", "127.0.0.1:0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = tether_server::config::load(Some(&file), |_| None, &flags).unwrap();
    TestServer::start_with(config).await
}

/// Allows `vip:gold`, refuses other `vip:` channels with the backend's own
/// code; refuses publishes saying "spam", stamps the others; answers rpc
/// `echo` with its data, `slow` after 300 ms.
fn answers(backend: &Backend) {
    backend.respond(|r| {
        let body = r.json();
        match r.path.as_str() {
            "/subscribe" if body["channel"] == "vip:gold" => {
                Reply::Json(200, json!({"allow": true}))
            }
            "/subscribe" if body["channel"] == "vip:silver" => {
                Reply::Json(200, json!({"allow": false}))
            }
            "/subscribe" => Reply::Json(
                200,
                json!({"error": {"code": "too_many_subscriptions", "reason": "upgrade your plan"}}),
            ),
            "/publish" if body["data"]["text"] == "spam" => Reply::Json(
                403,
                json!({"error": {"code": "forbidden", "reason": "no spam here"}}),
            ),
            "/publish" => Reply::Json(
                200,
                json!({"allow": true, "data": {"text": body["data"]["text"], "by": body["user"]}}),
            ),
            "/rpc" if body["method"] == "slow" => Reply::Late(
                Duration::from_millis(300),
                Box::new(Reply::Json(200, json!({"result": "late"}))),
            ),
            "/rpc" => Reply::Json(200, json!({"result": {"echo": body["data"]}})),
            _ => Reply::Json(404, json!({})),
        }
    });
}

#[tokio::test]
async fn the_backend_decides_subscribes_and_publishes_and_answers_rpc_on_a_websocket() {
    let backend = Backend::start().await;
    answers(&backend);
    let server = node(&backend).await;
    let (mut ws, welcome) = WsClient::tether(&server.ws_url("/ws")).await;
    // Subscribes.
    assert_eq!(
        ws.subscribe(1, "vip:gold", None).await["type"],
        "subscribed"
    );
    let denied = ws.subscribe(2, "vip:silver", None).await;
    assert_eq!(
        (denied["code"].as_str(), denied["message"].as_str()),
        (Some("forbidden"), Some("refused by the subscribe hook"))
    );
    let refused = ws.subscribe(3, "vip:bronze", None).await;
    assert_eq!(
        (refused["code"].as_str(), refused["message"].as_str()),
        (Some("too_many_subscriptions"), Some("upgrade your plan"))
    );
    assert_eq!(ws.subscribe(4, "news", None).await["type"], "subscribed");
    let asked = bodies(&backend, "/subscribe");
    assert_eq!(
        asked.len(),
        3,
        "channels without the rule are not asked: {asked:?}"
    );
    assert_eq!(
        asked[0],
        json!({"client": welcome["client"], "user": null, "channel": "vip:gold"})
    );
    assert_signed(&backend.received_at("/subscribe")[0]);
    // Publishes: refused, or stored as the backend replaced them.
    assert_eq!(ws.subscribe(5, "chat:1", None).await["type"], "subscribed");
    ws.send(json!({"type": "publish", "id": 6, "channel": "chat:1", "data": {"text": "spam"}}))
        .await;
    let refused = ws.recv().await;
    assert_eq!(
        (
            refused["id"].as_u64(),
            refused["code"].as_str(),
            refused["message"].as_str()
        ),
        (Some(6), Some("forbidden"), Some("no spam here"))
    );
    ws.send(json!({"type": "publish", "id": 7, "channel": "chat:1", "data": {"text": "hi"}, "key": "k7"}))
        .await;
    let (mut ack, mut message) = (None, None);
    while ack.is_none() || message.is_none() {
        let m = ws.recv().await;
        match m["type"].as_str() {
            Some("ack") => ack = Some(m),
            Some("message") => message = Some(m),
            _ => panic!("unexpected {m}"),
        }
    }
    assert_eq!(ack.unwrap()["id"], 7);
    assert_eq!(message.unwrap()["data"], json!({"text": "hi", "by": null}));
    let published = bodies(&backend, "/publish");
    assert_eq!(
        published[1],
        json!({"client": welcome["client"], "user": null, "channel": "chat:1",
               "data": {"text": "hi"}, "key": "k7"})
    );
    // The backend's API publish is never asked.
    http::publish(server.addr, "chat:1", json!({"text": "spam"})).await;
    assert_eq!(ws.recv().await["data"]["text"], "spam");
    assert_eq!(bodies(&backend, "/publish").len(), 2);

    // rpc: the backend's result is the reply.
    ws.send(json!({"type": "rpc", "id": 8, "method": "echo", "data": [1, "a"]}))
        .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "rpc", "id": 8, "result": {"echo": [1, "a"]}})
    );
    assert_eq!(
        bodies(&backend, "/rpc")[0],
        json!({"client": welcome["client"], "user": null, "method": "echo", "data": [1, "a"]})
    );
    ws.send(json!({"type": "rpc", "id": 9, "method": "echo"}))
        .await;
    assert_eq!(ws.recv().await["result"], json!({"echo": null}));
    server.shutdown().await;
}

#[tokio::test]
async fn deliveries_go_on_while_a_request_waits_for_the_backend_and_requests_stay_in_order() {
    let backend = Backend::start().await;
    answers(&backend);
    let server = node(&backend).await;
    let (mut ws, _) = WsClient::tether(&server.ws_url("/ws")).await;
    assert_eq!(ws.subscribe(1, "news", None).await["type"], "subscribed");
    ws.send(json!({"type": "rpc", "id": 2, "method": "slow"}))
        .await;
    ws.send(json!({"type": "ping"})).await;
    wait_for(&backend, "/rpc", 1).await;
    // The backend holds the rpc for 300 ms: a publication arrives first,
    // and the ping sent after the rpc is answered after it.
    http::publish(server.addr, "news", json!("while waiting")).await;
    let first = ws.recv().await;
    assert_eq!(
        (first["type"].as_str(), &first["data"]),
        (Some("message"), &json!("while waiting"))
    );
    assert_eq!(
        ws.recv().await,
        json!({"type": "rpc", "id": 2, "result": "late"})
    );
    assert_eq!(ws.recv().await["type"], "pong");
    server.shutdown().await;
}

#[tokio::test]
async fn long_polling_asks_the_same_hooks_and_a_poll_naming_a_channel_is_a_subscribe() {
    let backend = Backend::start().await;
    answers(&backend);
    let server = node(&backend).await;
    let (lp, welcome) = Lp::open(server.addr).await;
    let replies = lp
        .send(json!([
            {"type": "subscribe", "id": 1, "channel": "vip:gold"},
            {"type": "subscribe", "id": 2, "channel": "vip:silver"},
            {"type": "rpc", "id": 3, "method": "echo", "data": 5},
            {"type": "publish", "id": 4, "channel": "chat:1", "data": {"text": "spam"}},
        ]))
        .await;
    assert_eq!(replies[0]["type"], "subscribed", "{replies:?}");
    assert_eq!(replies[1]["code"], "forbidden", "{replies:?}");
    assert_eq!(
        replies[2],
        json!({"type": "rpc", "id": 3, "result": {"echo": 5}})
    );
    assert_eq!(replies[3]["message"], "no spam here", "{replies:?}");
    assert_eq!(
        bodies(&backend, "/rpc")[0]["client"],
        welcome["public_client"]
    );
    let epoch = replies[0]["epoch"].as_str().unwrap().to_owned();
    // Polls name the allowed channel: not asked again.
    http::publish(server.addr, "vip:gold", json!(1)).await;
    let got = lp.poll(positions(&[("vip:gold", &epoch, 0)])).await;
    assert_eq!(got[0]["data"], 1, "{got:?}");
    assert_eq!(bodies(&backend, "/subscribe").len(), 2);
    // A poll naming channels it never subscribed to: each is asked (at
    // once), and the refused ones are answered with an error naming them.
    let got = lp
        .poll(positions(&[
            ("vip:gold", &epoch, 1),
            ("vip:silver", "e", 0),
            ("vip:bronze", "e", 0),
        ]))
        .await;
    let mut errors: Vec<(String, String)> = got
        .iter()
        .filter(|m| m["type"] == "error")
        .map(|m| {
            (
                m["channel"].as_str().unwrap().into(),
                m["code"].as_str().unwrap().into(),
            )
        })
        .collect();
    errors.sort();
    assert_eq!(
        errors,
        vec![
            ("vip:bronze".into(), "too_many_subscriptions".into()),
            ("vip:silver".into(), "forbidden".into())
        ],
        "{got:?}"
    );
    assert_eq!(bodies(&backend, "/subscribe").len(), 4);
    server.shutdown().await;
}

/// One poll naming many hooked channels asks about 8 at once, the rest at
/// its next polls: a session cannot take every hook slot of the node.
#[tokio::test]
async fn a_poll_naming_many_hooked_channels_asks_a_few_at_a_time() {
    let backend = Backend::start().await;
    answers(&backend);
    let server = node(&backend).await;
    let (lp, _) = Lp::open(server.addr).await;
    let names: Vec<String> = (0..20).map(|i| format!("vip:c{i}")).collect();
    let named: Vec<(&str, &str, u64)> = names.iter().map(|n| (n.as_str(), "e", 0)).collect();
    let got = lp.poll(positions(&named)).await;
    let refused = got.iter().filter(|m| m["type"] == "error").count();
    assert_eq!(refused, 8, "{got:?}");
    assert_eq!(bodies(&backend, "/subscribe").len(), 8);
    let got = lp.poll(positions(&named)).await;
    assert_eq!(
        got.iter().filter(|m| m["type"] == "error").count(),
        8,
        "{got:?}"
    );
    assert_eq!(bodies(&backend, "/subscribe").len(), 16);
    server.shutdown().await;
}

#[tokio::test]
async fn rpc_without_a_hook_is_refused() {
    let server = TestServer::start(&[]).await;
    let (mut ws, _) = WsClient::tether(&server.ws_url("/ws")).await;
    ws.send(json!({"type": "rpc", "id": 1, "method": "x"}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(
        (reply["code"].as_str(), reply["message"].as_str()),
        (
            Some("bad_request"),
            Some("rpc is not enabled on this server (no --hook-rpc)")
        )
    );
    server.shutdown().await;
}
