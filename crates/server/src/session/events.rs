//! Lifecycle events from the engine (`crate::events`): a session's
//! `connect` once its `welcome` is out, a `subscribe` for every completed
//! join, an `unsubscribe` for every leave, and its `disconnect` when it
//! ends, after the unsubscribes of the channels it still held. Each is
//! queued without waiting; a session that never said `welcome` sends none.

use super::Session;

impl Session {
    /// The session said `welcome` (or, long polling, was made on this
    /// node): queues its `connect`. Once; nothing without `--events-url`.
    pub fn announce_connect(&mut self) {
        if self.node.events.is_none() || self.started_ms != 0 {
            return;
        }
        let client = self.public_client();
        let user = self.grant.user.as_deref();
        if let Some(at) = self.node.session_started(&client, self.conn_id, user) {
            self.started_ms = at;
        }
    }

    pub(super) fn announce_subscribe(&self, channel: &str) {
        if let (Some(events), true) = (&self.node.events, self.started_ms != 0) {
            events.subscribe(&self.public_client(), self.grant.user.as_deref(), channel);
        }
    }

    pub(super) fn announce_unsubscribe(&self, channel: &str) {
        if let (Some(events), true) = (&self.node.events, self.started_ms != 0) {
            events.unsubscribe(&self.public_client(), self.grant.user.as_deref(), channel);
        }
    }

    /// Queues the session's `disconnect` (once).
    pub(super) fn announce_disconnect(&mut self, code: u16, reason: &str) {
        if self.started_ms == 0 {
            return;
        }
        let client = self.public_client();
        let user = self.grant.user.as_deref();
        let started = std::mem::take(&mut self.started_ms);
        self.node
            .session_ended(&client, self.conn_id, user, code, reason, started);
    }
}
