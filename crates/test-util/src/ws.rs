//! A plain WebSocket test client that speaks JSON frames.

use crate::STEP;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::{net::TcpStream, time::timeout};
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// A close frame with this code and reason.
    Closed(u16, String),
    /// The stream ended without a close frame (what browsers report as 1006).
    Abnormal,
}

impl WsClient {
    pub async fn connect(url: &str) -> Self {
        Self::try_connect(url, &[])
            .await
            .expect("websocket connect")
    }

    pub async fn try_connect(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, tokio_websockets::Error> {
        let uri: http::Uri = url.parse().expect("url");
        let mut builder = ClientBuilder::from_uri(uri);
        for (k, v) in headers {
            builder = builder
                .add_header(
                    http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                    http::HeaderValue::from_str(v).expect("header value"),
                )
                .expect("allowed header");
        }
        let (ws, _resp) = timeout(STEP, builder.connect())
            .await
            .map_err(|_| tokio_websockets::Error::Io(std::io::ErrorKind::TimedOut.into()))??;
        Ok(WsClient { ws })
    }

    /// Connects from a chosen loopback source address (127.0.0.x), so a test
    /// can play several client IPs.
    pub async fn connect_from(
        source: std::net::IpAddr,
        url: &str,
    ) -> Result<Self, tokio_websockets::Error> {
        let uri: http::Uri = url.parse().expect("url");
        let addr: std::net::SocketAddr = uri
            .authority()
            .expect("authority")
            .as_str()
            .parse()
            .expect("ip:port url");
        let tcp = crate::http::connect_from(source, addr).await?;
        let (ws, _resp) = timeout(
            STEP,
            ClientBuilder::from_uri(uri).connect_on(MaybeTlsStream::Plain(tcp)),
        )
        .await
        .map_err(|_| tokio_websockets::Error::Io(std::io::ErrorKind::TimedOut.into()))??;
        Ok(WsClient { ws })
    }

    /// Connects to `/ws` and consumes the welcome; returns it too.
    pub async fn tether(url: &str) -> (Self, Value) {
        let mut c = Self::connect(url).await;
        let welcome = c.recv().await;
        assert_eq!(welcome["type"], "welcome", "first message is welcome");
        (c, welcome)
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws
            .send(Message::text(s.to_owned()))
            .await
            .expect("send");
    }

    /// The next JSON text message (pings and pongs skipped).
    pub async fn recv(&mut self) -> Value {
        self.try_recv(STEP)
            .await
            .expect("a message before the timeout")
    }

    /// The next JSON message within `wait`, or `None` on timeout or close.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
                .ok()?;
            if let Some(text) = msg.as_text() {
                return Some(serde_json::from_str(text).expect("server sends JSON"));
            }
            if msg.is_close() {
                return None;
            }
        }
    }

    /// The next JSON text message, or how the connection ended.
    pub async fn ws_next_json(&mut self, wait: Duration) -> Result<Value, Ended> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("nothing within {wait:?}"),
                Ok(None) | Ok(Some(Err(_))) => return Err(Ended::Abnormal),
                Ok(Some(Ok(msg))) => {
                    if let Some((code, reason)) = msg.as_close() {
                        return Err(Ended::Closed(u16::from(code), reason.to_owned()));
                    }
                    if let Some(text) = msg.as_text() {
                        return Ok(serde_json::from_str(text).expect("server sends JSON"));
                    }
                }
            }
        }
    }

    /// Waits for a message with `"type": kind`, skipping others.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Reads until the connection ends; returns how it ended.
    pub async fn ended(&mut self, wait: Duration) -> Ended {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("connection still open after {wait:?}"),
                Ok(None) | Ok(Some(Err(_))) => return Ended::Abnormal,
                Ok(Some(Ok(msg))) => {
                    if let Some((code, reason)) = msg.as_close() {
                        return Ended::Closed(u16::from(code), reason.to_owned());
                    }
                }
            }
        }
    }

    /// Subscribes and returns the `subscribed` reply.
    pub async fn subscribe(
        &mut self,
        id: u64,
        channel: &str,
        recover: Option<(&str, u64)>,
    ) -> Value {
        let mut msg = serde_json::json!({"type": "subscribe", "id": id, "channel": channel});
        if let Some((epoch, offset)) = recover {
            msg["recover"] = serde_json::json!({"epoch": epoch, "offset": offset});
        }
        self.send(msg).await;
        let reply = self.recv().await;
        assert_eq!(reply["id"], id, "reply to subscribe {id}: {reply}");
        reply
    }
}
