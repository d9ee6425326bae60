//! Closes are clean: a client's close frame on `/ws` is answered before the
//! TCP close (RFC 6455 §5.5.1), so it sees its code rather than 1006; a
//! message assembled from fragments past the limit gets 1009 like one
//! oversized frame; and `tether_closes_total` counts close frames that were
//! actually sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::SinkExt;
use std::time::Duration;
use tether_test_util::{
    attack::Bystander,
    http,
    ws::{Ended, WsClient},
    TestServer,
};
use tokio_websockets::{ClientBuilder, CloseCode, Config, Message};

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    let server = TestServer::start(&[]).await;
    let mut bystander = Bystander::join(server.addr).await;
    for path in ["/ws", "/echo"] {
        let mut c = WsClient::connect(&server.ws_url(path)).await;
        c.ws.send(Message::close(Some(CloseCode::NORMAL_CLOSURE), "bye"))
            .await
            .expect("close");
        assert_eq!(
            c.ended(Duration::from_secs(5)).await,
            Ended::Closed(1000, "".into()),
            "{path}: the server answers the close frame"
        );
    }
    bystander.still_served().await;
    // Answering a client's close is not a close the server initiated.
    assert_eq!(
        http::metric(server.addr, "tether_closes_total", &[("code", "1000")]).await,
        0.0
    );
}

#[tokio::test]
async fn an_oversized_message_from_fragments_gets_1009() {
    let server = TestServer::start(&[("max-message-bytes", "1024")]).await;
    let mut bystander = Bystander::join(server.addr).await;
    for path in ["/ws", "/echo"] {
        // Fragments of 512 bytes each, 4 KiB in all: no single frame is too big.
        let uri: ::http::Uri = server.ws_url(path).parse().unwrap();
        let (mut ws, _) = ClientBuilder::from_uri(uri)
            .config(Config::default().frame_size(512))
            .connect()
            .await
            .expect("connect");
        let _ = ws.send(Message::text("x".repeat(4096))).await;
        let mut c = WsClient { ws };
        match c.ended(Duration::from_secs(5)).await {
            Ended::Closed(code, _) => assert_eq!(code, 1009, "{path}"),
            Ended::Abnormal => panic!("{path}: no close frame for an oversized fragmented message"),
        }
        bystander.still_served().await;
    }
    assert_eq!(
        http::metric(server.addr, "tether_closes_total", &[("code", "1009")]).await,
        2.0
    );
}
