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
use std::sync::Arc;

/// A join under way: the session's cursor in the hub and, while this joiner
/// subscribes the channel at the broker for the node, that interest.
/// Dropped before [`Joining::done`], it undoes both.
pub(super) struct Joining<'a> {
    node: &'a Arc<Node>,
    log: Arc<ChannelLog>,
    conn_id: u64,
    /// This joiner's broker subscribe is under way: the broker holds an
    /// interest for it that the channel's log does not record yet.
    subscribing: bool,
    done: bool,
}

impl<'a> Joining<'a> {
    /// Guards the cursor `conn_id` was just given in `log` by the hub.
    pub fn new(node: &'a Arc<Node>, log: Arc<ChannelLog>, conn_id: u64) -> Self {
        Joining {
            node,
            log,
            conn_id,
            subscribing: false,
            done: false,
        }
    }

    /// Subscribes the channel at the broker for this node (the caller is
    /// its first joiner here) and settles the log's interest, which later
    /// joiners wait for: live, or failed on an error or when dropped.
    pub async fn subscribe_first(&mut self) -> Result<(), BrokerError> {
        self.subscribing = true;
        let subscribed = self.node.broker.subscribe(&self.log.name).await;
        // Settled either way: on an error the broker gave the interest back.
        self.subscribing = false;
        self.log.settle_interest(subscribed.is_ok());
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
        if self.subscribing {
            // Dropped halfway through the broker subscribe: the joiners
            // waiting for it fail (and retry), and the interest the broker
            // took for this call goes back.
            self.log.settle_interest(false);
            self.node.release_interest(&self.log.name);
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

    fn node() -> Arc<Node> {
        Node::new(crate::Config::default(), 1024).unwrap_or_else(|e| panic!("{e}"))
    }

    fn join(node: &Arc<Node>, conn_id: u64) -> (Arc<crate::channel_log::Cursor>, bool) {
        let bell = Arc::new(crate::doorbell::Doorbell::new());
        node.hub.add("c", conn_id, bell)
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
    async fn a_first_joiner_dropped_while_subscribing_fails_the_waiters_and_gives_back_its_interest(
    ) {
        let node = node();
        let (cursor, _) = join(&node, 1);
        let (waiter, first) = join(&node, 2);
        assert!(!first);
        let mut joining = Joining::new(&node, cursor.log.clone(), 1);
        // As if dropped while the broker call was pending: the broker has
        // taken the node's interest (a stream is held for it).
        node.broker
            .subscribe("c")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(node.metrics.channel_streams.get(), 1);
        joining.subscribing = true;
        drop(joining);
        assert!(
            !waiter.log.interest_live().await,
            "the waiter fails instead of waiting forever"
        );
        assert_eq!(node.hub.channel_count(), 1, "the waiter is still there");
        drop(Joining::new(&node, waiter.log.clone(), 2));
        assert_eq!(node.hub.channel_count(), 0);
        // The release matched the dropped subscribe: the memory broker
        // holds no stream for a channel nobody subscribes and nobody
        // published to.
        node.tasks.close();
        node.tasks.wait().await;
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
