//! Shared by the hook tests: a node whose hooks call a test backend
//! (`tether_test_util::backend::Backend`), and checks of what it sent.
#![allow(dead_code)]

use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tether_test_util::{
    backend::{Backend, Received},
    TestServer,
};

/// The secret every test signs with.
pub const SECRET: &str = "hook-test-secret";

/// Starts a node with `hooks` (`("hook-connect", "/connect")`: the flag and
/// the path on `backend`) and `extra` flags.
pub async fn node(backend: &Backend, hooks: &[(&str, &str)], extra: &[(&str, &str)]) -> TestServer {
    let urls: Vec<(String, String)> = hooks
        .iter()
        .map(|(flag, path)| (flag.to_string(), backend.url(path)))
        .collect();
    let mut flags: Vec<(&str, &str)> = urls.iter().map(|(f, u)| (f.as_str(), u.as_str())).collect();
    flags.push(("hook-secret", SECRET));
    flags.extend_from_slice(extra);
    TestServer::start(&flags).await
}

/// Checks that `request` carries a valid signature made within the last
/// minute.
pub fn assert_signed(request: &Received) {
    let timestamp: u64 = request.headers["tether-timestamp"]
        .parse()
        .expect("a numeric timestamp");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(timestamp) <= 60,
        "timestamp {timestamp} vs now {now}"
    );
    let expected = tether_server::hooks::signature(SECRET, timestamp, request.body.as_bytes());
    assert_eq!(request.headers["tether-signature"], expected, "{request:?}");
    assert_eq!(request.headers["content-type"], "application/json");
}

/// The JSON bodies received at `path`.
pub fn bodies(backend: &Backend, path: &str) -> Vec<Value> {
    backend
        .received_at(path)
        .iter()
        .map(Received::json)
        .collect()
}

/// Waits for `n` requests at `path`.
pub async fn wait_for(backend: &Backend, path: &str, n: usize) {
    let path = path.to_owned();
    backend
        .wait_for(Duration::from_secs(10), move |r| {
            r.iter().filter(|r| r.path == path).count() >= n
        })
        .await;
}

/// `s` URL-encoded for a query string.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
