//! Unit tests of the memory broker: offsets, recovery, idempotency and
//! the caps on channels, history bytes and keys.

use super::*;
use std::time::Duration;

/// What was delivered: publications by offset, events by their frame and
/// the offset they came after.
#[derive(Default)]
struct Collect(Mutex<Vec<u64>>, Mutex<Vec<(String, u64)>>);
impl Delivery for Collect {
    fn deliver(&self, p: Arc<Publication>) -> crate::channel_log::Wakeup {
        self.0.lock().push(p.offset);
        crate::channel_log::Wakeup::none()
    }
    fn deliver_event(&self, _: &str, e: Event) -> crate::channel_log::Wakeup {
        let frame = String::from_utf8_lossy(&e.frame).into_owned();
        self.1.lock().push((frame, e.after));
        crate::channel_log::Wakeup::none()
    }
    fn reset(&self, _: &str) -> crate::channel_log::Wakeup {
        crate::channel_log::Wakeup::none()
    }
}

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).unwrap_or_else(|_| unreachable!())
}

fn broker(size: usize, ttl: Duration) -> (MemoryBroker, Arc<Collect>) {
    broker_with(
        HistoryConfig {
            size,
            ttl,
            meta_ttl: Duration::from_secs(3600),
            ..HistoryConfig::default()
        },
        1000,
    )
}

fn broker_with(cfg: HistoryConfig, max_channels: usize) -> (MemoryBroker, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    let b = MemoryBroker::new(cfg, max_channels, sink.clone(), Arc::new(Metrics::new()));
    (b, sink)
}

fn ok<T, E>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|_| unreachable!())
}

#[tokio::test]
async fn an_unused_subscription_leaves_nothing_and_keeps_its_epoch() {
    let (b, _) = broker(10, Duration::from_secs(60));
    ok(b.subscribe("quiet").await);
    let first = ok(b.recover("quiet", None, usize::MAX).await);
    ok(b.unsubscribe("quiet").await);
    assert_eq!(b.stream_count(), 0);
    assert_eq!(b.metrics.channel_streams.get(), 0);
    // Back later: same epoch at offset 0, so recovering from 0 is exact.
    ok(b.subscribe("quiet").await);
    let since = StreamPosition {
        epoch: first.epoch.clone(),
        offset: 0,
    };
    let again = ok(b.recover("quiet", Some(&since), usize::MAX).await);
    assert!(again.recovered);
    assert_eq!(again.epoch, first.epoch);
    // Recovering on a channel nobody holds creates nothing.
    ok(b.recover("ghost", Some(&since), usize::MAX).await);
    assert_eq!(b.stream_count(), 1);
}

#[tokio::test]
async fn forgetting_a_channel_with_publications_changes_every_new_epoch() {
    let (b, _) = broker(10, Duration::from_millis(1));
    ok(b.subscribe("a").await);
    let empty = ok(b.recover("a", None, usize::MAX).await).epoch;
    ok(b.unsubscribe("a").await);
    ok(b.publish("b", &raw("1"), None, true).await);
    std::thread::sleep(Duration::from_millis(5));
    // "b" has no history left and no subscriber: the cap may forget it.
    let mut cfg = b.cfg.clone();
    cfg.meta_ttl = Duration::ZERO;
    let (b2, _) = broker_with(cfg, 1000);
    ok(b2.publish("b", &raw("1"), None, true).await);
    let before = b2.empty_epoch();
    std::thread::sleep(Duration::from_millis(5));
    b2.sweep();
    assert_eq!(b2.stream_count(), 0);
    assert_ne!(
        b2.empty_epoch(),
        before,
        "a forgotten offset must change the epoch"
    );
    assert_ne!(empty, b2.empty_epoch());
}

