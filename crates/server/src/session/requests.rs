//! Requests on a session: decoding, the message rate and strikes, and
//! subscribe / unsubscribe / publish against the hub and the broker.

use super::{
    backend::Pending, joining::Joining, publish::new_channels_refused, Closing, Out, Session,
    MAX_STRIKES,
};
use crate::broker::{BrokerError, Publication, Recovery};
use crate::hub::HubFull;
use std::sync::Arc;
use tether_protocol::{ClientMessage, CloseCode, ErrorCode, ServerMessage, StreamPosition};
use tokio::time::Instant;

impl Session {
    pub(super) fn reply(out: &mut Out, message: ServerMessage) {
        out.push(message.encode().into());
    }

    pub(super) fn reply_error(out: &mut Out, id: Option<u64>, code: ErrorCode, message: String) {
        let reply = ServerMessage::Error {
            id,
            code,
            message,
            channel: None,
        };
        Self::reply(out, reply);
    }

    /// Counts an invalid or refused message; too many in a row ends the session.
    fn strike(
        &mut self,
        out: &mut Out,
        id: Option<u64>,
        code: ErrorCode,
        message: String,
    ) -> Result<(), Closing> {
        self.strikes += 1;
        Self::reply_error(out, id, code, message);
        if self.strikes >= MAX_STRIKES {
            return Err(if code == ErrorCode::RateLimited {
                Closing::new(
                    CloseCode::RateLimited,
                    "message rate limit exceeded repeatedly",
                )
            } else {
                Closing::new(
                    CloseCode::PolicyViolation,
                    "too many invalid messages in a row",
                )
            });
        }
        Ok(())
    }

    /// Takes a token from the message bucket for something that is not a
    /// request (a control frame, a poll): a flood is throttled, then closed
    /// like a message flood.
    pub fn take_token(&mut self, out: &mut Out) -> Result<(), Closing> {
        match self.bucket.take(Instant::now().into_std()) {
            // Accepted: the strikes counted "in a row" start over, as after
            // an accepted message.
            Ok(()) => {
                self.strikes = 0;
                Ok(())
            }
            Err(retry) => {
                self.node.metrics.refusal("message_rate");
                self.strike(out, None, ErrorCode::RateLimited, too_many(retry))
            }
        }
    }

    /// A binary frame: not part of the protocol.
    pub fn on_binary(&mut self, out: &mut Out) -> Result<(), Closing> {
        self.node.metrics.messages_in.inc();
        self.strike(
            out,
            None,
            ErrorCode::UnsupportedFrame,
            "binary frames are not part of the Tether protocol; send JSON text".into(),
        )
    }

    /// One inbound text message: decoded, rate-limited, handled; replies go
    /// to `out`. A request the backend decides is waited for here: the
    /// caller runs this where it is never dropped halfway (long polling's
    /// session task).
    pub async fn on_text(&mut self, text: &str, out: &mut Out) -> Result<(), Closing> {
        if let Some(pending) = self.on_text_step(text, out).await? {
            self.wait(pending, out).await?;
        }
        Ok(())
    }

    /// [`Session::on_text`], except that a request the backend decides is
    /// returned at its call, for the transport to await and
    /// [`Session::resume`] (nothing is changed until then).
    pub async fn on_text_step(
        &mut self,
        text: &str,
        out: &mut Out,
    ) -> Result<Option<Box<Pending>>, Closing> {
        self.node.metrics.messages_in.inc();
        let decoded = ClientMessage::decode(text);
        if let Err(retry) = self.bucket.take(Instant::now().into_std()) {
            let id = match &decoded {
                Ok(m) => request_id(m),
                Err(e) => e.id,
            };
            self.node.metrics.refusal("message_rate");
            return self
                .strike(out, id, ErrorCode::RateLimited, too_many(retry))
                .map(|()| None);
        }
        match decoded {
            Err(e) => self.strike(out, e.id, e.code, e.message).map(|()| None),
            Ok(request) => {
                self.strikes = 0;
                Ok(self.handle(request, out).await)
            }
        }
    }

