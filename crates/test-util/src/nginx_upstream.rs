//! A real nginx balancing round robin over several backends (an `upstream`
//! named `tether`, no sticky sessions), as a load balancer in front of many
//! nodes is deployed (docs/scaling.md). `nginx.rs` has no `http`-level hook
//! for the `upstream` block, and its 256 worker connections are too few for
//! a reconnect storm, hence this sibling. Killed on drop.

use crate::nginx::NGINX;
use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// Enough for a few thousand clients, each holding two sockets in nginx.
const WORKER_CONNECTIONS: u32 = 10_000;

pub struct NginxUpstream {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl NginxUpstream {
    /// Starts nginx on a free loopback port with `upstream tether { server
    /// B; ... }` over `backends` (nginx's defaults: round robin, a backend
    /// that refuses a connect is skipped for the next and left out for
    /// 10 s) and `location` as the body of `location / { ... }`, which
    /// should `proxy_pass http://tether;`.
    pub async fn start(backends: &[SocketAddr], location: &str) -> Self {
        assert!(
            crate::nginx::Nginx::available(),
            "{NGINX} not found: run scripts/setup, or apt-get install -y nginx"
        );
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("tether-nginx-rr-{}-{nanos:x}", std::process::id()));
        for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.join(sub)).expect("nginx dirs");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let servers: String = backends
            .iter()
            .map(|b| format!("    server {b};\n"))
            .collect();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log info;\npid {d}/nginx.pid;\n\
             events {{ worker_connections {WORKER_CONNECTIONS}; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             \x20 upstream tether {{\n{servers}  }}\n\
             \x20 server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    location / {{\n{location}\n    }}\n  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut nginx = NginxUpstream { port, child, dir };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return nginx;
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited with {status}:\n{}", nginx.log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nginx did not listen on 127.0.0.1:{port} within 5 s");
    }

    /// `ws://` URL of `path` through nginx.
    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// nginx's error log (at `info`: every upstream it gave up on).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for NginxUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
