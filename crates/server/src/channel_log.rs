//! A channel's delivery log: the recent publications of one channel that
//! has subscribers on this node, in offset order, shared by all of them.
//!
//! Each subscription is a [`Cursor`]: the offset its connection has sent up
//! to. Publishing appends once and rings each subscriber's doorbell (from a
//! snapshot of the subscriber list, after every lock is released); each
//! session then writes from its own position at its own pace. A reader that
//! falls behind costs nothing per connection — the publications are shared —
//! and the log keeps what the slowest reader still needs, up to a window of
//! `limits.send_queue` publications and `history.max_channel_bytes` bytes.
//! A reader that falls off the start of the window is told so
//! ([`Behind`]) and resynchronised through the ordinary recovery path.

use crate::doorbell::Doorbell;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

/// One publication, with its `message` frame encoded once and shared by every
/// subscriber that receives it.
#[derive(Debug)]
pub struct Publication {
    pub channel: Arc<str>,
    pub offset: u64,
    /// The complete `{"type":"message",...}` frame.
    pub frame: Bytes,
    /// Where `data` starts inside `frame` (it runs to the closing brace).
    data_start: usize,
}

impl Publication {
    pub fn new(channel: Arc<str>, offset: u64, data: &RawValue) -> Self {
        let frame = tether_protocol::message::encode_message_frame(&channel, offset, data.get());
        let data_start = frame.len() - 1 - data.get().len();
        Publication {
            channel,
            offset,
            frame: Bytes::from(frame),
            data_start,
        }
    }

    /// The publication's `data`, as raw JSON text.
    pub fn data(&self) -> &str {
        let end = self.frame.len().saturating_sub(1);
        std::str::from_utf8(self.frame.get(self.data_start..end).unwrap_or_default())
            .unwrap_or("null")
    }
}

/// A `join` or `leave`: pushed to a channel's subscribers between its
/// publications, not one of them (no offset, not in history).
#[derive(Debug, Clone)]
pub struct Event {
    /// The complete `{"type":"join"|"leave",...}` frame.
    pub frame: Bytes,
    /// The channel's offset when it happened: a reader gets it after that
    /// publication and before the next.
    pub after: u64,
}

impl Event {
    /// The frame of `entry`'s join (or leave) of `channel`.
    pub fn new(
        channel: &str,
        entry: &tether_protocol::PresenceEntry,
        join: bool,
        after: u64,
    ) -> Self {
        let (channel, client) = (channel.to_owned(), entry.client.clone());
        let (user, info) = (entry.user.clone(), entry.info.clone());
        let message = if join {
            tether_protocol::ServerMessage::Join {
                channel,
                client,
                user,
                info,
            }
        } else {
            tether_protocol::ServerMessage::Leave {
                channel,
                client,
                user,
                info,
            }
        };
        Event {
            frame: Bytes::from(message.encode()),
            after,
        }
    }
}

/// How many publications and bytes the log may hold at most.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub publications: usize,
    pub bytes: usize,
}

/// Recompute the slowest reader's position (one load per subscriber) at
/// most once per this many appends.
const TRIM_EVERY: u64 = 32;

pub struct ChannelLog {
    pub name: Arc<str>,
    window: Window,
    inner: Mutex<Inner>,
    /// `Inner::event_top`, readable without the lock: most reads find no
    /// event waiting and skip them at the cost of one load.
    event_top: AtomicU64,
    /// Whether this node's subscription at the broker is in place (set by
    /// the session that joined first and subscribed there).
    interest: tokio::sync::watch::Sender<Interest>,
}

/// This node's subscription to a channel at the broker. A session that
/// joins while the first one is still subscribing must not read history
/// before the subscription is live: a publication in between would be in
/// neither its history read nor this log, and its cursor would start behind
/// the log (4004 for nothing, seen in the restart storms with Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    Pending,
    Live,
    Failed,
}

