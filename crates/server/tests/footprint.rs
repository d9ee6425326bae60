//! Guards the per-connection footprint that lets a node hold tens of
//! thousands of idle connections: the session task's inline state stays
//! small (request handling and the close path are boxed, allocated only
//! while they run). Measured 2040 bytes with rustc 1.95; the bound leaves
//! room for compiler changes but catches a large future creeping in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tether_test_util::TestServer;

#[tokio::test]
async fn an_idle_session_task_stays_small() {
    let server = TestServer::start(&[]).await;
    let node = server.node.clone();
    let (io, _peer) = tokio::io::duplex(64);
    let ws = tokio_websockets::ServerBuilder::new().serve(io);
    let permit = node.admission.admit("127.0.0.9".parse().unwrap()).unwrap();
    let session = tether_server::transport::websocket::run(
        node.clone(),
        ws,
        "127.0.0.9:1".parse().unwrap(),
        tether_server::auth::Grant::anonymous(),
        permit,
    );
    let size = std::mem::size_of_val(&session);
    assert!(size <= 3072, "session future grew to {size} bytes");
}
