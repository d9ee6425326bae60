//! The layers above the handshake: the first message, round-trip times, and
//! the idle probe that finds intermediaries cutting silent connections.

use super::{
    report::{human, IdleOutcome, RttStats, Step},
    target::Route,
};
use futures_util::{SinkExt, StreamExt};
use std::{
    io::ErrorKind,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tether_protocol::CloseCode;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{sleep_until, timeout},
};
use tokio_websockets::{Message, WebSocketStream};

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The connection under test. tokio-websockets answers pings by itself; to
/// play a client that does not (`--no-pong`), writes are swallowed while
/// `mute` is set. Only whole frames are written while muted, so the stream
/// stays well-formed when it is unmuted.
pub struct Gate {
    inner: Box<dyn Io>,
    mute: Arc<AtomicBool>,
}

impl Gate {
    pub fn new(inner: Box<dyn Io>) -> (Self, Arc<AtomicBool>) {
        let mute = Arc::new(AtomicBool::new(false));
        (
            Gate {
                inner,
                mute: mute.clone(),
            },
            mute,
        )
    }
}

impl AsyncRead for Gate {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Gate {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.mute.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How the connection ended, as seen from here.
#[derive(Debug, Clone)]
pub enum End {
    Close(u16, String),
    /// EOF without a close frame.
    Fin,
    Rst,
    Error(String),
}

impl End {
    fn how(&self) -> &'static str {
        match self {
            End::Close(..) => "close_frame",
            End::Fin => "fin",
            End::Rst => "rst",
            End::Error(_) => "error",
        }
    }

    fn describe(&self) -> String {
        match self {
            End::Close(code, reason) => format!(
                "close frame {code} ({}){}",
                CloseCode::from_u16(*code).name(),
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(" {reason:?}")
                }
            ),
            End::Fin => "TCP FIN without a close frame (a 1006 in a browser)".into(),
            End::Rst => "TCP RST (a 1006 in a browser)".into(),
            End::Error(e) => format!("error: {e}"),
        }
    }
}

enum Event {
    Msg(Message),
    Ended(End),
}

pub struct Probe {
    ws: WebSocketStream<Gate>,
    mute: Arc<AtomicBool>,
    route: Route,
    limit: Duration,
    server_pings: u32,
    /// From the welcome, for advice on the idle probe.
    ping_interval: Option<Duration>,
}

impl Probe {
    pub fn new(
        ws: WebSocketStream<Gate>,
        mute: Arc<AtomicBool>,
        route: Route,
        limit: Duration,
    ) -> Self {
        Probe {
            ws,
            mute,
            route,
            limit,
            server_pings: 0,
            ping_interval: None,
        }
    }

    async fn next(&mut self) -> Event {
        match self.ws.next().await {
            Some(Ok(msg)) => {
                if let Some((code, reason)) = msg.as_close() {
                    return Event::Ended(End::Close(u16::from(code), reason.to_owned()));
                }
                if msg.is_ping() {
                    self.server_pings += 1;
                }
                Event::Msg(msg)
            }
            None => Event::Ended(End::Fin),
            Some(Err(tokio_websockets::Error::Io(e))) => Event::Ended(match e.kind() {
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => End::Rst,
                // TLS without close_notify, or EOF mid-frame: the peer just went away.
                ErrorKind::UnexpectedEof => End::Fin,
                _ => End::Error(e.to_string()),
            }),
            Some(Err(e)) => Event::Ended(End::Error(e.to_string())),
        }
    }

