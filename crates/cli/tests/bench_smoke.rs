//! Every `tether bench` scenario at a tiny size against a real server, so the
//! load generator cannot rot: the figures must have the right shape (all
//! connected, nothing lost at a low rate, storms smoothed by 429s).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::time::Duration;
use tether_test_util::TestServer;
use tokio::{process::Command, time::timeout};

const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// Limits that would refuse the bench's own load from one address.
const BENCH_LIMITS: &[(&str, &str)] = &[
    ("handshake-rate-per-ip", "100000"),
    ("handshake-burst-per-ip", "100000"),
    ("messages-per-second", "100000"),
    ("messages-burst", "100000"),
];

/// Runs `tether bench ARGS --json`; returns the exit code and the report.
async fn bench(args: &[&str]) -> (i32, Value) {
    let out = timeout(
        Duration::from_secs(60),
        Command::new(BIN)
            .arg("bench")
            .args(args)
            .arg("--json")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("bench finishes in time")
    .expect("run tether bench");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bench {args:?} printed no JSON ({e}): stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn num(r: &Value, path: &[&str]) -> f64 {
    let mut v = r;
    for k in path {
        v = &v[*k];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {r}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_opens_every_connection_and_measures_the_server() {
    let server = TestServer::start(BENCH_LIMITS).await;
    let pid = std::process::id().to_string();
    let (code, r) = bench(&[
        "idle",
        &server.ws_url("/ws"),
        "--connections",
        "50",
        "--sources",
        "2",
        "--hold",
        "2s",
        "--server-pid",
        &pid,
    ])
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["protocol"], "tether");
    assert_eq!(num(&r, &["established"]), 50.0);
    assert_eq!(num(&r, &["dropped_during_hold"]), 0.0);
    assert!(num(&r, &["connects_per_sec"]) > 0.0);
    assert!(r["server_rss_per_conn_kib"].is_number(), "{r}");
    assert!(num(&r, &["server_after", "vm_rss_kib"]) > 0.0);
    assert_eq!(r["failed"], serde_json::json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_everything_at_a_low_rate() {
    let server = TestServer::start(BENCH_LIMITS).await;
    let (code, r) = bench(&[
        "fanout",
        &server.ws_url("/ws"),
        "--subscribers",
        "20",
        "--rate",
        "50",
        "--duration",
        "1s",
    ])
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(num(&r, &["subscribed"]), 20.0);
    assert_eq!(num(&r, &["sent"]), 50.0);
    assert_eq!(num(&r, &["delivered"]), 1000.0);
    assert_eq!(num(&r, &["lost"]), 0.0);
    assert_eq!(num(&r, &["gaps"]), 0.0);
    assert_eq!(num(&r, &["publish_errors"]), 0.0);
    let lat = &r["latency"];
    assert_eq!(num(lat, &["samples"]), 1000.0);
    assert!(num(lat, &["p50_ms"]) <= num(lat, &["p99_ms"]));
    assert!(num(lat, &["p99_ms"]) <= num(lat, &["max_ms"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_counts_round_trips() {
    // /echo takes the same per-connection message rate as /ws.
    let server = TestServer::start(BENCH_LIMITS).await;
    let (code, r) = bench(&[
        "echo",
        &server.ws_url("/echo"),
        "--connections",
        "4",
        "--size",
        "100",
        "--duration",
        "1s",
    ])
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(num(&r, &["established"]), 4.0);
    assert_eq!(num(&r, &["mismatches"]), 0.0);
    assert!(num(&r, &["round_trips"]) > 100.0, "{r}");
    assert!(num(&r, &["messages_per_sec"]) > 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_is_smoothed_by_429_and_everyone_gets_in() {
    // A small handshake bucket: 5 at once, then 20 a second.
    let server = TestServer::start(&[
        ("handshake-burst-per-ip", "5"),
        ("handshake-rate-per-ip", "20"),
    ])
    .await;
    let (code, r) = bench(&[
        "storm",
        &server.ws_url("/ws"),
        "--clients",
        "30",
        "--sources",
        "1",
        "--hold",
        "200ms",
        "--timeout",
        "30s",
    ])
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(num(&r, &["connected"]), 30.0);
    let first_101 = num(&r, &["first_attempt", "101"]);
    let first_429 = num(&r, &["first_attempt", "429"]);
    assert!((5.0..30.0).contains(&first_101), "{r}");
    assert_eq!(first_101 + first_429, 30.0, "{r}");
    assert!(num(&r, &["attempts"]) > 30.0);
    assert!(num(&r, &["max_retry_after_secs"]) >= 1.0, "{r}");
    // Retrying after Retry-After (≥ 1 s) means the last one waited for it.
    assert!(num(&r, &["all_connected_secs"]) >= 1.0, "{r}");
}

#[tokio::test]
async fn refuses_more_connections_than_it_can_hold() {
    let (code, out) = {
        let out = Command::new(BIN)
            .args([
                "bench",
                "idle",
                "ws://127.0.0.1:9/ws",
                "--connections",
                "10000000",
            ])
            .output()
            .await
            .expect("run tether bench");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("open files"), "{out}");
}

/// A fake Socket.IO 4 server, just enough for `--protocol socketio`: the
/// websocket transport at `/socket.io/?EIO=4&transport=websocket`, the
/// default namespace, `pub` relayed to all others as `msg`, `echo` sent
/// back, and a ping every 100 ms that must be answered before the next one
/// (or the connection is closed, as Engine.IO does after `pingTimeout`).
mod fake_socketio {
    use futures_util::{SinkExt, StreamExt};
    use std::sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    };
    use std::time::Duration;
    use tokio::{net::TcpListener, sync::broadcast};
    use tokio_websockets::{Message, ServerBuilder};

    pub struct Server {
        pub url: String,
        /// Pongs received, all connections together.
        pub pongs: Arc<AtomicU64>,
        /// Connections closed for a missed pong.
        pub timed_out: Arc<AtomicU64>,
    }

    pub async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let (pongs, timed_out) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (group, _) = broadcast::channel::<(u64, String)>(4096);
        let (p, t) = (pongs.clone(), timed_out.clone());
        tokio::spawn(async move {
            let mut next_id = 0;
            while let Ok((tcp, _)) = listener.accept().await {
                next_id += 1;
                let (group, p, t) = (group.clone(), p.clone(), t.clone());
                tokio::spawn(serve(tcp, next_id, group, p, t));
            }
        });
        Server {
            url,
            pongs,
            timed_out,
        }
    }

    async fn serve(
        tcp: tokio::net::TcpStream,
        me: u64,
        group: broadcast::Sender<(u64, String)>,
        pongs: Arc<AtomicU64>,
        timed_out: Arc<AtomicU64>,
    ) -> Option<()> {
        let (req, mut ws) = ServerBuilder::new().accept(tcp).await.ok()?;
        let query = req.uri().query().unwrap_or("");
        if req.uri().path() != "/socket.io/"
            || !query.contains("EIO=4")
            || !query.contains("transport=websocket")
        {
            return None;
        }
        let open = r#"0{"sid":"s","upgrades":[],"pingInterval":100,"pingTimeout":100,"maxPayload":1000000}"#;
        ws.send(Message::text(open)).await.ok()?;
        let first = ws.next().await?.ok()?;
        if first.as_text() != Some("40") {
            return None;
        }
        ws.send(Message::text(r#"40{"sid":"n"}"#)).await.ok()?;
        let mut rx = group.subscribe();
        let mut ping = tokio::time::interval(Duration::from_millis(100));
        ping.tick().await;
        let mut awaiting_pong = false;
        loop {
            tokio::select! {
                m = ws.next() => {
                    let m = m?.ok()?;
                    let Some(text) = m.as_text() else { continue };
                    if text == "3" {
                        awaiting_pong = false;
                        pongs.fetch_add(1, Ordering::Relaxed);
                    } else if let Some(payload) = text.strip_prefix("42[\"pub\",") {
                        let _ = group.send((me, format!("42[\"msg\",{payload}")));
                    } else if text.starts_with("42[\"echo\",") {
                        ws.send(Message::text(text.to_owned())).await.ok()?;
                    }
                }
                item = rx.recv() => {
                    let (from, text) = item.ok()?;
                    if from != me {
                        ws.send(Message::text(text)).await.ok()?;
                    }
                }
                _ = ping.tick() => {
                    if awaiting_pong {
                        timed_out.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    awaiting_pong = true;
                    ws.send(Message::text("2")).await.ok()?;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_protocol_connects_answers_pings_relays_and_echoes() {
    let server = fake_socketio::start().await;
    // A bare ws://HOST:PORT gets the websocket transport's path.
    let (code, r) = bench(&[
        "idle",
        &server.url,
        "--protocol",
        "socketio",
        "--connections",
        "10",
        "--hold",
        "2s",
    ])
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["protocol"], "socketio");
    assert_eq!(num(&r, &["established"]), 10.0);
    assert_eq!(num(&r, &["dropped_during_hold"]), 0.0);
    let url = format!("{}/socket.io/?EIO=4&transport=websocket", server.url);
    // The /socket.io/ path alone picks the protocol.
    let (code, r) = bench(&[
        "fanout",
        &url,
        "--subscribers",
        "10",
        "--rate",
        "50",
        "--duration",
        "1s",
    ])
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["protocol"], "socketio");
    assert_eq!(num(&r, &["delivered"]), 500.0);
    assert_eq!(num(&r, &["lost"]), 0.0);
    assert_eq!(num(&r, &["gaps"]), 0.0);
    assert_eq!(num(&r, &["latency", "samples"]), 500.0);
    let (code, r) = bench(&[
        "echo",
        &url,
        "--connections",
        "2",
        "--size",
        "30",
        "--duration",
        "1s",
    ])
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(num(&r, &["mismatches"]), 0.0);
    assert!(num(&r, &["round_trips"]) > 50.0, "{r}");
    use std::sync::atomic::Ordering;
    assert!(server.pongs.load(Ordering::Relaxed) > 100);
    assert_eq!(server.timed_out.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_holds_every_client_and_times_full_answers() {
    let dir = std::env::temp_dir().join(format!("tether-bench-presence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("presence.toml");
    std::fs::write(
        &file,
        "[[channels]]\npattern = \"bench-presence:*\"\npresence = true\n",
    )
    .unwrap();
    let mut flags = vec![("listen".to_owned(), "127.0.0.1:0".to_owned())];
    flags.extend(
        BENCH_LIMITS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let config = tether_server::config::load(Some(&file), |_| None, &flags).unwrap();
    let server = TestServer::start_with(config).await;
    let pid = std::process::id().to_string();
    let (code, r) = bench(&[
        "presence",
        &server.ws_url("/ws"),
        "--clients",
        "40",
        "--channels",
        "3",
        "--requests",
        "5",
        "--window",
        "300ms",
        "--server-pid",
        &pid,
    ])
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(num(&r, &["established"]), 39.0, "all but the asker held");
    // 13 of the 39 held on bench-presence:0, and the asker.
    assert_eq!(num(&r, &["entries_asked"]), 14.0);
    assert_eq!(num(&r, &["entries_listed"]), 14.0);
    assert_eq!(num(&r, &["presence_latency", "samples"]), 5.0);
    assert!(num(&r, &["presence_latency", "p50_ms"]) > 0.0, "{r}");
    assert!(
        r["redis"].is_null(),
        "no --redis-url, no Redis figures: {r}"
    );
    assert!(r["server_cpu_percent"].is_number(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_answers_the_connect_hook_and_counts_every_event() {
    // A free port for the bench's backend (it binds it itself).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = format!("127.0.0.1:{port}");
    let connect = format!("http://{backend}/connect");
    let events = format!("http://{backend}/events");
    let mut flags = BENCH_LIMITS.to_vec();
    flags.extend([
        ("hook-connect", connect.as_str()),
        ("events-url", events.as_str()),
        ("hook-secret", "bench-secret"),
    ]);
    let server = TestServer::start(&flags).await;
    let (code, r) = bench(&[
        "hooks",
        &server.ws_url("/ws"),
        "--connections",
        "30",
        "--concurrency",
        "8",
        "--backend-listen",
        &backend,
        "--settle",
        "20s",
    ])
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(num(&r, &["established"]), 30.0);
    assert_eq!(num(&r, &["connect_hooks"]), 30.0, "{r}");
    assert_eq!(
        num(&r, &["events"]),
        60.0,
        "a connect and a disconnect each: {r}"
    );
    assert!(num(&r, &["handshakes_per_sec"]) > 0.0);
    assert!(num(&r, &["welcome_latency", "p50_ms"]) > 0.0);
}
