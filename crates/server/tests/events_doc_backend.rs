//! The backend docs/events.md shows is one that works: its Python block,
//! run as written, refuses a forged request and receives a real node's
//! events (signature checked, ids de-duplicated) and acknowledges them.
//! Skipped (with a note) where python3 is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod events_support;

use events_support::{visit, SECRET};
use std::{path::Path, process::Stdio, time::Duration};
use tether_test_util::{eventually, http, TestServer, STEP};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    time::timeout,
};

/// The one ```python block of docs/events.md.
fn python_block() -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/events.md"))
            .unwrap();
    let start = doc.find("```python\n").expect("a python block") + "```python\n".len();
    let len = doc[start..].find("```").unwrap();
    doc[start..start + len].to_owned()
}

#[tokio::test]
async fn the_documented_python_backend_receives_a_nodes_events() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("python3 not installed: skipping the docs' backend");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tether-events-doc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("events_backend.py");
    std::fs::write(&script, python_block()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut python = Command::new("python3")
        .arg(&script)
        .env("PORT", port.to_string())
        .env("EVENTS_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("the python backend listens", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let forged = http::request(
        addr,
        "POST",
        "/events",
        &[
            ("Tether-Timestamp", "1700000000"),
            ("Tether-Signature", "v1=00"),
            ("Content-Type", "application/json"),
        ],
        r#"{"events":[]}"#,
    )
    .await;
    assert_eq!(forged.status, 401, "a forged request is refused");

    let url = format!("http://127.0.0.1:{port}/events");
    let server = TestServer::start(&[("events-url", &url), ("hook-secret", SECRET)]).await;
    let client = visit(&server.ws_url("/ws"), "room").await;
    let mut lines = BufReader::new(python.stdout.take().unwrap()).lines();
    let mut got = Vec::new();
    while got.len() < 4 {
        let line = timeout(STEP, lines.next_line())
            .await
            .expect("the backend prints each event")
            .unwrap()
            .expect("the backend is running");
        got.push(line.trim_end().to_owned());
    }
    assert_eq!(
        got,
        [
            format!("connect {client}"),
            format!("subscribe {client} room"),
            format!("unsubscribe {client} room"),
            format!("disconnect {client}"),
        ]
    );
    eventually("the node counts them acknowledged", || async {
        http::request(server.addr, "GET", "/metrics", &[], "")
            .await
            .body
            .contains("tether_events_sent_total 4")
    })
    .await;
    server.shutdown().await;
    let _ = python.start_kill();
    let _ = timeout(Duration::from_secs(5), python.wait()).await;
    let _ = std::fs::remove_dir_all(&dir);
}
