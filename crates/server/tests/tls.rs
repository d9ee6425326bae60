//! wss:// and https:// from a certificate and key file (a self-signed
//! certificate made by the test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tether_test_util::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{
    rustls::{self, pki_types::ServerName, RootCertStore},
    TlsConnector,
};
use tokio_websockets::{ClientBuilder, Message};

struct Cert {
    der: rustls::pki_types::CertificateDer<'static>,
    cert_path: String,
    key_path: String,
}

fn self_signed() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tether-tls-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, ck.cert.pem()).unwrap();
    std::fs::write(&key_path, ck.key_pair.serialize_pem()).unwrap();
    Cert {
        der: ck.cert.der().clone(),
        cert_path: cert_path.to_string_lossy().into_owned(),
        key_path: key_path.to_string_lossy().into_owned(),
    }
}

fn connector(cert: &Cert) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn wss_connection_with_a_test_certificate() {
    let cert = self_signed();
    let server =
        TestServer::start(&[("tls-cert", &cert.cert_path), ("tls-key", &cert.key_path)]).await;
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let tls = connector(&cert)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the server's certificate");
    let uri: http::Uri = format!("wss://localhost:{}/ws", server.addr.port())
        .parse()
        .unwrap();
    let (mut ws, _) = ClientBuilder::from_uri(uri)
        .connect_on(tls)
        .await
        .expect("upgrade over TLS");
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(welcome.as_text().unwrap().contains("\"welcome\""));
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    let pong = ws.next().await.unwrap().unwrap();
    assert_eq!(pong.as_text(), Some(r#"{"type":"pong"}"#));

    // https on the same listener.
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector(&cert)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    let _ = tls.read_to_string(&mut body).await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
}

#[tokio::test]
async fn plain_tcp_to_a_tls_listener_is_refused_without_hurting_it() {
    let cert = self_signed();
    let server =
        TestServer::start(&[("tls-cert", &cert.cert_path), ("tls-key", &cert.key_path)]).await;
    let plain = tether_test_util::http::request(server.addr, "GET", "/healthz", &[], "").await;
    assert_ne!(plain.status, 200);
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert!(connector(&cert)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .is_ok());
}

#[tokio::test]
async fn missing_key_file_is_a_clear_start_error() {
    let config = tether_test_util::test_config(&[
        ("tls-cert", "/nonexistent/cert.pem"),
        ("tls-key", "/nonexistent/key.pem"),
    ]);
    let err = tether_server::Server::bind(config)
        .await
        .err()
        .expect("refuses to start");
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}