struct Inner {
    /// Consecutive offsets: `ring[i].offset == first + i`.
    ring: VecDeque<Arc<Publication>>,
    bytes: usize,
    /// The offset of the last publication appended (0: none yet).
    top: u64,
    appends: u64,
    /// Joins and leaves not yet read by every subscriber, oldest first, with
    /// their sequence numbers (consecutive: `events[i].0 == first + i`); at
    /// most `window.publications` of them.
    events: VecDeque<(u64, Event)>,
    /// The sequence number of the last event appended (0: none yet).
    event_top: u64,
    /// Who to wake, changed in place on join and leave.
    subscribers: Vec<Arc<Cursor>>,
    /// A frozen copy of `subscribers` for waking outside the lock: built at
    /// the first append after a change, then shared by every publish with
    /// one reference-count increment. (Rebuilding it on every join instead
    /// made 10,000 joins copy 50 M pointers and churn the allocator.)
    snapshot: Option<Arc<[Arc<Cursor>]>>,
}

/// One subscription: a connection's position in a channel's log.
pub struct Cursor {
    pub log: Arc<ChannelLog>,
    bell: Arc<Doorbell>,
    conn_id: u64,
    /// The highest offset written to the connection (or covered by its
    /// `subscribed` reply). Written only by the session.
    position: AtomicU64,
    /// The sequence number of the last event written to the connection.
    events_seen: AtomicU64,
    /// Already rung and not yet read: rings are not repeated.
    pending: AtomicBool,
    /// The channel's stream was reset under this cursor (a new epoch the
    /// node could not bridge): its position means nothing any more, and
    /// its session must resynchronise ([`ChannelLog::reset`]).
    stale: AtomicBool,
}

/// The reader's position is before the start of the log: publications it
/// has not seen were dropped from the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind {
    pub position: u64,
    pub first_held: u64,
    /// Not behind but cut off: the channel's stream was reset (a new epoch).
    pub reset: bool,
    /// Behind the joins and leaves, not the publications.
    pub events: bool,
}

/// The subscribers to wake for one publication; ring it after releasing
/// every lock.
#[must_use = "subscribers are only woken by ring()"]
pub struct Wakeup(Option<Arc<[Arc<Cursor>]>>);

impl Wakeup {
    pub fn none() -> Self {
        Wakeup(None)
    }

    pub fn ring(self) {
        for cursor in self.0.iter().flat_map(|s| s.iter()) {
            cursor.ring();
        }
    }
}

impl ChannelLog {
    pub fn new(name: Arc<str>, window: Window) -> Arc<Self> {
        Arc::new(ChannelLog {
            name,
            window,
            inner: Mutex::new(Inner {
                ring: VecDeque::new(),
                bytes: 0,
                top: 0,
                appends: 0,
                events: VecDeque::new(),
                event_top: 0,
                subscribers: Vec::new(),
                snapshot: None,
            }),
            event_top: AtomicU64::new(0),
            interest: tokio::sync::watch::Sender::new(Interest::Pending),
        })
    }

    /// The first subscriber's subscription at the broker succeeded or failed.
    pub fn settle_interest(&self, live: bool) {
        let to = if live {
            Interest::Live
        } else {
            Interest::Failed
        };
        self.interest.send_replace(to);
    }

    /// Whether this node's subscription at the broker is in place now: the
    /// last subscriber to leave gives it back only then.
    pub fn interest_is_live(&self) -> bool {
        *self.interest.borrow() == Interest::Live
    }

    /// Waits until the first subscriber's subscription at the broker is
    /// settled; whether it is live.
    pub async fn interest_live(&self) -> bool {
        let mut rx = self.interest.subscribe();
        let settled = match rx.wait_for(|i| *i != Interest::Pending).await {
            Ok(i) => *i,
            // The log is gone (cannot happen while a cursor holds it).
            Err(_) => Interest::Failed,
        };
        settled == Interest::Live
    }

