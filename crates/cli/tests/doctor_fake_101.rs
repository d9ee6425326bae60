//! A hop that answers 101 without computing the accept key from our
//! Sec-WebSocket-Key (a faked or rewritten handshake): named `bad_accept`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

#[tokio::test]
async fn a_101_with_a_wrong_accept_key_is_named() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                .await;
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
    });
    let (code, report) = doctor(&[&format!("ws://{addr}/ws"), "--timeout", "3s"]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_step(&report, "upgrade", "fail", Some("bad_accept"));
}
