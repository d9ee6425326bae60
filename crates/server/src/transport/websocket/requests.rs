//! Requests on a session: decoding, the message rate and strikes, and
//! subscribe / unsubscribe / publish against the hub and the broker.

use super::{End, Session, MAX_STRIKES};
use crate::broker::{BrokerError, Publication, Recovery};
use serde_json::value::RawValue;
use std::sync::Arc;
use tether_protocol::{ClientMessage, CloseCode, ErrorCode, ServerMessage, StreamPosition};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Instant,
};
use tokio_websockets::Message;
use tracing::debug;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    async fn reply_error(
        &mut self,
        id: Option<u64>,
        code: ErrorCode,
        message: String,
    ) -> Result<(), End> {
        self.send(ServerMessage::Error { id, code, message }.encode())
            .await
    }

    /// Counts an invalid or refused message; too many in a row ends the session.
    async fn strike(
        &mut self,
        id: Option<u64>,
        code: ErrorCode,
        message: String,
    ) -> Result<(), End> {
        self.strikes += 1;
        self.reply_error(id, code, message).await?;
        if self.strikes >= MAX_STRIKES {
            let (close, why) = if code == ErrorCode::RateLimited {
                (
                    CloseCode::RateLimited,
                    "message rate limit exceeded repeatedly",
                )
            } else {
                (
                    CloseCode::PolicyViolation,
                    "too many invalid messages in a row",
                )
            };
            return Err(End::Close(close, why.into()));
        }
        Ok(())
    }

    pub(super) async fn on_frame(&mut self, msg: Message) -> Result<(), End> {
        if msg.is_ping() || msg.is_pong() {
            // Control frames cost a token too: a ping flood is throttled and
            // then closed like a message flood (the library answers pings
            // itself, keeping at most one pong pending).
            return match self.bucket.take(Instant::now().into_std()) {
                Ok(()) => Ok(()),
                Err(retry) => {
                    self.node.metrics.refusal("message_rate");
                    self.strike(None, ErrorCode::RateLimited, too_many(retry))
                        .await
                }
            };
        }
        self.node.metrics.messages_in.inc();
        let Some(text) = msg.as_text() else {
            return self
                .strike(
                    None,
                    ErrorCode::UnsupportedFrame,
                    "binary frames are not part of the Tether protocol; send JSON text".into(),
                )
                .await;
        };
        let decoded = ClientMessage::decode(text);
        if let Err(retry) = self.bucket.take(Instant::now().into_std()) {
            let id = match &decoded {
                Ok(m) => request_id(m),
                Err(e) => e.id,
            };
            self.node.metrics.refusal("message_rate");
            return self
                .strike(id, ErrorCode::RateLimited, too_many(retry))
                .await;
        }
        match decoded {
            Err(e) => self.strike(e.id, e.code, e.message).await,
            Ok(request) => {
                self.strikes = 0;
                self.handle(request).await
            }
        }
    }

    async fn handle(&mut self, request: ClientMessage) -> Result<(), End> {
        match request {
            ClientMessage::Ping => self.send(ServerMessage::Pong.encode()).await,
            ClientMessage::Subscribe {
                id,
                channel,
                recover,
            } => self.subscribe(id, channel, recover).await,
            ClientMessage::Unsubscribe { id, channel } => {
                if self.subs.remove(channel.as_str()).is_none() {
                    return self
                        .reply_error(
                            Some(id),
                            ErrorCode::NotSubscribed,
                            format!("not subscribed to {channel:?}"),
                        )
                        .await;
                }
                self.leave(&channel).await;
                self.send(ServerMessage::Unsubscribed { id, channel }.encode())
                    .await
            }
            ClientMessage::Publish {
                id,
                channel,
                data,
                key,
            } => self.publish(id, channel, data, key).await,
        }
    }

    async fn subscribe(
        &mut self,
        id: u64,
        channel: String,
        recover: Option<StreamPosition>,
    ) -> Result<(), End> {
        if self.subs.contains_key(channel.as_str()) {
            return self
                .reply_error(
                    Some(id),
                    ErrorCode::AlreadySubscribed,
                    format!("already subscribed to {channel:?}"),
                )
                .await;
        }
        if !self.grant.can_subscribe(&channel) {
            self.node.metrics.refusal("subscribe_forbidden");
            return self
                .reply_error(
                    Some(id),
                    ErrorCode::Forbidden,
                    format!("no permission to subscribe to {channel:?}"),
                )
                .await;
        }
        let max = self.node.config.limits.max_subscriptions;
        if self.subs.len() >= max {
            self.node.metrics.refusal("max_subscriptions");
            return self
                .reply_error(
                    Some(id),
                    ErrorCode::TooManySubscriptions,
                    format!("at most {max} subscriptions per connection; unsubscribe first"),
                )
                .await;
        }
        // Join the channel's log before reading history: anything published
        // from now on is kept for this cursor, and offsets the reply already
        // covers are skipped on send.
        let (cursor, first) = self.node.hub.add(&channel, self.conn_id, self.bell.clone());
        if first {
            if let Err(e) = self.node.broker.subscribe(&channel).await {
                self.node.hub.remove(&channel, self.conn_id);
                return self
                    .reply_error(Some(id), error_code(&e), e.to_string())
                    .await;
            }
        }
        let mut recovery = match self.node.broker.recover(&channel, recover.as_ref()).await {
            Ok(r) => r,
            Err(e) => {
                self.leave(&channel).await;
                return self
                    .reply_error(Some(id), error_code(&e), e.to_string())
                    .await;
            }
        };
        // The reply carries what fits in REPLAY_REPLY_BYTES; its `offset` is
        // where that leaves the client, and the rest of the replay follows
        // as ordinary `message` frames, written from the history entries
        // already shared with every subscriber (no copy per connection).
        let (mut rest, position) = split_replay(&mut recovery);
        cursor.advance_to(position);
        self.subs
            .insert(Arc::from(channel.as_str()), cursor.clone());
        let frame = encode_subscribed(id, &channel, &recovery, position);
        self.send(frame).await?;
        if !rest.is_empty() {
            self.write_publications(&cursor, &mut rest).await?;
        }
        // Whatever the log got meanwhile is written on the next turn.
        cursor.ring();
        Ok(())
    }

    /// Leaves the hub for `channel`, releasing broker interest if last here.
    pub(super) async fn leave(&mut self, channel: &str) {
        if self.node.hub.remove(channel, self.conn_id) {
            if let Err(e) = self.node.broker.unsubscribe(channel).await {
                debug!(channel, error = %e, "broker unsubscribe failed");
            }
        }
    }

    async fn publish(
        &mut self,
        id: u64,
        channel: String,
        data: Box<RawValue>,
        key: Option<String>,
    ) -> Result<(), End> {
        if let Err((code, message)) = tether_protocol::message::validate_publish(
            &channel,
            &data,
            key.as_deref(),
            self.node.config.limits.max_message_bytes,
        ) {
            return self.reply_error(Some(id), code, message).await;
        }
        if !self.grant.can_publish(&channel) {
            self.node.metrics.refusal("publish_forbidden");
            return self
                .reply_error(
                    Some(id),
                    ErrorCode::Forbidden,
                    format!("no permission to publish to {channel:?}"),
                )
                .await;
        }
        match self
            .node
            .broker
            .publish(&channel, &data, key.as_deref())
            .await
        {
            Ok(outcome) => {
                if !outcome.duplicate {
                    self.node.metrics.publications.inc();
                }
                self.send(
                    ServerMessage::Ack {
                        id,
                        offset: outcome.offset,
                    }
                    .encode(),
                )
                .await
            }
            Err(e) => {
                self.reply_error(Some(id), error_code(&e), e.to_string())
                    .await
            }
        }
    }
}