#[tokio::test]
async fn channel_cap_forgets_idle_streams_then_refuses() {
    let cfg = HistoryConfig {
        ttl: Duration::from_millis(1),
        ..HistoryConfig::default()
    };
    let (b, _) = broker_with(cfg, 3);
    for c in ["a", "b", "c"] {
        ok(b.publish(c, &raw("1"), None, true).await);
    }
    std::thread::sleep(Duration::from_millis(5));
    // Their history expired: room is made by forgetting them.
    ok(b.publish("d", &raw("1"), None, true).await);
    assert!(b.stream_count() <= 3);
    // Subscribed channels cannot be forgotten: at the cap, refuse.
    let (b, _) = broker_with(HistoryConfig::default(), 2);
    ok(b.subscribe("x").await);
    ok(b.subscribe("y").await);
    assert!(matches!(
        b.subscribe("z").await,
        Err(BrokerError::OverCapacity(_))
    ));
    assert!(matches!(
        b.publish("z", &raw("1"), None, true).await,
        Err(BrokerError::OverCapacity(_))
    ));
    assert_eq!(b.stream_count(), 2);
    // Existing channels keep working.
    assert_eq!(ok(b.publish("x", &raw("1"), None, true).await).offset, 1);
}

#[tokio::test]
async fn history_bytes_are_capped_per_channel_and_in_all() {
    let cfg = HistoryConfig {
        size: 1000,
        max_channel_bytes: 2_000,
        max_bytes: 3_000,
        ..HistoryConfig::default()
    };
    let (b, _) = broker_with(cfg, 100);
    let data = raw(&format!("\"{}\"", "x".repeat(300)));
    for _ in 0..20 {
        ok(b.publish("a", &data, None, true).await);
    }
    let held = b.metrics.history_bytes.get();
    assert!(held > 0 && held <= 2_000, "per-channel cap: {held}");
    // A second channel takes the rest of the node's budget, making room
    // in its own history as it goes.
    for _ in 0..20 {
        ok(b.publish("b", &data, None, true).await);
        assert!(b.metrics.history_bytes.get() <= 3_000);
    }
    // A third channel has no history of its own to give: refused, and
    // the refused publish consumed no offset and left no stream.
    let streams = b.stream_count();
    assert!(matches!(
        b.publish("c", &data, None, true).await,
        Err(BrokerError::OverCapacity(_))
    ));
    assert_eq!(b.stream_count(), streams);
    assert_eq!(ok(b.recover("c", None, usize::MAX).await).offset, 0);
    // The channels with history keep publishing.
    let before = ok(b.recover("a", None, usize::MAX).await).offset;
    assert_eq!(
        ok(b.publish("a", &data, None, true).await).offset,
        before + 1
    );
}

#[tokio::test]
async fn idempotency_keys_are_capped_and_evictions_counted() {
    let cfg = HistoryConfig {
        idempotency_max_keys: 3,
        ..HistoryConfig::default()
    };
    let (b, _) = broker_with(cfg, 100);
    for k in ["k1", "k2", "k3"] {
        ok(b.publish("a", &raw("1"), Some(k), true).await);
    }
    // A fourth key on the same channel forces out its oldest.
    ok(b.publish("a", &raw("1"), Some("k4"), true).await);
    assert_eq!(b.metrics.idempotency_evictions.get(), 1);
    assert_eq!(b.metrics.idempotency_keys.get(), 3);
    // A channel with no keys of its own cannot take another's: refused.
    assert!(matches!(
        b.publish("b", &raw("1"), Some("x"), true).await,
        Err(BrokerError::OverCapacity(_))
    ));
    // Keys still inside the window and the cap are honoured.
    assert!(ok(b.publish("a", &raw("1"), Some("k4"), true).await).duplicate);
}

