//! One Tether session over a WebSocket: the per-connection state machine.
//!
//! A single task owns the socket and runs one `select!` over: a close
//! request (slow consumer, from the hub), the node's drain signal, the
//! heartbeat/expiry timer, inbound frames, and the bounded queue of
//! publications to send. One task and one bounded queue per connection is
//! what lets a node hold tens of thousands of idle connections.

use super::{close_message, CLOSE_ACK_TIMEOUT, CLOSE_SEND_TIMEOUT};
use crate::{
    auth::Grant,
    broker::Publication,
    hub::{Control, Subscriber},
    limits::{ConnectionPermit, TokenBucket},
    node::Node,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Instant, SystemTime},
};
use tether_protocol::{
    ClientMessage, CloseCode, ErrorCode, RetryHint, ServerMessage, StreamPosition, PROTOCOL_VERSION,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::mpsc,
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

struct Session<S> {
    node: Arc<Node>,
    ws: WebSocketStream<S>,
    conn_id: u64,
    grant: Grant,
    /// Channel → highest offset already sent (or covered by `subscribed`).
    subs: HashMap<Arc<str>, u64>,
    queue: mpsc::Sender<Arc<Publication>>,
    control: Arc<Control>,
    last_seen: Instant,
    /// Silence before the read that ended the session without a close
    /// frame (EOF or read error); fed to the node's idle-cut detector.
    cut_after: Option<std::time::Duration>,
    peer: std::net::IpAddr,
    bucket: TokenBucket,
    strikes: u32,
}

/// Runs a session to its end; the permit (the connection's place under the
/// limits) is released when it returns.
pub async fn run<S>(
    node: Arc<Node>,
    ws: WebSocketStream<S>,
    peer: SocketAddr,
    grant: Grant,
    permit: ConnectionPermit,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn_id = node.next_conn_id();
    let client_id = format!("{}-{conn_id:x}", node.id);
    let span = tracing::info_span!("session", %peer, client = %client_id);
    async move {
        let limits = &node.config.limits;
        let (queue, rx) = mpsc::channel(limits.send_queue);
        let now = Instant::now();
        let mut session = Session {
            bucket: TokenBucket::new(limits.messages_per_second, limits.messages_burst, now),
            node: node.clone(),
            ws,
            conn_id,
            grant,
            subs: HashMap::new(),
            queue,
            control: Arc::new(Control::default()),
            last_seen: now,
            cut_after: None,
            peer: peer.ip(),
            strikes: 0,
        };
        node.metrics.connections.inc();
        let end = session.serve(client_id, rx).await;
        // Boxed: the close path is large and runs once; keeping it out of
        // the task's inline state keeps every idle connection smaller.
        Box::pin(session.finish(end)).await;
        node.metrics.connections.dec();
        drop(permit);
    }
    .instrument(span)
    .await
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    async fn serve(&mut self, client_id: String, mut rx: mpsc::Receiver<Arc<Publication>>) -> End {
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
        let control = self.control.clone();
        let shutdown = self.node.shutdown.clone();
        loop {
            let deadline = (next_ping)
                .min(self.last_seen + silence_limit)
                .min(expires_at.unwrap_or(next_ping));
            tokio::select! {
                biased;
                code = control.closed() => return slow_consumer(code),
                () = shutdown.cancelled() => {
                    let jitter = self.node.config.server.drain_jitter.mul_f64(fastrand::f64());
                    let reason = RetryHint(jitter).append_to("server restarting; reconnect");
                    return End::Close(CloseCode::ServiceRestart, reason);
                }
                () = sleep_until(deadline.into()) => {
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
                Some(first) = rx.recv() => {
                    if let Err(end) = Box::pin(self.write_publications(first, &mut rx)).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Sends `first` and whatever else is queued, in one flush.
    async fn write_publications(
        &mut self,
        first: Arc<Publication>,
        rx: &mut mpsc::Receiver<Arc<Publication>>,
    ) -> Result<(), End> {
        let write_timeout = self.node.config.limits.write_timeout;
        let mut sent = 0u64;
        let batch = async {
            let mut next = Some(first);
            let mut n = 0;
            while let Some(publication) = next.take() {
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
                n += 1;
                if n < WRITE_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.ws.flush().await
        };
        // A client that stops reading blocks this write once the kernel
        // buffers are full; meanwhile its queue overflows and the hub asks
        // for 4004, which must win over waiting out the write timeout.
        let control = self.control.clone();
        let result = tokio::select! {
            r = timeout(write_timeout, batch) => r,
            code = control.closed() => return Err(slow_consumer(code)),
        };
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
        let subscriber = Subscriber {
            queue: self.queue.clone(),
            control: self.control.clone(),
        };
        if self.node.hub.add(&channel, self.conn_id, subscriber) {
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
        match end {
            End::Peer(why) => {
                debug!(%why, "session ended by peer");
                if let Some(idle) = self.cut_after {
                    self.node.note_abnormal_end(self.peer, idle);
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
                let msg = close_message(code.as_u16(), &reason);
                if let Ok(Ok(())) = timeout(CLOSE_SEND_TIMEOUT, self.ws.send(msg)).await {
                    // Let the peer answer the close so it sees a clean closure.
                    let _ = timeout(CLOSE_ACK_TIMEOUT, async {
                        while self.ws.next().await.is_some() {}
                    })
                    .await;
                }
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
