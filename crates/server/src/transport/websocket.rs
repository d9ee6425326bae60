//! One Tether session over a WebSocket: the per-connection state machine.
//!
//! A single task owns the socket and runs one `select!` over: the node's
//! drain signal, the connection's outbox (publications to send, or a close
//! request such as 4004 from the hub), the heartbeat/expiry timer and
//! inbound frames. One small task and one bounded outbox per connection is
//! what lets a node hold tens of thousands of idle connections.

use super::{drain_reason, CLOSE_SEND_TIMEOUT};
use crate::{
    auth::Grant,
    broker::Publication,
    limits::{ConnectionPermit, TokenBucket},
    node::Node,
    outbox::Outbox,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    net::SocketAddr,
    pin::pin,
    sync::Arc,
    time::{Instant, SystemTime},
};
use tether_protocol::{
    ClientMessage, CloseCode, ErrorCode, ServerMessage, StreamPosition, PROTOCOL_VERSION,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::{sleep_until, timeout},
};
use tokio_websockets::{Message, WebSocketStream};
use tracing::{debug, info, Instrument};

/// Consecutive invalid or over-limit messages tolerated (each answered with
/// an error) before the connection is closed.
const MAX_STRIKES: u32 = 10;
/// Subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = 1024;
/// Publications written per batch before yielding to read again.
const WRITE_BATCH: usize = 256;

/// How a session ended.
enum End {
    /// The peer closed (or the socket died); nothing more to send.
    Peer(String),
    /// The server closes with this code and reason.
    Close(CloseCode, String),
    /// A write did not finish in time: the peer is not reading. Drop it.
    WriteTimeout,
    /// The peer broke the WebSocket protocol (or sent an oversized message);
    /// the library has already queued the close frame with this code.
    Violation(u16, String),
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

/// Channel → highest offset already sent to this connection (or covered by
/// its `subscribed` reply). Looked up once per delivery, so it uses FNV-1a
/// rather than SipHash: channel names are short and not attacker-chosen keys
/// of a shared table (each connection only holds its own subscriptions).
type Subscriptions = HashMap<Arc<str>, u64, BuildHasherDefault<Fnv1a>>;

#[derive(Default)]
struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// One connection's session. Built synchronously and then run as the
/// connection's only task, so nothing is held twice in the task's state.
pub struct Session<S> {
    node: Arc<Node>,
    ws: WebSocketStream<S>,
    conn_id: u64,
    grant: Grant,
    subs: Subscriptions,
    outbox: Arc<Outbox>,
    last_seen: Instant,
    /// Silence before the read that ended the session without a close
    /// frame (EOF or read error); fed to the node's idle-cut detector.
    cut_after: Option<std::time::Duration>,
    peer: SocketAddr,
    bucket: TokenBucket,
    strikes: u32,
    /// The connection's place under the limits, released when the session ends.
    _permit: ConnectionPermit,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(
        node: Arc<Node>,
        ws: WebSocketStream<S>,
        peer: SocketAddr,
        grant: Grant,
        permit: ConnectionPermit,
    ) -> Self {
        let limits = &node.config.limits;
        let now = Instant::now();
        Session {
            bucket: TokenBucket::new(limits.messages_per_second, limits.messages_burst, now),
            outbox: Arc::new(Outbox::new(limits.send_queue)),
            conn_id: node.next_conn_id(),
            node,
            ws,
            grant,
            subs: Subscriptions::default(),
            last_seen: now,
            cut_after: None,
            peer,
            strikes: 0,
            _permit: permit,
        }
    }

    /// Runs the session to its end. The session is boxed, and the future
    /// only holds the box: an `async fn` taking `self` by value would keep
    /// two copies of it in the task's state (rust-lang/rust#62958).
    pub fn run(self: Box<Self>) -> impl std::future::Future<Output = ()> {
        let span = tracing::info_span!(
            "session",
            peer = %self.peer,
            client = %format_args!("{}-{:x}", self.node.id, self.conn_id)
        );
        self.drive().instrument(span)
    }

    async fn drive(mut self: Box<Self>) {
        self.node.metrics.connections.inc();
        let client_id = format!("{}-{:x}", self.node.id, self.conn_id);
        let end = self.serve(client_id).await;
        // Boxed: the close path is large and runs once; keeping it out of
        // the task's inline state keeps every idle connection smaller.
        Box::pin(self.finish(end)).await;
        self.node.metrics.connections.dec();
    }

