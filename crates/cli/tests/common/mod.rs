//! Shared by the `doctor_*` tests: run the built `tether doctor --json`,
//! read its verdicts, and start the real things it diagnoses (nginx, a plain
//! HTTP server, a foreign WebSocket echo server).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test uses a subset; a panic is a failure

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::{net::SocketAddr, path::PathBuf, time::Duration};
use tether_test_util::process::tether_bin;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

#[allow(unused_imports)] // each test uses a subset
pub use tether_test_util::nginx::NGINX;

/// Runs `tether doctor ARGS --json`, bounded in time; returns the exit
/// status and the report.
pub async fn doctor(args: &[&str]) -> (i32, Value) {
    doctor_in(&[], args).await
}

/// Like `doctor`, run under a command prefix such as `ip netns exec NS`.
pub async fn doctor_in(prefix: &[&str], args: &[&str]) -> (i32, Value) {
    let bin = tether_bin();
    assert!(
        bin.exists(),
        "{} not built; run `cargo build` first",
        bin.display()
    );
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = tokio::process::Command::new(first);
            c.args(rest).arg(&bin);
            c
        }
        None => tokio::process::Command::new(&bin),
    };
    cmd.arg("doctor")
        .args(args)
        .arg("--json")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("doctor finished within 60 s")
        .expect("run tether doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}):\n{stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The step named `name`, with a readable panic when it is missing.
pub fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == name))
        .unwrap_or_else(|| panic!("no step {name} in {report:#}"))
}

/// Asserts a step's verdict and finding (`None`: no finding expected).
pub fn assert_step(report: &Value, name: &str, verdict: &str, finding: Option<&str>) {
    let s = step(report, name);
    assert_eq!(s["verdict"], verdict, "step {name}: {report:#}");
    match finding {
        Some(f) => assert_eq!(s["finding"], f, "step {name}: {report:#}"),
        None => assert!(s["finding"].is_null(), "step {name}: {report:#}"),
    }
}

/// Asserts that every step passed (or was not applicable) and exit 0.
pub fn assert_healthy(code: i32, report: &Value) {
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(code, 0, "{report:#}");
    for s in report["steps"].as_array().unwrap() {
        assert!(
            s["verdict"] == "pass" || (s["step"] == "tls" && s["verdict"] == "skip"),
            "{report:#}"
        );
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A directory of its own under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tether-doctor-{tag}-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A real nginx on a free loopback port (shared with the server tests).
#[allow(unused_imports)]
pub use tether_test_util::nginx::Nginx;

/// A plain HTTP server that answers every request `200 OK` with a page: a
/// web server where a WebSocket endpoint was expected.
pub async fn plain_http_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "<html><body>Welcome to our site</body></html>\n";
                let res = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(res.as_bytes()).await;
            });
        }
    });
    addr
}

/// A foreign (non-Tether) RFC 6455 echo server made with tokio-websockets,
/// serving every path; it answers protocol pings by itself.
pub async fn foreign_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok((_req, mut ws)) = tokio_websockets::ServerBuilder::new().accept(tcp).await
                else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}
