//! The connection task: the one task per client that owns the socket.
//!
//! It alternates between two modes. Offline (connecting, or waiting out a
//! backoff delay) it only queues what handles ask for. Online it runs one
//! `select!` over handle commands, inbound frames and the heartbeat timer.
//! Everything that must survive a reconnect lives in [`Core`]: each
//! subscription's stream position and the publishes not yet acknowledged.

use crate::{
    handshake::{self, Ws},
    reconnect::{Decision, Ended, Jitter, Policy},
    Error, Event, Publication, State, TokenRefresher,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    time::Duration,
};
use tether_protocol::{Backoff, ClientMessage, CloseCode, ServerMessage, StreamPosition};
use tokio::{
    sync::{mpsc, oneshot, watch, OwnedSemaphorePermit},
    time::{sleep, sleep_until, timeout, Instant},
};
use tokio_websockets::Message;
use tracing::{debug, info, warn};

/// The reason reported when the application closed the client.
pub(crate) const CLOSED_BY_CLIENT: &str = "closed by the client";

/// How long to wait for the server to answer our close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub(crate) struct Config {
    pub uri: http::Uri,
    pub backoff: Backoff,
    pub max_attempts: Option<u32>,
    pub token: Option<String>,
    pub refresher: Option<TokenRefresher>,
    pub subscription_buffer: usize,
    pub connect_timeout: Duration,
    pub jitter: Jitter,
}

/// What a handle asks of the connection task.
pub(crate) enum Command {
    Subscribe {
        channel: String,
        id: u64,
        reply: oneshot::Sender<Result<mpsc::Receiver<Event>, Error>>,
    },
    /// Sent when a `Subscription` is dropped; `id` tells it from a newer
    /// subscription to the same channel.
    Unsubscribe {
        channel: String,
        id: u64,
    },
    Publish(Pending),
    Close,
}

/// A publish waiting for its ack. It holds its slot in the bounded publish
/// queue (`permit`) until it is answered.
pub(crate) struct Pending {
    pub channel: String,
    pub data: Box<RawValue>,
    /// The idempotency key: the same on every resend, so it is stored once.
    pub key: String,
    pub reply: oneshot::Sender<Result<u64, Error>>,
    #[allow(dead_code)] // held, not read: dropping it frees the slot
    pub permit: OwnedSemaphorePermit,
    /// The request id on the current connection, once sent.
    pub sent_as: Option<u64>,
}

struct Sub {
    id: u64,
    events: mpsc::Sender<Event>,
    /// The last position delivered (or announced); `None` before the first
    /// `subscribed`.
    position: Option<StreamPosition>,
    /// The subscribe request in flight on this connection, and whether it
    /// asked for recovery.
    request: Option<(u64, bool)>,
}

struct Core {
    config: Config,
    commands: mpsc::Receiver<Command>,
    state: watch::Sender<State>,
    subs: HashMap<String, Sub>,
    pending: VecDeque<Pending>,
    token: Option<String>,
    next_request: u64,
}

/// Why the online loop returned.
enum Exit {
    Ended(Ended),
    /// The application closed the client (or dropped every handle).
    Close,
}

