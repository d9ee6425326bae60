//! The session engine: the Tether protocol's per-client state machine,
//! independent of how frames travel.
//!
//! A transport (`/ws`, `/lp/`) owns the wire and asks the engine to handle
//! each inbound text and to read what its subscriptions have new; the
//! engine answers with outbound text frames ([`Out`]). Requests, the message
//! rate and strikes, permissions, subscribe with recovery, publish with
//! idempotency, and reading from the channels' shared logs all live here,
//! once, so the transports cannot drift apart.

mod backend;
mod connect;
mod events;
mod joining;
mod positions;
mod presence;
mod publish;
mod replay;
mod requests;
mod subscriptions;

use crate::{
    auth::Grant,
    broker::Publication,
    channel_log::{Behind, Cursor},
    doorbell::{Doorbell, Finished},
    limits::{ConnectionPermit, TokenBucket},
    node::Node,
};
pub use backend::{closing_of, Pending};
use bytes::Bytes;
pub use connect::connect;
use std::{collections::HashMap, sync::Arc};
use subscriptions::Subscriptions;
use tether_protocol::{CloseCode, ServerMessage, PROTOCOL_VERSION};
use tracing::debug;

/// Consecutive invalid or over-limit messages (or control frames) tolerated,
/// each answered with an error, before the session is closed.
pub(crate) const MAX_STRIKES: u32 = 10;

/// Outbound text frames, in order (replies and publications' `message`
/// frames; a publication's frame is shared, not copied).
pub type Out = Vec<Bytes>;

/// The engine ends the session with this close code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    pub code: CloseCode,
    pub reason: String,
}

impl Closing {
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        Closing {
            code,
            reason: reason.into(),
        }
    }

    /// 4002: the session's token expired (every transport says it alike).
    pub fn token_expired() -> Self {
        Closing::new(
            CloseCode::TokenExpired,
            "token expired; reconnect with a fresh token",
        )
    }

    /// 1012: the node drains; the reason carries a jittered reconnect delay.
    pub fn draining(node: &Node) -> Self {
        Closing::new(CloseCode::ServiceRestart, drain_reason(&node.config.server))
    }
}

/// The 1012 reason of a drain: a reconnect delay picked at random up to
/// `drain_jitter`, so that the clients of a restarting node do not all
/// come back at once.
pub(crate) fn drain_reason(server: &crate::config::ServerConfig) -> String {
    let jitter = server.drain_jitter.mul_f64(fastrand::f64());
    tether_protocol::RetryHint(jitter).append_to("server restarting; reconnect")
}

/// How the transport carries requests, which decides what a repeated
/// request means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// One ordered connection (`/ws`): a second subscribe to a held channel
    /// is an error, and a replay that does not fit in the `subscribed` reply
    /// follows as `message` frames on the session's next turns, read from
    /// history a page at a time (`replay.rs`).
    Connection,
    /// Requests that may be retried (`/lp/`): subscribe and unsubscribe are
    /// idempotent, a publish without a key is keyed by client and request
    /// id, and the rest of a long replay comes through the next poll.
    Retried,
}

/// What few sessions keep, boxed so that the others pay one pointer: a
/// long-polling session's client id and where it joined its channels, or
/// the channels a WebSocket session still replays from history.
#[derive(Default)]
struct Rare {
    /// Keys publishes that come without a key of their own (`Style::Retried`).
    client: Box<str>,
    /// What each held channel was joined at: a long-polling client names
    /// positions in every request, and they are checked against these; a
    /// connection keeps only the channels whose replay has not reached it.
    held: HashMap<Arc<str>, Held>,
    /// Channels the subscribe hook allowed this long-polling session (its
    /// polls name them again; the hook is not asked again while held).
    approved: std::collections::HashSet<Arc<str>>,
    /// Server-side subscriptions (the connect hook's `channels`) not yet
    /// joined and announced to the client.
    announce: Vec<String>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.client.is_empty()
            && self.held.is_empty()
            && self.approved.is_empty()
            && self.announce.is_empty()
    }
}

/// Where a session joined a channel.
#[derive(Debug, Clone)]
pub struct Held {
    pub epoch: String,
    /// The channel's offset at the join: a position below it is read from
    /// history (the channel log only holds what arrived after the join).
    pub joined_at: u64,
}

