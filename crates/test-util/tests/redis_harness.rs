//! The Redis harness the broker tests stand on: a snapshot survives `kill`
//! and `restart` while writes after it do not, `restart_empty` comes back
//! with nothing, and `kill_pubsub_clients` cuts a subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::process::{Child, Command, Stdio};
use tether_test_util::{
    eventually,
    redis::{RedisServer, REDIS_CLI},
};

#[tokio::test]
async fn restart_keeps_the_snapshot_and_restart_empty_drops_it() {
    let mut redis = RedisServer::start().await;
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port));
    assert_eq!(redis.cli(&["SET", "saved", "1"]), "OK");
    assert_eq!(redis.cli(&["GET", "saved"]), "1");
    redis.save();
    assert_eq!(redis.cli(&["SET", "later", "2"]), "OK");
    assert_eq!(redis.keys("*"), ["later", "saved"]);
    let first = redis.run_id();

    redis.kill();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
            .await
            .is_err(),
        "nothing listens after kill"
    );
    redis.restart().await;
    assert_ne!(redis.run_id(), first, "a new process on the same port");
    assert_eq!(redis.cli(&["GET", "saved"]), "1", "the snapshot was loaded");
    assert_eq!(
        redis.cli(&["GET", "later"]),
        "",
        "written after the snapshot"
    );

    redis.restart_empty().await;
    assert_eq!(redis.keys("*"), Vec::<String>::new());
    assert_eq!(redis.cli(&["DBSIZE"]), "0");
}

#[tokio::test]
async fn kill_pubsub_clients_cuts_a_subscriber() {
    let redis = RedisServer::start().await;
    let port = redis.port.to_string();
    let _subscriber = Reaped(
        Command::new(REDIS_CLI)
            .args(["-h", "127.0.0.1", "-p", &port, "SUBSCRIBE", "news"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-cli SUBSCRIBE"),
    );
    let subscribers = || {
        let out = redis.cli(&["PUBSUB", "NUMSUB", "news"]);
        // "news\n<count>"
        out.lines()
            .nth(1)
            .unwrap_or_default()
            .parse::<u64>()
            .unwrap()
    };
    eventually("the subscriber is registered", || {
        std::future::ready(subscribers() == 1)
    })
    .await;

    assert_eq!(redis.kill_pubsub_clients(), 1);
    assert_eq!(subscribers(), 0);
    assert_eq!(redis.kill_pubsub_clients(), 0, "nobody left to cut");
}

/// The subscriber this test spawned, killed by its pid even when an
/// assertion fails first.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