fn request_id(m: &ClientMessage) -> Option<u64> {
    match m {
        ClientMessage::Subscribe { id, .. }
        | ClientMessage::Unsubscribe { id, .. }
        | ClientMessage::Publish { id, .. } => Some(*id),
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
fn error_code(e: &BrokerError) -> ErrorCode {
    match e {
        BrokerError::OverCapacity(_) => ErrorCode::OverCapacity,
        BrokerError::Unavailable(_) => ErrorCode::Internal,
    }
}

/// Publication bytes a `subscribed` reply carries at most; a longer replay
/// continues as `message` frames, so a 100-byte request can never turn into
/// one reply of megabytes.
pub(crate) const REPLAY_REPLY_BYTES: usize = 64 * 1024;

/// Keeps in `r.publications` the prefix that fits in a reply and returns the
/// rest, with the offset the reply brings the client to.
fn split_replay(r: &mut Recovery) -> (Vec<Arc<Publication>>, u64) {
    let mut bytes = 0;
    let fits = r
        .publications
        .iter()
        .take_while(|p| {
            bytes += p.frame.len();
            bytes <= REPLAY_REPLY_BYTES
        })
        .count();
    if fits == r.publications.len() {
        return (Vec::new(), r.offset);
    }
    let rest = r.publications.split_off(fits);
    // The position just before the first publication left out.
    let position = rest
        .first()
        .map_or(r.offset, |p| p.offset.saturating_sub(1));
    (rest, position)
}

/// The `subscribed` reply, with the replayed publications' data copied raw.
fn encode_subscribed(id: u64, channel: &str, r: &Recovery, offset: u64) -> String {
    let mut out =
        String::with_capacity(128 + r.publications.iter().map(|p| p.frame.len()).sum::<usize>());
    out.push_str(&format!(
        "{{\"type\":\"subscribed\",\"id\":{id},\"channel\":{},\"epoch\":{},\"offset\":{},\"recovered\":{},\"publications\":[",
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