    async fn handle(&mut self, request: ClientMessage, out: &mut Out) -> Option<Box<Pending>> {
        match request {
            ClientMessage::Ping => Self::reply(out, ServerMessage::Pong),
            ClientMessage::Subscribe {
                id,
                channel,
                recover,
            } => return self.subscribe(id, channel, recover, out).await,
            ClientMessage::Unsubscribe { id, channel } => {
                if !self.drop_subscription(&channel) {
                    if self.on_connection() {
                        Self::reply_error(
                            out,
                            Some(id),
                            ErrorCode::NotSubscribed,
                            format!("not subscribed to {channel:?}"),
                        );
                        return None;
                    }
                } else {
                    self.leave(&channel);
                }
                Self::reply(out, ServerMessage::Unsubscribed { id, channel });
            }
            ClientMessage::Publish {
                id,
                channel,
                data,
                key,
            } => return self.publish(id, channel, data, key, out).await,
            ClientMessage::Presence { id, channel } => {
                self.presence_request(id, channel, false, out).await
            }
            ClientMessage::PresenceStats { id, channel } => {
                self.presence_request(id, channel, true, out).await
            }
            ClientMessage::Rpc { id, method, data } => return self.rpc(id, method, data, out),
        }
        None
    }

    async fn subscribe(
        &mut self,
        id: u64,
        channel: String,
        recover: Option<StreamPosition>,
        out: &mut Out,
    ) -> Option<Box<Pending>> {
        if self.subs.contains_key(channel.as_str()) {
            // A channel the backend subscribed the session to is the
            // client's to take over (with its recovery) once.
            if self.on_connection() && !self.grant.is_server_channel(&channel) {
                Self::reply_error(
                    out,
                    Some(id),
                    ErrorCode::AlreadySubscribed,
                    format!("already subscribed to {channel:?}"),
                );
                return None;
            }
            // A retried subscribe: answered afresh from the position it names.
            self.unsubscribe_quietly(&channel);
        }
        if self.needs_subscribe_hook(&channel) {
            return self.subscribe_through_hook(id, channel, recover, out);
        }
        self.finish_subscribe(id, &channel, recover, out).await;
        None
    }

    /// Joins `channel` and answers the subscribe `id`.
    pub(super) async fn finish_subscribe(
        &mut self,
        id: u64,
        channel: &str,
        recover: Option<StreamPosition>,
        out: &mut Out,
    ) {
        // The reply carries what fits in it; the rest of the gap is read on
        // later turns (a connection) or polls (a retried client).
        match self
            .join(channel, recover.as_ref(), REPLAY_REPLY_BYTES)
            .await
        {
            Ok(recovery) => self.answer_subscribe(Some(id), channel, recovery, out),
            Err((code, message)) => Self::reply_error(out, Some(id), code, message),
        }
    }

    /// What a join checks before it takes anything: the name, the
    /// permission, the session's subscription cap.
    pub(super) fn may_join(&self, channel: &str) -> Result<(), (ErrorCode, String)> {
        // Decoded requests are checked already; a long poll names its
        // channels in its own body and is checked here.
        tether_protocol::message::validate_channel(channel)
            .map_err(|m| (ErrorCode::InvalidChannel, m))?;
        if !self.grant.can_subscribe(channel) {
            self.node.metrics.refusal("subscribe_forbidden");
            return Err((
                ErrorCode::Forbidden,
                format!("no permission to subscribe to {channel:?}"),
            ));
        }
        let max = self.node.config.limits.max_subscriptions;
        if self.subs.len() >= max {
            self.node.metrics.refusal("max_subscriptions");
            return Err((
                ErrorCode::TooManySubscriptions,
                format!("at most {max} subscriptions per connection; unsubscribe first"),
            ));
        }
        Ok(())
    }

    /// Checks the name, the permission and the subscription cap, joins the channel's
    /// log and reads the broker's answer to `recover` (at most `budget` bytes of it).
    pub(crate) async fn join(
        &mut self,
        channel: &str,
        recover: Option<&StreamPosition>,
        budget: usize,
    ) -> Result<Recovery, (ErrorCode, String)> {
        self.may_join(channel)?;
        // A place in the node's subscription budget (with a share per
        // address), given back on drop if this join fails or is cancelled.
        let place = self
            .node
            .admission
            .take_subscription(self.permit.key())
            .map_err(|full| {
                self.node.metrics.refusal(full.reason());
                (ErrorCode::TooManySubscriptions, full.message())
            })?;
        if !self.node.hub.contains(channel) {
            self.take_new_channel()?;
        }
        // Join the channel's log before reading history: anything published
        // from now on is kept for this cursor, and offsets the reply already
        // covers are skipped on send. At the node's channel cap (whatever the
        // broker), nothing is made at the broker. Until the join is done,
        // `joining` undoes it if it stops (an error, or this future dropped).
        let (cursor, first) = self
            .node
            .hub
            .add(channel, self.conn_id, self.bell.clone())
            .map_err(|HubFull(max)| {
                self.node.metrics.refusal("channels_full");
                (
                    ErrorCode::OverCapacity,
                    format!("the server holds its maximum of {max} channels; retry later"),
                )
            })?;
        let mut joining = Joining::new(&self.node, cursor.log.clone(), self.conn_id);
        if first {
            joining
                .subscribe_first()
                .await
                .map_err(|e| (error_code(&e), e.to_string()))?;
        } else if !cursor.log.interest_live().await {
            // Whoever subscribed it at the broker failed: so does this join,
            // for now (the client retries; the next first joiner subscribes).
            return Err((
                ErrorCode::Unavailable,
                format!("subscribing {channel:?} at the broker failed; retry"),
            ));
        }
        let recovery = self
            .node
            .broker
            .recover(channel, recover, budget)
            .await
            .map_err(|e| (error_code(&e), e.to_string()))?;
        joining.done();
        self.subs.insert(cursor);
        place.keep(&mut self.permit);
        self.enter_presence(channel);
        self.announce_subscribe(channel);
        Ok(recovery)
    }

