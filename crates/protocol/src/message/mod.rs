//! Protocol messages: one JSON object per text frame.
//!
//! Decoding goes through a flat envelope rather than a serde-tagged enum for two
//! reasons: `data` stays raw JSON (`RawValue`, never re-parsed on the server's
//! hot path), and a bad message still yields its `id`, so the error reply can
//! name the request it answers.
//!
//! This module holds the message types, their encoding and [`ErrorCode`];
//! decoding lives in `decode`, the publish checks shared with
//! `POST /api/publish` in `publish`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;

mod decode;
mod publish;
#[cfg(test)]
mod tests;

pub use publish::{
    decode_publish_body, validate_channel, validate_publish, PublishBody, MAX_CHANNEL_LEN,
    MAX_KEY_LEN,
};

/// Longest `method` of an `rpc`, in bytes (the shortest is 1).
pub const MAX_RPC_METHOD_LEN: usize = 256;

/// Longest connect `data` a client sends: the `data=` query parameter's
/// value on `/ws` and `/lp/open`, URL-encoded (as JavaScript's
/// `encodeURIComponent` does), in bytes.
pub const MAX_CONNECT_DATA_BYTES: usize = 4096;

/// Checks an `rpc` method name: 1 to [`MAX_RPC_METHOD_LEN`] bytes.
pub fn validate_rpc_method(method: &str) -> Result<(), String> {
    if method.is_empty() || method.len() > MAX_RPC_METHOD_LEN {
        return Err(format!(
            "`method` must be a string of 1 to {MAX_RPC_METHOD_LEN} bytes"
        ));
    }
    Ok(())
}

/// The protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// A position in a channel's stream: the history generation and an offset in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    pub epoch: String,
    pub offset: u64,
}

/// One publication as replayed inside `subscribed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicationEntry {
    pub offset: u64,
    pub data: Box<RawValue>,
}

impl PartialEq for PublicationEntry {
    fn eq(&self, other: &Self) -> bool {
        self.offset == other.offset && self.data.get() == other.data.get()
    }
}

/// One present client of a channel, as a `presence` answer lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresenceEntry {
    /// The client id its `welcome` carried.
    pub client: String,
    /// The token's `sub`; `null` for an anonymous client.
    pub user: Option<String>,
    /// The token's `info` claim (a JSON object), omitted when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Box<RawValue>>,
    /// Wall-clock milliseconds since the epoch when it joined.
    pub joined_at_ms: u64,
}

impl PartialEq for PresenceEntry {
    fn eq(&self, other: &Self) -> bool {
        self.client == other.client
            && self.user == other.user
            && self.info.as_ref().map(|i| i.get()) == other.info.as_ref().map(|i| i.get())
            && self.joined_at_ms == other.joined_at_ms
    }
}

/// Messages a client sends.
#[derive(Debug, Clone)]
pub enum ClientMessage {
    Subscribe {
        id: u64,
        channel: String,
        recover: Option<StreamPosition>,
    },
    Unsubscribe {
        id: u64,
        channel: String,
    },
    Publish {
        id: u64,
        channel: String,
        data: Box<RawValue>,
        key: Option<String>,
    },
    /// Who is present in a channel (`presence = true` in its rule).
    Presence {
        id: u64,
        channel: String,
    },
    /// How many clients and distinct users are present in a channel.
    PresenceStats {
        id: u64,
        channel: String,
    },
    /// A request the server hands to the backend's rpc hook; `data` is
    /// `null` when the client sent none.
    Rpc {
        id: u64,
        method: String,
        data: Box<RawValue>,
    },
    Ping,
}

// `Box<RawValue>` has no PartialEq; compare the encoded text.
impl PartialEq for ClientMessage {
    fn eq(&self, other: &Self) -> bool {
        self.encode() == other.encode()
    }
}

impl PartialEq for ServerMessage {
    fn eq(&self, other: &Self) -> bool {
        self.encode() == other.encode()
    }
}

