//! The rest of a WebSocket replay: a `subscribed` reply carries at most
//! `REPLAY_REPLY_BYTES`, and the gap between it and the offset the session
//! joined the channel's log at is read from the broker's history, one page
//! per turn of the session, between reads of inbound frames. So a 100-byte
//! subscribe never makes the broker read (or the node build) more than a
//! page at a time, and a client that does not read stops the reading: the
//! next page is only asked for once the last one was written.

use super::{push_publications, Closing, Out, Session};
use crate::channel_log::Cursor;
use std::{sync::Arc, time::Duration};
use tether_protocol::{CloseCode, RetryHint, StreamPosition};

/// Bytes of publication frames one turn reads from history at most (the
/// broker's budget: it may pass it by one publication).
pub(crate) const REPLAY_PAGE_BYTES: usize = 256 * 1024;

impl Session {
    /// Reads the next page of `cursor`'s gap from history into `out`, in
    /// offset order, and rings the cursor so that the next turn goes on (from
    /// history, or from the log once the gap is closed). A gap history no
    /// longer holds ends the session with 4004, as a cursor that fell off its
    /// log does: the client reconnects and recovers from what it has.
    pub async fn read_replay(&mut self, cursor: Arc<Cursor>, out: &mut Out) -> Result<(), Closing> {
        let channel = cursor.log.name.clone();
        // Unsubscribed (or subscribed again) since it was rung: nothing more.
        if !self
            .subs
            .get(&channel)
            .is_some_and(|c| Arc::ptr_eq(c, &cursor))
        {
            return Ok(());
        }
        let Some(held) = self.held(&channel) else {
            return Ok(());
        };
        let since = StreamPosition {
            epoch: held.epoch.clone(),
            offset: cursor.position(),
        };
        let node = self.node.clone();
        let read = node
            .broker
            .recover(&channel, Some(&since), REPLAY_PAGE_BYTES)
            .await;
        let mut recovery = match read {
            Ok(recovery) => recovery,
            Err(e) => {
                tracing::debug!(%channel, error = %e, "history read for a replay failed");
                let reason = RetryHint(Duration::from_secs(1))
                    .append_to("reading the channel's history failed; reconnect and recover");
                return Err(Closing::new(CloseCode::TryAgainLater, reason));
            }
        };
        let before = cursor.position();
        if recovery.recovered {
            push_publications(&cursor, &mut recovery.publications, out);
        }
        if cursor.position() == before {
            return Err(Closing::new(
                CloseCode::SlowConsumer,
                "the channel's history no longer holds the rest of the replay; reconnect and recover",
            ));
        }
        cursor.ring();
        Ok(())
    }
}