    /// The next data message (text or binary), within the time limit.
    async fn next_data(&mut self, limit: Duration) -> Result<Option<Message>, End> {
        let deadline = Instant::now() + limit;
        loop {
            match timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.next(),
            )
            .await
            {
                Err(_) => return Ok(None),
                Ok(Event::Ended(end)) => return Err(end),
                Ok(Event::Msg(m)) if m.is_text() || m.is_binary() => return Ok(Some(m)),
                Ok(Event::Msg(_)) => {}
            }
        }
    }

    async fn send(&mut self, msg: Message) -> Result<(), End> {
        match timeout(self.limit, self.ws.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Error(format!("write failed: {e}"))),
            Err(_) => Err(End::Error("write timed out".into())),
        }
    }

    pub async fn first_message(&mut self) -> Step {
        let started = Instant::now();
        match self.route {
            Route::Tether => match self.next_data(self.limit).await {
                Ok(Some(m)) => self.check_welcome(m.as_text().unwrap_or(""), started.elapsed()),
                Ok(None) => Step::fail(
                    "first_message",
                    "no_welcome",
                    format!("no message within {}", human(self.limit)),
                    "the WebSocket opened but no Tether welcome came: this is not a Tether server (a foreign WebSocket server on /ws?)",
                    "point the URL at Tether's /ws; for another server use its own path (the doctor then only checks that the socket opens)",
                ),
                Err(end) => closed_early("first_message", &end),
            },
            Route::Echo => {
                let token = format!("tether-doctor {:016x}", fastrand::u64(..));
                if let Err(end) = self.send(Message::text(token.clone())).await {
                    return closed_early("first_message", &end);
                }
                match self.next_data(self.limit).await {
                    Ok(Some(m)) if m.as_text() == Some(token.as_str()) => {
                        Step::pass("first_message", format!("echo came back in {}", human(started.elapsed()))).took(started.elapsed())
                    }
                    Ok(Some(m)) => Step::fail(
                        "first_message",
                        "echo_mismatch",
                        format!("sent {token:?}, got {:?}", preview(&m)),
                        "the endpoint is not a plain echo (something else answers on /echo)",
                        "use Tether's /echo, or the server's own path",
                    ),
                    Ok(None) => Step::fail(
                        "first_message",
                        "no_echo",
                        format!("no echo within {}", human(self.limit)),
                        "the endpoint does not echo: not an echo server, or messages are lost on the way",
                        "use Tether's /echo (on by default; --no-echo turns it off), or the server's own path",
                    ),
                    Err(end) => closed_early("first_message", &end),
                }
            }
            Route::Foreign => {
                // Most servers wait for the client; a short look is enough.
                let look = self.limit.min(Duration::from_secs(1));
                match self.next_data(look).await {
                    Ok(Some(m)) if m.as_text().is_some_and(|t| t.contains("\"welcome\"")) => {
                        self.route = Route::Tether;
                        self.check_welcome(m.as_text().unwrap_or(""), started.elapsed())
                    }
                    Ok(Some(m)) => Step::pass("first_message", format!("socket open; the server spoke first: {:?}", preview(&m))),
                    Ok(None) => Step::pass("first_message", format!("socket open for {} (the server sends nothing first)", human(look))),
                    Err(end) => closed_early("first_message", &end),
                }
            }
        }
    }

    fn check_welcome(&mut self, text: &str, elapsed: Duration) -> Step {
        let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        if v["type"] != "welcome" {
            return Step::fail(
                "first_message",
                "unexpected_first_message",
                format!("first message was {:?}, not a welcome", text.chars().take(120).collect::<String>()),
                "the server on this route does not speak the Tether protocol (or an incompatible version)",
                "check the URL and that client and server versions match",
            );
        }
        let ping = v["ping_interval_ms"].as_u64().unwrap_or(0);
        self.ping_interval = Some(Duration::from_millis(ping));
        Step::pass(
            "first_message",
            format!(
                "welcome in {}: client {}, ping_interval {} ms, pong_timeout {} ms, protocol v{}",
                human(elapsed),
                v["client"].as_str().unwrap_or("?"),
                ping,
                v["pong_timeout_ms"].as_u64().unwrap_or(0),
                v["version"].as_u64().unwrap_or(0)
            ),
        )
        .took(elapsed)
    }

    /// One ping and its answer: `{"type":"ping"}` → pong on Tether's route
    /// (what a browser client does), a protocol ping everywhere else.
    async fn ping_once(&mut self, seq: u64) -> Result<Option<Duration>, End> {
        let started = Instant::now();
        let tether = self.route == Route::Tether;
        let payload = seq.to_be_bytes();
        let msg = if tether {
            Message::text(r#"{"type":"ping"}"#)
        } else {
            Message::ping(bytes::Bytes::copy_from_slice(&payload))
        };
        self.send(msg).await?;
        let deadline = Instant::now() + self.limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.next()).await {
                Err(_) => return Ok(None),
                Ok(Event::Ended(end)) => return Err(end),
                Ok(Event::Msg(m)) => {
                    let answered = if tether {
                        m.as_text().is_some_and(|t| t.contains(r#""type":"pong""#))
                    } else {
                        m.is_pong() && &**m.as_payload() == payload.as_slice()
                    };
                    if answered {
                        return Ok(Some(started.elapsed()));
                    }
                }
            }
        }
    }

    pub async fn rtt(&mut self, count: u32) -> (Step, Option<RttStats>) {
        let mut samples = Vec::new();
        for seq in 0..u64::from(count) {
            match self.ping_once(seq).await {
                Ok(Some(d)) => samples.push(d),
                Ok(None) => {}
                Err(end) => return (closed_early("rtt", &end), None),
            }
        }
        let kind = if self.route == Route::Tether {
            "pings ({\"type\":\"ping\"} → pong)"
        } else {
            "pings (protocol ping → pong)"
        };
        let Some(stats) = RttStats::from_samples(count, &samples) else {
            return (
                Step::fail(
                    "rtt",
                    "pings_unanswered",
                    format!("0 of {count} {kind} answered within {} each", human(self.limit)),
                    "the connection is open but nothing comes back: a stalled server, or a proxy that buffers the stream",
                    "check the server's load and any proxy buffering (nginx: proxy_buffering off for this location)",
                ),
                None,
            );
        };
        let figure = format!(
            "{count} {kind}: min {:.2} ms, median {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} lost",
            stats.min_ms, stats.median_ms, stats.p99_ms, stats.max_ms, stats.lost
        );
        let step = if stats.lost > 0 {
            Step::warn(
                "rtt",
                "ping_loss",
                figure,
                "some pings were not answered in time: a congested path or an overloaded server",
                "compare with the direct URL (--compare) and check the server's load",
            )
        } else {
            Step::pass("rtt", figure)
        };
        (step, Some(stats))
    }

    /// Holds the connection silent for `hold`, then checks it with one ping.
    pub async fn idle(&mut self, hold: Duration, no_pong: bool) -> (Step, IdleOutcome) {
        self.mute.store(no_pong, Ordering::Relaxed);
        self.server_pings = 0;
        let started = Instant::now();
        let deadline = started + hold;
        let cut = loop {
            tokio::select! {
                () = sleep_until(deadline.into()) => break None,
                ev = self.next() => if let Event::Ended(end) = ev { break Some(end) },
            }
        };
        self.mute.store(false, Ordering::Relaxed);
        let pings = self.server_pings;
        let outcome = |how, after: Duration, code| IdleOutcome {
            how,
            after_s: (after.as_secs_f64() * 100.0).round() / 100.0,
            close_code: code,
            server_pings: pings,
        };
        if let Some(end) = cut {
            let after = started.elapsed();
            let code = if let End::Close(c, _) = end {
                Some(c)
            } else {
                None
            };
            return (
                self.explain_cut(&end, after, no_pong),
                outcome(end.how(), after, code),
            );
        }
        let ping_limit = self.limit.min(Duration::from_secs(5));
        let saved = std::mem::replace(&mut self.limit, ping_limit);
        let last = self.ping_once(u64::MAX).await;
        self.limit = saved;
        let pinged = if no_pong {
            format!("{pings} server pings ignored (--no-pong)")
        } else {
            format!("{pings} server pings answered")
        };
        match last {
            Ok(Some(rtt)) => (
                Step::pass("idle", format!("held {} silent ({pinged}); the final ping was answered in {}", human(hold), human(rtt))),
                outcome("survived", hold, None),
            ),
            Ok(None) => (
                Step::fail(
                    "idle",
                    "half_open",
                    format!("after {} of silence the final ping got no answer within {} ({pinged})", human(hold), human(ping_limit)),
                    "the connection died without any FIN or RST: a NAT or firewall dropped its state silently (or the server hung); only heartbeats detect this",
                    "keep ping_interval below the NAT/firewall idle timeout, and let clients treat ping_interval + pong_timeout of silence as a dead connection",
                ),
                outcome("silence", hold, None),
            ),
            Err(end) => {
                let after = started.elapsed();
                let code = if let End::Close(c, _) = end { Some(c) } else { None };
                (self.explain_cut(&end, after, no_pong), outcome(end.how(), after, code))
            }
        }
    }

    fn explain_cut(&self, end: &End, after: Duration, no_pong: bool) -> Step {
        let secs = approx_secs(after);
        let figure = format!(
            "cut after {} of silence by {} ({} server pings seen)",
            human(after),
            end.describe(),
            self.server_pings
        );
        match end {
            End::Close(4003, _) | End::Close(1001 | 1011, _) if no_pong => Step::fail(
                "idle",
                "heartbeat_timeout",
                figure,
                "the server closed the connection because we stopped answering its pings (--no-pong): its heartbeat works",
                "clients must answer protocol pings (every RFC 6455 client does) or send {\"type\":\"ping\"} within ping_interval",
            ),
            End::Close(1001 | 1012, _) => Step::fail(
                "idle",
                "server_restart",
                figure,
                "the server went away (shutdown or restart) during the probe",
                "clients reconnect with backoff; run the probe again",
            ),
            End::Close(code, _) => Step::fail(
                "idle",
                "closed_by_server",
                figure,
                format!("the server (or a proxy speaking WebSocket) closed the idle connection after ~{secs} with {code}"),
                "read the close reason above; check the server's idle/heartbeat settings",
            ),
            End::Fin | End::Rst | End::Error(_) => {
                let suggest = (after.as_secs_f64() / 2.0).floor().max(1.0);
                let cause = format!("an intermediary (proxy, load balancer, NAT or firewall) closes idle connections after ~{secs}: the connection ended without a WebSocket close frame, which is a proxy's signature, not the server's");
                let heartbeat = match self.ping_interval {
                    Some(p) => format!("the server pings every {} here, which is not under that; ", human(p)),
                    None => String::new(),
                };
                Step::fail(
                    "idle",
                    "idle_timeout",
                    figure,
                    cause,
                    format!("{heartbeat}keep ping_interval under ~{secs} (tether serve --ping-interval {suggest}s), or raise the intermediary's timeout: nginx proxy_read_timeout and proxy_send_timeout, HAProxy timeout tunnel, the load balancer's idle timeout"),
                )
            }
        }
    }
}