    /// The `subscribed` reply (with `id`, or without for a long-polling
    /// resynchronisation) and, for a connection, the rest of a long replay.
    pub(crate) fn answer_subscribe(
        &mut self,
        id: Option<u64>,
        channel: &str,
        mut recovery: Recovery,
        out: &mut Out,
    ) {
        let Some(cursor) = self.subs.get(channel).cloned() else {
            return;
        };
        // The reply carries what fits in REPLAY_REPLY_BYTES; its `offset` is
        // where that leaves the client. On a connection the rest of the gap
        // follows as ordinary `message` frames, read from history a page per
        // turn (`replay.rs`); a retried style client reads it with its next
        // polls.
        let (mut rest, position) = split_replay(&mut recovery);
        if cursor.is_stale() {
            // The reply names the stream's new epoch: a cursor the channel's
            // reset left stale is valid again, from the new position (which
            // may be lower than the old epoch's).
            cursor.revive();
            cursor.set_position(position);
        } else {
            cursor.advance_to(position);
        }
        out.push(encode_subscribed(id, channel, &recovery, position).into());
        if self.on_connection() && !rest.is_empty() {
            super::push_publications(&cursor, &mut rest, out);
        }
        if !self.on_connection() || (recovery.recovered && cursor.position() < recovery.offset) {
            // Below `recovery.offset` the channel's log may not hold the
            // gap: it is read from history until the cursor passes it.
            self.hold(channel, &recovery.epoch, recovery.offset);
        } else {
            self.unhold(channel);
        }
        // Whatever the log got meanwhile is read on the next turn.
        cursor.ring();
    }

    /// Drops a subscription without a reply.
    pub(crate) fn unsubscribe_quietly(&mut self, channel: &str) {
        if self.drop_subscription(channel) {
            self.leave(channel);
        }
    }

    /// Forgets the subscription to `channel` and gives its place in the
    /// node's budget back; whether there was one. The caller leaves the hub.
    fn drop_subscription(&mut self, channel: &str) -> bool {
        let had = self.subs.remove(channel).is_some();
        if had {
            self.permit.release_subscription();
        }
        had
    }

    /// Takes a token from the address's bucket of new channels, for a
    /// request that would make the node hold a channel it does not. Refused
    /// `over_capacity`: nothing was done, and both clients retry a subscribe
    /// refused so with backoff (`rate_limited` would be a final refusal).
    fn take_new_channel(&self) -> Result<(), (ErrorCode, String)> {
        let key = self.permit.key();
        self.node.admission.take_new_channel(key).map_err(|wait| {
            self.node.metrics.refusal("new_channel_rate");
            new_channels_refused(wait)
        })
    }

    /// Leaves the hub for `channel`, giving back the node's interest at the
    /// broker if this was its last subscriber here. Awaits nothing, so a
    /// request dropped at any point leaves no half-done leave behind.
    pub(super) fn leave(&mut self, channel: &str) {
        if let Some(r) = &mut self.rare {
            r.approved.remove(channel);
        }
        self.unhold(channel);
        self.exit_presence(channel);
        self.announce_unsubscribe(channel);
        if let Some(last) = self.node.hub.remove(channel, self.conn_id) {
            if last.interest_is_live() {
                self.node.release_interest(channel);
            }
        }
    }
}

