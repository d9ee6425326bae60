//! The presence scripts against a real `redis-server`: entries, users,
//! expiry and cleaning, refresh, key TTLs, and each join and leave
//! announced exactly once in its place after the channel's offset.

use super::{
    link::server_info,
    presence_scripts::{
        invocation, presence_key, Common, APPLY_SCRIPT, READ_SCRIPT, REFRESH_SCRIPT, STATS_SCRIPT,
    },
    scripts::Keys,
};
use futures_util::StreamExt;
use redis::{aio::MultiplexedConnection, Script};
use std::time::Duration;
use tether_test_util::{eventually, redis::RedisServer};

struct Lab {
    _redis: RedisServer,
    client: redis::Client,
    conn: MultiplexedConnection,
    run_id: String,
}

impl Lab {
    async fn start() -> Self {
        let redis = RedisServer::start().await;
        let client = redis::Client::open(redis.url()).unwrap_or_else(|e| panic!("{e}"));
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (run_id, _) = server_info(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Lab {
            _redis: redis,
            client,
            conn,
            run_id,
        }
    }

    /// Calls `script` on `channel` with a presence TTL of `ttl_ms` and
    /// announcing, with `args` after the common ones.
    async fn call<T: redis::FromRedisValue>(
        &self,
        script: &'static Script,
        channel: &str,
        ttl_ms: u64,
        args: &[&str],
    ) -> T {
        let common = Common {
            prefix: "t",
            run_id: &self.run_id,
            empty_ttl_ms: 60_000,
            ttl_ms,
            announce: true,
        };
        let mut call = invocation(script, channel, &common);
        for a in args {
            call.arg(*a);
        }
        let mut c = self.conn.clone();
        call.invoke_async(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn stats(&self, channel: &str) -> (u64, u64) {
        self.call(&STATS_SCRIPT, channel, 1_000, &[]).await
    }

    async fn read(&self, channel: &str, max: &str) -> (u64, Vec<Option<String>>) {
        self.call(&READ_SCRIPT, channel, 1_000, &[max]).await
    }

    async fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let mut c = self.conn.clone();
        cmd.query_async(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A subscriber to `channel`'s topic: what the scripts announce.
    async fn listen(&self, channel: &str) -> Heard {
        let pubsub = self
            .client
            .get_async_pubsub()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (mut sink, stream) = pubsub.split();
        sink.subscribe(Keys::new("t", channel).topic)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Heard {
            _sink: sink,
            stream,
        }
    }
}

struct Heard {
    _sink: redis::aio::PubSubSink,
    stream: redis::aio::PubSubStream,
}

fn entry(client: &str, user: Option<&str>) -> String {
    serde_json::json!({"client": client, "user": user, "joined_at_ms": 1}).to_string()
}

/// The next announcement, without its epoch: `(after, kind, client)`.
async fn next(heard: &mut Heard) -> (u64, String, String) {
    let msg = tokio::time::timeout(Duration::from_secs(5), heard.stream.next())
        .await
        .unwrap_or_else(|_| panic!("no announcement"))
        .unwrap_or_else(|| panic!("pub/sub ended"));
    let payload: String = msg.get_payload().unwrap_or_else(|e| panic!("{e}"));
    let e = super::presence_scripts::parse_event(&payload)
        .unwrap_or_else(|| panic!("not an event: {payload}"));
    let entry: serde_json::Value = serde_json::from_str(e.entry).unwrap_or_default();
    let kind = if e.join { "J" } else { "L" };
    (
        e.after,
        kind.to_owned(),
        entry["client"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn nothing_more(heard: &mut Heard) {
    let more = tokio::time::timeout(Duration::from_millis(300), heard.stream.next()).await;
    assert!(more.is_err(), "one more announcement: {more:?}");
}

#[tokio::test]
async fn entries_users_and_announcements_stay_exact() {
    let lab = Lab::start().await;
    let mut heard = lab.listen("c").await;
    let (a, b, d) = (
        entry("a", Some("ann")),
        entry("b", Some("ann")),
        entry("d", None),
    );
    let applied: u8 = lab
        .call(&APPLY_SCRIPT, "c", 60_000, &["A", "a", &a, "A", "b", &b])
        .await;
    assert_eq!(applied, 0);
    // After three publications the next join is placed after offset 3.
    lab.cmd::<i64>(&["HSET", "t:{c}:m", "o", "3"]).await;
    lab.call::<u8>(&APPLY_SCRIPT, "c", 60_000, &["A", "d", &d])
        .await;
    assert_eq!(lab.stats("c").await, (3, 1), "anonymous d is no user");
    let (n, entries) = lab.read("c", "10").await;
    assert_eq!((n, entries.len()), (3, 3));
    assert_eq!(
        lab.read("c", "2").await,
        (3, vec![]),
        "more than asked: the count"
    );

    // Replacing an entry announces nothing and keeps the counts.
    lab.call::<u8>(
        &APPLY_SCRIPT,
        "c",
        60_000,
        &["A", "b", &entry("b", Some("bob"))],
    )
    .await;
    assert_eq!(lab.stats("c").await, (3, 2));
    // A remove, then a repeated remove that finds nothing.
    lab.call::<u8>(&APPLY_SCRIPT, "c", 60_000, &["R", "a", "", "R", "a", ""])
        .await;
    assert_eq!(lab.stats("c").await, (2, 1), "ann's last client left");

    // The meta hash the first join found missing got a fresh epoch (o 0).
    assert_eq!(next(&mut heard).await, (0, "J".into(), "a".into()));
    assert_eq!(next(&mut heard).await, (0, "J".into(), "b".into()));
    assert_eq!(next(&mut heard).await, (3, "J".into(), "d".into()));
    assert_eq!(next(&mut heard).await, (3, "L".into(), "a".into()));
    nothing_more(&mut heard).await;

    // Every presence key expires after twice the TTL.
    for suffix in ["pz", "ph", "pu"] {
        let ttl: i64 = lab.cmd(&["PTTL", &presence_key("t", "c", suffix)]).await;
        assert!((100_000..=120_000).contains(&ttl), "{suffix}: {ttl}");
    }
}

#[tokio::test]
async fn an_expired_entry_is_gone_at_once_and_its_leave_told_once() {
    let lab = Lab::start().await;
    let mut heard = lab.listen("x").await;
    let (a, b) = (entry("a", Some("ann")), entry("b", Some("bob")));
    // a lives 300 ms, b a minute.
    lab.call::<u8>(&APPLY_SCRIPT, "x", 300, &["A", "a", &a])
        .await;
    lab.call::<u8>(&APPLY_SCRIPT, "x", 60_000, &["A", "b", &b])
        .await;
    assert_eq!(next(&mut heard).await.2, "a");
    assert_eq!(next(&mut heard).await.2, "b");
    eventually("a's entry expired", || async {
        lab.stats("x").await == (1, 1)
    })
    .await;
    assert_eq!(next(&mut heard).await, (0, "L".into(), "a".into()));
    // Reads, refreshes and the owner's late remove find nothing more.
    lab.read("x", "10").await;
    let missing: Vec<String> = lab.call(&REFRESH_SCRIPT, "x", 60_000, &["b"]).await;
    assert!(missing.is_empty());
    lab.call::<u8>(&APPLY_SCRIPT, "x", 60_000, &["R", "a", ""])
        .await;
    nothing_more(&mut heard).await;
    let (n, entries) = lab.read("x", "10").await;
    assert_eq!(n, 1);
    assert!(entries[0].as_deref().unwrap_or_default().contains("\"b\""));
}

#[tokio::test]
async fn a_refresh_moves_expiry_and_names_what_is_missing_without_adding_it() {
    let lab = Lab::start().await;
    let a = entry("a", None);
    lab.call::<u8>(&APPLY_SCRIPT, "r", 1_000, &["A", "a", &a])
        .await;
    let before: f64 = lab.cmd(&["ZSCORE", "t:{r}:pz", "a"]).await;
    let missing: Vec<String> = lab.call(&REFRESH_SCRIPT, "r", 60_000, &["a", "gone"]).await;
    assert_eq!(missing, ["gone"]);
    let after: f64 = lab.cmd(&["ZSCORE", "t:{r}:pz", "a"]).await;
    assert!(after >= before + 50_000.0, "{before} -> {after}");
    assert_eq!(lab.stats("r").await, (1, 0), "a refresh adds nobody");
    // Redis restarted empty: everything is missing.
    lab.cmd::<()>(&["FLUSHALL"]).await;
    let missing: Vec<String> = lab.call(&REFRESH_SCRIPT, "r", 60_000, &["a"]).await;
    assert_eq!(missing, ["a"]);
}
