//! The node registry's scripts against a real `redis-server`: exactly one
//! of many concurrent claimers gets a lapsed node's sessions; a node that
//! was claimed learns it; a new life of a node id takes what the previous
//! one left; a node Redis forgot writes itself again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::nodes_scripts::{NodeKeys, BEAT_SCRIPT, CLAIM_SCRIPT, LEAVE_SCRIPT};
use redis::aio::MultiplexedConnection;
use tether_test_util::redis::RedisServer;

const KEEP_MS: u64 = 60_000;

async fn conn(redis: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// One beat of node `id` (incarnation `inc`) in `mode`, writing `sessions`.
async fn beat(
    c: &mut MultiplexedConnection,
    id: &str,
    inc: &str,
    ttl_ms: u64,
    mode: &str,
    sessions: &[(&str, &str)],
) -> (u8, Vec<String>) {
    let keys = NodeKeys::new("t", id);
    let mut invocation = BEAT_SCRIPT.prepare_invoke();
    invocation
        .key(&keys.nodes)
        .key(&keys.alive)
        .key(&keys.sessions)
        .key(&keys.lost)
        .arg(id)
        .arg(inc)
        .arg(ttl_ms)
        .arg(mode)
        .arg(KEEP_MS);
    for (client, entry) in sessions {
        invocation.arg(*client).arg(*entry);
    }
    invocation.invoke_async(c).await.unwrap()
}

async fn claim(c: &mut MultiplexedConnection, id: &str) -> Option<Vec<String>> {
    let keys = NodeKeys::new("t", id);
    CLAIM_SCRIPT
        .key(&keys.nodes)
        .key(&keys.alive)
        .key(&keys.sessions)
        .key(&keys.lost)
        .arg(id)
        .arg(KEEP_MS)
        .invoke_async(c)
        .await
        .unwrap()
}

async fn lapse(c: &mut MultiplexedConnection, id: &str) {
    let keys = NodeKeys::new("t", id);
    let _: () = redis::cmd("DEL")
        .arg(&keys.alive)
        .query_async(c)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_many_concurrent_claimers_exactly_one_gets_the_sessions() {
    let redis = RedisServer::start().await;
    let mut c = conn(&redis).await;
    for round in 0..20 {
        let id = format!("dead-{round}");
        let sessions: Vec<(String, String)> = (0..50)
            .map(|i| (format!("{id}-c{i}"), format!(r#"{{"u":"u{i}","t":1}}"#)))
            .collect();
        let pairs: Vec<(&str, &str)> = sessions
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(beat(&mut c, &id, "i1", 60_000, "start", &pairs).await.0, 0);
        assert_eq!(claim(&mut c, &id).await, None, "alive: not claimed");
        lapse(&mut c, &id).await;
        // Each claimer on a connection of its own, all at once.
        let mut claimers = Vec::new();
        for _ in 0..8 {
            let mut own = conn(&redis).await;
            let id = id.clone();
            claimers.push(tokio::spawn(async move { claim(&mut own, &id).await }));
        }
        let mut winners = Vec::new();
        for claimer in claimers {
            if let Some(s) = claimer.await.unwrap() {
                winners.push(s);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: one claimer wins");
        assert_eq!(winners[0].len(), 100, "every session, with its entry");
        assert_eq!(claim(&mut c, &id).await, None, "claimed once only");
    }
}

#[tokio::test]
async fn a_claimed_node_learns_it_and_a_node_redis_forgot_writes_itself_again() {
    let redis = RedisServer::start().await;
    let mut c = conn(&redis).await;
    assert_eq!(
        beat(&mut c, "n", "i1", 60_000, "start", &[("a", "{}")])
            .await
            .0,
        0
    );
    assert_eq!(
        beat(&mut c, "n", "i1", 60_000, "beat", &[("b", "{}")])
            .await
            .0,
        0
    );
    // Cut off past its TTL: its key lapsed, but nobody claimed it yet.
    lapse(&mut c, "n").await;
    assert_eq!(
        beat(&mut c, "n", "i1", 60_000, "beat", &[]).await.0,
        0,
        "still ours"
    );
    lapse(&mut c, "n").await;
    let claimed = claim(&mut c, "n").await.unwrap();
    assert_eq!(claimed.len(), 4, "a and b");
    assert_eq!(
        beat(&mut c, "n", "i1", 60_000, "beat", &[]).await.0,
        2,
        "told it was claimed"
    );
    assert_eq!(beat(&mut c, "n", "i1", 60_000, "rebuild", &[]).await.0, 2);
    assert_eq!(
        beat(&mut c, "n", "i1", 60_000, "accept", &[("c", "{}")])
            .await
            .0,
        0
    );
    assert_eq!(
        beat(&mut c, "n", "i1", 60_000, "beat", &[]).await.0,
        0,
        "registered again"
    );

    // Redis restarted empty: the node is unknown there, and rebuilds.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    assert_eq!(beat(&mut c, "n", "i1", 60_000, "beat", &[]).await.0, 1);
    assert_eq!(
        beat(&mut c, "n", "i1", 60_000, "rebuild", &[("c", "{}")])
            .await
            .0,
        0
    );
    let keys = NodeKeys::new("t", "n");
    let held: Vec<String> = redis::cmd("HKEYS")
        .arg(&keys.sessions)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(held, ["c"]);
}

#[tokio::test]
async fn a_new_life_of_a_node_id_takes_what_the_previous_left_and_a_clean_exit_leaves_nothing() {
    let redis = RedisServer::start().await;
    let mut c = conn(&redis).await;
    beat(
        &mut c,
        "n",
        "old",
        60_000,
        "start",
        &[("a", r#"{"u":"x","t":5}"#)],
    )
    .await;
    let (status, previous) = beat(&mut c, "n", "new", 60_000, "start", &[("b", "{}")]).await;
    assert_eq!(status, 0);
    assert_eq!(
        previous,
        ["a", r#"{"u":"x","t":5}"#],
        "the old life's session, to announce lost"
    );
    let (_, again) = beat(&mut c, "n", "new", 60_000, "start", &[]).await;
    assert!(again.is_empty(), "the same life takes nothing");

    let keys = NodeKeys::new("t", "n");
    let leave = |c: &mut MultiplexedConnection| {
        let mut c = c.clone();
        let keys = NodeKeys::new("t", "n");
        async move {
            LEAVE_SCRIPT
                .key(&keys.nodes)
                .key(&keys.alive)
                .key(&keys.sessions)
                .arg("n")
                .arg("new")
                .invoke_async::<u8>(&mut c)
                .await
                .unwrap()
        }
    };
    beat(&mut c, "n", "new", 60_000, "beat", &[("b", "{}")]).await;
    assert_eq!(
        leave(&mut c).await,
        2,
        "b's disconnect is not acknowledged: left to a claimer"
    );
    assert_eq!(claim(&mut c, "n").await.unwrap(), ["b", "{}"]);
    beat(&mut c, "n", "new", 60_000, "accept", &[]).await;
    assert_eq!(leave(&mut c).await, 1);
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("t:*")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(left.iter().all(|k| k == &keys.lost), "{left:?}");
}
