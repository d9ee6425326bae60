//! Presence through the client (docs/presence.md, docs/client.md
//! "Presence"): `presence()` lists who is subscribed, `presence_stats()`
//! counts clients and distinct users, `Event::Join`/`Event::Leave` arrive
//! in their place among the publications; a request made while
//! disconnected is answered after the reconnect, and what happened while
//! away is not replayed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod common;

use common::{next_event, wait_state};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};
use tether_client::{Client, Error, ErrorCode, Event, State, Subscription};
use tether_server::{config, Config};
use tether_test_util::{
    proxy::{Cut, Proxy},
    TestServer, STEP,
};
use tokio::time::timeout;

const SECRET: &str = "client-presence-test-secret";
const CHANNEL: &str = "chat:1";

/// The join/leave rule docs/presence.md shows (its second toml block).
fn rules() -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/presence.md"
    ))
    .unwrap();
    let block = doc
        .split("```toml\n")
        .nth(2)
        .expect("a second toml block in docs/presence.md");
    let rules = block[..block.find("```").unwrap()].to_owned();
    assert!(rules.contains("join_leave = true"), "{rules}");
    rules
}

fn config() -> Config {
    static FILES: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!("tether-client-presence-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.toml", FILES.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&file, rules()).unwrap();
    let flags: Vec<(String, String)> = [("listen", "127.0.0.1:0"), ("jwt-secret", SECRET)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config::load(Some(&file), |_| None, &flags).unwrap()
}

fn token(user: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"sub": user, "info": {"name": user}, "publish": ["chat:*"], "exp": exp});
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

fn client(url: &str, user: &str) -> Client {
    Client::builder(url)
        .token(token(user))
        .min_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(200))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// The user and `info` name of a join or leave, checked to be `user`'s;
/// returns its client id.
fn member(event: &Event, kind: &str, user: &str) -> String {
    let (client, who, info) = match (kind, event) {
        ("join", Event::Join { client, user, info }) => (client, user, info),
        ("leave", Event::Leave { client, user, info }) => (client, user, info),
        _ => panic!("expected a {kind} of {user}, got {event:?}"),
    };
    assert_eq!(who.as_deref(), Some(user), "{event:?}");
    let info = info.as_ref().map(|i| i.get());
    assert_eq!(info, Some(json!({"name": user}).to_string().as_str()));
    client.clone()
}

/// Subscribes `client` to the channel and reads its `Subscribed` and its
/// own join; returns the subscription and the client id the server gave it.
async fn join(client: &Client, user: &str) -> (Subscription, String) {
    let mut sub = client.subscribe(CHANNEL).await.expect("subscribe");
    let first = next_event(&mut sub).await;
    assert!(matches!(first, Event::Subscribed { .. }), "{first:?}");
    let id = member(&next_event(&mut sub).await, "join", user);
    (sub, id)
}

