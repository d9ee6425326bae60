//! A real HAProxy (Debian's `haproxy` package) in front of a server under
//! test, on a free loopback port, with a configuration the test writes
//! (usually one read from the docs); killed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

pub const HAPROXY: &str = "/usr/sbin/haproxy";

pub struct Haproxy {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl Haproxy {
    /// Whether HAProxy is installed (scripts/setup installs it).
    pub fn available() -> bool {
        Path::new(HAPROXY).exists()
    }

    /// Starts HAProxy in the foreground with the configuration `config`
    /// builds for the free port it is given (the frontend's `bind`).
    pub async fn start(config: impl FnOnce(u16) -> String) -> Self {
        assert!(
            Self::available(),
            "{HAPROXY} not found: run scripts/setup, or apt-get install -y haproxy"
        );
        let dir = crate::nginx::scratch_dir("haproxy");
        let port = crate::nginx::free_port();
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config(port)).expect("haproxy.cfg");
        let log = std::fs::File::create(dir.join("haproxy.log")).expect("haproxy.log");
        // -db: stay in the foreground, so the child is HAProxy itself and
        // killing it on drop stops it.
        let child = Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start haproxy");
        let mut haproxy = Haproxy { port, child, dir };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return haproxy;
            }
            if let Ok(Some(status)) = haproxy.child.try_wait() {
                panic!("haproxy exited with {status}:\n{}", haproxy.log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("haproxy did not listen on 127.0.0.1:{port} within 5 s");
    }

    /// What HAProxy wrote to stderr (alerts and warnings).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
