//! One connection's life, online: after the welcome, restore subscriptions
//! and unacknowledged publishes, then one `select!` over handle commands,
//! inbound frames and the heartbeat timer until the connection ends.
//!
//! Delivery rules live here: each publication reaches its subscription once
//! and in order (deduplicated by offset), and a recovering subscribe that
//! the server could not satisfy becomes an explicit `Unrecovered` event.
//! A subscribe refused for now is retried on this connection
//! (`resubscribe.rs`); one refused for good ends its subscription.

use crate::{
    driver::{Command, Core, Exit, CLOSE_WAIT},
    handshake::Ws,
    presence::{join_leave, Answer, PresenceStats},
    reconnect::{Ended, Policy},
    Error, Event, Publication, State,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use std::time::Duration;
use tether_protocol::{ClientMessage, CloseCode, ServerMessage, StreamPosition};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_websockets::Message;
use tracing::{debug, warn};

/// How long a welcomed connection must stay up to count as usable when no
/// request was answered on it (the JS client's `STABLE_AFTER`).
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(5);

impl Core {
    pub(crate) async fn online(&mut self, ws: &mut Ws, policy: &mut Policy) -> Exit {
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
        self.set_state(State::Connected);
        debug!(uri = %self.config.uri, "connected");
        // The schedule starts over only once the connection proved usable:
        // a request answered, or up for STABLE_AFTER. A server that welcomes
        // and drops at once keeps the client backing off, not reconnecting
        // in a tight loop (the JS client's rule too).
        self.answered = false;
        let stable_at = Instant::now() + STABLE_AFTER;
        let end = |core: &Core, policy: &mut Policy, ended: Ended| {
            if core.answered || Instant::now() >= stable_at {
                policy.connected();
            }
            Exit::Ended(ended)
        };
        // Writes must not outlive the heartbeat: a peer that does not take
        // our bytes is as dead as one that sends none.
        let write_limit = pong_timeout.max(Duration::from_millis(100));
        if let Err(ended) = self.restore(ws, write_limit).await {
            return end(self, policy, ended);
        }
        let mut last_heard = Instant::now();
        let mut pinged = false;
        loop {
            let deadline = if pinged {
                last_heard + ping_interval + pong_timeout
            } else {
                last_heard + ping_interval
            };
            let retry_at = self.next_retry;
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
                () = sleep_until(retry_at.unwrap_or(deadline)), if retry_at.is_some() => {
                    self.send_due_retries(ws, write_limit).await
                }
            };
            if let Err(ended) = result {
                return end(self, policy, ended);
            }
        }
    }

    /// After (re)connecting: resubscribe with recovery, resend unacked
    /// publishes, then the presence requests still awaited (answered after
    /// the resubscribes: the server handles requests in order), then the
    /// rpcs not sent yet.
    async fn restore(&mut self, ws: &mut Ws, limit: Duration) -> Result<(), Ended> {
        let channels: Vec<String> = self.subs.keys().cloned().collect();
        for channel in channels {
            self.send_subscribe(ws, &channel, limit).await?;
        }
        self.expire_publishes();
        for i in 0..self.pending.len() {
            self.send_publish(ws, i, limit).await?;
        }
        self.send_asks(ws, limit).await?;
        self.send_rpcs(ws, limit).await
    }

    /// Fails the unacked publishes first sent longer ago than the server
    /// remembers idempotency keys: resent now, they could be stored twice.
    /// Publishes never sent cannot be duplicates and stay queued.
    fn expire_publishes(&mut self) {
        let window = self.config.idempotency_window;
        let now = Instant::now();
        let expired = |p: &crate::driver::Pending| {
            p.first_sent
                .is_some_and(|sent| now.saturating_duration_since(sent) >= window)
        };
        if !self.pending.iter().any(expired) {
            return;
        }
        let (gone, kept) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(expired);
        self.pending = kept;
        for p in Vec::from(gone) {
            warn!(channel = %p.channel, key = %p.key, "not resending a publish past the idempotency window");
            let _ = p
                .reply
                .send(Err(Error::IdempotencyWindowExpired { window }));
        }
    }

    pub(crate) async fn send_subscribe(
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
        p.first_sent.get_or_insert_with(Instant::now);
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
                if self
                    .unregister(&channel, id)
                    .is_some_and(|s| s.held_by_server())
                {
                    self.send_unsubscribe(ws, &channel, limit).await?;
                }
                Ok(())
            }
            Command::Publish(p) => {
                self.pending.push_back(p);
                self.send_publish(ws, self.pending.len() - 1, limit).await
            }
            Command::Presence(request) => self.ask_presence(ws, request, limit).await,
            Command::Rpc(call) => self.call_rpc(ws, call, limit).await,
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
        if matches!(
            message,
            ServerMessage::Subscribed { id: Some(_), .. }
                | ServerMessage::Ack { .. }
                | ServerMessage::Presence { .. }
                | ServerMessage::PresenceStats { .. }
        ) {
            self.answered = true;
        }
        match message {
            ServerMessage::Subscribed {
                id: None,
                channel,
                epoch,
                offset,
                publications,
                ..
            } => {
                let at = StreamPosition { epoch, offset };
                self.server_subscribed(ws, channel, at, publications, limit)
                    .await
            }
            ServerMessage::Subscribed {
                id: Some(id),
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
                sub.remade = None;
                sub.refusals = 0;
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
                ..
            } => {
                if let Some(i) = self.pending.iter().position(|p| p.sent_as == Some(id)) {
                    if let Some(p) = self.pending.remove(i) {
                        let _ = p.reply.send(Err(Error::Server { code, message }));
                    }
                    return Ok(());
                }
                if self.presence_refused(id, code, message.clone())
                    || self.rpc_refused(id, code, message.clone())
                {
                    return Ok(());
                }
                self.subscribe_refused(ws, id, code, message, limit).await
            }
            ServerMessage::Error {
                id: None,
                code,
                message,
                ..
            } => {
                debug!(%code, %message, "server error without a request id");
                Ok(())
            }
            ServerMessage::Presence { id, clients, .. } => {
                self.presence_answer(id, Answer::List(clients));
                Ok(())
            }
            ServerMessage::PresenceStats {
                id, clients, users, ..
            } => {
                self.presence_answer(id, Answer::Stats(PresenceStats { clients, users }));
                Ok(())
            }
            ServerMessage::Rpc { id, result } => {
                self.rpc_answer(id, Ok(result));
                Ok(())
            }
            ServerMessage::Join {
                channel,
                client,
                user,
                info,
            } => {
                let event = join_leave(true, client, user, info);
                self.presence_event(ws, &channel, event, limit).await
            }
            ServerMessage::Leave {
                channel,
                client,
                user,
                info,
            } => {
                let event = join_leave(false, client, user, info);
                self.presence_event(ws, &channel, event, limit).await
            }
            // `close` messages are long polling's; a WebSocket closes with a frame.
            ServerMessage::Welcome { .. }
            | ServerMessage::Unsubscribed { .. }
            | ServerMessage::Close { .. }
            | ServerMessage::Pong => Ok(()),
        }
    }

    /// Delivers a publication once and in order; a gap (which a server never
    /// produces on one connection) is repaired by reconnecting with recovery.
    pub(crate) async fn publication(
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
        if Core::held_back(sub, offset) {
            return Ok(());
        }
        let Some(pos) = sub.position.as_mut() else {
            return Ok(());
        };
        if offset <= pos.offset {
            return Ok(()); // already delivered (replayed by recovery or resent)
        }
        // Checked: `offset > pos.offset` rules out overflow today, but the
        // position must never wrap if that test changes. At u64::MAX (which no
        // real channel reaches) nothing can follow, so every later offset is
        // dropped as already delivered above.
        let Some(expected) = pos.offset.checked_add(1) else {
            return Ok(());
        };
        if offset > expected {
            return Err(Ended::Lost {
                reason: format!(
                    "gap in {channel:?}: expected offset {expected} but got {offset}; reconnecting to recover"
                ),
            });
        }
        pos.offset = offset;
        let event = Event::Publication(Publication { offset, data });
        self.deliver(ws, channel, event, limit).await
    }

    /// Hands an event to its subscription, waiting while its queue is full;
    /// a dropped subscription is unsubscribed.
    pub(crate) async fn deliver(
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
        if events.send(channel, event).await.is_err()
            && self
                .unregister(channel, id)
                .is_some_and(|s| s.held_by_server())
        {
            self.send_unsubscribe(ws, channel, limit).await?;
        }
        Ok(())
    }
}