/// Messages the server sends.
#[derive(Debug, Clone)]
pub enum ServerMessage {
    Welcome {
        client: String,
        ping_interval_ms: u64,
        pong_timeout_ms: u64,
        version: u32,
        /// Long polling only: how long a poll waits before answering `[]`.
        poll_timeout_ms: Option<u64>,
        /// Long polling only: the id presence, join/leave, hooks and events
        /// show for this session. Its `client` is the session's credential
        /// (every `/lp/` request names it) and is never shown to others.
        public_client: Option<String>,
    },
    /// The answer to a `subscribe` (`id` set), or without `id`: a
    /// subscription the server made on the client's behalf (the connect
    /// hook's `channels`), or on long polling a resynchronisation.
    Subscribed {
        id: Option<u64>,
        channel: String,
        epoch: String,
        offset: u64,
        recovered: bool,
        publications: Vec<PublicationEntry>,
    },
    Unsubscribed {
        id: u64,
        channel: String,
    },
    Message {
        channel: String,
        offset: u64,
        data: Box<RawValue>,
    },
    Ack {
        id: u64,
        offset: u64,
    },
    Error {
        id: Option<u64>,
        code: ErrorCode,
        message: String,
        /// Long polling only: the channel a poll named and the session could
        /// not hold (an `error` without `id`).
        channel: Option<String>,
    },
    Presence {
        id: u64,
        channel: String,
        clients: Vec<PresenceEntry>,
    },
    /// `users` counts distinct non-null `user`s: anonymous clients are no user.
    PresenceStats {
        id: u64,
        channel: String,
        clients: u64,
        users: u64,
    },
    /// Someone subscribed to a channel whose rule says `join_leave = true`.
    /// Not a publication: no offset, not in history.
    Join {
        channel: String,
        client: String,
        /// The token's `sub`; `null` for an anonymous client.
        user: Option<String>,
        info: Option<Box<RawValue>>,
    },
    /// Someone left such a channel (unsubscribed, disconnected, was cut, or
    /// its node was lost).
    Leave {
        channel: String,
        client: String,
        user: Option<String>,
        info: Option<Box<RawValue>>,
    },
    /// The backend's answer to an `rpc` request.
    Rpc {
        id: u64,
        result: Box<RawValue>,
    },
    /// Long polling only: the session ends with this close code (a
    /// WebSocket carries it in its close frame instead).
    Close {
        code: u16,
        reason: String,
    },
    Pong,
}

/// Machine-readable error codes carried by `error` replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not a JSON object.
    MalformedJson,
    /// `type` missing or not one this server knows.
    UnknownType,
    /// A required field is missing or has the wrong type.
    BadRequest,
    /// The channel name is empty, too long, or has characters outside `[A-Za-z0-9_.:@/-]`.
    InvalidChannel,
    /// The client is not allowed to do this on this channel.
    Forbidden,
    /// Subscribe to a channel this connection already subscribes to.
    AlreadySubscribed,
    /// Unsubscribe from a channel this connection is not subscribed to.
    NotSubscribed,
    /// Too many requests; slow down.
    RateLimited,
    /// Binary frames are not part of the protocol.
    UnsupportedFrame,
    /// The connection holds `max_subscriptions` already; unsubscribe first.
    TooManySubscriptions,
    /// The node is at a capacity limit (channels, history bytes); retry later.
    OverCapacity,
    /// The server could not complete the request; retry.
    Internal,
    /// The broker (Redis) is unreachable or reconnecting: nothing was
    /// done; retry with backoff.
    Unavailable,
    /// Any code this client version does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Whether nothing was done and the same request may be sent again
    /// later, with backoff (both clients retry subscribes refused so; the
    /// JS client checks its copy against `vectors/error_codes.json`).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::OverCapacity
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::AlreadySubscribed => "already_subscribed",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UnsupportedFrame => "unsupported_frame",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::OverCapacity => "over_capacity",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame could not be decoded; `id` is set when the frame carried one,
/// so the error reply can be matched to its request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DecodeError {
    pub id: Option<u64>,
    pub code: ErrorCode,
    pub message: String,
}

impl DecodeError {
    fn new(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        DecodeError {
            id,
            code,
            message: message.into(),
        }
    }

    /// The `error` reply for this failure.
    pub fn into_reply(self) -> ServerMessage {
        ServerMessage::Error {
            id: self.id,
            code: self.code,
            message: self.message,
            channel: None,
        }
    }
}

impl ClientMessage {
    /// Encodes this message as a JSON text frame.
    pub fn encode(&self) -> String {
        let value = match self {
            ClientMessage::Subscribe {
                id,
                channel,
                recover,
            } => {
                let mut v = serde_json::json!({"type": "subscribe", "id": id, "channel": channel});
                if let Some(pos) = recover {
                    v["recover"] = serde_json::json!(pos);
                }
                v
            }
            ClientMessage::Unsubscribe { id, channel } => {
                serde_json::json!({"type": "unsubscribe", "id": id, "channel": channel})
            }
            ClientMessage::Publish {
                id,
                channel,
                data,
                key,
            } => {
                let mut v = serde_json::json!({"type": "publish", "id": id, "channel": channel, "data": data});
                if let Some(key) = key {
                    v["key"] = serde_json::json!(key);
                }
                v
            }
            ClientMessage::Presence { id, channel } => {
                serde_json::json!({"type": "presence", "id": id, "channel": channel})
            }
            ClientMessage::PresenceStats { id, channel } => {
                serde_json::json!({"type": "presence_stats", "id": id, "channel": channel})
            }
            ClientMessage::Rpc { id, method, data } => {
                serde_json::json!({"type": "rpc", "id": id, "method": method, "data": data})
            }
            ClientMessage::Ping => serde_json::json!({"type": "ping"}),
        };
        value.to_string()
    }
}