    /// Adds a subscriber. Its position starts at 0 — the log keeps what
    /// arrives from now on — until the session sets it from the broker's
    /// answer to its subscribe ([`Cursor::advance_to`]).
    pub fn join(self: &Arc<Self>, conn_id: u64, bell: Arc<Doorbell>) -> Arc<Cursor> {
        let mut inner = self.inner.lock();
        let cursor = Arc::new(Cursor {
            log: self.clone(),
            bell,
            conn_id,
            position: AtomicU64::new(0),
            // Events from before the join are not the joiner's.
            events_seen: AtomicU64::new(inner.event_top),
            pending: AtomicBool::new(false),
            stale: AtomicBool::new(false),
        });
        inner.subscribers.push(cursor.clone());
        inner.snapshot = None;
        cursor
    }

    /// Removes a connection's subscriber; returns how many are left.
    pub fn leave(&self, conn_id: u64) -> usize {
        let mut inner = self.inner.lock();
        inner.subscribers.retain(|c| c.conn_id != conn_id);
        inner.snapshot = None;
        let left = inner.subscribers.len();
        if left == 0 {
            inner.ring = VecDeque::new();
            inner.events = VecDeque::new();
            inner.bytes = 0;
            inner.subscribers = Vec::new();
        }
        left
    }

    /// The channel's stream changed epoch and the node could not bridge the
    /// gap: drops what is held and marks every current subscriber stale
    /// (each resynchronises through the ordinary recovery path); returns
    /// them to wake so they notice.
    pub fn reset(&self) -> Wakeup {
        let mut inner = self.inner.lock();
        inner.ring.clear();
        inner.bytes = 0;
        inner.top = 0;
        // Events were placed by the old epoch's offsets; the readers are
        // resynchronised, and ask presence again.
        inner.events.clear();
        for cursor in &inner.subscribers {
            cursor.saw_events(inner.event_top);
            cursor.stale.store(true, Ordering::Release);
        }
        Self::wake_all(&mut inner)
    }

    pub fn subscriber_count(&self) -> usize {
        self.inner.lock().subscribers.len()
    }

    /// Appends a publication (offsets arrive in order from the broker) and
    /// returns who to wake. An offset at or below the last one appended is
    /// ignored: it is already held (a duplicate delivery), and taking it as
    /// a new epoch would clear what the readers still need. A new epoch
    /// comes through [`ChannelLog::reset`] first.
    pub fn append(&self, publication: Arc<Publication>) -> Wakeup {
        let mut inner = self.inner.lock();
        if inner.subscribers.is_empty() {
            return Wakeup::none();
        }
        if publication.offset <= inner.top {
            tracing::debug!(
                channel = %self.name,
                offset = publication.offset,
                top = inner.top,
                "ignored a publication at or below the log's last offset"
            );
            return Wakeup::none();
        }
        if publication.offset != inner.top.wrapping_add(1) && !inner.ring.is_empty() {
            // Not the next offset (a new epoch): the old entries cannot be
            // continued from.
            inner.ring.clear();
            inner.bytes = 0;
        }
        inner.top = publication.offset;
        inner.bytes += publication.frame.len();
        inner.ring.push_back(publication);
        inner.appends += 1;
        if inner.appends.is_multiple_of(TRIM_EVERY) || self.over_window(&inner) {
            Self::trim_read(&mut inner);
        }
        while self.over_window(&inner) && inner.ring.len() > 1 {
            Self::pop(&mut inner);
        }
        Self::wake_all(&mut inner)
    }

    /// Appends a join or leave and returns who to wake (every subscriber:
    /// the joiner too reads its own join). Events arrive in the order they
    /// happened, so their `after` offsets never go down.
    pub fn append_event(&self, event: Event) -> Wakeup {
        let mut inner = self.inner.lock();
        if inner.subscribers.is_empty() {
            return Wakeup::none();
        }
        inner.event_top += 1;
        let seq = inner.event_top;
        self.event_top.store(seq, Ordering::Release);
        inner.events.push_back((seq, event));
        if inner.events.len() > self.window.publications {
            // Drop what everyone has read first; past the window, the oldest
            // (its readers fall behind, as with publications).
            let slowest = inner
                .subscribers
                .iter()
                .map(|c| c.events_seen())
                .min()
                .unwrap_or(u64::MAX);
            while inner.events.front().is_some_and(|(s, _)| *s <= slowest) {
                inner.events.pop_front();
            }
            while inner.events.len() > self.window.publications {
                inner.events.pop_front();
            }
        }
        Self::wake_all(&mut inner)
    }

