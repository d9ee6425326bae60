//! Requests the backend decides (docs/hooks.md): a subscribe to a channel
//! whose rule says `subscribe_hook`, a publish to one whose rule says
//! `publish_hook`, an `rpc`, and the refresh of a session's expiry.
//!
//! Such a request is split in two. Its first half checks what the node
//! checks anyway and starts the call ([`Pending`]); it changes nothing.
//! The second half ([`Session::resume`]) applies the answer. So a call
//! dropped at any point (its client went away, the node drains) undoes
//! nothing. A transport either awaits the call in between
//! ([`Session::wait`]: long polling, whose engine work runs in a task of its
//! own) or keeps it beside the connection and keeps delivering while it
//! runs (the WebSocket), reading the client's next request only after.

use super::{Closing, Out, Session};
use crate::hooks::{Answer, Call, Hook, HookError, Hooks, Refusal};
use serde_json::value::RawValue;
use std::sync::Arc;
use tether_protocol::{CloseCode, ErrorCode, ServerMessage, StreamPosition};

/// A request waiting for the backend: the call, and what its answer is for.
pub struct Pending {
    pub call: Call,
    then: Then,
}

enum Then {
    Subscribe {
        id: u64,
        channel: String,
        recover: Option<StreamPosition>,
    },
    Publish {
        id: u64,
        channel: String,
        data: Box<RawValue>,
        key: Option<String>,
    },
    Rpc {
        id: u64,
    },
    Refresh,
}

impl Pending {
    /// Whether this is a session's refresh (not a client's request).
    pub fn is_refresh(&self) -> bool {
        matches!(self.then, Then::Refresh)
    }
}

/// The error reply for a call that did not allow a request.
pub(super) fn error_of(e: HookError) -> (ErrorCode, String) {
    match e {
        HookError::Refused {
            code: Refusal::Error(code),
            reason,
        } => (code, reason),
        HookError::Refused { reason, .. } => (ErrorCode::Forbidden, reason),
        HookError::Failed { code, message } => (code, message),
    }
}

/// How a session ends when the connect or refresh hook did not allow it:
/// the backend's close code and reason; `1013` (reconnect with backoff,
/// after the advised delay) when it could not be asked or did not answer;
/// `1011` when its answer was unusable.
pub fn closing_of(e: HookError) -> Closing {
    match e {
        HookError::Refused {
            code: Refusal::Close(code),
            reason,
        } => Closing::new(CloseCode::from_u16(code), reason),
        HookError::Refused { reason, .. } => Closing::new(CloseCode::PolicyViolation, reason),
        HookError::Failed { code, message } => {
            let message = crate::hooks::truncate(message, 96);
            if code == ErrorCode::Internal {
                Closing::new(CloseCode::InternalError, message)
            } else {
                let delay = std::time::Duration::from_millis(1000 + fastrand::u64(0..4000));
                Closing::new(
                    CloseCode::TryAgainLater,
                    tether_protocol::RetryHint(delay).append_to(&message),
                )
            }
        }
    }
}

impl Session {
    fn hooks_for(&self, hook: Hook) -> Option<&Arc<Hooks>> {
        self.node.hooks.as_ref().filter(|h| h.has(hook))
    }

    /// Whether a join of `channel` is the subscribe hook's to decide: its
    /// rule says so, the backend did not subscribe the session to it
    /// itself, and (long polling) the hook did not allow it already.
    pub(super) fn needs_subscribe_hook(&self, channel: &str) -> bool {
        self.hooks_for(Hook::Subscribe).is_some()
            && self.node.rules.get(channel).subscribe_hook
            && !self.grant.is_server_channel(channel)
            && !self
                .rare
                .as_ref()
                .is_some_and(|r| r.approved.contains(channel))
    }

    /// Asks the subscribe hook about `channel` (the caller checked that it
    /// should, and what the node would refuse anyway).
    pub(super) fn ask_subscribe(&self, channel: &str) -> Call {
        let hooks = self.node.hooks.clone();
        match hooks {
            Some(h) => h.subscribe(&self.public_client(), self.grant.user.as_deref(), channel),
            None => Box::pin(async { Err(no_hook(Hook::Subscribe)) }),
        }
    }

