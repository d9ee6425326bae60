//! One Tether session over a WebSocket: the per-connection state machine.
//!
//! A single task owns the socket and runs one `select!` over: the node's
//! drain signal, the connection's doorbell (subscriptions whose channel log
//! has something new), the heartbeat/expiry timer and inbound frames.
//! Publications are written straight from the channels' shared logs at the
//! connection's own pace ([`crate::channel_log`]); one small task and no
//! queue per connection is what lets a node hold tens of thousands of idle
//! connections, and a burst close nobody whose lag stays within the log.
//!
//! The loop is fair: inbound frames are read before each write batch, so a
//! connection receiving a steady stream of publications still sees its
//! peer's pongs, unsubscribes and close frames every turn, and a healthy
//! client is never timed out because the loop was busy writing. Clocks are
//! tokio's, so tests can run the heartbeat on paused time.

use super::CLOSE_SEND_TIMEOUT;
use crate::{
    auth::Grant,
    broker::Publication,
    channel_log::Cursor,
    doorbell::{DRAIN, TICK},
    hooks::ConnectRequest,
    limits::ConnectionPermit,
    node::Node,
    session::{Closing, Out, Pending, Session as Engine, Style},
};
use futures_util::{SinkExt, StreamExt};
use std::{net::SocketAddr, pin::pin, sync::Arc};
use tether_protocol::CloseCode;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::{timeout, Instant},
};
use tokio_websockets::{Message, WebSocketStream};
use tracing::{debug, info, Instrument};

/// Publications written per subscription per batch before reading again.
const WRITE_BATCH: usize = 256;

/// How a session ended.
enum End {
    /// The socket failed on a write; nothing to send.
    Peer(String),
    /// The socket ended without a close frame (EOF or a read error) after
    /// this long with nothing read: fed to the node's idle-cut detector.
    Cut(std::time::Duration, String),
    /// The peer sent a close frame; the library queued the answer, which
    /// must go out before the socket is dropped (RFC 6455 §5.5.1) so the
    /// client sees a clean close with its code.
    PeerClosed(u16, String),
    /// The server closes with this code and reason.
    Close(CloseCode, String),
    /// A write did not finish in time: the peer is not reading. Drop it.
    WriteTimeout,
    /// The peer broke the WebSocket protocol (or sent an oversized message);
    /// the library has already queued the close frame with this code.
    Violation(u16, String),
}

impl End {
    /// The close code and reason a `disconnect` event tells: the close
    /// frame's (the server's or the peer's), or 1006 when the connection
    /// ended without one.
    fn as_event(&self) -> (u16, String) {
        match self {
            End::Peer(why) | End::Cut(_, why) => (1006, why.clone()),
            End::WriteTimeout => (
                1006,
                "write timed out: the client was not reading".to_owned(),
            ),
            End::PeerClosed(code, why) | End::Violation(code, why) => (*code, why.clone()),
            End::Close(code, why) => (code.as_u16(), why.clone()),
        }
    }
}

/// The session's place in the node's ticker, freed when the loop ends.
struct TickerSlot(Arc<Node>, u32);

impl Drop for TickerSlot {
    fn drop(&mut self) {
        self.0.ticker.remove(self.1);
    }
}

impl From<Closing> for End {
    fn from(c: Closing) -> Self {
        End::Close(c.code, c.reason)
    }
}

/// Maps a read error to how the session ends.
pub(crate) fn read_error(e: tokio_websockets::Error) -> (Option<u16>, String) {
    match e {
        tokio_websockets::Error::PayloadTooLong { len, max_len } => (
            Some(1009),
            format!("message of {len} bytes exceeds the limit of {max_len}"),
        ),
        tokio_websockets::Error::Protocol(p) => (Some(1002), format!("protocol violation: {p}")),
        other => (None, format!("read error: {other}")),
    }
}

/// One connection's session: the engine, and the socket it speaks over.
/// Built synchronously and then run as the connection's only task, so
/// nothing is held twice in the task's state.
pub struct Session<S> {
    engine: Engine,
    ws: WebSocketStream<S>,
    last_seen: Instant,
    peer: SocketAddr,
    /// What the connect hook is asked before the `welcome`, if there is one.
    connect: Option<Box<ConnectRequest>>,
    /// A request (or the session's refresh) waiting for the backend: polled
    /// beside the doorbell, so deliveries go on; the client's next frame is
    /// read once it is answered.
    pending: Option<Box<Pending>>,
}

