//! Subscriptions as the application sees them: a [`Stream`] of [`Event`]s
//! per channel, fed by the connection task through a bounded queue.

use crate::{driver::Command, Error, PresenceEntry, PresenceStats, State};
use futures_util::Stream;
use serde_json::value::RawValue;
use std::{
    pin::Pin,
    task::{Context, Poll},
};
use tether_protocol::ErrorCode;
use tokio::sync::{mpsc, watch};

/// One publication on a channel.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The channel's offset of this publication (starts at 1 in each epoch,
    /// increases by 1).
    pub offset: u64,
    /// The published JSON, exactly as the publisher sent it. Parse it with
    /// `serde_json::from_str(data.get())`.
    pub data: Box<RawValue>,
}

/// What a [`Subscription`] yields.
///
/// Match with a `_` arm: variants may be added.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The next publication. Across reconnects each offset is yielded exactly
    /// once and in order, as long as the server could recover the gap.
    Publication(Publication),
    /// The server confirmed the subscription (after each connect). `offset`
    /// is the channel's latest offset at that moment; `recovered` is true
    /// when missed publications were replayed after a reconnect. Joins and
    /// leaves are not replayed: on a presence channel, ask
    /// [`Subscription::presence`] again after a reconnect.
    Subscribed {
        epoch: String,
        offset: u64,
        recovered: bool,
    },
    /// After a reconnect the server could not replay what was missed (its
    /// history expired, or the channel's epoch changed, e.g. after a restart
    /// of a memory-broker server). Publications between the last one yielded
    /// and `offset` of the new `epoch` are lost: resync from the source of
    /// truth. Delivery continues after `offset`. Like `Subscribed`, it
    /// starts a new connection's subscription: ask presence again.
    Unrecovered { epoch: String, offset: u64 },
    /// Someone became present in the channel (its rule says
    /// `join_leave = true`; docs/presence.md): `client` is its client id,
    /// `user` its token's `sub` (`None` for an anonymous client), `info` its
    /// token's `info` claim. This subscription's own join comes right after
    /// each `Subscribed`. Joins and leaves are not publications: they carry
    /// no offset, come in their place among the publications, and what
    /// happened while disconnected is not replayed.
    Join {
        client: String,
        user: Option<String>,
        info: Option<Box<RawValue>>,
    },
    /// Someone stopped being present (unsubscribed, disconnected or was
    /// cut); fields as for [`Event::Join`]. No `Leave` of this subscription
    /// itself is ever yielded.
    Leave {
        client: String,
        user: Option<String>,
        info: Option<Box<RawValue>>,
    },
    /// The server refused the subscription for good (`forbidden`,
    /// `invalid_channel`, `too_many_subscriptions`, ...: asking again would
    /// get the same answer). This is the last event: the stream ends after it.
    Refused { code: ErrorCode, message: String },
    /// The server refused the subscribe for now (`unavailable` while its
    /// broker is unreachable, `internal`, `over_capacity`; see
    /// [`is_retryable`](crate::is_retryable)): nothing was done. The
    /// subscription stays and the client subscribes again, from the same
    /// recovery position, after `next_delay`; this is retry `attempt`
    /// (1-based) since the last successful subscribe, and the delay grows
    /// with it as the reconnect delay does. Drop the subscription to stop
    /// retrying; a `Subscribed` (or `Unrecovered`) event follows success.
    RefusedWillRetry {
        code: ErrorCode,
        message: String,
        attempt: u32,
        next_delay: std::time::Duration,
    },
}

/// A live subscription to one channel; a [`Stream`] of [`Event`]s.
///
/// Dropping it unsubscribes. The stream ends when the client stops for good
/// (see [`State::Disconnected`](crate::State::Disconnected)) or is closed.
///
/// Events are buffered in a bounded queue; a subscriber that stops reading
/// eventually stops the client reading from the socket, and the server then
/// closes the connection as a slow consumer (4004). The client reconnects
/// and recovers, so nothing is lost, but a subscription should be read
/// promptly.
pub struct Subscription {
    pub(crate) channel: String,
    pub(crate) id: u64,
    pub(crate) events: mpsc::Receiver<Event>,
    pub(crate) commands: mpsc::WeakSender<Command>,
    pub(crate) state: watch::Receiver<State>,
}

impl Subscription {
    /// The channel this subscription is for.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next event, or `None` when the subscription has ended.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Who is present in this channel, oldest join first: every client
    /// subscribed to it, this one included once its subscribe completed.
    /// The channel's rule must say `presence = true` (docs/presence.md);
    /// otherwise the server answers `bad_request` ([`Error::Server`]).
    ///
    /// Sent on the current connection after the subscribe (the server
    /// answers requests in order, so a call right after
    /// [`Client::subscribe`](crate::Client::subscribe) sees this client).
    /// A subscription the server refused (`RefusedWillRetry`) is not
    /// present: it is answered `forbidden` unless the token's `presence`
    /// claim names the channel.
    /// While disconnected the request waits, like a publish, and is sent
    /// after the reconnect, behind the resubscribe; one whose connection
    /// died before the answer is asked again on the next. Wrap the call in
    /// a timeout to bound the wait. Fails with [`Error::Disconnected`] or
    /// [`Error::Closed`] when the client stops.
    pub async fn presence(&self) -> Result<Vec<PresenceEntry>, Error> {
        crate::ask_presence(&self.weak_commands()?, &self.state, &self.channel).await
    }

    /// How many clients and distinct users are present in this channel;
    /// answered in constant time however many are present (a
    /// [`presence`](Self::presence) answer lists at most 1,000). Sent and
    /// awaited as `presence` is.
    pub async fn presence_stats(&self) -> Result<PresenceStats, Error> {
        crate::ask_presence_stats(&self.weak_commands()?, &self.state, &self.channel).await
    }

    /// The connection task's queue, while a client handle is alive.
    fn weak_commands(&self) -> Result<mpsc::Sender<Command>, Error> {
        self.commands
            .upgrade()
            .ok_or_else(|| crate::ended(&self.state))
    }
}

impl Stream for Subscription {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Best effort: if the command queue is full, the connection task
        // notices the closed event queue at the next delivery instead.
        if let Some(commands) = self.commands.upgrade() {
            let _ = commands.try_send(Command::Unsubscribe {
                channel: std::mem::take(&mut self.channel),
                id: self.id,
            });
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}