    async fn serve(&mut self, client_id: String) -> End {
        let hb = self.node.config.heartbeat.clone();
        let welcome = ServerMessage::Welcome {
            client: client_id,
            ping_interval_ms: hb.ping_interval.as_millis() as u64,
            pong_timeout_ms: hb.pong_timeout.as_millis() as u64,
            version: PROTOCOL_VERSION,
        };
        if let Err(end) = Box::pin(self.send(welcome.encode())).await {
            return end;
        }
        let silence_limit = hb.ping_interval + hb.pong_timeout;
        let mut next_ping = Instant::now() + hb.ping_interval;
        let expires_at = self.grant.expires_at.map(instant_of);
        let deadline = |next_ping: Instant, last_seen: Instant| {
            next_ping
                .min(last_seen + silence_limit)
                .min(expires_at.unwrap_or(next_ping))
        };
        // Every future below is created once and polled in place: re-creating
        // them on each turn of the loop (re-registering the timer, taking the
        // Notify locks) was a measurable share of the fan-out cost.
        let outbox = self.outbox.clone();
        let token = self.node.shutdown.clone();
        let mut cancelled = pin!(token.cancelled());
        let mut wake = pin!(outbox.notified());
        let mut timer = pin!(sleep_until(deadline(next_ping, self.last_seen).into()));
        let mut batch: Vec<Arc<Publication>> = Vec::new();
        loop {
            tokio::select! {
                biased;
                () = &mut cancelled => {
                    return End::Close(CloseCode::ServiceRestart, drain_reason(&self.node.config.server));
                }
                () = &mut wake => {
                    wake.set(outbox.notified());
                    if let Err(code) = outbox.take(&mut batch, WRITE_BATCH) {
                        return slow_consumer(code);
                    }
                    if !batch.is_empty() {
                        if let Err(end) = Box::pin(self.write_publications(&mut batch)).await {
                            return end;
                        }
                    }
                }
                () = &mut timer => {
                    let now = Instant::now();
                    if expires_at.is_some_and(|at| now >= at) {
                        return End::Close(CloseCode::TokenExpired, "token expired; reconnect with a fresh token".into());
                    }
                    if now >= self.last_seen + silence_limit {
                        self.node.metrics.heartbeat_timeouts.inc();
                        return End::Close(
                            CloseCode::HeartbeatTimeout,
                            format!("no message or pong for {} ms", silence_limit.as_millis()),
                        );
                    }
                    if now >= next_ping {
                        next_ping = now + hb.ping_interval;
                        if let Err(end) = Box::pin(self.send_raw(Message::ping(bytes::Bytes::new()))).await {
                            return end;
                        }
                    }
                    // Inbound frames move `last_seen` without touching the
                    // timer; it is re-aimed only here, when it fires.
                    timer.as_mut().reset(deadline(next_ping, self.last_seen).into());
                }
                frame = self.ws.next() => {
                    let silent_for = self.last_seen.elapsed();
                    self.last_seen = Instant::now();
                    match frame {
                        None => {
                            self.cut_after = Some(silent_for);
                            return End::Peer("connection closed".into());
                        }
                        Some(Err(e)) => return match read_error(e) {
                            (Some(code), why) => End::Violation(code, why),
                            (None, why) => {
                                self.cut_after = Some(silent_for);
                                End::Peer(why)
                            }
                        },
                        Some(Ok(msg)) => {
                            if let Some((code, reason)) = msg.as_close() {
                                return End::Peer(format!("peer closed with {} {reason}", u16::from(code)));
                            }
                            // Boxed for the same reason: request handling has
                            // deep futures, and idle connections never need them.
                            if let Err(end) = Box::pin(self.on_frame(msg)).await {
                                return end;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Writes a batch of publications in one flush, emptying `batch`.
    async fn write_publications(&mut self, batch: &mut Vec<Arc<Publication>>) -> Result<(), End> {
        let write_timeout = self.node.config.limits.write_timeout;
        let mut sent = 0u64;
        let write = async {
            for publication in batch.drain(..) {
                if let Some(floor) = self.subs.get_mut(&publication.channel) {
                    // Skip what `subscribed` already carried (or a duplicate).
                    if publication.offset > *floor {
                        *floor = publication.offset;
                        self.ws
                            .feed(Message::text(publication.frame.clone()))
                            .await?;
                        sent += 1;
                    }
                }
            }
            self.ws.flush().await
        };
        // A client that stops reading blocks this write once the kernel
        // buffers are full; meanwhile its outbox overflows and asks for
        // 4004, which must win over waiting out the write timeout.
        let outbox = self.outbox.clone();
        let overflowed = async {
            loop {
                if let Some(code) = outbox.close_requested() {
                    return code;
                }
                outbox.notified().await;
            }
        };
        let result = tokio::select! {
            r = timeout(write_timeout, write) => r,
            code = overflowed => return Err(slow_consumer(code)),
        };
        batch.clear();
        // Wake-ups consumed while writing may have announced new
        // publications: look again rather than wait for the next one.
        outbox.wake();
        match result {
            Ok(Ok(())) => {
                self.node.metrics.messages_out.inc_by(sent);
                Ok(())
            }
            Ok(Err(e)) => Err(End::Peer(format!("write error: {e}"))),
            Err(_) => Err(End::WriteTimeout),
        }
    }

    async fn send(&mut self, text: String) -> Result<(), End> {
        self.send_raw(Message::text(text)).await?;
        self.node.metrics.messages_out.inc();
        Ok(())
    }

    async fn send_raw(&mut self, msg: Message) -> Result<(), End> {
        match timeout(self.node.config.limits.write_timeout, self.ws.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Peer(format!("write error: {e}"))),
            Err(_) => Err(End::WriteTimeout),
        }
    }

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

    async fn on_frame(&mut self, msg: Message) -> Result<(), End> {
        if msg.is_ping() || msg.is_pong() {
            return Ok(());
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
        if let Err(retry) = self.bucket.take(Instant::now()) {
            let id = decoded.as_ref().ok().and_then(request_id);
            self.node.metrics.refusal("message_rate");
            return self
                .strike(
                    id,
                    ErrorCode::RateLimited,
                    format!(
                        "too many messages; retry in {} ms",
                        retry.as_millis().max(1)
                    ),
                )
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
        if self.subs.len() >= MAX_SUBSCRIPTIONS {
            return self
                .reply_error(
                    Some(id),
                    ErrorCode::BadRequest,
                    format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
                )
                .await;
        }
        // Join the hub before reading history: anything published from now on
        // is queued, and offsets the reply already covers are skipped on send.
        if self
            .node
            .hub
            .add(&channel, self.conn_id, self.outbox.clone())
        {
            if let Err(e) = self.node.broker.subscribe(&channel).await {
                self.node.hub.remove(&channel, self.conn_id);
                return self
                    .reply_error(Some(id), ErrorCode::Internal, e.to_string())
                    .await;
            }
        }
        let recovery = match self.node.broker.recover(&channel, recover.as_ref()).await {
            Ok(r) => r,
            Err(e) => {
                self.leave(&channel).await;
                return self
                    .reply_error(Some(id), ErrorCode::Internal, e.to_string())
                    .await;
            }
        };
        self.subs
            .insert(Arc::from(channel.as_str()), recovery.offset);
        let frame = encode_subscribed(id, &channel, &recovery);
        self.send(frame).await
    }

    /// Leaves the hub for `channel`, releasing broker interest if last here.
    async fn leave(&mut self, channel: &str) {
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
                self.reply_error(Some(id), ErrorCode::Internal, e.to_string())
                    .await
            }
        }
    }

    /// Closes (when the server ends it), logs once, and frees subscriptions.
    async fn finish(&mut self, end: End) {
        // Nothing more will be sent: free the queue and refuse new pushes.
        self.outbox.finish();
        match end {
            End::Peer(why) => {
                debug!(%why, "session ended by peer");
                if let Some(idle) = self.cut_after {
                    self.node.note_abnormal_end(self.peer.ip(), idle);
                }
            }
            End::WriteTimeout => {
                info!("closing: write timed out, the client is not reading");
                self.node.metrics.refusal("write_timeout");
            }
            End::Violation(code, why) => {
                info!(code, %why, "closing");
                self.node.metrics.close(code);
                // Send the close frame the library queued.
                let _ = timeout(CLOSE_SEND_TIMEOUT, self.ws.flush()).await;
            }
            End::Close(code, reason) => {
                if code == CloseCode::ServiceRestart {
                    debug!(code = code.as_u16(), %reason, "closing");
                } else {
                    info!(code = code.as_u16(), %reason, "closing");
                }
                self.node.metrics.close(code.as_u16());
                super::close(&mut self.ws, code.as_u16(), &reason).await;
            }
        }
        let channels: Vec<Arc<str>> = self.subs.drain().map(|(c, _)| c).collect();
        for channel in channels {
            self.leave(&channel).await;
        }
    }
}

fn slow_consumer(code: CloseCode) -> End {
    End::Close(
        code,
        "send queue overflowed: the client reads too slowly".into(),
    )
}

fn request_id(m: &ClientMessage) -> Option<u64> {
    match m {
        ClientMessage::Subscribe { id, .. }
        | ClientMessage::Unsubscribe { id, .. }
        | ClientMessage::Publish { id, .. } => Some(*id),
        ClientMessage::Ping => None,
    }
}

/// Converts a wall-clock expiry into a monotonic deadline.
fn instant_of(at: SystemTime) -> Instant {
    let now = Instant::now();
    match at.duration_since(SystemTime::now()) {
        Ok(left) => now + left,
        Err(_) => now,
    }
}

/// The `subscribed` reply, with the replayed publications' data copied raw.
fn encode_subscribed(id: u64, channel: &str, r: &crate::broker::Recovery) -> String {
    let mut out =
        String::with_capacity(128 + r.publications.iter().map(|p| p.frame.len()).sum::<usize>());
    out.push_str(&format!(
        "{{\"type\":\"subscribed\",\"id\":{id},\"channel\":{},\"epoch\":{},\"offset\":{},\"recovered\":{},\"publications\":[",
        serde_json::Value::from(channel),
        serde_json::Value::from(r.epoch.as_str()),
        r.offset,
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
