//! A real `redis-server` for the Redis broker's tests, on a free loopback
//! port in its own temp dir, with no persistence unless a test calls
//! `save()`; killed (SIGKILL) on drop. `kill` and `restart` keep the port and
//! the dir, so clients reconnect to "the same" Redis, with its last snapshot
//! or (`restart_empty`) without one: the failures a broker has to survive.

use crate::STEP;
use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{timeout, Instant},
};

pub const REDIS_SERVER: &str = "/usr/bin/redis-server";
pub const REDIS_CLI: &str = "/usr/bin/redis-cli";

/// Tells apart the dirs of servers started in the same process.
static STARTED: AtomicU32 = AtomicU32::new(0);

pub struct RedisServer {
    /// On 127.0.0.1; the same across `kill` and `restart`.
    pub port: u16,
    /// `None` between `kill` and `restart`.
    child: Option<Child>,
    dir: PathBuf,
}

impl RedisServer {
    /// Whether redis-server and redis-cli are installed (scripts/setup
    /// installs them).
    pub fn available() -> bool {
        Path::new(REDIS_SERVER).exists() && Path::new(REDIS_CLI).exists()
    }

    /// Starts a fresh, empty server and waits until it answers PING.
    pub async fn start() -> Self {
        assert!(
            Self::available(),
            "{REDIS_SERVER} or {REDIS_CLI} not found: run scripts/setup, or apt-get install -y redis-server"
        );
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("tether-redis-{}-{n}-{nanos:x}", std::process::id()));
        fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = RedisServer {
            port: 0,
            child: None,
            dir,
        };
        // The free port is only free until someone else binds it; another
        // test's server may take it before ours does, so pick again then.
        let mut attempts = 0;
        loop {
            attempts += 1;
            redis.port = free_port();
            match redis.spawn_and_wait().await {
                Ok(()) => return redis,
                Err(log) if attempts < 3 && log.contains("Address already in use") => {}
                Err(log) => panic!("{log}"),
            }
        }
    }

    /// `redis://127.0.0.1:PORT`, for `--redis-url`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The URL of a Redis reached at `addr` (e.g. a fault proxy in front).
    pub fn url_of(addr: std::net::SocketAddr) -> String {
        format!("redis://{addr}")
    }

    /// Kills the server with SIGKILL (no shutdown, no save) and reaps it.
    /// The port and the dir stay this server's for `restart`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and dir, killing it first if
    /// it still runs; it loads `dump.rdb` if a test `save`d one.
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.spawn_and_wait().await {
            panic!("{log}");
        }
    }

    /// Like `restart`, without the last snapshot: an empty Redis on the same
    /// port, as after losing a host that had no persistence.
    pub async fn restart_empty(&mut self) {
        self.kill();
        match fs::remove_file(self.dir.join("dump.rdb")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove dump.rdb: {e}"),
        }
        self.restart().await;
    }

    /// Writes a snapshot now (`SAVE`); `restart` loads it.
    pub fn save(&self) {
        assert_eq!(self.cli(&["SAVE"]), "OK", "SAVE");
    }

    /// Runs one command through `redis-cli` and returns its output, trimmed
    /// (a nil reply is ""). Panics with redis-cli's stderr when the command
    /// fails or the server is down. It blocks the calling thread for the
    /// length of one round trip, which a test can afford.
    pub fn cli(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let out = Command::new(REDIS_CLI)
            // -e: an error reply exits 1 (otherwise it is printed to stdout
            // with exit status 0, and a test would compare it as a value).
            .args(["-e", "-h", "127.0.0.1", "-p", &port])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        if !out.status.success() {
            panic!(
                "redis-cli -p {port} {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Bytes this Redis has sent to its clients so far, and the scripts it
    /// has run (`INFO`): what tests of history-read bounds measure.
    pub fn sent_and_scripts(&self) -> (u64, u64) {
        let info = self.cli(&["INFO", "all"]);
        let field = |prefix: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        };
        let sent = field("total_net_output_bytes:")
            .unwrap_or_else(|| panic!("no total_net_output_bytes in INFO:\n{info}"));
        let scripts = field("cmdstat_evalsha:calls=").unwrap_or(0)
            + field("cmdstat_eval:calls=").unwrap_or(0);
        (sent, scripts)
    }

    /// Disconnects every client in subscriber mode (`CLIENT KILL TYPE
    /// pubsub`), as a failover or a proxy restart would; returns how many.
    pub fn kill_pubsub_clients(&self) -> u64 {
        let out = self.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        out.parse()
            .unwrap_or_else(|_| panic!("CLIENT KILL answered {out:?}"))
    }

    /// The server's `run_id`, which changes with every (re)start: how a
    /// broker can tell a restarted Redis from a reconnect to the same one.
    pub fn run_id(&self) -> String {
        let info = self.cli(&["INFO", "server"]);
        info.lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned())
            .unwrap_or_else(|| panic!("no run_id in INFO server:\n{info}"))
    }

    /// The keys matching `pattern` (`KEYS`), sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cli(&["KEYS", pattern])
            .lines()
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    /// Spawns redis-server on `self.port` and waits for PING; `Err` carries
    /// the server's log when it exited first (e.g. the port was taken).
    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.dir.join("redis.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("redis.log");
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("redis.log"))
            .stderr(log)
            .spawn()
            .expect("start redis-server");
        let child = self.child.insert(child);
        let deadline = Instant::now() + STEP;
        loop {
            if ping(self.port).await {
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!(
                    "redis-server on 127.0.0.1:{} exited with {status}:\n{log}",
                    self.port
                ));
            }
            if Instant::now() > deadline {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                panic!(
                    "redis-server on 127.0.0.1:{} did not answer PING within {STEP:?}:\n{log}",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Whether the server answers an inline PING with +PONG; a server still
/// loading its snapshot answers -LOADING, which is not ready yet.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        tcp.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 64];
        let n = tcp.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"+PONG"))
    };
    matches!(
        timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}