    /// Notes that the subscribe hook allowed `channel` for this long-polling
    /// session: the polls that name it later (on this node) do not ask again.
    pub(super) fn approve(&mut self, channel: &str) {
        if !self.on_connection() {
            let rare = self.rare.get_or_insert_with(Default::default);
            rare.approved.insert(Arc::from(channel));
        }
    }

    /// A subscribe the backend decides: started once the node's own checks pass.
    pub(super) fn subscribe_through_hook(
        &mut self,
        id: u64,
        channel: String,
        recover: Option<StreamPosition>,
        out: &mut Out,
    ) -> Option<Box<Pending>> {
        // Nothing is asked that the node would refuse anyway.
        if let Err((code, message)) = self.may_join(&channel) {
            Self::reply_error(out, Some(id), code, message);
            return None;
        }
        let call = self.ask_subscribe(&channel);
        Some(Box::new(Pending {
            call,
            then: Then::Subscribe {
                id,
                channel,
                recover,
            },
        }))
    }

    /// A publish the backend decides (`publish_hook`), once the node's own
    /// checks passed; `None` when its rule does not say so.
    pub(super) fn publish_through_hook(
        &mut self,
        id: u64,
        channel: String,
        data: Box<RawValue>,
        key: Option<String>,
    ) -> Result<Box<Pending>, (String, Box<RawValue>, Option<String>)> {
        let hooks = match self.hooks_for(Hook::Publish) {
            Some(h) if self.node.rules.get(&channel).publish_hook => h.clone(),
            _ => return Err((channel, data, key)),
        };
        let call = hooks.publish(
            &self.public_client(),
            self.grant.user.as_deref(),
            &channel,
            &data,
            key.as_deref(),
        );
        Ok(Box::new(Pending {
            call,
            then: Then::Publish {
                id,
                channel,
                data,
                key,
            },
        }))
    }

    /// An `rpc`: asked of the rpc hook, or refused when there is none.
    pub(super) fn rpc(
        &mut self,
        id: u64,
        method: String,
        data: Box<RawValue>,
        out: &mut Out,
    ) -> Option<Box<Pending>> {
        let Some(hooks) = self.hooks_for(Hook::Rpc).cloned() else {
            self.node.metrics.refusal("rpc_not_enabled");
            Self::reply_error(
                out,
                Some(id),
                ErrorCode::BadRequest,
                "rpc is not enabled on this server (no --hook-rpc)".into(),
            );
            return None;
        };
        let call = hooks.rpc(
            &self.public_client(),
            self.grant.user.as_deref(),
            &method,
            &data,
        );
        Some(Box::new(Pending {
            call,
            then: Then::Rpc { id },
        }))
    }

    /// When the session's expiry should be put to the refresh hook: one
    /// `--hook-timeout` before it, so the answer comes in time. `None`
    /// without an expiry or a refresh hook (or on long polling with a
    /// token: each request's token is the session's expiry there).
    pub fn refresh_at(&self) -> Option<tokio::time::Instant> {
        let hooks = self.hooks_for(Hook::Refresh)?;
        if !self.on_connection()
            && !self
                .node
                .hooks
                .as_ref()
                .is_some_and(|h| h.has(Hook::Connect))
        {
            return None;
        }
        let at = self.expires_at()?;
        Some(at.checked_sub(hooks.timeout()).unwrap_or(at))
    }

    /// When the session next needs its expiry looked at: the refresh, or
    /// (without a refresh hook) the expiry itself.
    pub fn check_expiry_at(&self) -> Option<tokio::time::Instant> {
        self.refresh_at().or_else(|| self.expires_at())
    }

    /// Whether the refresh hook should be asked now.
    pub fn refresh_due(&self) -> bool {
        self.refresh_at()
            .is_some_and(|at| tokio::time::Instant::now() >= at)
    }

    /// Asks the refresh hook for a new expiry.
    pub fn start_refresh(&self) -> Box<Pending> {
        let call = match (self.hooks_for(Hook::Refresh), self.grant.expires_at) {
            (Some(hooks), Some(at)) => {
                hooks.refresh(&self.public_client(), self.grant.user.as_deref(), at)
            }
            _ => Box::pin(async { Err(no_hook(Hook::Refresh)) }) as Call,
        };
        Box::new(Pending {
            call,
            then: Then::Refresh,
        })
    }