fn request_id(m: &ClientMessage) -> Option<u64> {
    match m {
        ClientMessage::Subscribe { id, .. }
        | ClientMessage::Unsubscribe { id, .. }
        | ClientMessage::Publish { id, .. }
        | ClientMessage::Presence { id, .. }
        | ClientMessage::PresenceStats { id, .. }
        | ClientMessage::Rpc { id, .. } => Some(*id),
        ClientMessage::Ping => None,
    }
}

fn too_many(retry: std::time::Duration) -> String {
    format!(
        "too many messages; retry in {} ms",
        retry.as_millis().max(1)
    )
}

/// The error code a broker failure is answered with.
pub(super) fn error_code(e: &BrokerError) -> ErrorCode {
    match e {
        BrokerError::OverCapacity(_) | BrokerError::NotCreated => ErrorCode::OverCapacity,
        BrokerError::Unavailable(_) => ErrorCode::Unavailable,
    }
}

/// Publication bytes a `subscribed` reply carries at most; a longer replay
/// continues as `message` frames, so a 100-byte request can never turn into
/// one reply of megabytes.
pub(crate) const REPLAY_REPLY_BYTES: usize = 64 * 1024;

/// Keeps in `r.publications` the prefix that fits in a reply and returns the
/// rest, with the offset the reply brings the client to.
fn split_replay(r: &mut Recovery) -> (Vec<Arc<Publication>>, u64) {
    let fits = super::fitting(&r.publications, REPLAY_REPLY_BYTES);
    if fits == r.publications.len() {
        // The broker may have read less than all (its byte budget): the
        // reply brings the client to the last it carries.
        return (
            Vec::new(),
            r.publications.last().map_or(r.offset, |p| p.offset),
        );
    }
    let rest = r.publications.split_off(fits);
    // The position just before the first publication left out.
    let position = rest
        .first()
        .map_or(r.offset, |p| p.offset.saturating_sub(1));
    (rest, position)
}

/// The `subscribed` reply, with the replayed publications' data copied raw;
/// without `id` it is a long-polling client's resynchronisation.
pub(crate) fn encode_subscribed(
    id: Option<u64>,
    channel: &str,
    r: &Recovery,
    offset: u64,
) -> String {
    let mut out =
        String::with_capacity(128 + r.publications.iter().map(|p| p.frame.len()).sum::<usize>());
    let id = id.map(|id| format!("\"id\":{id},")).unwrap_or_default();
    out.push_str(&format!(
        "{{\"type\":\"subscribed\",{id}\"channel\":{},\"epoch\":{},\"offset\":{},\"recovered\":{},\"publications\":[",
        serde_json::Value::from(channel),
        serde_json::Value::from(r.epoch.as_str()),
        offset,
        r.recovered
    ));
    for (i, p) in r.publications.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"offset\":{},\"data\":{}}}",
            p.offset,
            p.data()
        ));
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn recovery(sizes: &[usize]) -> Recovery {
        let publications = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let data = RawValue::from_string(format!("\"{}\"", "x".repeat(*n)))
                    .unwrap_or_else(|_| unreachable!());
                Arc::new(Publication::new(Arc::from("c"), i as u64 + 11, &data))
            })
            .collect::<Vec<_>>();
        Recovery {
            epoch: "e".into(),
            offset: 10 + sizes.len() as u64,
            recovered: true,
            publications,
        }
    }

    #[test]
    fn a_short_replay_is_carried_whole() {
        let mut r = recovery(&[100, 100]);
        let (rest, position) = split_replay(&mut r);
        assert!(rest.is_empty());
        assert_eq!((r.publications.len(), position), (2, 12));
    }

    #[test]
    fn a_long_replay_is_cut_where_the_reply_is_full() {
        let mut r = recovery(&[30_000, 30_000, 30_000, 30_000]);
        let (rest, position) = split_replay(&mut r);
        assert_eq!(r.publications.len(), 2);
        assert_eq!(
            rest.iter().map(|p| p.offset).collect::<Vec<_>>(),
            vec![13, 14]
        );
        assert_eq!(position, 12, "the last offset carried");
    }

    #[test]
    fn a_first_publication_over_the_cap_leaves_the_position_where_it_was() {
        let mut r = recovery(&[REPLAY_REPLY_BYTES + 1, 10]);
        let (rest, position) = split_replay(&mut r);
        assert!(r.publications.is_empty());
        assert_eq!(rest.len(), 2);
        assert_eq!(
            position, 10,
            "the offset recovered from; everything follows as messages"
        );
    }
}