    /// The events after `seen` placed at or before offset `upto`, in order
    /// (cloned into `out`); `Err` when some after `seen` were dropped.
    pub fn events_for(
        &self,
        seen: u64,
        upto: u64,
        out: &mut Vec<(u64, Event)>,
    ) -> Result<(), Behind> {
        let inner = self.inner.lock();
        if seen >= inner.event_top {
            return Ok(());
        }
        let first = inner
            .events
            .front()
            .map_or(inner.event_top + 1, |(s, _)| *s);
        if seen.saturating_add(1) < first {
            return Err(Behind {
                position: seen,
                first_held: first,
                reset: false,
                events: true,
            });
        }
        let start = (seen + 1 - first) as usize;
        out.extend(
            inner
                .events
                .range(start..)
                .take_while(|(_, e)| e.after <= upto)
                .cloned(),
        );
        Ok(())
    }

    /// Events held (for tests).
    pub fn events_held(&self) -> usize {
        self.inner.lock().events.len()
    }

    /// Every current subscriber, from the shared snapshot of the list.
    fn wake_all(inner: &mut Inner) -> Wakeup {
        let snapshot = inner
            .snapshot
            .get_or_insert_with(|| Arc::from(inner.subscribers.as_slice()));
        Wakeup(Some(snapshot.clone()))
    }

    fn over_window(&self, inner: &Inner) -> bool {
        inner.ring.len() > self.window.publications || inner.bytes > self.window.bytes
    }

    fn pop(inner: &mut Inner) {
        if let Some(p) = inner.ring.pop_front() {
            inner.bytes -= p.frame.len();
        }
    }

    /// Drops what every subscriber has already written.
    fn trim_read(inner: &mut Inner) {
        let slowest = inner
            .subscribers
            .iter()
            .map(|c| c.position())
            .min()
            .unwrap_or(u64::MAX);
        while inner.ring.front().is_some_and(|p| p.offset <= slowest) {
            Self::pop(inner);
        }
        if inner.ring.is_empty() && inner.ring.capacity() > 64 {
            inner.ring = VecDeque::new();
        }
    }

    /// Copies into `out` up to `max` publications after `position`; returns
    /// whether more remain.
    pub fn read_after(
        &self,
        position: u64,
        max: usize,
        out: &mut Vec<Arc<Publication>>,
    ) -> Result<bool, Behind> {
        let inner = self.inner.lock();
        let Some(first) = inner.ring.front().map(|p| p.offset) else {
            return Ok(false);
        };
        if position >= inner.top {
            return Ok(false);
        }
        if position.saturating_add(1) < first {
            return Err(Behind {
                position,
                first_held: first,
                reset: false,
                events: false,
            });
        }
        let start = (position + 1 - first) as usize;
        let end = inner.ring.len().min(start.saturating_add(max));
        out.extend(inner.ring.range(start..end).cloned());
        Ok(end < inner.ring.len())
    }

    /// Publications held (for tests and stats).
    pub fn held(&self) -> usize {
        self.inner.lock().ring.len()
    }
}

impl Cursor {
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// Whether the channel was reset under this cursor ([`ChannelLog::reset`]).
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Valid again: its session told the client the new position.
    pub fn revive(&self) {
        self.stale.store(false, Ordering::Release);
    }

    /// Moves the position forward (never back).
    pub fn advance_to(&self, offset: u64) {
        self.position.fetch_max(offset, Ordering::AcqRel);
    }

    /// Puts the position anywhere, back included: a long-polling client
    /// names its position in every poll, and a lost answer is read again.
    pub fn set_position(&self, offset: u64) {
        self.position.store(offset, Ordering::Release);
    }

