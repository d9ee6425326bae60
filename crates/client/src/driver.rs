//! The connection task: the one task per client that owns the socket (the
//! online half, one connection's life, is in `session.rs`).
//!
//! It alternates between two modes. Offline (connecting, or waiting out a
//! backoff delay) it only queues what handles ask for. Online it runs one
//! `select!` over handle commands, inbound frames and the heartbeat timer.
//! Everything that must survive a reconnect lives in [`Core`]: each
//! subscription's stream position and the publishes not yet acknowledged.

use crate::{
    connect_data::{self, ConnectData},
    handshake::{self, Ws},
    presence::PresenceRequest,
    reconnect::{Decision, Ended, Jitter, Policy},
    rpc::RpcCall,
    server_subs::Sink,
    Error, Event, State, TokenRefresher,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    time::Duration,
};
use tether_protocol::{Backoff, CloseCode, StreamPosition};
use tokio::{
    sync::{mpsc, oneshot, watch, OwnedSemaphorePermit},
    time::{sleep, timeout},
};
use tokio_websockets::Message;
use tracing::info;

/// The reason reported when the application closed the client.
pub(crate) const CLOSED_BY_CLIENT: &str = "closed by the client";

/// How long to wait for the server to answer our close frame.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub(crate) struct Config {
    pub uri: http::Uri,
    pub backoff: Backoff,
    pub max_attempts: Option<u32>,
    pub token: Option<String>,
    pub refresher: Option<TokenRefresher>,
    pub subscription_buffer: usize,
    pub connect_timeout: Duration,
    /// How long the server remembers an idempotency key; an unacked publish
    /// first sent longer ago than this is failed instead of resent.
    pub idempotency_window: Duration,
    pub jitter: Jitter,
    /// Set for `wss://` URLs.
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// Sent as `data=` on every connect.
    pub connect_data: Option<ConnectData>,
    /// Where server-side subscriptions' events go.
    pub server_sink: Sink,
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
    /// `presence` or `presence_stats`: sent now when connected, else after
    /// the reconnect.
    Presence(PresenceRequest),
    /// Sent now when connected, else after the reconnect (`rpc.rs`).
    Rpc(RpcCall),
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
    /// When it was first written to a connection (tokio's clock, so tests can
    /// pause it): the server's idempotency window starts no earlier.
    pub first_sent: Option<tokio::time::Instant>,
}

pub(crate) struct Sub {
    /// The application's subscription id; 0 for a server-side subscription.
    pub(crate) id: u64,
    pub(crate) events: Sink,
    /// While our own subscribe is in flight: the server made the
    /// subscription again at this position (offset raised by each message
    /// held back meanwhile); see `server_subs.rs`.
    pub(crate) remade: Option<StreamPosition>,
    /// The last position delivered (or announced); `None` before the first
    /// `subscribed`.
    pub(crate) position: Option<StreamPosition>,
    /// The subscribe request in flight on this connection, and whether it
    /// asked for recovery.
    pub(crate) request: Option<(u64, bool)>,
    /// Retryable refusals since the last successful subscribe: the attempt
    /// of the retry backoff (see `resubscribe.rs`).
    pub(crate) refusals: u32,
    /// When to subscribe again after a retryable refusal on this connection.
    pub(crate) retry_at: Option<tokio::time::Instant>,
}

impl Sub {
    pub(crate) fn new(id: u64, events: Sink) -> Self {
        Sub {
            id,
            events,
            remade: None,
            position: None,
            request: None,
            refusals: 0,
            retry_at: None,
        }
    }

    /// Whether the server holds (or is about to hold) this subscription on
    /// the current connection, so that dropping it needs an `unsubscribe`.
    /// While a retry waits it does not: the last subscribe was refused.
    pub(crate) fn held_by_server(&self) -> bool {
        self.request.is_some() || (self.position.is_some() && self.retry_at.is_none())
    }
}

pub(crate) struct Core {
    pub(crate) config: Config,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) state: watch::Sender<State>,
    pub(crate) subs: HashMap<String, Sub>,
    pub(crate) pending: VecDeque<Pending>,
    /// Presence requests awaiting their answer (see `presence.rs`).
    pub(crate) asks: Vec<PresenceRequest>,
    /// Rpcs waiting to be sent or answered (see `rpc.rs`).
    pub(crate) rpcs: VecDeque<RpcCall>,
    /// Where server-side subscriptions' events go (`server_subs.rs`).
    pub(crate) server_sink: Sink,
    pub(crate) token: Option<String>,
    pub(crate) next_request: u64,
    /// The earliest `Sub::retry_at` (or earlier: a cancelled retry leaves it
    /// behind, and its wake-up finds nothing due). Kept apart so the online
    /// loop does not scan every subscription per frame.
    pub(crate) next_retry: Option<tokio::time::Instant>,
    /// A request was answered (`subscribed`, `ack`) on this connection: it
    /// proved usable, and the reconnect schedule starts over.
    pub(crate) answered: bool,
}