fn closed_early(step: &'static str, end: &End) -> Step {
    let (finding, cause, fix) = match end {
        End::Close(1008, _) => ("policy_violation", "the server closed the connection: policy violation (origin or permission)", "read the close reason; check --allowed-origins and the token's permissions"),
        End::Close(4001 | 4002, _) => ("unauthorized", "the server closed the connection: missing, bad or expired token", "pass a valid --token"),
        End::Close(1013, _) => ("try_again_later", "the server is overloaded and asked to try again later", "retry with backoff"),
        End::Close(..) => ("closed_by_server", "the server closed the connection right after the handshake", "read the close reason above"),
        End::Fin | End::Rst => ("dropped", "the connection was dropped right after the handshake without a close frame: a proxy that does not support WebSocket, or a crashing server", "compare with the direct URL (--compare); check the proxy's WebSocket support and the server's log"),
        End::Error(_) => ("protocol_error", "the stream after the 101 is not valid WebSocket: a proxy that does not pass the upgraded stream through, or a broken server", "compare with the direct URL (--compare)"),
    };
    Step::fail(
        step,
        finding,
        format!("ended: {}", end.describe()),
        cause,
        fix,
    )
}

/// `3 s`, `~60 s`, `1.5 s`: the figure a human would quote for a timeout.
fn approx_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 2.0 {
        format!("{:.0} s", s.round())
    } else {
        format!("{s:.1} s")
    }
}

fn preview(m: &Message) -> String {
    match m.as_text() {
        Some(t) => t.chars().take(80).collect(),
        None => format!("<{} binary bytes>", m.as_payload().len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_quoted_as_humans_would() {
        assert_eq!(approx_secs(Duration::from_millis(3040)), "3 s");
        assert_eq!(approx_secs(Duration::from_millis(60_400)), "60 s");
        assert_eq!(approx_secs(Duration::from_millis(1520)), "1.5 s");
    }
}