    /// The sequence number of the last event written to the connection.
    pub fn events_seen(&self) -> u64 {
        self.events_seen.load(Ordering::Acquire)
    }

    /// Whether the log may hold events this cursor has not read (a lock-free
    /// look, exact once the reader takes the log's lock).
    pub fn events_waiting(&self) -> bool {
        self.log.event_top.load(Ordering::Acquire) > self.events_seen()
    }

    /// Records that events up to `seq` were written.
    pub fn saw_events(&self, seq: u64) {
        self.events_seen.fetch_max(seq, Ordering::AcqRel);
    }

    /// Marks the cursor as read: the next append rings again.
    pub fn clear_pending(&self) {
        self.pending.store(false, Ordering::Release);
    }

    /// Rings the connection's doorbell, once until it reads.
    pub fn ring(self: &Arc<Self>) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.bell.ring(self.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn publication(offset: u64) -> Arc<Publication> {
        let data = RawValue::from_string("1".into()).unwrap_or_else(|_| unreachable!());
        Arc::new(Publication::new(Arc::from("c"), offset, &data))
    }

    fn log(publications: usize) -> Arc<ChannelLog> {
        ChannelLog::new(
            Arc::from("c"),
            Window {
                publications,
                bytes: 1 << 20,
            },
        )
    }

    #[tokio::test]
    async fn a_joiner_waits_for_the_first_subscription_at_the_broker() {
        let l = log(8);
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.interest_live().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "pending: the joiner waits");
        l.settle_interest(true);
        assert!(waiter.await.unwrap_or(false), "live");
        assert!(l.interest_live().await, "a later joiner does not wait");
    }