impl ServerMessage {
    /// Encodes this message as a JSON text frame.
    ///
    /// Through a borrowed, derived `Serialize` (not a `serde_json::Value`
    /// tree): every connection's `welcome` and every request's reply pass
    /// here, and building a map per message cost more than the rest of the
    /// reply.
    pub fn encode(&self) -> String {
        let wire = match self {
            ServerMessage::Welcome {
                client,
                ping_interval_ms,
                pong_timeout_ms,
                version,
                poll_timeout_ms,
                public_client,
            } => Wire::Welcome {
                client,
                ping_interval_ms: *ping_interval_ms,
                pong_timeout_ms: *pong_timeout_ms,
                version: *version,
                poll_timeout_ms: *poll_timeout_ms,
                public_client: public_client.as_deref(),
            },
            ServerMessage::Subscribed {
                id,
                channel,
                epoch,
                offset,
                recovered,
                publications,
            } => Wire::Subscribed {
                id: *id,
                channel,
                epoch,
                offset: *offset,
                recovered: *recovered,
                publications,
            },
            ServerMessage::Unsubscribed { id, channel } => Wire::Unsubscribed { id: *id, channel },
            ServerMessage::Message {
                channel,
                offset,
                data,
            } => return encode_message_frame(channel, *offset, data.get()),
            ServerMessage::Ack { id, offset } => Wire::Ack {
                id: *id,
                offset: *offset,
            },
            ServerMessage::Error {
                id,
                code,
                message,
                channel,
            } => Wire::Error {
                id: *id,
                code: *code,
                message,
                channel: channel.as_deref(),
            },
            ServerMessage::Close { code, reason } => Wire::Close {
                code: *code,
                reason,
            },
            ServerMessage::Presence {
                id,
                channel,
                clients,
            } => Wire::Presence {
                id: *id,
                channel,
                clients,
            },
            ServerMessage::PresenceStats {
                id,
                channel,
                clients,
                users,
            } => Wire::PresenceStats {
                id: *id,
                channel,
                clients: *clients,
                users: *users,
            },
            ServerMessage::Join {
                channel,
                client,
                user,
                info,
            } => Wire::Join {
                channel,
                client,
                user: user.as_deref(),
                info: info.as_deref(),
            },
            ServerMessage::Leave {
                channel,
                client,
                user,
                info,
            } => Wire::Leave {
                channel,
                client,
                user: user.as_deref(),
                info: info.as_deref(),
            },
            ServerMessage::Rpc { id, result } => Wire::Rpc {
                id: *id,
                result: result.as_ref(),
            },
            ServerMessage::Pong => Wire::Pong,
        };
        // Serializing plain fields, strings and raw JSON into a String
        // cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }
}

/// [`ServerMessage`] as it goes on the wire, borrowing its fields.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire<'a> {
    Welcome {
        client: &'a str,
        ping_interval_ms: u64,
        pong_timeout_ms: u64,
        version: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        poll_timeout_ms: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        public_client: Option<&'a str>,
    },
    Subscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        channel: &'a str,
        epoch: &'a str,
        offset: u64,
        recovered: bool,
        publications: &'a [PublicationEntry],
    },
    Unsubscribed {
        id: u64,
        channel: &'a str,
    },
    Ack {
        id: u64,
        offset: u64,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
    },
    Close {
        code: u16,
        reason: &'a str,
    },
    Presence {
        id: u64,
        channel: &'a str,
        clients: &'a [PresenceEntry],
    },
    PresenceStats {
        id: u64,
        channel: &'a str,
        clients: u64,
        users: u64,
    },
    Join {
        channel: &'a str,
        client: &'a str,
        user: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        info: Option<&'a RawValue>,
    },
    Leave {
        channel: &'a str,
        client: &'a str,
        user: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        info: Option<&'a RawValue>,
    },
    Rpc {
        id: u64,
        result: &'a RawValue,
    },
    Pong,
}

/// Encodes a `message` frame from its parts. The server calls this once per
/// publication and shares the bytes among all subscribers.
pub fn encode_message_frame(channel: &str, offset: u64, raw_data: &str) -> String {
    let channel = serde_json::Value::String(channel.to_owned()).to_string();
    let mut out = String::with_capacity(48 + channel.len() + raw_data.len());
    out.push_str("{\"type\":\"message\",\"channel\":");
    out.push_str(&channel);
    out.push_str(",\"offset\":");
    out.push_str(&offset.to_string());
    out.push_str(",\"data\":");
    out.push_str(raw_data);
    out.push('}');
    out
}
