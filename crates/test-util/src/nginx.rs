//! A real nginx in front of a server under test, on a free loopback port,
//! with its own prefix and configuration; killed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

pub const NGINX: &str = "/usr/sbin/nginx";

pub struct Nginx {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    /// Whether nginx is installed (scripts/setup installs it).
    pub fn available() -> bool {
        Path::new(NGINX).exists()
    }

    /// Starts nginx with `location` as the body of `location / { ... }`.
    pub async fn start(location: &str) -> Self {
        Self::launch("", location, 256).await
    }

    /// Starts nginx balancing round robin over `backends` (an `upstream`
    /// named `tether`, no sticky sessions: how a load balancer in front of
    /// many nodes is deployed, docs/scaling.md), with room for a reconnect
    /// storm (each client holds two sockets in nginx); `location` should
    /// `proxy_pass http://tether;`.
    pub async fn round_robin(backends: &[std::net::SocketAddr], location: &str) -> Self {
        let servers: String = backends
            .iter()
            .map(|b| format!("    server {b};\n"))
            .collect();
        Self::launch(
            &format!("  upstream tether {{\n{servers}  }}\n"),
            location,
            10_000,
        )
        .await
    }

    /// Starts nginx with `http` (what `http` builds for the free port it is
    /// given) as the whole content of the `http` block: `map`s, `upstream`s
    /// and a `server` listening on that port, e.g. a config from the docs.
    pub async fn start_http(http: impl FnOnce(u16) -> String) -> Self {
        Self::launch_with(http, 256).await
    }

    /// `http_extra` goes into the `http` block before the server.
    async fn launch(http_extra: &str, location: &str, worker_connections: u32) -> Self {
        let http = |port: u16| {
            format!(
                "{http_extra}\
                 \x20 server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    location / {{\n{location}\n    }}\n  }}\n"
            )
        };
        Self::launch_with(http, worker_connections).await
    }

    /// Runs nginx with `http(port)` inside its `http` block, around which
    /// go the process settings and temp paths of a private prefix.
    async fn launch_with(http: impl FnOnce(u16) -> String, worker_connections: u32) -> Self {
        assert!(
            Self::available(),
            "{NGINX} not found: run scripts/setup, or apt-get install -y nginx"
        );
        let dir = scratch_dir("nginx");
        for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.join(sub)).expect("nginx dirs");
        }
        let port = free_port();
        let d = dir.display();
        let http = http(port);
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log info;\npid {d}/nginx.pid;\n\
             events {{ worker_connections {worker_connections}; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             {http}}}\n"
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
        let mut nginx = Nginx { port, child, dir };
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

    /// nginx's error log (at `info`: every upstream it gave up on).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// `ws://` URL of `path` through nginx.
    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// A fresh directory under the temp dir for one proxy process's files.
pub(crate) fn scratch_dir(what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("tether-{what}-{}-{nanos:x}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A loopback port free right now (for a proxy that must be told its port).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
