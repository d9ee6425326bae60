//! wss:// and https:// from a certificate and key file (a self-signed
//! certificate made by the test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tether_test_util::{tls::TestCert, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{
    rustls::{self, pki_types::ServerName, RootCertStore},
    TlsConnector,
};
use tokio_websockets::{ClientBuilder, Message};

fn connector(cert: &TestCert) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert.der.clone().into()).unwrap();
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
    let cert = TestCert::self_signed(&["localhost"]);
    let server = TestServer::start_tls(&cert).await;
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
    let cert = TestCert::self_signed(&["localhost"]);
    let server = TestServer::start_tls(&cert).await;
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
