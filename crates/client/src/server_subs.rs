//! Server-side subscriptions: channels the server subscribed this client to
//! on its own (a backend's connect hook answered `channels`; docs/hooks.md).
//! The server announces each with a `subscribed` without `id` right after
//! the welcome; their events go to one stream for the whole client,
//! [`ServerSubscriptions`], each tagged with its channel.
//!
//! From then on the client treats such a channel as its own: it keeps its
//! position and, after a reconnect, resubscribes it with `recover` like any
//! subscription. The server runs the connect hook again on the new
//! connection and may make the subscription again before the resubscribe
//! reaches it (its `subscribed` without `id` comes first, and the
//! resubscribe is then answered `already_subscribed`). The client takes that
//! as the server's answer: it drops the channel's messages until its own
//! request is answered, then continues from its position when nothing was
//! missed, or says so with [`Event::Unrecovered`] — never a silent gap.

use crate::{
    driver::{Core, Sub},
    handshake::Ws,
    reconnect::Ended,
    Client, Event,
};
use futures_util::Stream;
use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};
use tether_protocol::{PublicationEntry, StreamPosition};
use tokio::sync::mpsc;

/// One event of a server-side subscription: the [`Event`] a
/// [`Subscription`](crate::Subscription) to `channel` would yield.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerEvent {
    /// The channel the server subscribed this client to.
    pub channel: String,
    pub event: Event,
}

/// The events of every server-side subscription, in the order they arrive;
/// from [`Client::server_subscriptions`](crate::Client::server_subscriptions).
///
/// Read it promptly, as a [`Subscription`](crate::Subscription): its queue
/// is bounded (`subscription_buffer`), and a full queue stops the client
/// reading from the socket. Dropping it drops later events (the server-side
/// subscriptions stay). The stream ends when the client stops for good.
pub struct ServerSubscriptions {
    pub(crate) events: mpsc::Receiver<ServerEvent>,
}

impl ServerSubscriptions {
    /// The next event, or `None` when the client has stopped.
    pub async fn next_event(&mut self) -> Option<ServerEvent> {
        self.events.recv().await
    }
}

impl Stream for ServerSubscriptions {
    type Item = ServerEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ServerEvent>> {
        self.events.poll_recv(cx)
    }
}

impl std::fmt::Debug for ServerSubscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSubscriptions")
            .finish_non_exhaustive()
    }
}

/// Where a subscription's events go.
#[derive(Clone)]
pub(crate) enum Sink {
    /// The application's [`Subscription`](crate::Subscription) for it.
    Own(mpsc::Sender<Event>),
    /// The client's [`ServerSubscriptions`] stream; `taken` says whether the
    /// application asked for it (until then its events are dropped, so an
    /// application that never reads them cannot stall the client).
    Server {
        events: mpsc::Sender<ServerEvent>,
        taken: Arc<AtomicBool>,
    },
}

impl Sink {
    /// Whether the application dropped the receiving end of its own
    /// subscription (never for server-side ones: the server made them).
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Sink::Own(events) => events.is_closed(),
            Sink::Server { .. } => false,
        }
    }

    /// Hands `event` over, waiting while the queue is full; `Err` when the
    /// application dropped its own subscription.
    pub(crate) async fn send(&self, channel: &str, event: Event) -> Result<(), ()> {
        match self {
            Sink::Own(events) => events.send(event).await.map_err(|_| ()),
            Sink::Server { events, taken } => {
                if taken.load(Ordering::Acquire) {
                    let event = ServerEvent {
                        channel: channel.to_owned(),
                        event,
                    };
                    // A dropped stream drops the event, not the subscription.
                    let _ = events.send(event).await;
                }
                Ok(())
            }
        }
    }
}

impl Client {
    /// The events of the channels the server subscribed this client to on
    /// its own (the backend's connect hook answered `channels`;
    /// docs/hooks.md): one stream for all of them, each event tagged with
    /// its channel. `Some` the first time it is called, `None` afterwards.
    ///
    /// Take it right after [`ClientBuilder::build`](crate::ClientBuilder::build): until it is taken,
    /// those events are dropped (so a client that never reads them cannot
    /// stall). The client treats such a channel as its own subscription
    /// from then on: it resubscribes it with recovery after a reconnect,
    /// and the server's making it again on the new connection is taken as
    /// the answer (docs/client.md, *Server-side subscriptions*).
    pub fn server_subscriptions(&self) -> Option<ServerSubscriptions> {
        let mut slot = self.server_events.lock().ok()?;
        let events = slot.take()?;
        self.server_events_taken.store(true, Ordering::Release);
        Some(ServerSubscriptions { events })
    }
}