/// One client's session.
pub struct Session {
    pub(crate) node: Arc<Node>,
    /// Registers the session's subscriptions in the hub.
    pub(crate) conn_id: u64,
    /// Shared by every tokenless session (one pointer each); replaced when
    /// a long-polling client presents a refreshed token.
    pub grant: Arc<Grant>,
    subs: Subscriptions,
    pub(crate) bell: Arc<Doorbell>,
    bucket: TokenBucket,
    strikes: u32,
    /// Announced a join since its last publish ([`Session::presence_flushed`]).
    announced: bool,
    /// When its `connect` event was queued (Unix ms); 0 before, or without
    /// lifecycle events (`events.rs`).
    started_ms: u64,
    style: Style,
    /// Always there for `Style::Retried`; for `Style::Connection` only while
    /// a replay is read from history (`replay.rs`).
    rare: Option<Box<Rare>>,
    /// The session's place under the limits, and the places of its
    /// subscriptions in the node's budget; released when it is dropped.
    permit: ConnectionPermit,
}

impl Session {
    pub fn new(node: Arc<Node>, grant: Grant, permit: ConnectionPermit, style: Style) -> Self {
        let limits = &node.config.limits;
        Session {
            bucket: TokenBucket::new(
                limits.messages_per_second,
                limits.messages_burst,
                tokio::time::Instant::now().into_std(),
            ),
            bell: Arc::new(Doorbell::new()),
            conn_id: node.next_conn_id(),
            node,
            grant: shared_grant(grant),
            subs: Subscriptions::default(),
            strikes: 0,
            announced: false,
            started_ms: 0,
            style,
            rare: (style == Style::Retried).then(Default::default),
            permit,
        }
    }

    /// Replaces the session's permissions (a refreshed token) and leaves at
    /// once every held channel the new grant does not allow, so nothing more
    /// of it is read; a client that still names one is answered `forbidden`
    /// when it next joins, as by a node that never held it. Returns what
    /// was left. Awaits nothing, like every leave.
    pub fn set_grant(&mut self, grant: Grant) -> Vec<Arc<str>> {
        self.grant = shared_grant(grant);
        let revoked: Vec<Arc<str>> = self
            .subs
            .iter()
            .map(|(channel, _)| channel)
            .filter(|channel| !self.grant.can_subscribe(channel))
            .cloned()
            .collect();
        for channel in &revoked {
            self.unsubscribe_quietly(channel);
        }
        revoked
    }

    /// The client id a `Style::Retried` session keys its publishes with.
    pub fn set_client(&mut self, client: &str) {
        if let Some(r) = &mut self.rare {
            r.client = client.into();
        }
    }

    /// Where a held channel was joined (for a connection: only while its
    /// replay is below that).
    pub fn held(&self, channel: &str) -> Option<&Held> {
        self.rare.as_ref()?.held.get(channel)
    }

    /// Records where a held channel was joined.
    pub(crate) fn hold(&mut self, channel: &str, epoch: &str, joined_at: u64) {
        let held = Held {
            epoch: epoch.to_owned(),
            joined_at,
        };
        let rare = self.rare.get_or_insert_with(Default::default);
        rare.held.insert(Arc::from(channel), held);
    }

    /// Forgets where `channel` was joined; a connection that holds no
    /// replay any more frees the box.
    pub(crate) fn unhold(&mut self, channel: &str) {
        if let Some(r) = &mut self.rare {
            r.held.remove(channel);
            if self.style == Style::Connection && r.is_empty() {
                self.rare = None;
            }
        }
    }

    /// The node-unique id of a connection-style session, as in `welcome`.
    /// The id others see for this session: a connection's client id, a
    /// long-polling session's [`public_id`].
    pub fn public_client(&self) -> String {
        match self.rare.as_ref().filter(|r| !r.client.is_empty()) {
            Some(r) => public_id(&r.client),
            None => self.client_id(),
        }
    }

    pub fn client_id(&self) -> String {
        format!("{}-{:x}", self.node.id, self.conn_id)
    }

    /// The `welcome`, the first message of every session; a session whose
    /// requests may be retried (long polling) is also told how long a poll
    /// waits.
    pub fn welcome(&self, client: String) -> ServerMessage {
        let hb = &self.node.config.heartbeat;
        let public_client = (!self.on_connection()).then(|| public_id(&client));
        ServerMessage::Welcome {
            client,
            ping_interval_ms: hb.ping_interval.as_millis() as u64,
            pong_timeout_ms: hb.pong_timeout.as_millis() as u64,
            version: PROTOCOL_VERSION,
            poll_timeout_ms: (!self.on_connection())
                .then_some(hb.long_poll_timeout.as_millis() as u64),
            public_client,
        }
    }

