//! Shared by the `doctor_*` tests: run the built `tether doctor --json`,
//! read its verdicts, and start the real things it diagnoses (nginx, a plain
//! HTTP server, a foreign WebSocket echo server).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test uses a subset; a panic is a failure

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};
use tether_test_util::process::tether_bin;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

pub const NGINX: &str = "/usr/sbin/nginx";

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

/// A real nginx on a free loopback port with its own prefix and config,
/// stopped (killed) on drop.
pub struct Nginx {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Nginx {
    /// `location` is the body of `location / { ... }`.
    pub async fn start(location: &str) -> Self {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} not found: run scripts/test (installs nginx), or apt-get install -y nginx"
        );
        let dir = TempDir::new("nginx");
        let port = free_port();
        let d = dir.0.display();
        for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.path(sub)).unwrap();
        }
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log info;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 128; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n    location / {{\n{location}\n    }}\n  }}\n}}\n"
        );
        std::fs::write(dir.path("nginx.conf"), conf).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(dir.path("nginx.conf"))
            .arg("-e")
            .arg(dir.path("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx {
            port,
            child,
            _dir: dir,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return nginx;
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let log = std::fs::read_to_string(nginx._dir.path("error.log")).unwrap_or_default();
                panic!("nginx exited with {status}:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nginx did not listen on 127.0.0.1:{port} within 5 s");
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