    /// The session's expiry, handled where the transport cannot wait
    /// beside it (long polling): refreshed through the hook when due, else
    /// `Err` once it passed.
    pub async fn check_expiry(&mut self) -> Result<(), Closing> {
        if self.refresh_due() {
            let pending = self.start_refresh();
            let mut out = Out::new();
            self.wait(pending, &mut out).await?;
        }
        match self.refresh_at() {
            Some(_) => Ok(()),
            None => self.token_expired().map_or(Ok(()), Err),
        }
    }

    /// Waits for `pending`'s call and applies its answer.
    pub async fn wait(&mut self, pending: Box<Pending>, out: &mut Out) -> Result<(), Closing> {
        let Pending { call, then } = *pending;
        let answer = call.await;
        self.resume_with(then, answer, out).await
    }

    /// Applies the answer of `pending`'s call (the transport awaited it).
    pub async fn resume(
        &mut self,
        pending: Box<Pending>,
        answer: Result<Answer, HookError>,
        out: &mut Out,
    ) -> Result<(), Closing> {
        let Pending { then, .. } = *pending;
        self.resume_with(then, answer, out).await
    }

    async fn resume_with(
        &mut self,
        then: Then,
        answer: Result<Answer, HookError>,
        out: &mut Out,
    ) -> Result<(), Closing> {
        match (then, answer) {
            (
                Then::Subscribe {
                    id,
                    channel,
                    recover,
                },
                Ok(Answer::Allowed),
            ) => {
                self.approve(&channel);
                self.finish_subscribe(id, &channel, recover, out).await;
            }
            (
                Then::Publish {
                    id,
                    channel,
                    data,
                    key,
                },
                Ok(Answer::Allowed),
            ) => self.store_publish(id, &channel, &data, key, out).await,
            (
                Then::Publish {
                    id, channel, key, ..
                },
                Ok(Answer::Replaced(data)),
            ) => {
                // The backend's data passes the checks a client's does.
                match tether_protocol::message::validate_publish(
                    &channel,
                    &data,
                    key.as_deref(),
                    self.node.config.limits.max_message_bytes,
                ) {
                    Ok(()) => self.store_publish(id, &channel, &data, key, out).await,
                    Err((_, why)) => Self::reply_error(
                        out,
                        Some(id),
                        ErrorCode::Internal,
                        format!("the publish hook's `data` cannot be published: {why}"),
                    ),
                }
            }
            (Then::Rpc { id }, Ok(Answer::Rpc(result))) => {
                Self::reply(out, ServerMessage::Rpc { id, result })
            }
            (Then::Refresh, Ok(Answer::Refresh(at))) => {
                // An expiry within one timeout would be refreshed again at
                // once, and again: it ends the session instead.
                let lead = self.node.hooks.as_ref().map(|h| h.timeout());
                let soonest = std::time::SystemTime::now() + lead.unwrap_or_default();
                if at <= soonest {
                    return Err(Closing::new(
                        CloseCode::TokenExpired,
                        "session expired; the refresh hook did not extend it",
                    ));
                }
                let mut grant = (*self.grant).clone();
                grant.expires_at = Some(at);
                self.grant = Arc::new(grant);
            }
            (Then::Refresh, Err(e)) => return Err(refresh_failed(e)),
            (Then::Refresh, Ok(_)) => return Err(Closing::token_expired()),
            (Then::Subscribe { id, .. } | Then::Publish { id, .. } | Then::Rpc { id }, Err(e)) => {
                let (code, message) = error_of(e);
                Self::reply_error(out, Some(id), code, message);
            }
            (Then::Subscribe { id, .. } | Then::Publish { id, .. } | Then::Rpc { id }, Ok(_)) => {
                Self::reply_error(
                    out,
                    Some(id),
                    ErrorCode::Internal,
                    "the hook's answer does not fit the request".into(),
                );
            }
        }
        Ok(())
    }
}

/// How a session whose refresh did not extend it ends: the backend's
/// close, else 4002 (the client reconnects, and the connect hook or a
/// fresh token decides anew) saying why.
fn refresh_failed(e: HookError) -> Closing {
    match e {
        refused @ HookError::Refused { .. } => closing_of(refused),
        HookError::Failed { message, .. } => Closing::new(
            CloseCode::TokenExpired,
            crate::hooks::truncate(format!("session expired; not refreshed: {message}"), 123),
        ),
    }
}

fn no_hook(hook: Hook) -> HookError {
    HookError::Failed {
        code: ErrorCode::Internal,
        message: format!("no {} hook is configured", hook.name()),
    }
}
