//! A connection's outbox: the bounded queue of publications waiting to be
//! written to it, and the request to close it.
//!
//! The hub pushes without ever blocking; the connection's task drains it in
//! batches. One small allocation per connection, no memory held while the
//! queue is empty beyond what the last burst left (trimmed when it drains),
//! and a push that does not fit turns into a close with 4004 (slow consumer)
//! and frees the queue at once: a client that stops reading can never make
//! the server hold more than `send_queue` publications for it.

use crate::broker::Publication;
use parking_lot::Mutex;
use std::{collections::VecDeque, sync::Arc};
use tether_protocol::CloseCode;
use tokio::sync::{futures::Notified, Notify};

/// Capacity kept after a burst drains; beyond it the queue is trimmed.
const KEEP_CAPACITY: usize = 16;

#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the connection's task: new publications or a close request.
    notify: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Arc<Publication>>,
    close: Option<CloseCode>,
    /// The session is gone: pushes are dropped.
    finished: bool,
}

/// What happened to a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue was full: the connection is now asked to close with 4004.
    Overflowed,
    /// The connection is closing or gone; nothing was queued.
    Dropped,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queues a publication (called by the hub; never blocks).
    pub fn push(&self, publication: Arc<Publication>) -> Pushed {
        let mut state = self.state.lock();
        if state.finished || state.close.is_some() {
            return Pushed::Dropped;
        }
        if state.queue.len() >= self.capacity {
            state.close = Some(CloseCode::SlowConsumer);
            state.queue = VecDeque::new();
            drop(state);
            self.notify.notify_one();
            return Pushed::Overflowed;
        }
        let was_empty = state.queue.is_empty();
        state.queue.push_back(publication);
        drop(state);
        // One wake-up per batch: the task drains everything that is queued.
        if was_empty {
            self.notify.notify_one();
        }
        Pushed::Queued
    }

    /// Asks the connection to close with `code`; the first request wins.
    pub fn request_close(&self, code: CloseCode) {
        let mut state = self.state.lock();
        if state.close.is_none() {
            state.close = Some(code);
            drop(state);
            self.notify.notify_one();
        }
    }

    /// The close requested, if any.
    pub fn close_requested(&self) -> Option<CloseCode> {
        self.state.lock().close
    }

    /// Moves up to `max` queued publications into `out`. Returns the close
    /// request if there is one (then nothing is moved).
    pub fn take(&self, out: &mut Vec<Arc<Publication>>, max: usize) -> Result<(), CloseCode> {
        let mut state = self.state.lock();
        if let Some(code) = state.close {
            return Err(code);
        }
        let n = state.queue.len().min(max);
        out.extend(state.queue.drain(..n));
        if state.queue.is_empty() && state.queue.capacity() > KEEP_CAPACITY {
            state.queue = VecDeque::new();
        } else if !state.queue.is_empty() {
            // More than one batch was waiting: come back for the rest.
            drop(state);
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Resolves when there may be something to take (or a close request).
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Makes the next `notified()` resolve at once (the task looks again).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// The session ended: drop what is queued and refuse further pushes.
    pub fn finish(&self) {
        let mut state = self.state.lock();
        state.finished = true;
        state.queue = VecDeque::new();
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

    #[test]
    fn overflow_requests_4004_and_frees_the_queue() {
        let outbox = Outbox::new(2);
        assert_eq!(outbox.push(publication(1)), Pushed::Queued);
        assert_eq!(outbox.push(publication(2)), Pushed::Queued);
        assert_eq!(outbox.push(publication(3)), Pushed::Overflowed);
        assert_eq!(outbox.push(publication(4)), Pushed::Dropped);
        let mut out = Vec::new();
        assert_eq!(outbox.take(&mut out, 10), Err(CloseCode::SlowConsumer));
        assert!(out.is_empty());
    }

    #[test]
    fn take_drains_in_batches() {
        let outbox = Outbox::new(10);
        for i in 1..=5 {
            outbox.push(publication(i));
        }
        let mut out = Vec::new();
        assert_eq!(outbox.take(&mut out, 3), Ok(()));
        assert_eq!(
            out.iter().map(|p| p.offset).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        out.clear();
        assert_eq!(outbox.take(&mut out, 3), Ok(()));
        assert_eq!(out.len(), 2);
    }

    #[tokio::test]
    async fn a_push_wakes_the_waiting_task() {
        let outbox = Arc::new(Outbox::new(4));
        let waiter = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                outbox.notified().await;
                let mut out = Vec::new();
                let _ = outbox.take(&mut out, 4);
                out.len()
            })
        };
        tokio::task::yield_now().await;
        outbox.push(publication(1));
        assert_eq!(waiter.await.unwrap_or(0), 1);
    }

    #[test]
    fn finished_outbox_drops_pushes() {
        let outbox = Outbox::new(4);
        outbox.finish();
        assert_eq!(outbox.push(publication(1)), Pushed::Dropped);
    }
}
