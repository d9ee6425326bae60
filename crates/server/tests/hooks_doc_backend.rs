//! The Python backend in docs/hooks.md ("Signatures") runs as written
//! against a real node: it verifies every request's signature, lets in
//! the session cookie `s3cret` as ann with a server-side subscription,
//! refuses a connection without it, answers `rpc`, and refuses a request
//! whose signature does not verify. Skipped (with a note) without `python3`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::{path::Path, process::Stdio};
use tether_test_util::{
    eventually, http,
    ws::{Ended, WsClient},
    TestServer, STEP,
};

/// The first ```python block of docs/hooks.md.
fn python_block() -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/hooks.md"))
            .unwrap();
    let start = doc
        .find("```python\n")
        .expect("a ```python block in docs/hooks.md")
        + 10;
    let len = doc[start..].find("\n```").unwrap();
    doc[start..start + len + 1].to_owned()
}

#[tokio::test]
async fn the_python_backend_in_the_docs_verifies_and_answers() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("python3 not found: the docs' backend example is not run");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tether-hooks-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("backend.py");
    std::fs::write(&script, python_block()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = "doc-secret";
    let mut backend = tokio::process::Command::new("python3")
        .arg(&script)
        .env("TETHER_HOOK_SECRET", secret)
        .env("PORT", port.to_string())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let at = format!("127.0.0.1:{port}");
    eventually("the python backend listens", || async {
        tokio::net::TcpStream::connect(&at).await.is_ok()
    })
    .await;

    let (connect, rpc) = (format!("http://{at}/connect"), format!("http://{at}/rpc"));
    let server = TestServer::start(&[
        ("hook-connect", &connect),
        ("hook-rpc", &rpc),
        ("hook-secret", secret),
        ("hook-cookies", "session"),
    ])
    .await;
    let mut ws = WsClient::try_connect(&server.ws_url("/ws"), &[("Cookie", "session=s3cret")])
        .await
        .unwrap();
    assert_eq!(ws.recv().await["type"], "welcome");
    let announced = ws.recv().await;
    assert_eq!(announced["channel"], "user:ann", "{announced}");
    ws.send(json!({"type": "rpc", "id": 1, "method": "hello", "data": [1]}))
        .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "rpc", "id": 1, "result": {"method": "hello", "echo": [1]}})
    );
    let mut stranger = WsClient::connect(&server.ws_url("/ws")).await;
    assert_eq!(
        stranger.ended(STEP).await,
        Ended::Closed(4001, "log in first".into())
    );

    // A forged request: the backend refuses it.
    let forged = http::request(
        at.parse().unwrap(),
        "POST",
        "/connect",
        &[
            ("Content-Type", "application/json"),
            ("Tether-Timestamp", "1765152000"),
            ("Tether-Signature", "v1=00"),
        ],
        r#"{"cookies":{"session":"s3cret"}}"#,
    )
    .await;
    assert_eq!(forged.status, 401, "{forged:?}");
    // And a node with another secret is refused on every connection.
    let wrong = TestServer::start(&[
        ("hook-connect", &connect),
        ("hook-secret", "not-the-secret"),
        ("hook-cookies", "session"),
    ])
    .await;
    let mut ws = WsClient::try_connect(&wrong.ws_url("/ws"), &[("Cookie", "session=s3cret")])
        .await
        .unwrap();
    assert_eq!(
        ws.ended(STEP).await,
        Ended::Closed(4001, "bad signature".into())
    );
    wrong.shutdown().await;
    server.shutdown().await;
    let _ = backend.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