    /// When the session's token expires, on tokio's clock; `None` without
    /// an expiry, or one too far away for the clock to hold.
    pub fn expires_at(&self) -> Option<tokio::time::Instant> {
        let at = self.grant.expires_at?;
        let now = tokio::time::Instant::now();
        match at.duration_since(std::time::SystemTime::now()) {
            Ok(left) => now.checked_add(left),
            Err(_) => Some(now),
        }
    }

    /// 4002 when the session's token has expired by now.
    pub fn token_expired(&self) -> Option<Closing> {
        let at = self.grant.expires_at?;
        (std::time::SystemTime::now() >= at).then(Closing::token_expired)
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The channels held, with their cursors.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Cursor>)> {
        self.subs.iter()
    }

    pub fn cursor(&self, channel: &str) -> Option<&Arc<Cursor>> {
        self.subs.get(channel)
    }

    /// Takes what the doorbell has rung; `Err` once the session finished.
    pub fn take_rung(&self, rung: &mut Vec<Arc<Cursor>>) -> Result<(), Finished> {
        self.bell.take(rung)
    }

    /// Whether requests arrive on one ordered connection (`Style::Connection`).
    fn on_connection(&self) -> bool {
        self.style == Style::Connection
    }

    /// Reads what the rung subscriptions have new into `out` (at most `max`
    /// publications each; one with more is rung again, so the transport
    /// reads inbound frames in between). A subscription that fell off the
    /// start of its channel's log ends a connection-style session with 4004
    /// (the client recovers through the ordinary path on reconnect).
    ///
    /// Returns the first rung subscription still below where it joined: its
    /// gap is read from history, which awaits the broker, so the transport
    /// does it next ([`Session::read_replay`]); the others wait for a later
    /// turn.
    pub fn read_rung(
        &mut self,
        rung: &mut Vec<Arc<Cursor>>,
        max: usize,
        batch: &mut Vec<Arc<Publication>>,
        out: &mut Out,
    ) -> Result<Option<Arc<Cursor>>, Closing> {
        let mut replay = None;
        for cursor in rung.drain(..) {
            // Rung before an unsubscribe (or a resubscribe replaced it):
            // nothing more is written for it.
            if !self
                .subs
                .get(&cursor.log.name)
                .is_some_and(|c| Arc::ptr_eq(c, &cursor))
            {
                continue;
            }
            // Cleared before reading: an append from now on rings again.
            cursor.clear_pending();
            if let Some(held) = self.held(&cursor.log.name) {
                if cursor.position() < held.joined_at {
                    if replay.is_some() {
                        cursor.ring();
                    } else {
                        replay = Some(cursor);
                    }
                    continue;
                }
                // The replay reached the join: the log takes over.
                let channel = cursor.log.name.clone();
                self.unhold(&channel);
            }
            let more = read_cursor(&cursor, max, usize::MAX, batch, out)
                .map_err(|b| self.fell_behind(&cursor, b))?;
            if more {
                cursor.ring();
            }
        }
        Ok(replay)
    }

    fn fell_behind(&self, cursor: &Cursor, b: Behind) -> Closing {
        if b.events {
            self.node.metrics.slow_consumers.inc();
            debug!(channel = %cursor.log.name, "fell behind the channel's joins and leaves");
            return Closing::new(
                CloseCode::SlowConsumer,
                "fell behind the channel's joins and leaves: the client reads too slowly; \
                 reconnect and ask presence again",
            );
        }
        if b.reset {
            debug!(channel = %cursor.log.name, "the channel's stream was reset");
            return Closing::new(
                CloseCode::SlowConsumer,
                "the channel's history was reset (a new epoch): reconnect and resubscribe",
            );
        }
        self.node.metrics.slow_consumers.inc();
        debug!(channel = %cursor.log.name, position = b.position, first_held = b.first_held, "fell behind the channel log");
        Closing::new(
            CloseCode::SlowConsumer,
            "fell behind the channel: the client reads too slowly; reconnect and recover",
        )
    }

    /// Ends the session, closed with `code` and `reason` (what its
    /// `disconnect` event tells): refuses further rings and leaves every
    /// channel.
    pub fn finish(&mut self, code: u16, reason: &str) {
        // Nothing more will be read: free what is rung and refuse new rings.
        self.bell.finish();
        let channels = self.subs.drain();
        self.permit.release_subscriptions();
        for channel in channels {
            self.leave(&channel);
        }
        self.announce_disconnect(code, reason);
    }
}

