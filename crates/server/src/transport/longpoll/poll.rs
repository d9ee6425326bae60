//! One long poll: bring the node's session to the positions the client
//! names, read what is new from the channels' logs (or from history, for a
//! position the log does not reach), and wait for a publication when there
//! is nothing yet.

use super::{close_frame, ending_frame, routes::PollBody, PollSession, PollState};
use crate::{
    channel_log::Cursor,
    node::Node,
    session::{keep_within, push_publications, read_cursor, Closing, Out},
};
use std::{
    pin::pin,
    sync::{atomic::Ordering, Arc},
};
use tether_protocol::StreamPosition;
use tokio::time::{sleep_until, Instant};

/// Publications one poll answer carries per channel at most.
const POLL_BATCH: usize = 256;
/// Bytes of publication frames a poll answer carries at most (beyond it:
/// one publication, when the answer has nothing else, and the `subscribed`
/// replies of resyncs, each at most `REPLAY_REPLY_BYTES`, joined before it
/// was full); what is left comes with the next poll.
pub(crate) const POLL_BYTES: usize = 256 * 1024;

/// Answers one poll; `body` names at most `--max-subscriptions` channels
/// (the route answers 413 to more).
pub(crate) async fn poll(node: &Arc<Node>, session: &Arc<PollSession>, body: PollBody) -> Out {
    let generation = session.poll_generation.fetch_add(1, Ordering::AcqRel) + 1;
    session.superseded.notify_waiters();
    let mut out = Out::new();
    let mut token_deadline;
    {
        let mut state = session.state.lock().await;
        if let Some(c) = &state.closed {
            return vec![close_frame(c)];
        }
        if let Err(c) = state.engine.take_token(&mut out) {
            return end(node, session, &mut state, out, c);
        }
        reconcile(&mut state, body, &mut out).await;
        read_all(&mut state, generation, &mut out).await;
        if !out.is_empty() {
            return out;
        }
        token_deadline = state.engine.expires_at();
    }
    let deadline = Instant::now() + node.config.heartbeat.long_poll_timeout;
    let bell = session.state.lock().await.engine.bell.clone();
    let shutdown = node.shutdown.clone();
    let mut cancelled = pin!(shutdown.cancelled());
    let mut timer = pin!(sleep_until(
        token_deadline.map_or(deadline, |t| t.min(deadline))
    ));
    loop {
        let mut rung = pin!(bell.notified());
        let mut newer = pin!(session.superseded.notified());
        rung.as_mut().enable();
        newer.as_mut().enable();
        if session.poll_generation.load(Ordering::Acquire) != generation {
            return out;
        }
        tokio::select! {
            () = &mut cancelled => {
                let mut state = session.state.lock().await;
                return end(node, session, &mut state, out, Closing::draining(node));
            }
            () = &mut timer => {
                if token_deadline.is_none_or(|t| Instant::now() < t) {
                    return out;
                }
                let mut state = session.state.lock().await;
                // Another request may have brought a refreshed token while
                // this poll waited: it replaced the grant, so wait on.
                token_deadline = state.engine.expires_at();
                if let Some(c) = state.engine.token_expired() {
                    return end(node, session, &mut state, out, c);
                }
                if Instant::now() >= deadline {
                    return out;
                }
                timer.as_mut().reset(token_deadline.map_or(deadline, |t| t.min(deadline)));
            }
            () = &mut newer => {}
            () = &mut rung => {
                let mut state = session.state.lock().await;
                read_all(&mut state, generation, &mut out).await;
                if !out.is_empty() {
                    return out;
                }
            }
        }
    }
}

/// Ends the session with `c`: the answer carries the close.
fn end(
    node: &Arc<Node>,
    session: &Arc<PollSession>,
    state: &mut PollState,
    mut out: Out,
    c: Closing,
) -> Out {
    out.push(ending_frame(node, &c));
    state.closed = Some(c.clone());
    node.longpoll.remove(node, &session.client, c);
    out
}

