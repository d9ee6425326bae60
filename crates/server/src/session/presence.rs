//! Presence in the engine: a session subscribed to a presence channel is
//! present there from the moment its join completes until it leaves, and
//! may ask who else is (as may a token whose `presence` claim allows).

use super::{Out, Session};
use crate::node::PresenceRefusal;
use std::time::{SystemTime, UNIX_EPOCH};
use tether_protocol::{ErrorCode, PresenceEntry, ServerMessage};

impl Session {
    /// Records this session as present in `channel` if its rule says so.
    /// Awaits nothing: called once the join is done, where it cannot stop.
    pub(super) fn enter_presence(&mut self, channel: &str) {
        let rule = self.node.rules.get(channel);
        if !rule.presence {
            return;
        }
        let join_leave = rule.join_leave;
        let joined_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let entry = PresenceEntry {
            client: self.public_client(),
            user: self.grant.user.clone(),
            info: self.grant.info.clone(),
            joined_at_ms,
        };
        self.node.broker.presence_add(channel, entry, join_leave);
        // A publish from now on must follow the join to every node.
        self.announced |= join_leave;
    }

    /// Removes this session's presence in `channel` (every leave calls it).
    pub(super) fn exit_presence(&self, channel: &str) {
        let rule = self.node.rules.get(channel);
        if rule.presence {
            self.node
                .broker
                .presence_remove(channel, &self.public_client(), rule.join_leave);
        }
    }

    /// Before a publish: waits until this session's announced joins have
    /// reached the broker, so nobody gets its publication before its join.
    /// A wait that is dropped leaves the flag set, and the next publish waits.
    pub(super) async fn presence_flushed(&mut self) {
        if self.announced {
            self.node.broker.presence_flushed().await;
            self.announced = false;
        }
    }

    /// Answers `presence` (or `presence_stats` when `stats`): to a
    /// subscriber of the channel, or a token whose `presence` claim names
    /// it; `forbidden` otherwise.
    pub(super) async fn presence_request(
        &mut self,
        id: u64,
        channel: String,
        stats: bool,
        out: &mut Out,
    ) {
        let node = self.node.clone();
        if !node.rules.get(&channel).presence {
            let refusal = PresenceRefusal::Disabled(channel);
            return Self::reply_error(out, Some(id), ErrorCode::BadRequest, refusal.to_string());
        }
        if !self.subs.contains_key(&channel) && !self.grant.can_see_presence(&channel) {
            node.metrics.refusal("presence_forbidden");
            return Self::reply_error(
                out,
                Some(id),
                ErrorCode::Forbidden,
                format!(
                    "no permission to ask the presence of {channel:?}: subscribe to it, or use a \
                     token whose presence claim names it"
                ),
            );
        }
        let reply = if stats {
            node.presence_stats(&channel)
                .await
                .map(|s| ServerMessage::PresenceStats {
                    id,
                    channel,
                    clients: s.clients,
                    users: s.users,
                })
        } else {
            node.presence(&channel)
                .await
                .map(|clients| ServerMessage::Presence {
                    id,
                    channel,
                    clients,
                })
        };
        match reply {
            Ok(reply) => Self::reply(out, reply),
            Err(e) => Self::reply_error(out, Some(id), refusal_code(&e), e.to_string()),
        }
    }
}

/// The error code a presence refusal is answered with.
fn refusal_code(e: &PresenceRefusal) -> ErrorCode {
    match e {
        PresenceRefusal::InvalidChannel(_) => ErrorCode::InvalidChannel,
        PresenceRefusal::Disabled(_) | PresenceRefusal::TooMany(..) => ErrorCode::BadRequest,
        PresenceRefusal::Broker(e) => super::requests::error_code(e),
    }
}
