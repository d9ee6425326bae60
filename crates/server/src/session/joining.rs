//! A join that leaves nothing behind when it does not finish.
//!
//! Joining a channel takes things in several steps — a cursor in the hub,
//! for the channel's first joiner on this node an interest at the broker,
//! then the history read — with an await between them (the broker subscribe,
//! waiting for another joiner's subscribe, the history read; backend hooks
//! will add more). Any await is a point where the join may stop: an error,
//! or its future dropped (hyper drops a request's future when its client
//! hangs up). [`Joining`] holds what was taken so far and its `Drop` gives
//! it back, whichever way the join stopped, without awaiting anything.

use crate::{broker::BrokerError, channel_log::ChannelLog, node::Node};
use parking_lot::Mutex;
use std::sync::Arc;

/// A join under way: the session's cursor in the hub and, while this joiner
/// subscribes the channel at the broker for the node, that call.
/// Dropped before [`Joining::done`], it undoes both.
pub(super) struct Joining<'a> {
    node: &'a Arc<Node>,
    log: Arc<ChannelLog>,
    conn_id: u64,
    /// The broker subscribe this joiner started and has not seen end.
    subscribing: Option<Arc<Mutex<Handoff>>>,
    done: bool,
}

/// Who undoes a join whose broker subscribe is still running: the call
/// runs in a node task, and whichever of the task and the joiner learns of
/// the other's end second does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handoff {
    Running,
    /// The joiner went away: the task settles the interest failed, gives
    /// back what the broker took and removes the joiner's cursor.
    Abandoned,
    /// The task settled the interest: the joiner undoes as after any step.
    Finished,
}

impl<'a> Joining<'a> {
    /// Guards the cursor `conn_id` was just given in `log` by the hub.
    pub fn new(node: &'a Arc<Node>, log: Arc<ChannelLog>, conn_id: u64) -> Self {
        Joining {
            node,
            log,
            conn_id,
            subscribing: None,
            done: false,
        }
    }

    /// Subscribes the channel at the broker for this node (the caller is
    /// its first joiner here) and settles the log's interest, which later
    /// joiners wait for: live, or failed on an error or when abandoned.
    ///
    /// The broker call runs in a node task: a broker's subscribe need not
    /// be cancel-safe (Redis counts the interest, then awaits SUBSCRIBE and
    /// the channel's position), so it is never dropped halfway; a joiner
    /// dropped meanwhile hands the undoing to the task.
    pub async fn subscribe_first(&mut self) -> Result<(), BrokerError> {
        let handoff = Arc::new(Mutex::new(Handoff::Running));
        self.subscribing = Some(handoff.clone());
        let (node, log, conn_id) = (self.node.clone(), self.log.clone(), self.conn_id);
        let call = self.node.tasks.spawn(async move {
            let subscribed = node.broker.subscribe(&log.name).await;
            let mut state = handoff.lock();
            if *state == Handoff::Abandoned {
                drop(state);
                log.settle_interest(false);
                if subscribed.is_ok() {
                    node.release_interest(&log.name);
                }
                // The interest is failed: the last one out releases nothing.
                node.hub.remove(&log.name, conn_id);
            } else {
                // Settled before the joiner can see `Finished`.
                log.settle_interest(subscribed.is_ok());
                *state = Handoff::Finished;
            }
            subscribed
        });
        let subscribed = call.await.unwrap_or_else(|e| {
            // The broker call panicked (a bug): waiters fail and retry.
            self.log.settle_interest(false);
            Err(BrokerError::Unavailable(format!(
                "broker subscribe failed: {e}"
            )))
        });
        self.subscribing = None;
        subscribed
    }

    /// The join is complete: the session records the subscription, and
    /// what it took is its own to give back on leave.
    pub fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Joining<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(handoff) = &self.subscribing {
            let mut state = handoff.lock();
            if *state == Handoff::Running {
                // The broker call goes on without this joiner: its task
                // undoes the join when the call ends.
                *state = Handoff::Abandoned;
                return;
            }
        }
        if let Some(last) = self.node.hub.remove(&self.log.name, self.conn_id) {
            if last.interest_is_live() {
                self.node.release_interest(&last.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future as _;

    fn node() -> Arc<Node> {
        Node::new(crate::Config::default(), 1024).unwrap_or_else(|e| panic!("{e}"))
    }

    fn join(node: &Arc<Node>, conn_id: u64) -> (Arc<crate::channel_log::Cursor>, bool) {
        let bell = Arc::new(crate::doorbell::Doorbell::new());
        node.hub
            .add("c", conn_id, bell)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[tokio::test]
    async fn a_join_dropped_before_it_is_done_leaves_the_hub() {
        let node = node();
        let (cursor, first) = join(&node, 1);
        assert!(first);
        let mut joining = Joining::new(&node, cursor.log.clone(), 1);
        joining
            .subscribe_first()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drop(joining);
        assert_eq!(node.hub.channel_count(), 0, "the cursor is gone");
        // The interest went back in a task: the next first joiner takes it
        // afresh, and the channel works as before.
        node.tasks.close();
        node.tasks.wait().await;
        let (cursor, first) = join(&node, 2);
        assert!(first, "the channel starts over on this node");
        let mut joining = Joining::new(&node, cursor.log.clone(), 2);
        joining
            .subscribe_first()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        joining.done();
        assert!(cursor.log.interest_is_live());
        assert_eq!(node.hub.channel_count(), 1);
    }

    #[tokio::test]
    async fn a_first_joiner_dropped_while_subscribing_hands_the_undoing_to_the_broker_call() {
        let node = node();
        let (cursor, _) = join(&node, 1);
        let (waiter, first) = join(&node, 2);
        assert!(!first);
        let mut joining = Joining::new(&node, cursor.log.clone(), 1);
        {
            // Started, and dropped while the broker call's task has not run
            // yet (one thread: it runs when this test next yields).
            let call = joining.subscribe_first();
            tokio::pin!(call);
            let polled =
                std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
        }
        drop(joining);
        assert_eq!(node.hub.channel_count(), 1, "undone by the task, later");
        assert!(
            !waiter.log.interest_live().await,
            "the waiter fails instead of waiting forever"
        );
        drop(Joining::new(&node, waiter.log.clone(), 2));
        node.tasks.close();
        node.tasks.wait().await;
        assert_eq!(node.hub.channel_count(), 0, "both cursors are gone");
        // The broker took the node's interest (a stream is held for it) and
        // the task gave it back: the memory broker holds no stream for a
        // channel nobody subscribes and nobody published to.
        assert_eq!(node.metrics.channel_streams.get(), 0);
    }

    #[tokio::test]
    async fn a_finished_join_is_kept() {
        let node = node();
        let (cursor, _) = join(&node, 1);
        let mut joining = Joining::new(&node, cursor.log.clone(), 1);
        joining
            .subscribe_first()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        joining.done();
        assert_eq!(node.hub.channel_count(), 1);
        assert!(cursor.log.interest_is_live());
    }
}
