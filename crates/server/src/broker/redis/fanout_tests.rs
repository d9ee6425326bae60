//! The fan-out's ordering rules without a Redis: messages fed straight to
//! `on_message` for a channel already tracked at a known position. (History
//! reads fail here — no Redis — so a gap stays open, as while Redis is
//! unreachable.)

use super::{
    fanout::{on_message, Fanout, Health, MAX_PENDING},
    link::Link,
    scripts::Keys,
    Inner,
};
use crate::{
    broker::{Delivery, Publication},
    channel_log::Wakeup,
    config::HistoryConfig,
    metrics::Metrics,
};
use parking_lot::Mutex;
use std::{sync::Arc, time::Duration};

#[derive(Default)]
struct Seen {
    offsets: Mutex<Vec<u64>>,
    resets: Mutex<usize>,
    /// Each event's frame type and `after`.
    events: Mutex<Vec<(String, u64)>>,
}

impl Delivery for Seen {
    fn deliver(&self, p: Arc<Publication>) -> Wakeup {
        self.offsets.lock().push(p.offset);
        Wakeup::none()
    }
    fn deliver_event(&self, _: &str, e: crate::channel_log::Event) -> Wakeup {
        let frame: serde_json::Value = serde_json::from_slice(&e.frame).unwrap_or_default();
        let kind = frame["type"].as_str().unwrap_or_default().to_owned();
        self.events.lock().push((kind, e.after));
        Wakeup::none()
    }
    fn reset(&self, _: &str) -> Wakeup {
        *self.resets.lock() += 1;
        Wakeup::none()
    }
}

/// A broker whose Redis is unreachable, tracking channel "c" at epoch "e",
/// offset 10.
fn tracking() -> (Arc<Inner>, Arc<Seen>, String) {
    let seen = Arc::new(Seen::default());
    let client = redis::Client::open("redis://127.0.0.1:1").unwrap_or_else(|_| unreachable!());
    let metrics = Arc::new(Metrics::new());
    let prefix: Arc<str> = Arc::from("t");
    let fanout = Fanout::new(
        client.clone(),
        prefix.clone(),
        seen.clone(),
        metrics.clone(),
        Health::new(metrics),
        Duration::from_secs(5),
    );
    fanout.track_at("c", "e", 10);
    let inner = Arc::new(Inner {
        history: HistoryConfig::default(),
        rules: Default::default(),
        link: Arc::new(Link::new(client, Box::new(|_| {}))),
        presence: super::presence::Presence::new(Duration::from_secs(3), Default::default()),
        fanout,
    });
    (inner, seen, Keys::new(&prefix, "c").topic)
}

#[tokio::test]
async fn in_order_messages_are_delivered_and_repeats_dropped() {
    let (inner, seen, topic) = tracking();
    for o in [11, 12, 12, 9, 13] {
        on_message(&inner, &topic, &format!("e {o} {{\"n\":{o}}}"));
    }
    assert_eq!(*seen.offsets.lock(), [11, 12, 13]);
}

#[tokio::test]
async fn a_new_epoch_resets_the_channel_and_continues_from_it() {
    let (inner, seen, topic) = tracking();
    on_message(&inner, &topic, "e2 1 true");
    assert_eq!(*seen.resets.lock(), 1);
    assert_eq!(*seen.offsets.lock(), [1]);
    on_message(&inner, &topic, "e2 2 true");
    assert_eq!(*seen.offsets.lock(), [1, 2]);
}

#[tokio::test]
async fn publications_waiting_on_a_gap_are_bounded() {
    let (inner, seen, topic) = tracking();
    // Offset 11 never comes: everything after it waits for the gap.
    for o in 12..(12 + MAX_PENDING as u64) {
        on_message(&inner, &topic, &format!("e {o} 0"));
    }
    assert!(seen.offsets.lock().is_empty(), "held for the gap");
    assert_eq!(*seen.resets.lock(), 0);
    // One more: the channel is reset rather than holding more.
    let next = 12 + MAX_PENDING as u64;
    on_message(&inner, &topic, &format!("e {next} 0"));
    assert_eq!(*seen.resets.lock(), 1);
    assert_eq!(*seen.offsets.lock(), [next], "continues after the reset");
}

const ENTRY: &str = r#"{"client":"n1-a","user":"ann","joined_at_ms":1}"#;

#[tokio::test]
async fn joins_and_leaves_are_told_apart_from_publications_and_keep_their_place() {
    let (inner, seen, topic) = tracking();
    on_message(&inner, &topic, &format!("! e 10 J {ENTRY}"));
    on_message(&inner, &topic, "e 11 1");
    on_message(&inner, &topic, &format!("! e 11 L {ENTRY}"));
    assert_eq!(*seen.offsets.lock(), [11], "events are no publications");
    assert_eq!(
        *seen.events.lock(),
        [("join".to_owned(), 10), ("leave".to_owned(), 11)]
    );
    // A malformed event, or one whose entry is not one, is dropped.
    on_message(&inner, &topic, "! e 11 J not-json");
    on_message(&inner, &topic, "! e x J {}");
    assert_eq!(seen.events.lock().len(), 2);
    assert_eq!(*seen.resets.lock(), 0);
}

#[tokio::test]
async fn an_event_of_a_new_epoch_resets_the_channel_first() {
    let (inner, seen, topic) = tracking();
    on_message(&inner, &topic, &format!("! e2 0 J {ENTRY}"));
    assert_eq!(*seen.resets.lock(), 1);
    assert_eq!(*seen.events.lock(), [("join".to_owned(), 0)]);
    // The channel continues in the new epoch from the event's place.
    on_message(&inner, &topic, "e2 1 true");
    assert_eq!(*seen.offsets.lock(), [1]);
    assert_eq!(*seen.resets.lock(), 1);
}