/// Brings the session's channels to the client's: joins what it names and
/// the node does not hold (recovering from the named position), leaves
/// what it no longer names, and moves the rest to the named offsets.
async fn reconcile(state: &mut PollState, body: PollBody, out: &mut Out) {
    let named: std::collections::HashSet<&str> = body.channels.keys().map(String::as_str).collect();
    let gone: Vec<Arc<str>> = state
        .engine
        .subscriptions()
        .map(|(c, _)| c.clone())
        .filter(|c| !named.contains(&**c))
        .collect();
    for channel in gone {
        state.engine.unsubscribe_quietly(&channel).await;
    }
    for (channel, position) in body.channels {
        let same_epoch = state
            .engine
            .held(&channel)
            .is_some_and(|h| h.epoch == position.epoch);
        match state.engine.cursor(&channel) {
            Some(cursor) if same_epoch && reaches(cursor, position.offset) => {
                cursor.set_position(position.offset);
            }
            // The answer is full: the channel is joined when the next poll
            // names it again.
            _ if bytes(out) >= POLL_BYTES => {}
            _ => join(state, &channel, &position, out).await,
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

/// Joins `channel` on this node from the client's position: what history
/// holds after it is read as messages; a position history cannot serve
/// (another epoch, too old) gets an id-less `subscribed` with
/// `recovered:false`, the client's signal to resync.
async fn join(state: &mut PollState, channel: &str, position: &StreamPosition, out: &mut Out) {
    state.engine.unsubscribe_quietly(channel).await;
    match state.engine.join(channel, Some(position)).await {
        Ok(recovery) if recovery.recovered => {
            if let Some(cursor) = state.engine.cursor(channel).cloned() {
                cursor.set_position(position.offset);
                state.engine.hold(channel, &recovery.epoch, recovery.offset);
                let mut publications = recovery.publications;
                publications.truncate(POLL_BATCH);
                keep_within(
                    &mut publications,
                    POLL_BYTES.saturating_sub(bytes(out)),
                    out.is_empty(),
                );
                push_publications(&cursor, &mut publications, out);
                cursor.ring();
            }
        }
        Ok(recovery) => {
            state.engine.answer_subscribe(None, channel, recovery, out);
        }
        Err((code, message)) => {
            // The client may no longer hold it (its token changed): the
            // error names the channel, and the client drops it.
            out.push(
                serde_json::json!({"type": "error", "code": code.as_str(), "message": message, "channel": channel})
                    .to_string()
                    .into(),
            );
        }
    }
}

/// Reads what every held channel has after its position, from the log, or
/// from history when the position is before what the log holds.
/// Channels are read from a point that moves with every poll, so a busy
/// channel that fills answers cannot starve the others.
async fn read_all(state: &mut PollState, generation: u64, out: &mut Out) {
    // Everything is read below: drop what is rung, so the next append rings
    // (and wakes a waiting poll) again.
    let mut rung = Vec::new();
    if state.engine.take_rung(&mut rung).is_err() {
        return;
    }
    drop(rung);
    let mut cursors: Vec<_> = state
        .engine
        .subscriptions()
        .map(|(c, cursor)| (c.clone(), cursor.clone()))
        .collect();
    if !cursors.is_empty() {
        let start = (generation % cursors.len() as u64) as usize;
        cursors.rotate_left(start);
    }
    let mut batch = Vec::new();
    let mut bytes = bytes(out);
    for (channel, cursor) in cursors {
        if bytes >= POLL_BYTES {
            cursor.ring();
            continue;
        }
        let before = out.len();
        cursor.clear_pending();
        let joined_at = state.engine.held(&channel).map_or(0, |h| h.joined_at);
        let budget = POLL_BYTES - bytes;
        let from_log = if cursor.position() < joined_at {
            Err(())
        } else {
            read_cursor(&cursor, POLL_BATCH, budget, &mut batch, out).map_err(|_| ())
        };
        if from_log.is_err() {
            from_history(state, &channel, budget, out).await;
        }
        bytes += out[before..].iter().map(|f| f.len()).sum::<usize>();
    }
}

/// The bytes of the frames in an answer so far.
fn bytes(out: &Out) -> usize {
    out.iter().map(|f| f.len()).sum()
}

/// Serves a position the log does not reach from the broker's history.
async fn from_history(state: &mut PollState, channel: &Arc<str>, budget: usize, out: &mut Out) {
    let Some(cursor) = state.engine.cursor(channel).cloned() else {
        return;
    };
    let Some(held) = state.engine.held(channel).cloned() else {
        return;
    };
    let position = StreamPosition {
        epoch: held.epoch,
        offset: cursor.position(),
    };
    let node = state.engine.node().clone();
    match node.broker.recover(channel, Some(&position)).await {
        Ok(recovery) if recovery.recovered => {
            let mut publications = recovery.publications;
            publications.truncate(POLL_BATCH);
            keep_within(&mut publications, budget, out.is_empty());
            push_publications(&cursor, &mut publications, out);
        }
        Ok(recovery) => {
            state.engine.answer_subscribe(None, channel, recovery, out);
        }
        Err(e) => {
            tracing::debug!(%channel, error = %e, "history read for a long poll failed");
        }
    }
}