    #[tokio::test]
    async fn a_failed_first_subscription_fails_the_waiting_joiners() {
        let l = log(8);
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.interest_live().await }
        });
        l.settle_interest(false);
        assert!(!waiter.await.unwrap_or(true));
    }

    #[test]
    fn readers_read_at_their_own_pace_and_the_log_keeps_what_the_slowest_needs() {
        let log = log(100);
        let bell = Arc::new(Doorbell::new());
        let fast = log.join(1, bell.clone());
        let slow = log.join(2, bell.clone());
        for o in 1..=50 {
            log.append(publication(o)).ring();
        }
        let mut out = Vec::new();
        assert_eq!(log.read_after(fast.position(), 100, &mut out), Ok(false));
        assert_eq!(out.len(), 50);
        fast.advance_to(50);
        out.clear();
        assert_eq!(log.read_after(slow.position(), 10, &mut out), Ok(true));
        assert_eq!(
            out.iter().map(|p| p.offset).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        slow.advance_to(10);
        for o in 51..=64 {
            log.append(publication(o)).ring();
        }
        // Everything after the slowest reader is still held.
        assert_eq!(log.held(), 54);
    }

    #[test]
    fn a_reader_past_the_window_is_told_it_is_behind() {
        let log = log(8);
        let bell = Arc::new(Doorbell::new());
        let stuck = log.join(1, bell);
        for o in 1..=20 {
            log.append(publication(o)).ring();
        }
        assert!(log.held() <= 8);
        let mut out = Vec::new();
        assert_eq!(
            log.read_after(stuck.position(), 100, &mut out),
            Err(Behind {
                position: 0,
                first_held: 13,
                reset: false,
                events: false,
            })
        );
    }

    #[test]
    fn a_ring_is_not_repeated_until_read() {
        let log = log(100);
        let bell = Arc::new(Doorbell::new());
        let cursor = log.join(1, bell.clone());
        for o in 1..=5 {
            log.append(publication(o)).ring();
        }
        let mut dirty = Vec::new();
        assert!(bell.take(&mut dirty).is_ok());
        assert_eq!(dirty.len(), 1, "one ring for five appends");
        cursor.clear_pending();
        log.append(publication(6)).ring();
        dirty.clear();
        assert!(bell.take(&mut dirty).is_ok());
        assert_eq!(dirty.len(), 1);
    }

    #[test]
    fn a_reset_marks_every_reader_stale_and_rings_it() {
        let log = log(100);
        let bell = Arc::new(Doorbell::new());
        let cursor = log.join(1, bell.clone());
        log.append(publication(1)).ring();
        cursor.clear_pending();
        let mut dirty = Vec::new();
        assert!(bell.take(&mut dirty).is_ok());
        dirty.clear();
        log.reset().ring();
        assert!(cursor.is_stale());
        assert_eq!(log.held(), 0);
        assert!(bell.take(&mut dirty).is_ok());
        assert_eq!(dirty.len(), 1, "the stale reader is woken");
        // The new epoch's offsets start wherever they are.
        log.append(publication(7)).ring();
        assert_eq!(log.held(), 1);
        cursor.revive();
        assert!(!cursor.is_stale());
    }

    #[test]
    fn an_offset_at_or_below_the_top_is_ignored_and_the_ring_kept() {
        let log = log(100);
        let bell = Arc::new(Doorbell::new());
        let cursor = log.join(1, bell);
        for o in 1..=5 {
            log.append(publication(o)).ring();
        }
        for stale in [5, 3, 1, 0] {
            log.append(publication(stale)).ring();
        }
        assert_eq!(log.held(), 5, "nothing cleared, nothing added");
        let mut out = Vec::new();
        assert_eq!(log.read_after(cursor.position(), 100, &mut out), Ok(false));
        assert_eq!(
            out.iter().map(|p| p.offset).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        // The next offset still follows on.
        log.append(publication(6)).ring();
        assert_eq!(log.held(), 6);
    }

    #[test]
    fn leaving_frees_the_log() {
        let log = log(100);
        let bell = Arc::new(Doorbell::new());
        log.join(1, bell);
        log.append(publication(1)).ring();
        assert_eq!(log.leave(1), 0);
        assert_eq!(log.held(), 0);
    }

    fn event(after: u64) -> Event {
        Event {
            frame: Bytes::from(format!("e{after}")),
            after,
        }
    }

    #[test]
    fn events_go_after_the_publication_they_came_after() {
        let log = log(100);
        let bell = Arc::new(Doorbell::new());
        log.append_event(event(0)).ring(); // before anyone joined: not theirs
        let cursor = log.join(1, bell);
        log.append_event(event(0)).ring();
        log.append(publication(1)).ring();
        log.append(publication(2)).ring();
        log.append_event(event(2)).ring();
        log.append(publication(3)).ring();
        assert!(cursor.events_waiting());
        let mut out = Vec::new();
        assert!(log.events_for(cursor.events_seen(), 1, &mut out).is_ok());
        assert_eq!(out.len(), 1, "only the events placed up to offset 1");
        out.clear();
        assert!(log.events_for(cursor.events_seen(), 3, &mut out).is_ok());
        assert_eq!(
            out.iter().map(|(s, e)| (*s, e.after)).collect::<Vec<_>>(),
            vec![(1, 0), (2, 2)]
        );
        cursor.saw_events(2);
        assert!(!cursor.events_waiting());
    }

    #[test]
    fn a_reader_past_the_events_window_is_told_it_is_behind() {
        let log = log(4);
        let bell = Arc::new(Doorbell::new());
        let stuck = log.join(1, bell.clone());
        let reader = log.join(2, bell);
        for _ in 0..3 {
            log.append_event(event(0)).ring();
        }
        reader.saw_events(3);
        for _ in 0..6 {
            log.append_event(event(0)).ring();
        }
        assert!(log.events_held() <= 4);
        let mut out = Vec::new();
        let behind = log.events_for(stuck.events_seen(), 0, &mut out);
        assert!(behind.is_err_and(|b| b.events));
        assert!(log.events_for(8, 0, &mut out).is_ok());
        assert_eq!(out.len(), 1);
        // A reset forgets them, and nobody is behind after it.
        log.reset().ring();
        assert_eq!(log.events_held(), 0);
        out.clear();
        assert!(log.events_for(stuck.events_seen(), 0, &mut out).is_ok());
    }
}
