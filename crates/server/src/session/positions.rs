//! Following a client's positions (`Style::Retried`): the client names its
//! channels with their positions in every request (a long poll), and the
//! session brings its cursors there — joining what it does not hold from
//! the named position, leaving what is no longer named — then reads what is
//! new, from the channels' logs or from history, within an answer's bounds.
//! Any node can do this for any client: a lost answer is simply read again.

use super::{
    backend::error_of, keep_within, push_publications, read_cursor, Closing, Out, Session,
};
use crate::{broker::Publication, channel_log::Cursor, hooks::Answer};
use std::{collections::HashMap, sync::Arc};
use tether_protocol::{ErrorCode, ServerMessage, StreamPosition};

/// Subscribe hook calls one poll makes at most (at once).
const ASKS_PER_POLL: usize = 8;
/// Publications one poll answer carries per channel at most.
const POLL_BATCH: usize = 256;
/// Bytes of publication frames a poll answer carries at most (beyond it:
/// one publication, when the answer has nothing else, and the `subscribed`
/// replies of resyncs, each at most `REPLAY_REPLY_BYTES`, joined before it
/// was full); what is left comes with the next poll.
const POLL_BYTES: usize = 256 * 1024;

impl Session {
    /// Brings the session's channels to the client's: joins what it names and
    /// the node does not hold (recovering from the named position), leaves
    /// what it no longer names, and moves the rest to the named offsets.
    ///
    /// Joins stop once `superseded()` says a newer request replaced this one
    /// (a client aborts its poll when its subscriptions change): that one
    /// names the channels again, and waits for this one's lock meanwhile.
    pub async fn follow(
        &mut self,
        channels: HashMap<String, StreamPosition>,
        out: &mut Out,
        superseded: impl Fn() -> bool,
    ) {
        // What the connect hook subscribed a new session to comes first,
        // and is kept although this poll does not name it yet.
        let announced = self.announce(out).await;
        let named: std::collections::HashSet<&str> = channels.keys().map(String::as_str).collect();
        let gone: Vec<Arc<str>> = self
            .subscriptions()
            .map(|(c, _)| c.clone())
            .filter(|c| !named.contains(&**c) && !announced.contains(c))
            .collect();
        for channel in gone {
            self.unsubscribe_quietly(&channel);
        }
        let mut used = bytes(out);
        let mut asks = Vec::new();
        for (channel, position) in channels {
            let same_epoch = self
                .held(&channel)
                .is_some_and(|h| h.epoch == position.epoch);
            match self.cursor(&channel) {
                Some(cursor) if same_epoch && reaches(cursor, position.offset) => {
                    cursor.set_position(position.offset);
                }
                // The answer is full, or nobody waits for it: the channel is
                // joined when the next poll names it again.
                _ if used >= POLL_BYTES || superseded() => {}
                // Naming a channel is subscribing to it: the backend decides
                // where its rule says so.
                _ if self.needs_subscribe_hook(&channel) => asks.push((channel, position)),
                _ => {
                    let before = out.len();
                    self.rejoin(&channel, &position, POLL_BYTES - used, out)
                        .await;
                    used += bytes(&out[before..]);
                }
            }
        }
        if !asks.is_empty() {
            self.rejoin_asked(asks, used, out).await;
        }
    }

    /// Asks the subscribe hook about every channel of `asks` at once (a
    /// poll costs one `--hook-timeout` at most, not one per channel), and
    /// joins those it allows; the others get an id-less `error` naming them.
    async fn rejoin_asked(
        &mut self,
        asks: Vec<(String, StreamPosition)>,
        mut used: usize,
        out: &mut Out,
    ) {
        let mut calls = Vec::with_capacity(asks.len());
        let mut asked = Vec::with_capacity(asks.len());
        for (channel, position) in asks {
            // Nothing is asked that the node would refuse anyway.
            match self.may_join(&channel) {
                // A few calls per poll, so one session cannot take every
                // hook slot of the node: the rest are asked at later polls
                // (the client names them again).
                Ok(()) if calls.len() >= ASKS_PER_POLL => {}
                Ok(()) => {
                    calls.push(self.ask_subscribe(&channel));
                    asked.push((channel, position));
                }
                Err((code, message)) => push_channel_error(out, channel, code, message),
            }
        }
        let answers = futures_util::future::join_all(calls).await;
        for ((channel, position), answer) in asked.into_iter().zip(answers) {
            match answer {
                Ok(Answer::Allowed) => {
                    self.approve(&channel);
                    if used < POLL_BYTES {
                        let before = out.len();
                        self.rejoin(&channel, &position, POLL_BYTES - used, out)
                            .await;
                        used += bytes(&out[before..]);
                    }
                }
                Ok(_) => push_channel_error(
                    out,
                    channel,
                    ErrorCode::Internal,
                    "the hook's answer does not fit the request".into(),
                ),
                Err(e) => {
                    let (code, message) = error_of(e);
                    push_channel_error(out, channel, code, message);
                }
            }
        }
    }

