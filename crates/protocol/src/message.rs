//! Protocol messages: one JSON object per text frame.
//!
//! Decoding goes through a flat envelope rather than a serde-tagged enum for two
//! reasons: `data` stays raw JSON (`RawValue`, never re-parsed on the server's
//! hot path), and a bad message still yields its `id`, so the error reply can
//! name the request it answers.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;

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
    },
    Subscribed {
        id: u64,
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
    /// The server could not complete the request (e.g. the broker is unreachable); retry.
    Internal,
    /// Any code this client version does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
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
        }
    }
}

/// Every field any message may carry; unknown fields are ignored so that newer
/// clients can add optional fields without breaking older servers.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<serde_json::Value>,
    channel: Option<serde_json::Value>,
    data: Option<Box<RawValue>>,
    recover: Option<serde_json::Value>,
    key: Option<serde_json::Value>,
    // server-side fields
    client: Option<String>,
    ping_interval_ms: Option<u64>,
    pong_timeout_ms: Option<u64>,
    version: Option<u32>,
    epoch: Option<String>,
    offset: Option<u64>,
    recovered: Option<bool>,
    publications: Option<Vec<PublicationEntry>>,
    code: Option<ErrorCode>,
    message: Option<String>,
}

/// Longest channel name accepted.
pub const MAX_CHANNEL_LEN: usize = 255;
/// Longest idempotency key accepted.
pub const MAX_KEY_LEN: usize = 256;

/// Checks a publish the same way on every path (WebSocket `publish`,
/// `POST /api/publish`): channel name, `data` size, idempotency key length.
/// The error is the code and sentence of the reply.
pub fn validate_publish(
    channel: &str,
    data: &RawValue,
    key: Option<&str>,
    max_data_bytes: usize,
) -> Result<(), (ErrorCode, String)> {
    validate_channel(channel).map_err(|m| (ErrorCode::InvalidChannel, m))?;
    if data.get().len() > max_data_bytes {
        return Err((
            ErrorCode::BadRequest,
            format!(
                "`data` is {} bytes; the limit is {max_data_bytes}",
                data.get().len()
            ),
        ));
    }
    if let Some(key) = key {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err((
                ErrorCode::BadRequest,
                format!("`key` must be a string of 1 to {MAX_KEY_LEN} bytes"),
            ));
        }
    }
    Ok(())
}

/// Checks a channel name: 1–255 bytes of `[A-Za-z0-9_.:@/-]`.
pub fn validate_channel(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("channel name is empty".into());
    }
    if name.len() > MAX_CHANNEL_LEN {
        return Err(format!(
            "channel name is {} bytes; the limit is {MAX_CHANNEL_LEN}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.:@/-".contains(*c)))
    {
        return Err(format!(
            "channel name contains {bad:?}; allowed are letters, digits and _ . : @ / -"
        ));
    }
    Ok(())
}

fn parse_envelope(text: &str) -> Result<Envelope, DecodeError> {
    let value: &RawValue = serde_json::from_str(text).map_err(|e| {
        DecodeError::new(
            None,
            ErrorCode::MalformedJson,
            format!("not valid JSON: {e}"),
        )
    })?;
    if !value.get().trim_start().starts_with('{') {
        return Err(DecodeError::new(
            None,
            ErrorCode::MalformedJson,
            "expected a JSON object like {\"type\":\"ping\"}",
        ));
    }
    serde_json::from_str(value.get()).map_err(|e| {
        DecodeError::new(
            None,
            ErrorCode::BadRequest,
            format!("a field has the wrong type: {e}"),
        )
    })
}

impl Envelope {
    fn id(&self) -> Result<u64, DecodeError> {
        match &self.id {
            Some(v) => v.as_u64().ok_or_else(|| {
                DecodeError::new(
                    None,
                    ErrorCode::BadRequest,
                    "`id` must be a non-negative integer",
                )
            }),
            None => Err(DecodeError::new(
                None,
                ErrorCode::BadRequest,
                format!(
                    "`{}` needs an integer `id`",
                    self.kind.as_deref().unwrap_or("")
                ),
            )),
        }
    }

    fn channel(&self, id: u64) -> Result<String, DecodeError> {
        let name = match &self.channel {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(DecodeError::new(
                    Some(id),
                    ErrorCode::BadRequest,
                    "`channel` must be a string",
                ))
            }
            None => {
                return Err(DecodeError::new(
                    Some(id),
                    ErrorCode::BadRequest,
                    "missing `channel`",
                ))
            }
        };
        validate_channel(&name)
            .map_err(|m| DecodeError::new(Some(id), ErrorCode::InvalidChannel, m))?;
        Ok(name)
    }
}