/// The longest `ping_interval` and `pong_timeout` the client accepts from a
/// `welcome`. Larger values are cut to it: the deadline arithmetic (`Instant`
/// plus both) must not overflow, and a connection silent for two hours is
/// dead whatever the server claims. Real servers use seconds (25 s and 10 s
/// by default).
pub(crate) const MAX_HEARTBEAT: Duration = Duration::from_secs(3600);

/// The heartbeat timings from a `welcome`, each within 1 ms ..= [`MAX_HEARTBEAT`].
pub(crate) fn heartbeat(ping_interval_ms: u64, pong_timeout_ms: u64) -> (Duration, Duration) {
    let clamp = |ms: u64| Duration::from_millis(ms.max(1)).min(MAX_HEARTBEAT);
    (clamp(ping_interval_ms), clamp(pong_timeout_ms))
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
            }) => Ok(heartbeat(ping_interval_ms, pong_timeout_ms)),
            _ => Err(Ended::Lost {
                reason: format!("expected a welcome, got {text:.100}"),
            }),
        };
    }
}

pub(crate) async fn send(ws: &mut Ws, msg: &ClientMessage, limit: Duration) -> Result<(), Ended> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_from_a_welcome_is_clamped() {
        assert_eq!(
            heartbeat(25_000, 10_000),
            (Duration::from_secs(25), Duration::from_secs(10))
        );
        assert_eq!(
            heartbeat(0, 0),
            (Duration::from_millis(1), Duration::from_millis(1))
        );
        let (ping, pong) = heartbeat(u64::MAX, u64::MAX);
        assert_eq!((ping, pong), (MAX_HEARTBEAT, MAX_HEARTBEAT));
        // The session's deadline arithmetic stays in range.
        assert!(Instant::now().checked_add(ping + pong).is_some());
    }
}
