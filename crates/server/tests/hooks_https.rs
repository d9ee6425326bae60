//! `https://` hook URLs (docs/hooks.md): the backend's certificate is
//! verified against the CA bundle `SSL_CERT_FILE` names (the system's
//! otherwise). A backend whose certificate that bundle does not vouch for
//! cannot be reached (1013 for the connect hook), and without a usable
//! bundle an `https` hook is refused at start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hooks_support/mod.rs"]
mod hooks_support;

use serde_json::json;
use tether_test_util::{
    backend::{Backend, Reply},
    process::{tether_bin, ServerProcess},
    tls::TestCert,
    ws::{Ended, WsClient},
    STEP,
};

#[tokio::test]
async fn an_https_backend_is_called_when_its_ca_is_trusted() {
    let cert = TestCert::self_signed(&["127.0.0.1"]);
    let backend = Backend::start_tls(&cert).await;
    backend.respond(|_| Reply::Json(200, json!({"user": "ann"})));
    let url = backend.url("/connect");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let args = [
        "--hook-connect",
        url.as_str(),
        "--hook-secret",
        hooks_support::SECRET,
    ];
    let trusted = cert.cert_path.clone();
    let server = ServerProcess::start_with(&args, |cmd| {
        cmd.env("SSL_CERT_FILE", &trusted);
    })
    .await;
    let (_ws, welcome) = WsClient::tether(&format!("ws://{}/ws", server.addr)).await;
    assert_eq!(welcome["type"], "welcome");
    let seen = backend.received_at("/connect");
    assert_eq!(seen.len(), 1);
    hooks_support::assert_signed(&seen[0]);

    // A bundle that does not vouch for the backend's certificate.
    let other = TestCert::self_signed(&["127.0.0.1"]);
    let untrusted = other.cert_path.clone();
    let server = ServerProcess::start_with(&args, |cmd| {
        cmd.env("SSL_CERT_FILE", &untrusted);
    })
    .await;
    let mut ws = WsClient::connect(&format!("ws://{}/ws", server.addr)).await;
    match ws.ended(STEP).await {
        Ended::Closed(1013, reason) => {
            assert!(reason.contains("could not be reached"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        backend.received_at("/connect").len(),
        1,
        "no request got through"
    );
}

#[tokio::test]
async fn an_https_hook_without_a_ca_bundle_is_refused_at_start() {
    let out = tokio::process::Command::new(tether_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--hook-rpc",
            "https://backend.example/rpc",
            "--hook-secret",
            "s",
        ])
        .env("SSL_CERT_FILE", "/nonexistent/ca.pem")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "hooks.rpc https://backend.example/rpc: https cannot be used: cannot read the CA \
             bundle /nonexistent/ca.pem"
        ),
        "{err}"
    );
    // An http hook needs no bundle.
    let out = tokio::process::Command::new(tether_bin())
        .args([
            "serve",
            "--hook-rpc",
            "http://backend.example/rpc",
            "--hook-secret",
            "s",
            "--print-config",
        ])
        .env("SSL_CERT_FILE", "/nonexistent/ca.pem")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