/// Runs the client until it stops for good.
pub(crate) async fn run(
    config: Config,
    commands: mpsc::Receiver<Command>,
    state: watch::Sender<State>,
) {
    let mut policy = Policy::new(config.backoff, config.max_attempts, config.jitter.clone());
    let mut core = Core {
        token: config.token.clone(),
        config,
        commands,
        state,
        subs: HashMap::new(),
        pending: VecDeque::new(),
        next_request: 1,
    };
    let uri = core.config.uri.to_string();
    let (code, reason) = loop {
        let (target, token) = (core.config.uri.clone(), core.token.clone());
        let attempt = handshake::connect(&target, token.as_deref(), core.config.connect_timeout);
        let ended = match core.offline(attempt).await {
            None => break (1000, CLOSED_BY_CLIENT.to_owned()),
            Some(Err(ended)) => ended,
            Some(Ok(mut ws)) => match core.online(&mut ws, &mut policy).await {
                Exit::Close => {
                    close(&mut ws).await;
                    break (1000, CLOSED_BY_CLIENT.to_owned());
                }
                Exit::Ended(ended) => ended,
            },
        };
        core.connection_ended();
        match policy.next(&ended) {
            Decision::Stop { code, reason } => break (code, reason),
            Decision::Retry {
                attempt,
                delay,
                refresh_token,
            } => {
                info!(%uri, attempt, delay_ms = delay.as_millis() as u64, why = ?ended, "reconnecting");
                core.set_state(State::Reconnecting {
                    attempt,
                    next_delay: delay,
                });
                if refresh_token {
                    let Some(refresh) = core.config.refresher.clone() else {
                        break (
                            CloseCode::TokenExpired.as_u16(),
                            "token expired and no token refresher is configured".into(),
                        );
                    };
                    match core.offline(refresh()).await {
                        None => break (1000, CLOSED_BY_CLIENT.to_owned()),
                        Some(Ok(token)) => core.token = Some(token),
                        Some(Err(why)) => {
                            break (
                                CloseCode::TokenExpired.as_u16(),
                                format!("token expired and the refresh failed: {why}"),
                            )
                        }
                    }
                }
                if core.offline(sleep(delay)).await.is_none() {
                    break (1000, CLOSED_BY_CLIENT.to_owned());
                }
            }
        }
    };
    info!(%uri, code, %reason, "disconnected");
    core.finish(code, reason);
}

/// Sends our close frame and gives the server a moment to answer it.
async fn close(ws: &mut Ws) {
    let msg = Message::close(Some(tokio_websockets::CloseCode::NORMAL_CLOSURE), "bye");
    if let Ok(Ok(())) = timeout(CLOSE_WAIT, ws.send(msg)).await {
        let _ = timeout(CLOSE_WAIT, async { while ws.next().await.is_some() {} }).await;
    }
}

impl Core {
    fn set_state(&self, state: State) {
        self.state.send_replace(state);
    }

    fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// Waits for `fut` while queueing what handles ask for; `None` when the
    /// client was closed meanwhile.
    async fn offline<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => return None,
                    Some(Command::Subscribe { channel, id, reply }) => {
                        self.register(channel, id, reply);
                    }
                    Some(Command::Unsubscribe { channel, id }) => {
                        self.unregister(&channel, id);
                    }
                    Some(Command::Publish(p)) => self.pending.push_back(p),
                },
            }
        }
    }

    /// Adds a subscription; returns whether the server already held an
    /// older one for the channel (which must be unsubscribed first).
    fn register(
        &mut self,
        channel: String,
        id: u64,
        reply: oneshot::Sender<Result<mpsc::Receiver<Event>, Error>>,
    ) -> Option<bool> {
        let replaced = match self.subs.get(&channel) {
            Some(old) if !old.events.is_closed() => {
                let _ = reply.send(Err(Error::AlreadySubscribed(channel)));
                return None;
            }
            Some(_) => true,
            None => false,
        };
        let (events, rx) = mpsc::channel(self.config.subscription_buffer);
        if reply.send(Ok(rx)).is_err() {
            return None;
        }
        let sub = Sub {
            id,
            events,
            position: None,
            request: None,
        };
        self.subs.insert(channel, sub);
        Some(replaced)
    }

    fn unregister(&mut self, channel: &str, id: u64) -> bool {
        if self.subs.get(channel).is_some_and(|s| s.id == id) {
            self.subs.remove(channel);
            return true;
        }
        false
    }

    /// Requests in flight died with the connection: subscriptions will be
    /// restored and publishes resent on the next one.
    fn connection_ended(&mut self) {
        for sub in self.subs.values_mut() {
            sub.request = None;
        }
        for p in &mut self.pending {
            p.sent_as = None;
        }
    }

    fn finish(mut self, code: u16, reason: String) {
        self.set_state(State::Disconnected {
            code,
            reason: reason.clone(),
        });
        let error = if reason == CLOSED_BY_CLIENT {
            Error::Closed
        } else {
            Error::Disconnected { code, reason }
        };
        for p in self.pending.drain(..) {
            let _ = p.reply.send(Err(error.clone()));
        }
        // Dropping the senders ends every Subscription stream.
        self.subs.clear();
        self.commands.close();
    }

    async fn online(&mut self, ws: &mut Ws, policy: &mut Policy) -> Exit {
        let limit = self.config.connect_timeout;
        let (ping_interval, pong_timeout) = match timeout(limit, welcome(ws)).await {
            Ok(Ok(times)) => times,
            Ok(Err(ended)) => return Exit::Ended(ended),
            Err(_) => {
                return Exit::Ended(Ended::Lost {
                    reason: format!("no welcome within {} ms", limit.as_millis()),
                })
            }
        };
        policy.connected();
        self.set_state(State::Connected);
        debug!(uri = %self.config.uri, "connected");
        // Writes must not outlive the heartbeat: a peer that does not take
        // our bytes is as dead as one that sends none.
        let write_limit = pong_timeout.max(Duration::from_millis(100));
        if let Err(ended) = self.restore(ws, write_limit).await {
            return Exit::Ended(ended);
        }
        let mut last_heard = Instant::now();
        let mut pinged = false;
        loop {
            let deadline = if pinged {
                last_heard + ping_interval + pong_timeout
            } else {
                last_heard + ping_interval
            };
            // Biased: commands are few and bounded by the handles; inbound
            // frames come before the timer so that a frame that is already
            // waiting refreshes `last_heard` before silence is judged.
            let result = tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => return Exit::Close,
                    Some(command) => self.command(ws, command, write_limit).await,
                },
                frame = ws.next() => {
                    last_heard = Instant::now();
                    pinged = false;
                    match frame {
                        None => Err(Ended::Lost { reason: "the server closed the TCP connection without a close frame".into() }),
                        Some(Err(e)) => Err(Ended::Lost { reason: format!("read error: {e}") }),
                        Some(Ok(msg)) => self.frame(ws, msg, write_limit).await,
                    }
                }
                () = sleep_until(deadline) => {
                    if pinged {
                        warn!(uri = %self.config.uri, "no message from the server for {} ms; dropping the connection", (ping_interval + pong_timeout).as_millis());
                        Err(Ended::Lost { reason: format!(
                            "nothing heard for {} ms (ping_interval + pong_timeout): the connection is dead",
                            (ping_interval + pong_timeout).as_millis()
                        )})
                    } else {
                        pinged = true;
                        send(ws, &ClientMessage::Ping, write_limit).await
                    }
                }
            };
            if let Err(ended) = result {
                return Exit::Ended(ended);
            }
        }
    }

    /// After (re)connecting: resubscribe with recovery, resend unacked publishes.
    async fn restore(&mut self, ws: &mut Ws, limit: Duration) -> Result<(), Ended> {
        let channels: Vec<String> = self.subs.keys().cloned().collect();
        for channel in channels {
            self.send_subscribe(ws, &channel, limit).await?;
        }
        for i in 0..self.pending.len() {
            self.send_publish(ws, i, limit).await?;
        }
        Ok(())
    }

    async fn send_subscribe(
        &mut self,
        ws: &mut Ws,
        channel: &str,
        limit: Duration,
    ) -> Result<(), Ended> {
        let id = self.request_id();
        let Some(sub) = self.subs.get_mut(channel) else {
            return Ok(());
        };
        sub.request = Some((id, sub.position.is_some()));
        let msg = ClientMessage::Subscribe {
            id,
            channel: channel.to_owned(),
            recover: sub.position.clone(),
        };
        send(ws, &msg, limit).await
    }

    async fn send_publish(
        &mut self,
        ws: &mut Ws,
        index: usize,
        limit: Duration,
    ) -> Result<(), Ended> {
        let id = self.request_id();
        let Some(p) = self.pending.get_mut(index) else {
            return Ok(());
        };
        p.sent_as = Some(id);
        let msg = ClientMessage::Publish {
            id,
            channel: p.channel.clone(),
            data: p.data.clone(),
            key: Some(p.key.clone()),
        };
        send(ws, &msg, limit).await
    }

    async fn command(
        &mut self,
        ws: &mut Ws,
        command: Command,
        limit: Duration,
    ) -> Result<(), Ended> {
        match command {
            Command::Subscribe { channel, id, reply } => {
                match self.register(channel.clone(), id, reply) {
                    None => Ok(()),
                    Some(replaced) => {
                        if replaced {
                            self.send_unsubscribe(ws, &channel, limit).await?;
                        }
                        self.send_subscribe(ws, &channel, limit).await
                    }
                }
            }
            Command::Unsubscribe { channel, id } => {
                if self.unregister(&channel, id) {
                    self.send_unsubscribe(ws, &channel, limit).await?;
                }
                Ok(())
            }
            Command::Publish(p) => {
                self.pending.push_back(p);
                self.send_publish(ws, self.pending.len() - 1, limit).await
            }
            Command::Close => Ok(()),
        }
    }

    async fn send_unsubscribe(
        &mut self,
        ws: &mut Ws,
        channel: &str,
        limit: Duration,
    ) -> Result<(), Ended> {
        let id = self.request_id();
        let msg = ClientMessage::Unsubscribe {
            id,
            channel: channel.to_owned(),
        };
        send(ws, &msg, limit).await
    }

    async fn frame(&mut self, ws: &mut Ws, msg: Message, limit: Duration) -> Result<(), Ended> {
        if let Some((code, reason)) = msg.as_close() {
            let ended = Ended::Closed {
                code: CloseCode::from_u16(u16::from(code)),
                reason: reason.to_owned(),
            };
            // Polling once more sends our answer to the close frame.
            let _ = timeout(CLOSE_WAIT, async { while ws.next().await.is_some() {} }).await;
            return Err(ended);
        }
        let Some(text) = msg.as_text() else {
            return Ok(()); // protocol pings are answered by tokio-websockets
        };
        match ServerMessage::decode(text) {
            Ok(message) => self.message(ws, message, limit).await,
            Err(e) => {
                debug!(error = %e, "ignoring an undecodable server message");
                Ok(())
            }
        }
    }

    async fn message(
        &mut self,
        ws: &mut Ws,
        message: ServerMessage,
        limit: Duration,
    ) -> Result<(), Ended> {
        match message {
            ServerMessage::Subscribed {
                id,
                channel,
                epoch,
                offset,
                recovered,
                publications,
            } => {
                let Some(sub) = self.subs.get_mut(&channel) else {
                    return Ok(());
                };
                let Some((request, recovering)) = sub.request else {
                    return Ok(());
                };
                if request != id {
                    return Ok(()); // the answer to an older subscription
                }
                sub.request = None;
                let last = sub.position.as_ref().map_or(0, |p| p.offset);
                if recovering && !recovered {
                    sub.position = Some(StreamPosition {
                        epoch: epoch.clone(),
                        offset,
                    });
                    return self
                        .deliver(ws, &channel, Event::Unrecovered { epoch, offset }, limit)
                        .await;
                }
                sub.position = Some(StreamPosition {
                    epoch: epoch.clone(),
                    offset: if recovering { last } else { offset },
                });
                self.deliver(
                    ws,
                    &channel,
                    Event::Subscribed {
                        epoch,
                        offset,
                        recovered,
                    },
                    limit,
                )
                .await?;
                for p in publications {
                    self.publication(ws, &channel, p.offset, p.data, limit)
                        .await?;
                }
                if let Some(sub) = self.subs.get_mut(&channel) {
                    if let Some(pos) = &mut sub.position {
                        pos.offset = pos.offset.max(offset);
                    }
                }
                Ok(())
            }
            ServerMessage::Message {
                channel,
                offset,
                data,
            } => self.publication(ws, &channel, offset, data, limit).await,
            ServerMessage::Ack { id, offset } => {
                if let Some(i) = self.pending.iter().position(|p| p.sent_as == Some(id)) {
                    if let Some(p) = self.pending.remove(i) {
                        let _ = p.reply.send(Ok(offset));
                    }
                }
                Ok(())
            }
            ServerMessage::Error {
                id: Some(id),
                code,
                message,
            } => {
                if let Some(i) = self.pending.iter().position(|p| p.sent_as == Some(id)) {
                    if let Some(p) = self.pending.remove(i) {
                        let _ = p.reply.send(Err(Error::Server { code, message }));
                    }
                    return Ok(());
                }
                let channel = self
                    .subs
                    .iter()
                    .find(|(_, s)| s.request.is_some_and(|(r, _)| r == id))
                    .map(|(c, _)| c.clone());
                if let Some(channel) = channel {
                    if let Some(sub) = self.subs.remove(&channel) {
                        // The stream ends after this event (the sender is dropped).
                        let _ = sub.events.send(Event::Refused { code, message }).await;
                    }
                }
                Ok(())
            }
            ServerMessage::Error {
                id: None,
                code,
                message,
            } => {
                debug!(%code, %message, "server error without a request id");
                Ok(())
            }
            ServerMessage::Welcome { .. }
            | ServerMessage::Unsubscribed { .. }
            | ServerMessage::Pong => Ok(()),
        }
    }

    /// Delivers a publication once and in order; a gap (which a server never
    /// produces on one connection) is repaired by reconnecting with recovery.
    async fn publication(
        &mut self,
        ws: &mut Ws,
        channel: &str,
        offset: u64,
        data: Box<RawValue>,
        limit: Duration,
    ) -> Result<(), Ended> {
        let Some(sub) = self.subs.get_mut(channel) else {
            return Ok(());
        };
        let Some(pos) = sub.position.as_mut() else {
            return Ok(());
        };
        if offset <= pos.offset {
            return Ok(()); // already delivered (replayed by recovery or resent)
        }
        if offset > pos.offset + 1 {
            return Err(Ended::Lost {
                reason: format!(
                    "gap in {channel:?}: expected offset {} but got {offset}; reconnecting to recover",
                    pos.offset + 1
                ),
            });
        }
        pos.offset = offset;
        let event = Event::Publication(Publication { offset, data });
        self.deliver(ws, channel, event, limit).await
    }

    /// Hands an event to its subscription, waiting while its queue is full;
    /// a dropped subscription is unsubscribed.
    async fn deliver(
        &mut self,
        ws: &mut Ws,
        channel: &str,
        event: Event,
        limit: Duration,
    ) -> Result<(), Ended> {
        let Some(sub) = self.subs.get(channel) else {
            return Ok(());
        };
        let events = sub.events.clone();
        let id = sub.id;
        if events.send(event).await.is_err() && self.unregister(channel, id) {
            self.send_unsubscribe(ws, channel, limit).await?;
        }
        Ok(())
    }
}