/// Why the online loop returned.
pub(crate) enum Exit {
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
        server_sink: config.server_sink.clone(),
        config,
        commands,
        state,
        subs: HashMap::new(),
        pending: VecDeque::new(),
        asks: Vec::new(),
        rpcs: VecDeque::new(),
        next_request: 1,
        next_retry: None,
        answered: false,
    };
    let uri = core.config.uri.to_string();
    let (code, reason) = loop {
        let target = connect_data::target(&core.config.uri, core.config.connect_data.as_ref());
        let (token, tls) = (core.token.clone(), core.config.tls.clone());
        let ended = match target {
            // Connect data the application's closure made unusable: this
            // attempt fails, and the next one asks it again.
            Err(ended) => ended,
            Ok(target) => {
                let attempt = handshake::connect(
                    &target,
                    token.as_deref(),
                    tls.as_ref(),
                    core.config.connect_timeout,
                );
                match core.offline(attempt).await {
                    None => break (1000, CLOSED_BY_CLIENT.to_owned()),
                    Some(Err(ended)) => ended,
                    Some(Ok(mut ws)) => match core.online(&mut ws, &mut policy).await {
                        Exit::Close => {
                            close(&mut ws).await;
                            break (1000, CLOSED_BY_CLIENT.to_owned());
                        }
                        Exit::Ended(ended) => ended,
                    },
                }
            }
        };
        core.connection_ended(&ended);
        match policy.next(&ended) {
            Decision::Stop { code, reason } => break (code, reason),
            Decision::Retry {
                attempt,
                delay,
                refresh_token,
                code,
                reason,
            } => {
                info!(%uri, attempt, delay_ms = delay.as_millis() as u64, why = ?ended, "reconnecting");
                core.set_state(State::Reconnecting {
                    attempt,
                    next_delay: delay,
                    code,
                    reason,
                });
                // 4002 with no token at all: the session came from the
                // server's connect hook (a cookie), which decides again on
                // the next connection.
                if refresh_token && (core.token.is_some() || core.config.refresher.is_some()) {
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
    pub(crate) fn set_state(&self, state: State) {
        self.state.send_replace(state);
    }

    pub(crate) fn request_id(&mut self) -> u64 {
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
                    Some(Command::Presence(request)) => self.queue_ask(request),
                    Some(Command::Rpc(call)) => self.queue_rpc(call),
                },
            }
        }
    }

    /// Adds a subscription; returns whether the server already held an
    /// older one for the channel on this connection (which must be
    /// unsubscribed first).
    pub(crate) fn register(
        &mut self,
        channel: String,
        id: u64,
        reply: oneshot::Sender<Result<mpsc::Receiver<Event>, Error>>,
    ) -> Option<bool> {
        let replaced = match self.subs.get(&channel) {
            // A server-side subscription's sink is never closed.
            Some(old) if !old.events.is_closed() => {
                let _ = reply.send(Err(Error::AlreadySubscribed(channel)));
                return None;
            }
            Some(old) => old.held_by_server(),
            None => false,
        };
        let (events, rx) = mpsc::channel(self.config.subscription_buffer);
        if reply.send(Ok(rx)).is_err() {
            return None;
        }
        self.subs.insert(channel, Sub::new(id, Sink::Own(events)));
        Some(replaced)
    }

    /// Removes subscription `id`; returns it, so the caller can tell whether
    /// the server must be told (`Sub::held_by_server`).
    pub(crate) fn unregister(&mut self, channel: &str, id: u64) -> Option<Sub> {
        if self.subs.get(channel).is_some_and(|s| s.id == id) {
            return self.subs.remove(channel);
        }
        None
    }

    /// Requests in flight died with the connection: subscriptions will be
    /// restored and publishes resent on the next one. A pending subscribe
    /// retry dies too: the restore subscribes anyway (its refusal count
    /// stays, so a broker still down keeps the delays growing).
    fn connection_ended(&mut self, ended: &Ended) {
        // A 1009 can only be caused by something we sent, and only a publish
        // can be that big: the largest one sent on this connection fails
        // instead of being resent into the same close forever. Several too
        // big go one per 1009.
        if matches!(
            ended,
            Ended::Closed {
                code: CloseCode::MessageTooBig,
                ..
            }
        ) {
            self.reject_too_big();
        }
        self.rpcs_lost(&ended.describe().1);
        for sub in self.subs.values_mut() {
            sub.request = None;
            sub.retry_at = None;
            sub.remade = None;
        }
        self.next_retry = None;
        for p in &mut self.pending {
            p.sent_as = None;
        }
        for a in &mut self.asks {
            a.sent_as = None;
        }
    }

    /// After a 1009: only a publish or an rpc can be that big, so the
    /// largest of them sent on the connection fails with `MessageTooBig`
    /// instead of being resent into the same close (an rpc is never resent,
    /// but it must not let a smaller publish take the blame). Several too
    /// big go one per 1009.
    fn reject_too_big(&mut self) {
        let size = |p: &Pending| p.channel.len() + p.data.get().len() + p.key.len();
        let publish = (self.pending.iter().enumerate())
            .filter(|(_, p)| p.sent_as.is_some())
            .max_by_key(|(_, p)| size(p))
            .map(|(i, p)| (i, size(p)));
        let rpc = (self.rpcs.iter().enumerate())
            .filter(|(_, c)| c.sent_as.is_some())
            .max_by_key(|(_, c)| c.size())
            .map(|(i, c)| (i, c.size()));
        match (publish, rpc) {
            (_, Some((i, bytes))) if bytes > publish.map_or(0, |(_, b)| b) => {
                if let Some(call) = self.rpcs.remove(i) {
                    let _ = call.reply.send(Err(Error::MessageTooBig { bytes }));
                }
            }
            (Some((i, bytes)), _) => {
                if let Some(p) = self.pending.remove(i) {
                    let _ = p.reply.send(Err(Error::MessageTooBig { bytes }));
                }
            }
            _ => {}
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
        for a in self.asks.drain(..) {
            a.fail(error.clone());
        }
        for call in self.rpcs.drain(..) {
            let _ = call.reply.send(Err(error.clone()));
        }
        // Dropping the senders ends every Subscription stream.
        self.subs.clear();
        self.commands.close();
    }
}