#[tokio::test]
async fn offsets_start_at_one_without_gaps_and_are_delivered() {
    let (b, sink) = broker(10, Duration::from_secs(60));
    for i in 1..=5 {
        let out = b
            .publish("c", &raw("1"), None, true)
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(out.offset, i);
    }
    assert_eq!(*sink.0.lock(), vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn recovery_returns_exactly_the_missed_publications() {
    let (b, _) = broker(10, Duration::from_secs(60));
    let pos = b
        .recover("c", None, usize::MAX)
        .await
        .unwrap_or_else(|_| unreachable!());
    for _ in 0..4 {
        b.publish("c", &raw("{\"a\":1}"), None, true)
            .await
            .unwrap_or_else(|_| unreachable!());
    }
    let since = StreamPosition {
        epoch: pos.epoch.clone(),
        offset: 2,
    };
    let r = b
        .recover("c", Some(&since), usize::MAX)
        .await
        .unwrap_or_else(|_| unreachable!());
    assert!(r.recovered);
    assert_eq!(
        r.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(r.publications[0].data(), "{\"a\":1}");
    let wrong_epoch = StreamPosition {
        epoch: "other".into(),
        offset: 2,
    };
    assert!(
        !b.recover("c", Some(&wrong_epoch), usize::MAX)
            .await
            .unwrap_or_else(|_| unreachable!())
            .recovered
    );
}

#[tokio::test]
async fn recovery_fails_when_history_was_trimmed() {
    let (b, _) = broker(2, Duration::from_secs(60));
    let epoch = b
        .recover("c", None, usize::MAX)
        .await
        .unwrap_or_else(|_| unreachable!())
        .epoch;
    for _ in 0..5 {
        b.publish("c", &raw("1"), None, true)
            .await
            .unwrap_or_else(|_| unreachable!());
    }
    let lost = StreamPosition {
        epoch: epoch.clone(),
        offset: 1,
    };
    assert!(
        !b.recover("c", Some(&lost), usize::MAX)
            .await
            .unwrap_or_else(|_| unreachable!())
            .recovered
    );
    let fine = StreamPosition { epoch, offset: 3 };
    let r = b
        .recover("c", Some(&fine), usize::MAX)
        .await
        .unwrap_or_else(|_| unreachable!());
    assert!(r.recovered);
    assert_eq!(r.publications.len(), 2);
}

#[tokio::test]
async fn idempotency_key_stores_once() {
    let (b, sink) = broker(10, Duration::from_secs(60));
    let a = b
        .publish("c", &raw("1"), Some("k"), true)
        .await
        .unwrap_or_else(|_| unreachable!());
    let again = b
        .publish("c", &raw("1"), Some("k"), true)
        .await
        .unwrap_or_else(|_| unreachable!());
    assert_eq!(a.offset, again.offset);
    assert!(again.duplicate);
    assert_eq!(sink.0.lock().len(), 1);
}

#[tokio::test]
async fn a_publish_that_may_not_create_leaves_new_channels_alone() {
    let (b, _) = broker(10, Duration::from_secs(60));
    assert!(matches!(
        b.publish("new", &raw("1"), None, false).await,
        Err(BrokerError::NotCreated)
    ));
    assert_eq!(b.stream_count(), 0, "nothing made for a refused creation");
    let made = ok(b.publish("new", &raw("1"), None, true).await);
    assert!(made.created);
    // An existing stream takes publishes whether or not they may create.
    let next = ok(b.publish("new", &raw("2"), None, false).await);
    assert!(!next.created && next.offset == 2);
    // A stream held for a subscriber is no creation either.
    ok(b.subscribe("held").await);
    assert!(!ok(b.publish("held", &raw("1"), None, false).await).created);
}

fn entry(client: &str, user: Option<&str>) -> tether_protocol::PresenceEntry {
    tether_protocol::PresenceEntry {
        client: client.into(),
        user: user.map(Into::into),
        info: None,
        joined_at_ms: 1,
    }
}

#[tokio::test]
async fn joins_and_leaves_are_placed_after_the_publications_before_them() {
    let (b, sink) = broker(10, Duration::from_secs(60));
    for _ in 0..2 {
        ok(b.publish("room", &raw("1"), None, true).await);
    }
    b.presence_add("room", entry("a", Some("ann")), true);
    ok(b.publish("room", &raw("2"), None, true).await);
    b.presence_remove("room", "a", true);
    // Without join_leave: present, but nothing is announced.
    b.presence_add("room", entry("b", None), false);
    b.presence_remove("room", "b", false);
    // A leave of someone not present announces nothing.
    b.presence_remove("room", "nobody", true);
    assert_eq!(
        *sink.1.lock(),
        vec![
            (
                r#"{"type":"join","channel":"room","client":"a","user":"ann"}"#.to_owned(),
                2
            ),
            (
                r#"{"type":"leave","channel":"room","client":"a","user":"ann"}"#.to_owned(),
                3
            ),
        ]
    );
}
