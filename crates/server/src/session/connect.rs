//! A connection the connect hook lets in (docs/hooks.md, "connect"): the
//! grant its answer makes, and the channels it subscribes the session to
//! (server-side subscriptions), joined through the ordinary join — the
//! node's caps apply, the subscribe permission and the subscribe hook do
//! not (the backend chose them) — and announced to the client as id-less
//! `subscribed` before anything else it is sent.

use super::{requests::REPLAY_REPLY_BYTES, Closing, Out, Session};
use crate::{
    auth::Grant,
    hooks::{Answer, ConnectRequest, Hook},
    node::Node,
};
use std::sync::Arc;
use tether_protocol::{CloseCode, ServerMessage};

/// Asks the connect hook who the connection `request` describes: its
/// grant, or how it ends (the backend's close code, `1013` when the
/// backend could not be asked or did not answer, `1011` for an unusable
/// answer).
pub async fn connect(node: &Node, request: &ConnectRequest) -> Result<Grant, Closing> {
    let Some(hooks) = node.hooks.as_ref().filter(|h| h.has(Hook::Connect)) else {
        return Err(Closing::new(
            CloseCode::InternalError,
            "no connect hook is configured",
        ));
    };
    match hooks
        .connect(request, node.config.limits.max_subscriptions)
        .await
    {
        Ok(Answer::Connect(answer)) => Ok(answer.grant),
        Ok(_) => Err(Closing::new(
            CloseCode::InternalError,
            "the connect hook's answer does not fit",
        )),
        Err(e) => {
            node.metrics.refusal("connect_hook");
            Err(super::closing_of(e))
        }
    }
}

impl Session {
    /// Takes the connect hook's grant; its `channels` are joined and
    /// announced by the next [`Session::announce`].
    pub fn connected(&mut self, grant: Grant) {
        let channels = grant.channels.clone();
        self.set_grant(grant);
        if !channels.is_empty() {
            self.rare.get_or_insert_with(Default::default).announce = channels;
        }
    }

    /// Whether server-side subscriptions wait to be joined and announced.
    pub fn has_announcements(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| !r.announce.is_empty())
    }

    /// Joins the server-side subscriptions not joined yet, each answered
    /// with an id-less `subscribed` (from the channel's current position),
    /// or an id-less `error` naming the channel when the node refuses it (a
    /// cap); returns the channels joined.
    pub async fn announce(&mut self, out: &mut Out) -> Vec<Arc<str>> {
        let channels = match &mut self.rare {
            Some(r) => std::mem::take(&mut r.announce),
            None => return Vec::new(),
        };
        if self.on_connection() && self.rare.as_ref().is_some_and(|r| r.is_empty()) {
            self.rare = None;
        }
        let mut joined = Vec::new();
        for channel in channels {
            if self.cursor(&channel).is_some() {
                continue;
            }
            match self.join(&channel, None, REPLAY_REPLY_BYTES).await {
                Ok(recovery) => {
                    self.answer_subscribe(None, &channel, recovery, out);
                    joined.push(Arc::from(channel.as_str()));
                }
                Err((code, message)) => {
                    let error = ServerMessage::Error {
                        id: None,
                        code,
                        message,
                        channel: Some(channel),
                    };
                    out.push(error.encode().into());
                }
            }
        }
        joined
    }
}