/// Waits for the `welcome`; returns the server's heartbeat timings.
async fn welcome(ws: &mut Ws) -> Result<(Duration, Duration), Ended> {
    loop {
        let msg = match ws.next().await {
            None => {
                return Err(Ended::Lost {
                    reason: "the connection closed before the welcome".into(),
                })
            }
            Some(Err(e)) => {
                return Err(Ended::Lost {
                    reason: format!("read error before the welcome: {e}"),
                })
            }
            Some(Ok(msg)) => msg,
        };
        if let Some((code, reason)) = msg.as_close() {
            return Err(Ended::Closed {
                code: CloseCode::from_u16(u16::from(code)),
                reason: reason.to_owned(),
            });
        }
        let Some(text) = msg.as_text() else { continue };
        return match ServerMessage::decode(text) {
            Ok(ServerMessage::Welcome {
                ping_interval_ms,
                pong_timeout_ms,
                ..
            }) => Ok((
                Duration::from_millis(ping_interval_ms.max(1)),
                Duration::from_millis(pong_timeout_ms.max(1)),
            )),
            _ => Err(Ended::Lost {
                reason: format!("expected a welcome, got {text:.100}"),
            }),
        };
    }
}

async fn send(ws: &mut Ws, msg: &ClientMessage, limit: Duration) -> Result<(), Ended> {
    match timeout(limit, ws.send(Message::text(msg.encode()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Ended::Lost {
            reason: format!("write error: {e}"),
        }),
        Err(_) => Err(Ended::Lost {
            reason: format!("a write did not finish within {} ms", limit.as_millis()),
        }),
    }
}
