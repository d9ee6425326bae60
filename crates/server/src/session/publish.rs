//! A client's publish: the checks every path shares, the backend's
//! publish hook where the channel's rule says so (`backend.rs`), and the
//! store at the broker.

use super::{requests::error_code, Out, Pending, Session};
use crate::node::PublishError;
use serde_json::value::RawValue;
use tether_protocol::{ErrorCode, ServerMessage};

impl Session {
    pub(super) async fn publish(
        &mut self,
        id: u64,
        channel: String,
        data: Box<RawValue>,
        key: Option<String>,
        out: &mut Out,
    ) -> Option<Box<Pending>> {
        if let Err((code, message)) = tether_protocol::message::validate_publish(
            &channel,
            &data,
            key.as_deref(),
            self.node.config.limits.max_message_bytes,
        ) {
            Self::reply_error(out, Some(id), code, message);
            return None;
        }
        if !self.grant.can_publish(&channel) {
            self.node.metrics.refusal("publish_forbidden");
            Self::reply_error(
                out,
                Some(id),
                ErrorCode::Forbidden,
                format!("no permission to publish to {channel:?}"),
            );
            return None;
        }
        // The channel's rule may close it to clients whatever the token
        // says; the backend's POST /api/publish does not come here.
        if !self.node.rules.get(&channel).client_publish {
            self.node.metrics.refusal("publish_forbidden");
            Self::reply_error(
                out,
                Some(id),
                ErrorCode::Forbidden,
                format!("clients may not publish to {channel:?} (client_publish = false)"),
            );
            return None;
        }
        // A retried POST carries the same client and id: keyed by them (and
        // by the token's subject, so another user who learned the client id
        // cannot take the key first), it is stored once.
        let key = match (key, self.rare.as_ref().filter(|_| !self.on_connection())) {
            (None, Some(r)) => Some(retried_key(&r.client, id, self.grant.user.as_deref())),
            (key, _) => key,
        };
        match self.publish_through_hook(id, channel, data, key) {
            Ok(pending) => Some(pending),
            Err((channel, data, key)) => {
                self.store_publish(id, &channel, &data, key, out).await;
                None
            }
        }
    }

    /// Publishes what passed every check, and answers `id`.
    pub(super) async fn store_publish(
        &mut self,
        id: u64,
        channel: &str,
        data: &RawValue,
        key: Option<String>,
        out: &mut Out,
    ) {
        self.presence_flushed().await;
        // A publish that creates the channel takes a token from the
        // address's bucket of new channels (`Node::publish`): refused
        // `over_capacity` like a subscribe that would add one.
        match self
            .node
            .publish(self.permit.key(), channel, data, key.as_deref())
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

/// The error for a request over its address's share of new channels.
pub(super) fn new_channels_refused(wait: std::time::Duration) -> (ErrorCode, String) {
    let ms = wait.as_millis().max(1);
    (
        ErrorCode::OverCapacity,
        format!("too many new channels from your address; retry in {ms} ms"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