    /// Joins `channel` on this node from the client's position: what history
    /// holds after it is read as messages; a position history cannot serve
    /// (another epoch, too old) gets an id-less `subscribed` with
    /// `recovered:false`, the client's signal to resync.
    async fn rejoin(
        &mut self,
        channel: &str,
        position: &StreamPosition,
        budget: usize,
        out: &mut Out,
    ) {
        // Leaving forgets that the subscribe hook allowed it: kept across.
        let approved = self
            .rare
            .as_ref()
            .is_some_and(|r| r.approved.contains(channel));
        self.unsubscribe_quietly(channel);
        let joined = self.join(channel, Some(position), budget).await;
        if approved && joined.is_ok() {
            self.approve(channel);
        }
        match joined {
            Ok(recovery) if recovery.recovered => {
                if let Some(cursor) = self.cursor(channel).cloned() {
                    cursor.set_position(position.offset);
                    self.hold(channel, &recovery.epoch, recovery.offset);
                    push_within(&cursor, recovery.publications, budget, out);
                    cursor.ring();
                }
            }
            Ok(recovery) => {
                self.answer_subscribe(None, channel, recovery, out);
            }
            Err((code, message)) => {
                // The client may no longer hold it (its token changed): the
                // error names the channel, and the client drops it.
                push_channel_error(out, channel.to_owned(), code, message);
            }
        }
    }

    /// Reads what every held channel has after its position, from the log, or
    /// from history when the position is before what the log holds.
    /// Channels are read from a point that moves with every poll, so a busy
    /// channel that fills answers cannot starve the others.
    ///
    /// Joins and leaves are not in history: a session that fell behind
    /// them ends with 4004, as a connection does, and its client asks
    /// presence again when it is back.
    pub async fn read_held(&mut self, turn: u64, out: &mut Out) -> Result<(), Closing> {
        // Everything is read below: drop what is rung, so the next append rings
        // (and wakes a waiting poll) again.
        let mut rung = Vec::new();
        if self.take_rung(&mut rung).is_err() {
            return Ok(());
        }
        drop(rung);
        let mut cursors: Vec<_> = self
            .subscriptions()
            .map(|(c, cursor)| (c.clone(), cursor.clone()))
            .collect();
        if !cursors.is_empty() {
            let start = (turn % cursors.len() as u64) as usize;
            cursors.rotate_left(start);
        }
        let mut batch = Vec::new();
        let mut used = bytes(out);
        for (channel, cursor) in cursors {
            if used >= POLL_BYTES {
                cursor.ring();
                continue;
            }
            let before = out.len();
            cursor.clear_pending();
            let joined_at = self.held(&channel).map_or(0, |h| h.joined_at);
            let budget = POLL_BYTES - used;
            let from_log = if cursor.position() < joined_at {
                Err(None)
            } else {
                read_cursor(&cursor, POLL_BATCH, budget, &mut batch, out).map_err(Some)
            };
            match from_log {
                Err(Some(behind)) if behind.events => {
                    return Err(self.fell_behind(&cursor, behind));
                }
                Err(_) => self.read_history(&channel, budget, out).await,
                Ok(_) => {}
            }
            used += bytes(&out[before..]);
        }
        Ok(())
    }

    /// Serves a position the log does not reach from the broker's history.
    async fn read_history(&mut self, channel: &Arc<str>, budget: usize, out: &mut Out) {
        let Some(cursor) = self.cursor(channel).cloned() else {
            return;
        };
        let Some(held) = self.held(channel).cloned() else {
            return;
        };
        let position = StreamPosition {
            epoch: held.epoch,
            offset: cursor.position(),
        };
        let node = self.node.clone();
        match node.broker.recover(channel, Some(&position), budget).await {
            Ok(recovery) if recovery.recovered => {
                push_within(&cursor, recovery.publications, budget, out);
            }
            Ok(recovery) => {
                self.answer_subscribe(None, channel, recovery, out);
            }
            Err(e) => {
                tracing::debug!(%channel, error = %e, "history read for a long poll failed");
            }
        }
    }
}

/// Whether a held channel can continue from the client's `offset`: one at
/// or before what this node sent, or one its log holds. An offset beyond
/// both (a client ahead of the channel) is left to a re-join, which asks
/// the broker and resyncs a position the channel never reached, instead of
/// silently skipping every publication up to it.
fn reaches(cursor: &Cursor, offset: u64) -> bool {
    if offset <= cursor.position() {
        return true;
    }
    let mut at = Vec::new();
    cursor
        .log
        .read_after(offset - 1, 1, &mut at)
        .is_ok_and(|_| at.first().is_some_and(|p| p.offset == offset))
}

/// An id-less `error` naming the channel a poll named and the session
/// could not hold.
fn push_channel_error(out: &mut Out, channel: String, code: ErrorCode, message: String) {
    let error = ServerMessage::Error {
        id: None,
        code,
        message,
        channel: Some(channel),
    };
    out.push(error.encode().into());
}

/// The bytes of `frames` (an answer, or what a step added to it).
fn bytes(frames: &[bytes::Bytes]) -> usize {
    frames.iter().map(|f| f.len()).sum()
}

/// Moves into `out` what of `publications` fits an answer: at most
/// `POLL_BATCH` of them and `budget` bytes (one at least, into an empty
/// answer); the rest is read by the next poll.
fn push_within(
    cursor: &Cursor,
    mut publications: Vec<Arc<Publication>>,
    budget: usize,
    out: &mut Out,
) {
    publications.truncate(POLL_BATCH);
    keep_within(&mut publications, budget, out.is_empty());
    push_publications(cursor, &mut publications, out);
}
