//! Requests on a session: decoding, the message rate and strikes, and
//! subscribe / unsubscribe / publish against the hub and the broker.

use super::{joining::Joining, Closing, Out, Session, MAX_STRIKES};
use crate::broker::{BrokerError, Publication, Recovery};
use crate::hub::HubFull;
use crate::node::PublishError;
use serde_json::value::RawValue;
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
    /// to `out`.
    pub async fn on_text(&mut self, text: &str, out: &mut Out) -> Result<(), Closing> {
        self.node.metrics.messages_in.inc();
        let decoded = ClientMessage::decode(text);
        if let Err(retry) = self.bucket.take(Instant::now().into_std()) {
            let id = match &decoded {
                Ok(m) => request_id(m),
                Err(e) => e.id,
            };
            self.node.metrics.refusal("message_rate");
            return self.strike(out, id, ErrorCode::RateLimited, too_many(retry));
        }
        match decoded {
            Err(e) => self.strike(out, e.id, e.code, e.message),
            Ok(request) => {
                self.strikes = 0;
                self.handle(request, out).await;
                Ok(())
            }
        }
    }

    async fn handle(&mut self, request: ClientMessage, out: &mut Out) {
        match request {
            ClientMessage::Ping => Self::reply(out, ServerMessage::Pong),
            ClientMessage::Subscribe {
                id,
                channel,
                recover,
            } => self.subscribe(id, channel, recover, out).await,
            ClientMessage::Unsubscribe { id, channel } => {
                if !self.drop_subscription(&channel) {
                    if self.on_connection() {
                        return Self::reply_error(
                            out,
                            Some(id),
                            ErrorCode::NotSubscribed,
                            format!("not subscribed to {channel:?}"),
                        );
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
            } => self.publish(id, channel, data, key, out).await,
            ClientMessage::Presence { id, channel } => {
                self.presence_request(id, channel, false, out).await
            }
            ClientMessage::PresenceStats { id, channel } => {
                self.presence_request(id, channel, true, out).await
            }
        }
    }

    async fn subscribe(
        &mut self,
        id: u64,
        channel: String,
        recover: Option<StreamPosition>,
        out: &mut Out,
    ) {
        if self.subs.contains_key(channel.as_str()) {
            if self.on_connection() {
                return Self::reply_error(
                    out,
                    Some(id),
                    ErrorCode::AlreadySubscribed,
                    format!("already subscribed to {channel:?}"),
                );
            }
            // A retried subscribe: answered afresh from the position it names.
            self.unsubscribe_quietly(&channel);
        }
        // The reply carries what fits in it; the rest of the gap is read on
        // later turns (a connection) or polls (a retried client).
        match self
            .join(&channel, recover.as_ref(), REPLAY_REPLY_BYTES)
            .await
        {
            Ok(recovery) => self.answer_subscribe(Some(id), &channel, recovery, out),
            Err((code, message)) => Self::reply_error(out, Some(id), code, message),
        }
    }

    /// Checks the name, the permission and the subscription cap, joins the channel's
    /// log and reads the broker's answer to `recover` (at most `budget` bytes of it).
    pub(crate) async fn join(
        &mut self,
        channel: &str,
        recover: Option<&StreamPosition>,
        budget: usize,
    ) -> Result<Recovery, (ErrorCode, String)> {
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
        self.unhold(channel);
        self.exit_presence(channel);
        self.announce_unsubscribe(channel);
        if let Some(last) = self.node.hub.remove(channel, self.conn_id) {
            if last.interest_is_live() {
                self.node.release_interest(channel);
            }
        }
    }

    async fn publish(
        &mut self,
        id: u64,
        channel: String,
        data: Box<RawValue>,
        key: Option<String>,
        out: &mut Out,
    ) {
        if let Err((code, message)) = tether_protocol::message::validate_publish(
            &channel,
            &data,
            key.as_deref(),
            self.node.config.limits.max_message_bytes,
        ) {
            return Self::reply_error(out, Some(id), code, message);
        }
        if !self.grant.can_publish(&channel) {
            self.node.metrics.refusal("publish_forbidden");
            return Self::reply_error(
                out,
                Some(id),
                ErrorCode::Forbidden,
                format!("no permission to publish to {channel:?}"),
            );
        }
        // The channel's rule may close it to clients whatever the token
        // says; the backend's POST /api/publish does not come here.
        if !self.node.rules.get(&channel).client_publish {
            self.node.metrics.refusal("publish_forbidden");
            return Self::reply_error(
                out,
                Some(id),
                ErrorCode::Forbidden,
                format!("clients may not publish to {channel:?} (client_publish = false)"),
            );
        }
        // A retried POST carries the same client and id: keyed by them (and
        // by the token's subject, so another user who learned the client id
        // cannot take the key first), it is stored once.
        let key = match (key, self.rare.as_ref().filter(|_| !self.on_connection())) {
            (None, Some(r)) => Some(retried_key(&r.client, id, self.grant.user.as_deref())),
            (key, _) => key,
        };
        self.presence_flushed().await;
        // A publish that creates the channel takes a token from the
        // address's bucket of new channels (`Node::publish`): refused
        // `over_capacity` like a subscribe that would add one.
        match self
            .node
            .publish(self.permit.key(), &channel, &data, key.as_deref())
            .await
        {
            Ok(outcome) => Self::reply(
                out,
                ServerMessage::Ack {
                    id,
                    offset: outcome.offset,
                },
            ),
            Err(PublishError::NewChannels(wait)) => {
                let (code, message) = new_channels_refused(wait);
                Self::reply_error(out, Some(id), code, message)
            }
            Err(PublishError::Broker(e)) => {
                Self::reply_error(out, Some(id), error_code(&e), e.to_string())
            }
        }
    }
}

/// The idempotency key of a long-polling publish sent without one: at most
/// ~150 bytes whatever the subject's length (a digest of it).
fn retried_key(client: &str, id: u64, user: Option<&str>) -> String {
    match user {
        None => format!("lp:{client}:{id}"),
        Some(user) => {
            let digest = sha1_smol::Sha1::from(user).digest().bytes();
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("lp:{client}:{id}:{hex}")
        }
    }
}

fn request_id(m: &ClientMessage) -> Option<u64> {
    match m {
        ClientMessage::Subscribe { id, .. }
        | ClientMessage::Unsubscribe { id, .. }
        | ClientMessage::Publish { id, .. }
        | ClientMessage::Presence { id, .. }
        | ClientMessage::PresenceStats { id, .. } => Some(*id),
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

/// The error for a request over its address's share of new channels.
fn new_channels_refused(wait: std::time::Duration) -> (ErrorCode, String) {
    let ms = wait.as_millis().max(1);
    (
        ErrorCode::OverCapacity,
        format!("too many new channels from your address; retry in {ms} ms"),
    )
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
    fn a_long_poll_publish_key_is_the_subjects_own_and_short() {
        let anonymous = retried_key("n1-ab", 9, None);
        assert_eq!(anonymous, "lp:n1-ab:9");
        let alice = retried_key("n1-ab", 9, Some("alice"));
        assert_ne!(alice, retried_key("n1-ab", 9, Some("bob")));
        assert_ne!(alice, anonymous);
        assert_eq!(
            alice,
            retried_key("n1-ab", 9, Some("alice")),
            "the same on every node"
        );
        let long = retried_key(&"c".repeat(96), u64::MAX, Some(&"u".repeat(10_000)));
        assert!(
            long.len() <= tether_protocol::message::MAX_KEY_LEN,
            "{}",
            long.len()
        );
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