/// `write_rung`'s scratch space: rung cursors, publications read.
type Scratch = (Vec<Arc<Cursor>>, Vec<Arc<Publication>>);

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(
        node: Arc<Node>,
        ws: WebSocketStream<S>,
        peer: SocketAddr,
        grant: Grant,
        permit: ConnectionPermit,
    ) -> Self {
        Session {
            engine: Engine::new(node, grant, permit, Style::Connection),
            ws,
            last_seen: Instant::now(),
            peer,
            connect: None,
            pending: None,
        }
    }

    /// Asks the connect hook about the connection (`request`) before its
    /// `welcome`: a refusal closes it with the backend's code and reason.
    pub fn with_connect(mut self, request: Option<Box<ConnectRequest>>) -> Self {
        self.connect = request;
        self
    }

    /// Runs the session to its end. The session is boxed, and the future
    /// only holds the box: an `async fn` taking `self` by value would keep
    /// two copies of it in the task's state (rust-lang/rust#62958).
    pub fn run(self: Box<Self>) -> impl std::future::Future<Output = ()> {
        self.drive()
    }

    /// The span the session's debug lines carry. Entered only around the
    /// paths that log (requests, the close), not held by the task: an idle
    /// connection keeps no span. A debug span: the log formats a span's
    /// fields when it is created, which cost more than a request itself;
    /// the info and warn lines name the peer and client themselves.
    fn span(&self) -> tracing::Span {
        tracing::debug_span!(
            "session",
            peer = %self.peer,
            client = %self.client_label()
        )
    }

    fn client_label(&self) -> String {
        self.engine.client_id()
    }

    async fn drive(mut self: Box<Self>) {
        let node = self.engine.node.clone();
        node.metrics.connections.inc();
        let client_id = self.engine.client_id();
        let end = match self.connect.take() {
            // Boxed: only connections of a node with a connect hook need it.
            Some(request) => Box::pin(self.ask_connect(request, client_id.clone())).await,
            None => Ok(()),
        };
        let end = match end {
            Ok(()) => self.serve(client_id).await,
            Err(end) => end,
        };
        // Boxed: the close path is large and runs once; keeping it out of
        // the task's inline state keeps every idle connection smaller.
        let span = self.span();
        Box::pin(self.finish(end).instrument(span)).await;
        node.metrics.connections.dec();
    }

    /// The connect hook's answer: the session's grant and server-side
    /// subscriptions, or how the connection ends.
    async fn ask_connect(
        &mut self,
        mut request: Box<ConnectRequest>,
        client_id: String,
    ) -> Result<(), End> {
        request.client = client_id;
        let node = self.engine.node.clone();
        let grant = crate::session::connect(&node, &request).await?;
        self.engine.connected(grant);
        Ok(())
    }

    /// Joins the server-side subscriptions and writes their `subscribed`.
    async fn announce(&mut self) -> Result<(), End> {
        let mut out = Out::new();
        self.engine.announce(&mut out).await;
        self.write_out(&mut out).await
    }

    async fn serve(&mut self, client_id: String) -> End {
        let node = self.engine.node.clone();
        let welcome = self.engine.welcome(client_id);
        if let Err(end) = Box::pin(self.send(welcome.encode())).await {
            return end;
        }
        self.engine.announce_connect();
        // No timer of its own: the node's ticker wakes the session through
        // its doorbell when the deadline written there comes, and when the
        // node drains (`crate::heartbeat`). Times are milliseconds on the
        // ticker's clock, to keep the task's state small.
        let bell = self.engine.bell.clone();
        let mut next_ping = node
            .ticker
            .ms(Instant::now() + node.config.heartbeat.ping_interval);
        bell.set_deadline(self.deadline(next_ping));
        let _slot = TickerSlot(node.clone(), node.ticker.add(&bell));
        if node.is_draining() {
            return Closing::draining(&node).into();
        }
        if self.engine.has_announcements() {
            if let Err(end) = Box::pin(self.announce()).await {
                return end;
            }
        }
        // Created once and polled in place: re-creating it on each turn of
        // the loop (taking the Notify lock) was a measurable share of the
        // fan-out cost.
        let mut wake = pin!(bell.notified());
        loop {
            // Biased: inbound frames first, so a busy doorbell can never
            // starve pongs, unsubscribes and close frames (their rate is
            // bounded by the message bucket); then the node's events (the
            // drain, the heartbeat) and publications.
            tokio::select! {
                biased;
                // While a request waits for the backend the client's next
                // ones wait in the socket: they are answered in order.
                frame = self.ws.next(), if self.pending.is_none() => {
                    let now = Instant::now();
                    let silent_for = now.saturating_duration_since(self.last_seen);
                    self.last_seen = now;
                    match frame {
                        None => {
                            return End::Cut(silent_for, "connection closed".into());
                        }
                        Some(Err(e)) => return match read_error(e) {
                            (Some(code), why) => End::Violation(code, why),
                            (None, why) => {
                                End::Cut(silent_for, why)
                            }
                        },
                        Some(Ok(msg)) => {
                            if let Some((code, reason)) = msg.as_close() {
                                return End::PeerClosed(u16::from(code), reason.to_owned());
                            }
                            // Boxed: request handling has deep futures, and
                            // idle connections never need them.
                            let span = self.span();
                            if let Err(end) = Box::pin(self.on_frame(msg).instrument(span)).await {
                                return end;
                            }
                        }
                    }
                }
                answer = std::future::poll_fn(|cx| match &mut self.pending {
                    Some(p) => p.call.as_mut().poll(cx),
                    None => std::task::Poll::Pending,
                }), if self.pending.is_some() => {
                    let span = self.span();
                    if let Err(end) = Box::pin(self.resume(answer).instrument(span)).await {
                        return end;
                    }
                    bell.set_deadline(self.deadline(next_ping));
                }
                () = &mut wake => {
                    wake.set(bell.notified());
                    let events = bell.take_events();
                    if events & DRAIN != 0 {
                        return Closing::draining(&node).into();
                    }
                    if events & TICK != 0 {
                        if let Err(end) = Box::pin(self.heartbeat(&mut next_ping)).await {
                            return end;
                        }
                    }
                    // Boxed, with its buffers: an idle connection holds none.
                    if let Err(end) = Box::pin(self.write_rung()).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Applies the backend's answer to the pending request and writes the
    /// reply. The client was not read meanwhile: the wait counts as heard
    /// from. A refresh that came due meanwhile starts now, before the
    /// client's next request.
    async fn resume(
        &mut self,
        answer: Result<crate::hooks::Answer, crate::hooks::HookError>,
    ) -> Result<(), End> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        self.last_seen = Instant::now();
        let mut out = Out::new();
        let resumed = self.engine.resume(pending, answer, &mut out).await;
        let written = self.write_out(&mut out).await;
        resumed.map_err(End::from)?;
        written?;
        if self.engine.refresh_due() {
            self.pending = Some(self.engine.start_refresh());
        }
        Ok(())
    }

    /// When the session next needs a heartbeat check: the next ping, the
    /// silence limit, or the token's expiry (its refresh, with a refresh
    /// hook).
    fn deadline(&self, next_ping: u64) -> u64 {
        let node = &self.engine.node;
        let hb = &node.config.heartbeat;
        let silent = node.ticker.ms(self.last_seen + hb.silence_limit());
        let expiry = match &self.pending {
            // Looked at again once the refresh is answered.
            Some(p) if p.is_refresh() => u64::MAX,
            _ => self
                .engine
                .check_expiry_at()
                .map_or(u64::MAX, |at| node.ticker.ms(at)),
        };
        next_ping.min(silent).min(expiry)
    }

    /// The heartbeat check, when the ticker says its deadline came: token
    /// expiry (4002) or its refresh, silence (4003), or time for a ping.
    /// While a request waits for the backend the client is not read, so
    /// it is not timed out for silence (the wait ends within
    /// `--hook-timeout`).
    async fn heartbeat(&mut self, next_ping: &mut u64) -> Result<(), End> {
        let node = self.engine.node.clone();
        let hb = &node.config.heartbeat;
        let now = Instant::now();
        if self.engine.refresh_due() {
            // Started now, or (a request waits) right after that answer.
            if self.pending.is_none() {
                self.pending = Some(self.engine.start_refresh());
            }
        } else if let Some(c) = self.engine.token_expired() {
            return Err(c.into());
        }
        let silence_limit = hb.silence_limit();
        if self.pending.is_none() && now >= self.last_seen + silence_limit {
            node.metrics.heartbeat_timeouts.inc();
            return Err(End::Close(
                CloseCode::HeartbeatTimeout,
                format!("no message or pong for {} ms", silence_limit.as_millis()),
            ));
        }
        if node.ticker.ms(now) >= *next_ping {
            *next_ping = node.ticker.ms(now + hb.ping_interval);
            self.send_raw(Message::ping(bytes::Bytes::new())).await?;
        }
        // Inbound frames move `last_seen` without touching the deadline; it
        // is re-aimed only here, when it comes.
        self.engine.bell.set_deadline(self.deadline(*next_ping));
        Ok(())
    }

    /// Writes what the rung subscriptions have new, from their channels'
    /// logs (at most `WRITE_BATCH` publications each per turn; one with
    /// more is rung again, so inbound frames are read in between), and at
    /// most one page of a replay's gap from history. The history read awaits
    /// the broker here, in the `select!` arm's body, so it is never dropped
    /// halfway; the next page waits until this one is written.
    async fn write_rung(&mut self) -> Result<(), End> {
        let mut out = Out::new();
        // The rung cursors and the publications read are only needed until
        // the frames are in `out`: per-thread scratch space, so a wake-up
        // allocates for neither (and an idle session holds neither).
        let replay = SCRATCH.with(|scratch| {
            let (rung, batch) = &mut *scratch.borrow_mut();
            let read = match self.engine.take_rung(rung) {
                Err(_) => Err(End::Peer("session finished".into())),
                Ok(()) => self
                    .engine
                    .read_rung(rung, WRITE_BATCH, batch, &mut out)
                    .map_err(End::from),
            };
            rung.clear();
            batch.clear();
            read
        })?;
        if let Some(cursor) = replay {
            self.engine.read_replay(cursor, &mut out).await?;
        }
        self.write_out(&mut out).await
    }

    /// Handles one inbound data frame through the engine and writes its
    /// replies.
    async fn on_frame(&mut self, msg: Message) -> Result<(), End> {
        let mut out = Out::new();
        let out = &mut out;
        let handled = if msg.is_ping() || msg.is_pong() {
            // Control frames cost a token too: a ping flood is throttled and
            // then closed like a message flood (the library answers pings
            // itself, keeping at most one pong pending).
            self.engine.take_token(out)
        } else if let Some(text) = msg.as_text() {
            // A request the backend decides leaves its call pending.
            match self.engine.on_text_step(text, out).await {
                Ok(pending) => {
                    self.pending = pending;
                    Ok(())
                }
                Err(c) => Err(c),
            }
        } else {
            self.engine.on_binary(out)
        };
        // Replies given before a strike closed the session still go out.
        let written = self.write_out(out).await;
        handled.map_err(End::from)?;
        written
    }

    /// Writes `out` in one flush and empties it. A client that stops reading
    /// blocks this write once the kernel buffers are full, and is cut at the
    /// write timeout.
    async fn write_out(&mut self, out: &mut Out) -> Result<(), End> {
        if out.is_empty() {
            return Ok(());
        }
        let node = &self.engine.node;
        let write_timeout = node.config.limits.write_timeout;
        let sent = out.len() as u64;
        let ws = &mut self.ws;
        let write = async {
            for frame in out.drain(..) {
                ws.feed(Message::text(frame)).await?;
            }
            ws.flush().await
        };
        // Most writes finish at once (into the socket buffer), without a
        // timer. Dropped on a timeout, the drain empties `out` all the same.
        let result = super::within(write_timeout, write).await;
        match result {
            Ok(Ok(())) => {
                node.metrics.messages_out.inc_by(sent);
                Ok(())
            }
            Ok(Err(e)) => Err(End::Peer(format!("write error: {e}"))),
            Err(_) => Err(End::WriteTimeout),
        }
    }

    async fn send(&mut self, text: String) -> Result<(), End> {
        self.send_raw(Message::text(text)).await?;
        self.engine.node.metrics.messages_out.inc();
        Ok(())
    }

    async fn send_raw(&mut self, msg: Message) -> Result<(), End> {
        let write_timeout = self.engine.node.config.limits.write_timeout;
        super::send_within(&mut self.ws, msg, write_timeout)
            .await
            .map_err(|e| match e {
                super::SendError::Write(e) => End::Peer(format!("write error: {e}")),
                super::SendError::TimedOut => End::WriteTimeout,
            })
    }

    async fn finish(&mut self, end: End) {
        let node = self.engine.node.clone();
        // The session is over once its end is decided: it leaves its
        // channels and queues its `disconnect` now, not after the close
        // handshake (which may wait for a peer that never answers, past a
        // drain's end).
        let (code, reason) = end.as_event();
        self.engine.finish(code, &reason);
        match end {
            End::Peer(why) => debug!(%why, "session ended by peer"),
            End::Cut(idle, why) => {
                debug!(%why, "session ended by peer");
                node.note_abnormal_end(self.peer.ip(), idle);
            }
            End::WriteTimeout => {
                info!(peer = %self.peer, client = %self.client_label(), "closing: write timed out, the client is not reading");
                node.metrics.refusal("write_timeout");
            }
            End::PeerClosed(code, why) => {
                debug!(code, %why, "peer closed");
                // Send the answer the library queued before the TCP close.
                let _ = timeout(CLOSE_SEND_TIMEOUT, self.ws.flush()).await;
            }
            End::Violation(code, why) => {
                info!(peer = %self.peer, client = %self.client_label(), code, %why, "closing");
                // Send the close frame the library queued; count it if it went.
                if let Ok(Ok(())) = timeout(CLOSE_SEND_TIMEOUT, self.ws.flush()).await {
                    node.metrics.close(code);
                    super::linger(self.ws.get_mut()).await;
                }
            }
            End::Close(code, reason) => {
                if code == CloseCode::ServiceRestart {
                    debug!(code = code.as_u16(), %reason, "closing");
                } else {
                    info!(peer = %self.peer, client = %self.client_label(), code = code.as_u16(), %reason, "closing");
                }
                if super::close(&mut self.ws, code.as_u16(), &reason).await {
                    node.metrics.close(code.as_u16());
                }
            }
        }
    }
}
