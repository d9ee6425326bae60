//! Presence (docs/presence.md): asking who is in a channel, and the
//! `join`/`leave` events its subscribers receive.
//!
//! A presence request is a read: it waits while the client is disconnected
//! (like a publish) and is sent after the reconnect, behind the
//! resubscribes, so the server answers it as a subscriber; one whose
//! connection died before the answer is asked again on the next. The server
//! handles a connection's requests in order, so a request sent after a
//! subscribe is answered after that subscribe completed.

use crate::{driver::Core, handshake::Ws, reconnect::Ended, session::send, Error, Event};
use serde_json::value::RawValue;
use std::time::Duration;
use tether_protocol::{ClientMessage, ErrorCode, PresenceEntry};
use tokio::sync::oneshot;
use tracing::debug;

/// How many clients and distinct users are present in a channel
/// ([`Subscription::presence_stats`](crate::Subscription::presence_stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresenceStats {
    /// Present clients (connections subscribed to the channel).
    pub clients: u64,
    /// Distinct users among them (a token's `sub`); anonymous clients are
    /// no user.
    pub users: u64,
}

/// What a presence request asks, with where its answer goes.
pub(crate) enum Ask {
    List(oneshot::Sender<Result<Vec<PresenceEntry>, Error>>),
    Stats(oneshot::Sender<Result<PresenceStats, Error>>),
}

/// A presence request waiting for its answer.
pub(crate) struct PresenceRequest {
    pub channel: String,
    pub ask: Ask,
    /// The request id on the current connection, once sent.
    pub sent_as: Option<u64>,
}

impl PresenceRequest {
    /// The caller stopped waiting (dropped or timed out): nothing to send.
    fn abandoned(&self) -> bool {
        match &self.ask {
            Ask::List(reply) => reply.is_closed(),
            Ask::Stats(reply) => reply.is_closed(),
        }
    }

    pub(crate) fn fail(self, error: Error) {
        match self.ask {
            Ask::List(reply) => {
                let _ = reply.send(Err(error));
            }
            Ask::Stats(reply) => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// A `presence` or `presence_stats` answer, as `Core::presence_answer` takes it.
pub(crate) enum Answer {
    List(Vec<PresenceEntry>),
    Stats(PresenceStats),
}

impl Core {
    /// Queues a request (sent after the next connect).
    pub(crate) fn queue_ask(&mut self, request: PresenceRequest) {
        self.asks.retain(|a| !a.abandoned());
        self.asks.push(request);
    }

    /// Queues a request and sends it on the live connection `ws`.
    pub(crate) async fn ask_presence(
        &mut self,
        ws: &mut Ws,
        request: PresenceRequest,
        limit: Duration,
    ) -> Result<(), Ended> {
        self.queue_ask(request);
        self.send_ask(ws, self.asks.len() - 1, limit).await
    }

    /// After (re)connecting, behind the resubscribes: every request still
    /// awaited is sent (again).
    pub(crate) async fn send_asks(&mut self, ws: &mut Ws, limit: Duration) -> Result<(), Ended> {
        self.asks.retain(|a| !a.abandoned());
        for i in 0..self.asks.len() {
            self.send_ask(ws, i, limit).await?;
        }
        Ok(())
    }

    async fn send_ask(&mut self, ws: &mut Ws, index: usize, limit: Duration) -> Result<(), Ended> {
        let id = self.request_id();
        let Some(request) = self.asks.get_mut(index) else {
            return Ok(());
        };
        request.sent_as = Some(id);
        let channel = request.channel.clone();
        let msg = match request.ask {
            Ask::List(_) => ClientMessage::Presence { id, channel },
            Ask::Stats(_) => ClientMessage::PresenceStats { id, channel },
        };
        send(ws, &msg, limit).await
    }

    /// Settles the request sent as `id` with `answer`. An answer of the
    /// other kind (which no server sends) is ignored.
    pub(crate) fn presence_answer(&mut self, id: u64, answer: Answer) {
        let Some(i) = self.asks.iter().position(|a| {
            a.sent_as == Some(id)
                && matches!(
                    (&a.ask, &answer),
                    (Ask::List(_), Answer::List(_)) | (Ask::Stats(_), Answer::Stats(_))
                )
        }) else {
            debug!(id, "ignoring a presence answer to no request of its kind");
            return;
        };
        match (self.asks.remove(i).ask, answer) {
            (Ask::List(reply), Answer::List(clients)) => {
                let _ = reply.send(Ok(clients));
            }
            (Ask::Stats(reply), Answer::Stats(stats)) => {
                let _ = reply.send(Ok(stats));
            }
            _ => {}
        }
    }

    /// Settles the request sent as `id` with the server's `error`; false
    /// when no presence request has that id.
    pub(crate) fn presence_refused(&mut self, id: u64, code: ErrorCode, message: String) -> bool {
        let Some(i) = self.asks.iter().position(|a| a.sent_as == Some(id)) else {
            return false;
        };
        self.asks.remove(i).fail(Error::Server { code, message });
        true
    }

    /// A `join` or `leave` for `channel`: handed to its subscription when
    /// the server holds it on this connection and its `subscribed` came
    /// (an event for an older subscription to the channel, replaced and
    /// not yet answered, is dropped).
    pub(crate) async fn presence_event(
        &mut self,
        ws: &mut Ws,
        channel: &str,
        event: Event,
        limit: Duration,
    ) -> Result<(), Ended> {
        let live = self
            .subs
            .get(channel)
            .is_some_and(|s| s.request.is_none() && s.position.is_some());
        if !live {
            return Ok(());
        }
        self.deliver(ws, channel, event, limit).await
    }
}

/// The `Event` for a `join` (or a `leave` when `!join`).
pub(crate) fn join_leave(
    join: bool,
    client: String,
    user: Option<String>,
    info: Option<Box<RawValue>>,
) -> Event {
    if join {
        Event::Join { client, user, info }
    } else {
        Event::Leave { client, user, info }
    }
}