/// The id presence, join/leave, hooks and events show for a long-polling
/// session whose credential is `client` (every `/lp/` request names it, so
/// it must never reach other clients): a digest of it, from which it cannot
/// be found.
pub fn public_id(client: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, client.as_bytes());
    let mut out = String::with_capacity(3 + 24);
    out.push_str("lp-");
    for b in &digest.as_ref()[..12] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The grant as held by a session: the open-access grant, by far the most
/// common, is one allocation shared by all.
fn shared_grant(grant: Grant) -> Arc<Grant> {
    static ANONYMOUS: std::sync::LazyLock<Arc<Grant>> =
        std::sync::LazyLock::new(|| Arc::new(Grant::anonymous()));
    if grant.is_anonymous() {
        ANONYMOUS.clone()
    } else {
        Arc::new(grant)
    }
}

/// Reads up to `max` publications after the cursor's position into `out`
/// (skipping what it already has) and moves the position to the last one;
/// returns whether the log holds more.
///
/// At most `budget` bytes of frames are read, but always one publication
/// when `out` is empty (so a reader always moves on).
pub(crate) fn read_cursor(
    cursor: &Cursor,
    max: usize,
    budget: usize,
    batch: &mut Vec<Arc<Publication>>,
    out: &mut Out,
) -> Result<bool, Behind> {
    if cursor.is_stale() {
        return Err(Behind {
            position: cursor.position(),
            first_held: 0,
            reset: true,
            events: false,
        });
    }
    let mut more = cursor.log.read_after(cursor.position(), max, batch)?;
    if budget != usize::MAX {
        more |= keep_within(batch, budget, out.is_empty());
    }
    if cursor.events_waiting() {
        // Joins and leaves go between the publications they came between.
        let upto = batch.last().map_or(0, |p| p.offset).max(cursor.position());
        let mut events = Vec::new();
        cursor
            .log
            .events_for(cursor.events_seen(), upto, &mut events)?;
        push_interleaved(cursor, batch, events, out);
    } else {
        push_publications(cursor, batch, out);
    }
    Ok(more)
}

/// [`push_publications`], with `events` (all placed at or before the last
/// publication of `batch` or the cursor's position) each written after the
/// publication it came after.
fn push_interleaved(
    cursor: &Cursor,
    batch: &mut Vec<Arc<Publication>>,
    events: Vec<(u64, crate::channel_log::Event)>,
    out: &mut Out,
) {
    let mut last = cursor.position();
    let mut events = events.into_iter().peekable();
    for publication in batch.drain(..) {
        if publication.offset > last {
            while let Some((seq, event)) = events.next_if(|(_, e)| e.after < publication.offset) {
                out.push(event.frame);
                cursor.saw_events(seq);
            }
            last = publication.offset;
            out.push(publication.frame.clone());
        }
    }
    for (seq, event) in events {
        out.push(event.frame);
        cursor.saw_events(seq);
    }
    cursor.advance_to(last);
}

/// How many of the first `publications` fit in `budget` bytes of frames.
pub(crate) fn fitting(publications: &[Arc<Publication>], budget: usize) -> usize {
    let mut bytes = 0usize;
    publications
        .iter()
        .take_while(|p| {
            bytes = bytes.saturating_add(p.frame.len());
            bytes <= budget
        })
        .count()
}

/// Keeps the publications of `batch` that fit in `budget` bytes (at least
/// one when `at_least_one`); returns whether any were left out.
pub(crate) fn keep_within(
    batch: &mut Vec<Arc<Publication>>,
    budget: usize,
    at_least_one: bool,
) -> bool {
    let mut keep = fitting(batch, budget);
    if keep == 0 && at_least_one {
        keep = batch.len().min(1);
    }
    let cut = keep < batch.len();
    batch.truncate(keep);
    cut
}

/// Moves `batch` into `out` as `message` frames, skipping offsets the cursor
/// already passed, and advances the cursor; empties `batch`.
pub(crate) fn push_publications(cursor: &Cursor, batch: &mut Vec<Arc<Publication>>, out: &mut Out) {
    let mut last = cursor.position();
    for publication in batch.drain(..) {
        if publication.offset > last {
            last = publication.offset;
            out.push(publication.frame.clone());
        }
    }
    cursor.advance_to(last);
}