/// Checks that `entries` are exactly the clients `expected` and listed
/// oldest join first (to the millisecond; the server breaks ties by id).
fn assert_listed(entries: &[tether_client::PresenceEntry], expected: &[&String]) {
    let mut got: Vec<&str> = entries.iter().map(|e| e.client.as_str()).collect();
    got.sort_unstable();
    let mut want: Vec<&str> = expected.iter().map(|c| c.as_str()).collect();
    want.sort_unstable();
    assert_eq!(got, want, "{entries:?}");
    let order: Vec<_> = entries
        .iter()
        .map(|e| (e.joined_at_ms, &e.client))
        .collect();
    assert!(order.is_sorted(), "not oldest join first: {entries:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_lists_the_subscribers_and_stats_count_users() {
    let server = TestServer::start_with(config()).await;
    let url = server.ws_url("/ws");
    let (ann, bob, ann2) = (
        client(&url, "ann"),
        client(&url, "bob"),
        client(&url, "ann"),
    );
    let (mut ann_sub, ann_id) = join(&ann, "ann").await;
    let (bob_sub, bob_id) = join(&bob, "bob").await;
    let (_ann2_sub, ann2_id) = join(&ann2, "ann").await;

    // Oldest join first, with each one's user and info.
    let listed = ann_sub.presence().await.expect("presence");
    assert_listed(&listed, &[&ann_id, &bob_id, &ann2_id]);
    for entry in &listed {
        let user = if entry.client == bob_id { "bob" } else { "ann" };
        assert_eq!(entry.user.as_deref(), Some(user), "{entry:?}");
        let info = entry.info.as_ref().map(|i| i.get());
        assert_eq!(info, Some(json!({"name": user}).to_string().as_str()));
    }
    // Client::presence answers the same for a subscribed channel.
    assert_eq!(bob.presence(CHANNEL).await.expect("presence"), listed);

    // Three clients, two users: ann's two connections are one user.
    let stats = bob_sub.presence_stats().await.expect("stats");
    assert_eq!((stats.clients, stats.users), (3, 2));
    let stats = ann.presence_stats(CHANNEL).await.expect("stats");
    assert_eq!((stats.clients, stats.users), (3, 2));

    // bob leaves: once ann has seen his leave, he is no longer listed.
    assert_eq!(
        member(&next_event(&mut ann_sub).await, "join", "bob"),
        bob_id
    );
    assert_eq!(
        member(&next_event(&mut ann_sub).await, "join", "ann"),
        ann2_id
    );
    bob.close().await;
    assert_eq!(
        member(&next_event(&mut ann_sub).await, "leave", "bob"),
        bob_id
    );
    let listed = ann_sub.presence().await.expect("presence");
    assert_listed(&listed, &[&ann_id, &ann2_id]);
    let stats = ann_sub.presence_stats().await.expect("stats");
    assert_eq!((stats.clients, stats.users), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_arrive_in_their_place_among_publications() {
    let server = TestServer::start_with(config()).await;
    let url = server.ws_url("/ws");
    let bob = client(&url, "bob");
    let (mut bob_sub, bob_id) = join(&bob, "bob").await;

    // ann subscribes and publishes at once, without waiting for her
    // `subscribed`: bob sees her join before her publication.
    let ann = client(&url, "ann");
    let mut ann_sub = ann.subscribe(CHANNEL).await.expect("subscribe");
    let offset = ann.publish(CHANNEL, json!("hi")).await.expect("ack");
    let ann_id = member(&next_event(&mut bob_sub).await, "join", "ann");
    assert_ne!(ann_id, bob_id);
    match next_event(&mut bob_sub).await {
        Event::Publication(p) => {
            assert_eq!((p.offset, p.data.get()), (offset, r#""hi""#));
        }
        other => panic!("expected ann's publication, got {other:?}"),
    }
    // ann herself: subscribed, her own join, then her publication.
    let first = next_event(&mut ann_sub).await;
    assert!(matches!(first, Event::Subscribed { .. }), "{first:?}");
    assert_eq!(
        member(&next_event(&mut ann_sub).await, "join", "ann"),
        ann_id
    );
    let third = next_event(&mut ann_sub).await;
    assert!(
        matches!(&third, Event::Publication(p) if p.offset == offset),
        "{third:?}"
    );

    // ann publishes and disconnects: bob gets the publication, then her leave.
    ann.publish(CHANNEL, json!("bye")).await.expect("ack");
    ann.close().await;
    let fourth = next_event(&mut bob_sub).await;
    assert!(
        matches!(&fourth, Event::Publication(p) if p.data.get() == r#""bye""#),
        "{fourth:?}"
    );
    assert_eq!(
        member(&next_event(&mut bob_sub).await, "leave", "ann"),
        ann_id
    );
    // ann's stream ended with her client; no leave of herself came first.
    let rest = timeout(STEP, async {
        let mut rest = Vec::new();
        while let Some(event) = ann_sub.next_event().await {
            rest.push(event);
        }
        rest
    })
    .await
    .expect("ann's stream ends");
    assert!(
        rest.iter().all(|e| !matches!(e, Event::Leave { .. })),
        "{rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_refusals_are_server_errors() {
    let server = TestServer::start_with(config()).await;
    let ann = client(&server.ws_url("/ws"), "ann");
    // "news" has no rule: presence is not enabled there.
    let mut news = ann.subscribe("news").await.expect("subscribe");
    let first = next_event(&mut news).await;
    assert!(matches!(first, Event::Subscribed { .. }), "{first:?}");
    match news.presence().await {
        Err(Error::Server {
            code: ErrorCode::BadRequest,
            message,
        }) => assert!(message.contains("presence is not enabled"), "{message}"),
        other => panic!("expected bad_request, got {other:?}"),
    }
    assert!(matches!(
        news.presence_stats().await,
        Err(Error::Server {
            code: ErrorCode::BadRequest,
            ..
        })
    ));
    // A presence channel this client is not subscribed to, and no
    // `presence` claim in its token: forbidden.
    assert!(matches!(
        ann.presence("chat:2").await,
        Err(Error::Server {
            code: ErrorCode::Forbidden,
            ..
        })
    ));
    // An invalid name is refused before anything is sent.
    assert!(matches!(
        ann.presence("").await,
        Err(Error::InvalidChannel(_))
    ));
    // After close, requests fail with Closed.
    ann.close().await;
    assert_eq!(news.presence().await, Err(Error::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_asked_while_disconnected_is_answered_after_the_reconnect() {
    let server = TestServer::start_with(config()).await;
    let url = server.ws_url("/ws");
    let ann = client(&url, "ann");
    let (mut ann_sub, ann_id) = join(&ann, "ann").await;

    let proxy = Proxy::start(server.addr).await;
    let bob = client(&proxy.ws_url("/ws"), "bob");
    let (mut bob_sub, bob_first) = join(&bob, "bob").await;
    assert_eq!(
        member(&next_event(&mut ann_sub).await, "join", "bob"),
        bob_first
    );

    // Cut bob off and hold his reconnect in its handshake.
    let mut state = bob.state();
    proxy.pause(true);
    proxy.cut(Cut::Reset);
    proxy.wait_accepted(2).await;
    wait_state(&mut state, "reconnecting", |s| {
        matches!(s, State::Reconnecting { .. })
    })
    .await;
    assert_eq!(
        member(&next_event(&mut ann_sub).await, "leave", "bob"),
        bob_first
    );
    // cat joins while bob is away.
    let cat = client(&url, "cat");
    let (_cat_sub, cat_id) = join(&cat, "cat").await;
    assert_eq!(
        member(&next_event(&mut ann_sub).await, "join", "cat"),
        cat_id
    );

    let asked = tokio::spawn({
        let bob = bob.clone();
        async move { bob.presence(CHANNEL).await }
    });
    proxy.pause(false);

    // bob is back: his subscription is restored and he joins anew; cat's
    // join, which happened while he was away, is not replayed.
    let first = next_event(&mut bob_sub).await;
    assert!(
        matches!(
            first,
            Event::Subscribed {
                recovered: true,
                ..
            }
        ),
        "{first:?}"
    );
    let bob_second = member(&next_event(&mut bob_sub).await, "join", "bob");
    assert_ne!(bob_second, bob_first);
    let listed = timeout(STEP, asked)
        .await
        .expect("answered after the reconnect")
        .expect("task")
        .expect("presence");
    assert_listed(&listed, &[&ann_id, &cat_id, &bob_second]);

    let offset = cat.publish(CHANNEL, json!("after")).await.expect("ack");
    let next = next_event(&mut bob_sub).await;
    assert!(
        matches!(&next, Event::Publication(p) if p.offset == offset),
        "expected cat's publication, not a replayed join: {next:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_connection_died_is_asked_again() {
    use common::{fake_server, recv_type, send_text, WELCOME};
    let addr = fake_server(|n, mut ws| async move {
        send_text(&mut ws, WELCOME).await;
        let asked = recv_type(&mut ws, "presence").await.expect("a presence request");
        assert_eq!(asked["channel"], CHANNEL, "{asked}");
        if n == 0 {
            return; // dies before answering
        }
        let id = &asked["id"];
        // An answer of the other kind is no answer to it.
        let stats = json!({"type": "presence_stats", "id": id, "channel": CHANNEL, "clients": 9, "users": 9});
        send_text(&mut ws, &stats.to_string()).await;
        let list = json!({"type": "presence", "id": id, "channel": CHANNEL, "clients": [
            {"client": "c-1", "user": null, "joined_at_ms": 5}]});
        send_text(&mut ws, &list.to_string()).await;
        while recv_type(&mut ws, "never").await.is_some() {}
    })
    .await;
    let client = common::fast_client(&format!("ws://{addr}/ws"));
    let listed = timeout(STEP, client.presence(CHANNEL))
        .await
        .expect("answered on the second connection")
        .expect("presence");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].client.as_str(), listed[0].user.as_deref()),
        ("c-1", None)
    );
    assert!(listed[0].info.is_none());
}