impl Core {
    /// A `subscribed` without `id`: the server subscribed this client to
    /// `channel` on its own.
    pub(crate) async fn server_subscribed(
        &mut self,
        ws: &mut Ws,
        channel: String,
        at: StreamPosition,
        publications: Vec<PublicationEntry>,
        limit: Duration,
    ) -> Result<(), Ended> {
        let Some(sub) = self.subs.get_mut(&channel) else {
            // A new one: its stream starts here.
            let sub = Sub::new(0, self.server_sink.clone());
            self.subs.insert(channel.clone(), sub);
            return self.start_at(ws, &channel, at, publications, limit).await;
        };
        if sub.request.is_some() {
            // Our own (re)subscribe is on its way and will be answered
            // `already_subscribed` (or, by a server that recovers it, with
            // `subscribed`): wait for that answer (`adopt_remade`).
            sub.remade = Some(at);
            return Ok(());
        }
        // Held, or waiting to retry a refused subscribe: the server holds it now.
        sub.retry_at = None;
        match sub.position.clone() {
            None => self.start_at(ws, &channel, at, publications, limit).await,
            Some(p) if p.epoch == at.epoch && p.offset >= at.offset => Ok(()),
            Some(_) => {
                let event = Event::Unrecovered {
                    epoch: at.epoch.clone(),
                    offset: at.offset,
                };
                if let Some(sub) = self.subs.get_mut(&channel) {
                    sub.position = Some(at);
                }
                self.deliver(ws, &channel, event, limit).await
            }
        }
    }

    /// A first `subscribed` for `channel` at `at`: the position, the event,
    /// then the publications it carries (none past `at` from a server today).
    async fn start_at(
        &mut self,
        ws: &mut Ws,
        channel: &str,
        at: StreamPosition,
        publications: Vec<PublicationEntry>,
        limit: Duration,
    ) -> Result<(), Ended> {
        let Some(sub) = self.subs.get_mut(channel) else {
            return Ok(());
        };
        sub.position = Some(at.clone());
        let event = Event::Subscribed {
            epoch: at.epoch,
            offset: at.offset,
            recovered: false,
        };
        self.deliver(ws, channel, event, limit).await?;
        for p in publications {
            self.publication(ws, channel, p.offset, p.data, limit)
                .await?;
        }
        Ok(())
    }

    /// A publication for a channel the server made again while our own
    /// subscribe for it is in flight: dropped (the answer to our request
    /// replays it, or `adopt_remade` reports the gap); true when it was.
    pub(crate) fn held_back(sub: &mut Sub, offset: u64) -> bool {
        match (&sub.request, sub.remade.as_mut()) {
            (Some(_), Some(remade)) => {
                remade.offset = remade.offset.max(offset);
                true
            }
            _ => false,
        }
    }

    /// Our subscribe for `channel` was answered `already_subscribed` after
    /// the server made the subscription itself: continue from our position
    /// when the server's stream starts no later, else report the gap.
    /// False when the server had not made it (a plain refusal).
    pub(crate) async fn adopt_remade(
        &mut self,
        ws: &mut Ws,
        channel: &str,
        limit: Duration,
    ) -> Result<bool, Ended> {
        let Some(sub) = self.subs.get_mut(channel) else {
            return Ok(false);
        };
        let Some(remade) = sub.remade.take() else {
            return Ok(false);
        };
        sub.request = None;
        sub.refusals = 0;
        let event = match &sub.position {
            None => {
                sub.position = Some(remade.clone());
                Event::Subscribed {
                    epoch: remade.epoch,
                    offset: remade.offset,
                    recovered: false,
                }
            }
            Some(p) if p.epoch == remade.epoch && p.offset >= remade.offset => Event::Subscribed {
                epoch: p.epoch.clone(),
                offset: p.offset,
                recovered: true,
            },
            Some(_) => {
                sub.position = Some(remade.clone());
                Event::Unrecovered {
                    epoch: remade.epoch,
                    offset: remade.offset,
                }
            }
        };
        self.deliver(ws, channel, event, limit).await?;
        Ok(true)
    }
}
