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
}

impl Delivery for Seen {
    fn deliver(&self, p: Arc<Publication>) -> Wakeup {
        self.offsets.lock().push(p.offset);
        Wakeup::none()
    }
    fn deliver_event(&self, _: &str, _: crate::channel_log::Event) -> Wakeup {
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
