//! Attack: a backend that hangs while clients keep coming. Hook calls in
//! flight are bounded node-wide (`--hook-concurrency`): past the bound a
//! handshake that would call the connect hook (`/ws`, `/lp/open`) gets 503
//! with `Retry-After` before anything is done, and a request that would
//! call a hook is answered `over_capacity` (retryable) at once. Each call
//! ends within `--hook-timeout`, so the slots come back.
//!
//! Bound: `--hook-concurrency` calls, each holding one connection and one
//! request body (≤ 1 MiB answer) for at most the timeout. The node's memory
//! stays flat while 300 handshakes are refused, and a bystander on
//! 127.0.0.2, connected before the backend hung, stays served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::{net::IpAddr, time::Duration};
use tether_test_util::{
    attack::{rss_kib, Bystander},
    backend::{Backend, Reply},
    http,
    process::ServerProcess,
    ws::{Ended, WsClient},
    STEP,
};

const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const SLOTS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_backend_costs_a_bounded_number_of_calls_and_the_node_sheds_the_rest() {
    let backend = Backend::start().await;
    let (connect, rpc) = (backend.url("/connect"), backend.url("/rpc"));
    let slots = SLOTS.to_string();
    let server = ServerProcess::start(&[
        "--hook-connect",
        &connect,
        "--hook-rpc",
        &rpc,
        "--hook-secret",
        "s",
        "--hook-concurrency",
        &slots,
        "--hook-timeout",
        "3s",
        "--handshake-burst-per-ip",
        "1000",
        "--handshake-rate-per-ip",
        "1000",
    ])
    .await;
    let (addr, pid) = (server.addr, server.child.id().expect("pid"));
    // Connected while the backend answers.
    let mut bystander = Bystander::join(addr).await;
    let (mut caller, _) = WsClient::tether(&format!("ws://{addr}/ws")).await;
    backend.respond(|_| Reply::Hang);
    let before = rss_kib(pid);

    // Every slot taken by a connection whose connect hook hangs.
    let mut hanging = Vec::new();
    for _ in 0..SLOTS {
        hanging.push(WsClient::connect(&format!("ws://{addr}/ws")).await);
    }
    // (Two more: the bystander's and the caller's, answered.)
    backend.wait_for(STEP, |r| r.len() >= SLOTS + 2).await;
    // Past the bound: refused before the upgrade, at once.
    for _ in 0..300 {
        let res = http::upgrade_from(ATTACKER, addr, "/ws").await;
        assert_eq!(res.status, 503, "{res:?}");
        assert!(res.header("retry-after").is_some(), "{res:?}");
        assert!(res.body.contains("--hook-concurrency"), "{res:?}");
    }
    let res = http::request(addr, "POST", "/lp/open", &[], "").await;
    assert_eq!(res.status, 503, "{res:?}");
    // A request that would call a hook: `over_capacity`, at once.
    let started = std::time::Instant::now();
    caller
        .send(json!({"type": "rpc", "id": 1, "method": "m"}))
        .await;
    let reply = caller.recv().await;
    assert_eq!(reply["code"], "over_capacity", "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let after = rss_kib(pid);
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    bystander.still_served().await;
    assert_eq!(
        http::metric(
            addr,
            "tether_handshakes_total",
            &[("outcome", "hooks_busy")]
        )
        .await,
        301.0
    );
    assert_eq!(
        http::metric(
            addr,
            "tether_hook_requests_total",
            &[("hook", "rpc"), ("outcome", "over_capacity")]
        )
        .await,
        1.0
    );
    // The hanging calls end at the timeout (1013), and the slots come back.
    for ws in &mut hanging {
        match ws.ended(STEP).await {
            Ended::Closed(1013, _) => {}
            other => panic!("{other:?}"),
        }
    }
    backend.respond(|_| Reply::Json(200, json!({})));
    let (_back, welcome) = WsClient::tether(&format!("ws://{addr}/ws")).await;
    assert_eq!(welcome["type"], Value::from("welcome"));
    bystander.still_served().await;
}
