//! A server's advised delay is a floor for the next reconnect: 1013 with
//! `retry_after_ms`, and a 503 handshake refusal with `Retry-After`; the
//! backoff's jitter is added above it, and a hint beyond `max_delay` is cut
//! to it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{scripted_server, wait_state};
use std::time::{Duration, Instant};
use tether_client::{Client, State};
use tether_test_util::STEP;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    time::timeout,
};

fn client(url: String) -> Client {
    // Without the floor, the first retry would come within 20 ms (min_delay);
    // with it, after the floor plus half of that (the jitter is fixed at 0.5).
    // max_delay is above every hint here (hints are cut to it).
    Client::builder(url)
        .min_delay(Duration::from_millis(20))
        .max_delay(Duration::from_secs(10))
        .jitter(|| 0.5)
        .build()
        .expect("client")
}

#[tokio::test]
async fn close_1013_advised_delay_is_waited_out() {
    let (addr, mut accepted) =
        scripted_server(|n| (n == 0).then(|| (1013, "overloaded retry_after_ms=1500".to_owned())))
            .await;
    let client = client(format!("ws://{addr}/ws"));
    let mut state = client.state();
    let first = timeout(STEP, accepted.recv())
        .await
        .expect("first")
        .expect("open");
    let waiting = wait_state(&mut state, "reconnecting", |s| {
        matches!(s, State::Reconnecting { .. })
    })
    .await;
    assert!(
        matches!(waiting, State::Reconnecting { attempt: 1, next_delay, code: 1013, .. } if next_delay == Duration::from_millis(1510)),
        "{waiting:?}"
    );
    let second = timeout(STEP, accepted.recv())
        .await
        .expect("second")
        .expect("open");
    assert!(
        second - first >= Duration::from_millis(1500),
        "reconnected after {:?}",
        second - first
    );
    wait_state(&mut state, "connected", |s| *s == State::Connected).await;
}

#[tokio::test]
async fn retry_after_on_503_is_waited_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = client(format!("ws://{addr}/ws"));
    let mut state = client.state();
    let (mut tcp, _) = timeout(STEP, listener.accept())
        .await
        .expect("first")
        .expect("accept");
    let mut buf = [0u8; 2048];
    let _ = tcp.read(&mut buf).await;
    let refused_at = Instant::now();
    let body = "connection limit reached; retry in 1 s\n";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(answer.as_bytes()).await.expect("write");
    drop(tcp);
    let waiting = wait_state(&mut state, "reconnecting", |s| {
        matches!(s, State::Reconnecting { .. })
    })
    .await;
    assert!(
        matches!(waiting, State::Reconnecting { next_delay, .. } if next_delay == Duration::from_millis(1010)),
        "{waiting:?}"
    );
    let (_tcp, _) = timeout(STEP, listener.accept())
        .await
        .expect("second")
        .expect("accept");
    assert!(refused_at.elapsed() >= Duration::from_millis(990));
}

#[tokio::test]
async fn a_hint_beyond_max_delay_is_cut_to_it() {
    let (addr, mut accepted) = scripted_server(|n| {
        (n == 0).then(|| {
            (
                1013,
                "overloaded retry_after_ms=99999999999999999999".to_owned(),
            )
        })
    })
    .await;
    // The jitter near its top: floor plus jitter is cut to max_delay too.
    let client = Client::builder(format!("ws://{addr}/ws"))
        .min_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(300))
        .jitter(|| 0.999)
        .build()
        .expect("client");
    let mut state = client.state();
    let waiting = wait_state(&mut state, "reconnecting", |s| {
        matches!(s, State::Reconnecting { .. })
    })
    .await;
    assert!(
        matches!(
            waiting,
            State::Reconnecting { attempt: 1, next_delay, .. } if next_delay == Duration::from_millis(300)
        ),
        "{waiting:?}"
    );
    for _ in 0..2 {
        timeout(STEP, accepted.recv())
            .await
            .expect("reconnected after max_delay")
            .expect("open");
    }
}