impl ClientMessage {
    /// Decodes one text frame from a client.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let env = parse_envelope(text)?;
        let kind = env.kind.as_deref().ok_or_else(|| {
            DecodeError::new(
                env.id.as_ref().and_then(|v| v.as_u64()),
                ErrorCode::UnknownType,
                "missing `type`",
            )
        })?;
        match kind {
            "ping" => Ok(ClientMessage::Ping),
            "subscribe" => {
                let id = env.id()?;
                let channel = env.channel(id)?;
                let recover = match &env.recover {
                    None | Some(serde_json::Value::Null) => None,
                    Some(v) => Some(StreamPosition::deserialize(v).map_err(|_| {
                        DecodeError::new(
                            Some(id),
                            ErrorCode::BadRequest,
                            "`recover` must be {\"epoch\": string, \"offset\": integer}",
                        )
                    })?),
                };
                Ok(ClientMessage::Subscribe {
                    id,
                    channel,
                    recover,
                })
            }
            "unsubscribe" => {
                let id = env.id()?;
                let channel = env.channel(id)?;
                Ok(ClientMessage::Unsubscribe { id, channel })
            }
            "publish" => {
                let id = env.id()?;
                let channel = env.channel(id)?;
                let data = env.data.ok_or_else(|| {
                    DecodeError::new(Some(id), ErrorCode::BadRequest, "missing `data`")
                })?;
                let key = match env.key {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(k)) if !k.is_empty() && k.len() <= 256 => {
                        Some(k)
                    }
                    Some(_) => {
                        return Err(DecodeError::new(
                            Some(id),
                            ErrorCode::BadRequest,
                            "`key` must be a string of 1 to 256 bytes",
                        ))
                    }
                };
                Ok(ClientMessage::Publish {
                    id,
                    channel,
                    data,
                    key,
                })
            }
            other => Err(DecodeError::new(
                env.id.as_ref().and_then(|v| v.as_u64()),
                ErrorCode::UnknownType,
                format!("unknown type {other:?}; expected subscribe, unsubscribe, publish or ping"),
            )),
        }
    }

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
            ClientMessage::Ping => serde_json::json!({"type": "ping"}),
        };
        value.to_string()
    }
}

fn missing(kind: &str, field: &str) -> DecodeError {
    DecodeError::new(
        None,
        ErrorCode::BadRequest,
        format!("`{kind}` without `{field}`"),
    )
}

impl ServerMessage {
    /// Encodes this message as a JSON text frame.
    pub fn encode(&self) -> String {
        let value = match self {
            ServerMessage::Welcome {
                client,
                ping_interval_ms,
                pong_timeout_ms,
                version,
            } => serde_json::json!({
                "type": "welcome", "client": client, "ping_interval_ms": ping_interval_ms,
                "pong_timeout_ms": pong_timeout_ms, "version": version,
            }),
            ServerMessage::Subscribed {
                id,
                channel,
                epoch,
                offset,
                recovered,
                publications,
            } => serde_json::json!({
                "type": "subscribed", "id": id, "channel": channel, "epoch": epoch,
                "offset": offset, "recovered": recovered, "publications": publications,
            }),
            ServerMessage::Unsubscribed { id, channel } => {
                serde_json::json!({"type": "unsubscribed", "id": id, "channel": channel})
            }
            ServerMessage::Message {
                channel,
                offset,
                data,
            } => return encode_message_frame(channel, *offset, data.get()),
            ServerMessage::Ack { id, offset } => {
                serde_json::json!({"type": "ack", "id": id, "offset": offset})
            }
            ServerMessage::Error { id, code, message } => {
                let mut v = serde_json::json!({"type": "error", "code": code, "message": message});
                if let Some(id) = id {
                    v["id"] = serde_json::json!(id);
                }
                v
            }
            ServerMessage::Pong => serde_json::json!({"type": "pong"}),
        };
        value.to_string()
    }

