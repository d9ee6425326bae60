//! Test harness shared by every crate's integration tests: a real server on
//! `127.0.0.1:0` (in-process or as the `tether` binary), a small WebSocket
//! test client speaking JSON, a raw HTTP helper, fault-injecting proxies,
//! network namespaces for faults in the kernel (link down, firewall drops,
//! slow lines), and the real nginx, HAProxy and Redis the proxy and broker
//! tests run against.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

pub mod attack;
pub mod backend;
pub mod haproxy;
pub mod http;
pub mod longpoll;
pub mod netns;
pub mod nginx;
pub mod proc_stats;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod tls;
pub mod ws;

use std::{net::SocketAddr, sync::Arc, time::Duration};
use tether_server::{config, node::Node, Config, Server};
use tokio::{sync::oneshot, task::JoinHandle};

/// How long any single expected event may take before a test fails.
pub const STEP: Duration = Duration::from_secs(10);

/// A server running inside the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// A configuration for tests: port 0, short heartbeats unless overridden.
/// `flags` use the same names as `tether serve`, e.g. `("ping-interval", "1s")`.
pub fn test_config(flags: &[(&str, &str)]) -> Config {
    let mut all: Vec<(String, String)> = vec![("listen".into(), "127.0.0.1:0".into())];
    all.extend(flags.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    config::load(None, |_| None, &all).expect("test config is valid")
}

impl TestServer {
    /// Starts a server with `tether serve` flags on a free loopback port.
    pub async fn start(flags: &[(&str, &str)]) -> Self {
        Self::start_with(test_config(flags)).await
    }

    /// Starts a server serving `wss://`/`https://` with `cert`.
    pub async fn start_tls(cert: &tls::TestCert) -> Self {
        let [(c, cert_path), (k, key_path)] = cert.flags();
        Self::start(&[(c, &cert_path), (k, &key_path)]).await
    }

    pub async fn start_with(config: Config) -> Self {
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr().expect("addr");
        let node = server.node();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            node,
            stop: Some(stop),
            task,
        }
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Triggers the drain and waits for the server to finish it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls `check` until it is true or `STEP` passes; for state that has no
/// event to await (a gauge, a counter read over HTTP).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
