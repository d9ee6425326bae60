//! The broker: where publications get their offsets, live in history, and
//! reach every node's subscribers.
//!
//! Session code talks only to the [`Broker`] trait; `memory` is the one-node
//! default, and a Redis broker fills the same trait for many nodes. A broker
//! delivers every publication (from any node) to this node's [`Delivery`],
//! which is the hub.

pub mod memory;
pub mod redis;

use async_trait::async_trait;
use serde_json::value::RawValue;
use std::sync::Arc;
use tether_protocol::{PresenceEntry, StreamPosition};

/// Publications live in the channels' logs; brokers make and hand them over.
pub use crate::channel_log::Publication;

/// What a publish returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    pub offset: u64,
    pub epoch: String,
    /// True when an earlier publish with the same idempotency key was found:
    /// nothing new was stored or delivered.
    pub duplicate: bool,
    /// True when the channel had no stream at the broker and this publish
    /// made it (what a publisher's share of new channels pays for).
    pub created: bool,
}

/// The answer to a subscribe: the stream's current position, and the missed
/// publications when recovery was asked for and possible — the first of
/// them, as many as the asked byte budget holds (the rest is read by asking
/// again from the last one: `publications` ends before `offset` then).
#[derive(Debug, Clone)]
pub struct Recovery {
    pub epoch: String,
    /// The channel's latest offset (0 when nothing was published yet).
    pub offset: u64,
    /// True only when recovery was asked for and `publications` holds every
    /// publication after the asked offset.
    pub recovered: bool,
    pub publications: Vec<Arc<Publication>>,
}

/// Why the broker could not do something. Sessions answer `unavailable`
/// (or `over_capacity`) and the client retries; `/readyz` turns false while
/// the broker is unhealthy.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// A capacity limit (channels, history bytes, idempotency keys) was
    /// reached: nothing was stored or delivered. Answered with
    /// `over_capacity` (503 on the API); the client retries later.
    #[error("{0}")]
    OverCapacity(String),
    /// The publish would have created the channel and was not allowed to
    /// (`may_create` false): nothing was stored. The caller answers with
    /// its publisher's wait for a new channel.
    #[error("publishing would create the channel, and the publisher may not create one now")]
    NotCreated,
}

/// A channel's presence list, or how many are present when that is more
/// than the list asked could hold.
#[derive(Debug, Clone, PartialEq)]
pub enum PresenceList {
    Clients(Vec<PresenceEntry>),
    /// More than the asked maximum are present: this many.
    TooMany(u64),
}

/// How many clients, and distinct users (anonymous clients are none), are
/// present in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresenceStats {
    pub clients: u64,
    pub users: u64,
}

/// Receives every publication for channels this node has subscribers on.
pub trait Delivery: Send + Sync + 'static {
    /// Appends to the channel's delivery log (called in offset order, under
    /// the broker's lock for the channel); returns the subscribers to wake,
    /// which the broker rings after releasing its locks.
    fn deliver(&self, publication: Arc<Publication>) -> crate::channel_log::Wakeup;

    /// A `join` or `leave` for the channel's local subscribers (called in
    /// the order they happened, like publications); returns who to wake.
    fn deliver_event(
        &self,
        channel: &str,
        event: crate::channel_log::Event,
    ) -> crate::channel_log::Wakeup;

    /// The channel's stream changed epoch and the broker cannot bridge the
    /// gap: every local subscriber resynchronises (`recovered: false`
    /// through the ordinary path); returns them to wake.
    fn reset(&self, channel: &str) -> crate::channel_log::Wakeup;
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Stores `data` in the channel's history with the next offset and
    /// delivers it everywhere. A repeated `key` within the idempotency window
    /// returns the first publish's offset and stores nothing.
    ///
    /// A channel with no stream at the broker (never published, forgotten,
    /// or expired) is created only when `may_create`; otherwise the publish
    /// is refused with [`BrokerError::NotCreated`] and nothing is written.
    /// Decided where the stream lives (under the shard lock, in the Redis
    /// script), so one address's share of new channels holds on every broker
    /// without an extra round trip.
    async fn publish(
        &self,
        channel: &str,
        data: &RawValue,
        key: Option<&str>,
        may_create: bool,
    ) -> Result<PublishOutcome, BrokerError>;

    /// This node now has a local subscriber on `channel` (called for the
    /// first). Gives the interest back itself when it fails. Need not be
    /// cancel-safe: the engine runs it in a node task
    /// (`session::joining`). Interest is counted, so a subscribe and an
    /// earlier unsubscribe may run in either order.
    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError>;

    /// Gives back one interest taken by [`Broker::subscribe`] (this node's
    /// last local subscriber left); called from a task of the node's
    /// ([`crate::node::Node::release_interest`]), never from a request.
    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError>;

    /// The channel's position, plus the publications after `since` when
    /// given: at most `budget` bytes of their frames (at least one), read no
    /// further than that, so a small request never makes the broker read a
    /// channel's whole history.
    async fn recover(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        budget: usize,
    ) -> Result<Recovery, BrokerError>;

    /// Records a session as present in `channel` (keyed by its client id),
    /// and with `join_leave` announces its `join` to every subscriber of the
    /// channel, after the publications made before it. Sync and
    /// infallible: called when a join completes, where nothing may await (a
    /// broker that must talk to a server queues it, in order, and
    /// [`Broker::presence_flushed`] waits for the queue).
    fn presence_add(&self, channel: &str, entry: PresenceEntry, join_leave: bool);

    /// Removes a session's presence entry, and with `join_leave` announces
    /// its `leave` (after every publication it made); called wherever it
    /// leaves the channel, which awaits nothing either.
    fn presence_remove(&self, channel: &str, client: &str, join_leave: bool);

    /// Waits until every presence change this node queued before the call
    /// has reached the broker, so a publish made after it is delivered
    /// after the joins announced before it (immediate for a broker that
    /// queues nothing).
    async fn presence_flushed(&self) {}

    /// Who is present in `channel`: every entry, or only their count when
    /// there are more than `max`.
    async fn presence(&self, channel: &str, max: usize) -> Result<PresenceList, BrokerError>;

    /// How many clients and users are present in `channel`.
    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError>;

    /// Whether the broker can serve requests (feeds `/readyz`).
    fn is_healthy(&self) -> bool;

    /// A session of this node started at `at_ms` (Unix ms; `conn` is its
    /// serial on the node) and its `connect` event is about to be queued:
    /// a broker that keeps a registry of the node's sessions for lifecycle
    /// events (Redis, `broker/redis/nodes.rs`) records it. It forgets it
    /// when its `disconnect` is delivered ([`crate::events::Ledger`]).
    fn session_started(&self, _client: &str, _conn: u64, _user: Option<&str>, _at_ms: u64) {}

    /// The node exits cleanly, its events flushed (or out of time): a
    /// broker with a node registry leaves it (or leaves what is not
    /// acknowledged for another node to claim).
    async fn node_leaving(&self) {}
}
