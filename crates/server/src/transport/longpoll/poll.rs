//! One long poll: the engine brings the node's session to the positions the
//! client names and reads what is new (`session/positions.rs`); this waits
//! for a publication when there is nothing yet, and for the poll timeout,
//! the token's expiry, a newer poll or the drain.

use super::{close_frame, ending_frame, PollSession, PollState, Registry};
use crate::{
    node::Node,
    session::{Closing, Out},
};
use std::{
    pin::pin,
    sync::{atomic::Ordering, Arc},
};
use tokio::time::{sleep_until, Instant};

/// What a poll names: each channel the client holds, with its position.
#[derive(serde::Deserialize)]
pub(crate) struct PollBody {
    #[serde(default)]
    pub channels: std::collections::HashMap<String, tether_protocol::StreamPosition>,
}

/// Answers one poll; `body` names at most `--max-subscriptions` channels
/// (the route answers 413 to more).
pub(crate) async fn poll(
    node: &Arc<Node>,
    registry: &Arc<Registry>,
    session: &Arc<PollSession>,
    body: PollBody,
) -> Out {
    let generation = session.poll_generation.fetch_add(1, Ordering::AcqRel) + 1;
    session.superseded.notify_waiters();
    // Engine work runs in a task the session owns (`PollSession::run`):
    // this future is dropped when the client hangs up. `Err` is an answer
    // to give at once; `Ok` what waiting for one needs.
    let first = session.run(node, {
        let (node, registry, session) = (node.clone(), registry.clone(), session.clone());
        move |mut state| async move {
            let mut out = Out::new();
            if let Some(c) = &state.closed {
                return Err(vec![close_frame(c)]);
            }
            if let Err(c) = state.engine.take_token(&mut out) {
                return Err(end(&node, &registry, &session, &mut state, out, c));
            }
            if let Err(c) = state.engine.check_expiry().await {
                return Err(end(&node, &registry, &session, &mut state, out, c));
            }
            let superseded = || session.poll_generation.load(Ordering::Acquire) != generation;
            state
                .engine
                .follow(body.channels, &mut out, superseded)
                .await;
            if let Err(c) = state.engine.read_held(generation, &mut out).await {
                return Err(end(&node, &registry, &session, &mut state, out, c));
            }
            if !out.is_empty() {
                return Err(out);
            }
            Ok((state.engine.check_expiry_at(), state.engine.bell.clone()))
        }
    });
    let (mut token_deadline, bell) = match first.await {
        Some(Ok(waiting)) => waiting,
        Some(Err(answer)) => return answer,
        None => return Out::new(),
    };
    let deadline = Instant::now() + node.config.heartbeat.long_poll_timeout;
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
            return Out::new();
        }
        tokio::select! {
            () = &mut cancelled => {
                let mut state = session.state.lock().await;
                return end(node, registry, session, &mut state, Out::new(), Closing::draining(node));
            }
            () = &mut timer => {
                if token_deadline.is_none_or(|t| Instant::now() < t) {
                    return Out::new();
                }
                // Another request may have brought a refreshed token while
                // this poll waited (it replaced the grant: wait on), or the
                // refresh hook is due (asked in the session's task).
                let checked = session.run(node, {
                    let (node, registry, session) = (node.clone(), registry.clone(), session.clone());
                    move |mut state| async move {
                        match state.engine.check_expiry().await {
                            Ok(()) => Ok(state.engine.check_expiry_at()),
                            Err(c) => Err(end(&node, &registry, &session, &mut state, Out::new(), c)),
                        }
                    }
                });
                match checked.await {
                    Some(Ok(at)) => token_deadline = at,
                    Some(Err(answer)) => return answer,
                    None => return Out::new(),
                }
                if Instant::now() >= deadline {
                    return Out::new();
                }
                timer.as_mut().reset(token_deadline.map_or(deadline, |t| t.min(deadline)));
            }
            () = &mut newer => {}
            () = &mut rung => {
                let read = session.run(node, {
                    let (node, registry, session) = (node.clone(), registry.clone(), session.clone());
                    move |mut state| async move {
                        let mut out = Out::new();
                        match state.engine.read_held(generation, &mut out).await {
                            Ok(()) => out,
                            Err(c) => end(&node, &registry, &session, &mut state, out, c),
                        }
                    }
                });
                match read.await {
                    Some(read) if !read.is_empty() => return read,
                    _ => {}
                }
            }
        }
    }
}

/// Ends the session with `c`: the answer carries the close.
fn end(
    node: &Arc<Node>,
    registry: &Registry,
    session: &Arc<PollSession>,
    state: &mut PollState,
    mut out: Out,
    c: Closing,
) -> Out {
    out.push(ending_frame(node, &c));
    state.closed = Some(c.clone());
    registry.remove(node, &session.client, c);
    out
}