    /// Decodes one text frame from the server (used by clients).
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let env = parse_envelope(text)?;
        let kind = env.kind.clone().unwrap_or_default();
        let id = env.id.as_ref().and_then(|v| v.as_u64());
        let channel = env
            .channel
            .as_ref()
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        Ok(match kind.as_str() {
            "welcome" => ServerMessage::Welcome {
                client: env.client.ok_or_else(|| missing("welcome", "client"))?,
                ping_interval_ms: env
                    .ping_interval_ms
                    .ok_or_else(|| missing("welcome", "ping_interval_ms"))?,
                pong_timeout_ms: env
                    .pong_timeout_ms
                    .ok_or_else(|| missing("welcome", "pong_timeout_ms"))?,
                version: env.version.unwrap_or(PROTOCOL_VERSION),
            },
            "subscribed" => ServerMessage::Subscribed {
                id: id.ok_or_else(|| missing("subscribed", "id"))?,
                channel: channel.ok_or_else(|| missing("subscribed", "channel"))?,
                epoch: env.epoch.ok_or_else(|| missing("subscribed", "epoch"))?,
                offset: env.offset.ok_or_else(|| missing("subscribed", "offset"))?,
                recovered: env.recovered.unwrap_or(false),
                publications: env.publications.unwrap_or_default(),
            },
            "unsubscribed" => ServerMessage::Unsubscribed {
                id: id.ok_or_else(|| missing("unsubscribed", "id"))?,
                channel: channel.ok_or_else(|| missing("unsubscribed", "channel"))?,
            },
            "message" => ServerMessage::Message {
                channel: channel.ok_or_else(|| missing("message", "channel"))?,
                offset: env.offset.ok_or_else(|| missing("message", "offset"))?,
                data: env.data.ok_or_else(|| missing("message", "data"))?,
            },
            "ack" => ServerMessage::Ack {
                id: id.ok_or_else(|| missing("ack", "id"))?,
                offset: env.offset.ok_or_else(|| missing("ack", "offset"))?,
            },
            "error" => ServerMessage::Error {
                id,
                code: env.code.unwrap_or(ErrorCode::Unknown),
                message: env.message.unwrap_or_default(),
            },
            "pong" => ServerMessage::Pong,
            other => {
                return Err(DecodeError::new(
                    id,
                    ErrorCode::UnknownType,
                    format!("unknown server message type {other:?}"),
                ))
            }
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn decodes_subscribe_with_recover() {
        let m = ClientMessage::decode(
            r#"{"type":"subscribe","id":1,"channel":"news","recover":{"epoch":"e","offset":41}}"#,
        );
        assert_eq!(
            m,
            Ok(ClientMessage::Subscribe {
                id: 1,
                channel: "news".into(),
                recover: Some(StreamPosition {
                    epoch: "e".into(),
                    offset: 41
                }),
            })
        );
    }

    #[test]
    fn errors_keep_the_request_id() {
        let e = ClientMessage::decode(r#"{"type":"publish","id":7,"channel":"x"}"#).unwrap_err();
        assert_eq!((e.id, e.code), (Some(7), ErrorCode::BadRequest));
        let e = ClientMessage::decode(r#"{"type":"dance","id":8}"#).unwrap_err();
        assert_eq!((e.id, e.code), (Some(8), ErrorCode::UnknownType));
        let e =
            ClientMessage::decode(r#"{"type":"subscribe","id":9,"channel":"a b"}"#).unwrap_err();
        assert_eq!((e.id, e.code), (Some(9), ErrorCode::InvalidChannel));
        let e = ClientMessage::decode("{not json").unwrap_err();
        assert_eq!((e.id, e.code), (None, ErrorCode::MalformedJson));
        let e = ClientMessage::decode("[1,2]").unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedJson);
    }

    #[test]
    fn message_frame_is_valid_json_with_escaped_channel() {
        let frame = encode_message_frame("a\"b", 3, r#"{"x":1}"#);
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap_or_default();
        assert_eq!(v["channel"], "a\"b");
        assert_eq!(v["offset"], 3);
        assert_eq!(v["data"]["x"], 1);
    }

    #[test]
    fn server_messages_round_trip() {
        let msgs = vec![
            ServerMessage::Welcome {
                client: "c".into(),
                ping_interval_ms: 25000,
                pong_timeout_ms: 10000,
                version: 1,
            },
            ServerMessage::Subscribed {
                id: 1,
                channel: "news".into(),
                epoch: "e".into(),
                offset: 45,
                recovered: true,
                publications: vec![PublicationEntry {
                    offset: 45,
                    data: raw("{\"a\":1}"),
                }],
            },
            ServerMessage::Message {
                channel: "news".into(),
                offset: 46,
                data: raw("[1,2]"),
            },
            ServerMessage::Ack { id: 3, offset: 47 },
            ServerMessage::Error {
                id: Some(3),
                code: ErrorCode::Forbidden,
                message: "no".into(),
            },
            ServerMessage::Pong,
        ];
        for m in msgs {
            assert_eq!(ServerMessage::decode(&m.encode()).as_ref(), Ok(&m));
        }
    }
}
