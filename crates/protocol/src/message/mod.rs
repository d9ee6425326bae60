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

/// The fields of one message object that any Tether message uses, each kept
/// as raw JSON until the message's `type` says which ones matter and how.
///
/// Reading every field as raw JSON first is what makes decoding both lenient
/// and exact: a field the message's type does not use is never looked at, so
/// an unknown or newer field cannot fail a message whatever its name or type
/// (a server field like `client` in a `ping` included); and `id` is read on
/// its own, so an error in any other field still yields the request's `id`.
///
/// A known field given twice is refused (`duplicate`): JSON parsers disagree
/// about which copy wins (first, last, or an error), so accepting either
/// would let a proxy or a log read a different message than the server
/// acts on. Unknown fields are skipped unread, duplicated or not.
#[derive(Default)]
struct Fields<'a> {
    kind: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    channel: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
    recover: Option<&'a RawValue>,
    key: Option<&'a RawValue>,
    client: Option<&'a RawValue>,
    ping_interval_ms: Option<&'a RawValue>,
    pong_timeout_ms: Option<&'a RawValue>,
    version: Option<&'a RawValue>,
    epoch: Option<&'a RawValue>,
    offset: Option<&'a RawValue>,
    recovered: Option<&'a RawValue>,
    publications: Option<&'a RawValue>,
    code: Option<&'a RawValue>,
    message: Option<&'a RawValue>,
    /// The first known field that appeared more than once.
    duplicate: Option<&'static str>,
}

/// A key of a message object; `Unknown` for every name no message uses.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    #[serde(rename = "type")]
    Kind,
    Id,
    Channel,
    Data,
    Recover,
    Key,
    Client,
    PingIntervalMs,
    PongTimeoutMs,
    Version,
    Epoch,
    Offset,
    Recovered,
    Publications,
    Code,
    Message,
    #[serde(other)]
    Unknown,
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Fields<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields<'de>, A::Error> {
                let mut f = Fields::default();
                while let Some(key) = map.next_key::<Field>()? {
                    let (slot, name) = match key {
                        Field::Kind => (&mut f.kind, "type"),
                        Field::Id => (&mut f.id, "id"),
                        Field::Channel => (&mut f.channel, "channel"),
                        Field::Data => (&mut f.data, "data"),
                        Field::Recover => (&mut f.recover, "recover"),
                        Field::Key => (&mut f.key, "key"),
                        Field::Client => (&mut f.client, "client"),
                        Field::PingIntervalMs => (&mut f.ping_interval_ms, "ping_interval_ms"),
                        Field::PongTimeoutMs => (&mut f.pong_timeout_ms, "pong_timeout_ms"),
                        Field::Version => (&mut f.version, "version"),
                        Field::Epoch => (&mut f.epoch, "epoch"),
                        Field::Offset => (&mut f.offset, "offset"),
                        Field::Recovered => (&mut f.recovered, "recovered"),
                        Field::Publications => (&mut f.publications, "publications"),
                        Field::Code => (&mut f.code, "code"),
                        Field::Message => (&mut f.message, "message"),
                        Field::Unknown => {
                            // Skipped without building anything (the JSON is
                            // still checked, and nesting is depth-limited).
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    let value: &'de RawValue = map.next_value()?;
                    if slot.is_some() {
                        // Keep reading: the rest of the object may still
                        // yield the `id` the error reply should carry.
                        f.duplicate.get_or_insert(name);
                    } else {
                        *slot = Some(value);
                    }
                }
                Ok(f)
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Reads one raw field as `T`; `None` when it has another JSON type.
fn read<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    serde_json::from_str(raw.get()).ok()
}

/// At most `max` characters of `s`, for error messages that quote input: a
/// reply must not echo a megabyte-long `type` back to its sender.
fn excerpt(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
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

fn parse_fields(text: &str) -> Result<Fields<'_>, DecodeError> {
    serde_json::from_str(text).map_err(|e| {
        // Every value is read as raw JSON and every key is accepted, so the
        // only data error left is a frame that is JSON but not an object.
        if e.classify() == serde_json::error::Category::Data {
            DecodeError::new(
                None,
                ErrorCode::MalformedJson,
                "expected a JSON object like {\"type\":\"ping\"}",
            )
        } else {
            DecodeError::new(
                None,
                ErrorCode::MalformedJson,
                format!("not valid JSON: {e}"),
            )
        }
    })
}

impl<'a> Fields<'a> {
    /// `id` as the request's id: `None` when absent, not a non-negative
    /// integer, or given twice (then it is unclear which request failed).
    fn request_id(&self) -> Option<u64> {
        if self.duplicate == Some("id") {
            return None;
        }
        self.id.and_then(read::<u64>)
    }

    /// The id an id-bearing request must have.
    fn require_id(&self, kind: &str) -> Result<u64, DecodeError> {
        self.request_id().ok_or_else(|| {
            let message = match self.id {
                None => format!("`{kind}` needs an integer `id`"),
                Some(_) if self.duplicate == Some("id") => "`id` appears more than once".into(),
                Some(_) => "`id` must be a non-negative integer".into(),
            };
            DecodeError::new(None, ErrorCode::BadRequest, message)
        })
    }

    fn channel(&self, id: Option<u64>) -> Result<String, DecodeError> {
        let name = match self.channel {
            Some(raw) => read::<String>(raw).ok_or_else(|| {
                DecodeError::new(id, ErrorCode::BadRequest, "`channel` must be a string")
            })?,
            None => {
                return Err(DecodeError::new(
                    id,
                    ErrorCode::BadRequest,
                    "missing `channel`",
                ))
            }
        };
        validate_channel(&name).map_err(|m| DecodeError::new(id, ErrorCode::InvalidChannel, m))?;
        Ok(name)
    }

    /// `data`: any JSON value, `null` included, kept byte for byte.
    fn data(&self, id: Option<u64>) -> Result<Box<RawValue>, DecodeError> {
        self.data
            .map(RawValue::to_owned)
            .ok_or_else(|| DecodeError::new(id, ErrorCode::BadRequest, "missing `data`"))
    }

    /// `key`: absent or `null` for none, else a string of 1 to 256 bytes.
    fn key(&self, id: Option<u64>) -> Result<Option<String>, DecodeError> {
        let bad = || {
            DecodeError::new(
                id,
                ErrorCode::BadRequest,
                format!("`key` must be a string of 1 to {MAX_KEY_LEN} bytes"),
            )
        };
        match self.key {
            None => Ok(None),
            Some(raw) => match read::<Option<String>>(raw) {
                None => Err(bad()),
                Some(Some(k)) if k.is_empty() || k.len() > MAX_KEY_LEN => Err(bad()),
                Some(key) => Ok(key),
            },
        }
    }

    fn duplicate_error(&self, id: Option<u64>) -> Result<(), DecodeError> {
        match self.duplicate {
            Some(name) => Err(DecodeError::new(
                id,
                ErrorCode::BadRequest,
                format!("`{name}` appears more than once"),
            )),
            None => Ok(()),
        }
    }
}

/// The body of `POST /api/publish`: `{"channel": "...", "data": <any JSON>}`
/// with an optional idempotency `key`.
#[derive(Debug, Clone)]
pub struct PublishBody {
    pub channel: String,
    pub data: Box<RawValue>,
    pub key: Option<String>,
}

/// What every body error message starts with, so the caller sees the shape.
const PUBLISH_BODY_SHAPE: &str = "body must be {\"channel\": \"...\", \"data\": <any JSON>}";

/// Decodes and checks a `POST /api/publish` body with the same rules as a
/// WebSocket `publish` ([`validate_publish`]). Unknown fields are ignored
/// (a newer backend library may send more); a known field given twice is
/// refused. Errors carry no id; the code is `bad_request` or
/// `invalid_channel` and the message names the expected body.
pub fn decode_publish_body(body: &[u8], max_data_bytes: usize) -> Result<PublishBody, DecodeError> {
    let bad = |why: &str| {
        DecodeError::new(
            None,
            ErrorCode::BadRequest,
            format!("{PUBLISH_BODY_SHAPE}: {why}"),
        )
    };
    let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
    let fields = parse_fields(text).map_err(|e| bad(&e.message))?;
    // Messages from the shared helpers get the shape prepended; the code stays.
    let shaped = |e: DecodeError| {
        DecodeError::new(None, e.code, format!("{PUBLISH_BODY_SHAPE}: {}", e.message))
    };
    fields.duplicate_error(None).map_err(shaped)?;
    let channel = match fields.channel {
        Some(raw) => read::<String>(raw).ok_or_else(|| bad("`channel` must be a string"))?,
        None => return Err(bad("missing `channel`")),
    };
    let data = fields.data(None).map_err(shaped)?;
    let key = fields.key(None).map_err(shaped)?;
    validate_publish(&channel, &data, key.as_deref(), max_data_bytes)
        .map_err(|(code, message)| DecodeError::new(None, code, message))?;
    Ok(PublishBody { channel, data, key })
}
impl ClientMessage {
    /// Decodes one text frame from a client.
    ///
    /// Fields the message's type does not use are ignored, whatever their
    /// names or types. Every error carries the request's `id` whenever it
    /// could be read (a non-negative integer, given once), whatever else is
    /// wrong with the frame; only a frame that is not a JSON object yields no id.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let f = parse_fields(text)?;
        // Read before anything else can fail, so every later error names it.
        let id = f.request_id();
        f.duplicate_error(id)?;
        let kind = match f.kind {
            None => {
                return Err(DecodeError::new(
                    id,
                    ErrorCode::UnknownType,
                    "missing `type`",
                ))
            }
            Some(raw) => read::<String>(raw).ok_or_else(|| {
                DecodeError::new(
                    id,
                    ErrorCode::UnknownType,
                    "`type` must be a string: subscribe, unsubscribe, publish or ping",
                )
            })?,
        };
        match kind.as_str() {
            "ping" => Ok(ClientMessage::Ping),
            "subscribe" => {
                let id = f.require_id(&kind)?;
                let channel = f.channel(Some(id))?;
                let recover = match f.recover {
                    None => None,
                    // Objects only: serde also reads a struct from an array
                    // (`["e", 41]`), which is not the documented shape.
                    Some(raw) => read::<Option<StreamPosition>>(raw)
                        .filter(|_| raw.get() == "null" || raw.get().starts_with('{'))
                        .ok_or_else(|| {
                            DecodeError::new(
                                Some(id),
                                ErrorCode::BadRequest,
                                "`recover` must be {\"epoch\": string, \"offset\": integer}",
                            )
                        })?,
                };
                Ok(ClientMessage::Subscribe {
                    id,
                    channel,
                    recover,
                })
            }
            "unsubscribe" => {
                let id = f.require_id(&kind)?;
                let channel = f.channel(Some(id))?;
                Ok(ClientMessage::Unsubscribe { id, channel })
            }
            "publish" => {
                let id = f.require_id(&kind)?;
                let channel = f.channel(Some(id))?;
                let data = f.data(Some(id))?;
                let key = f.key(Some(id))?;
                Ok(ClientMessage::Publish {
                    id,
                    channel,
                    data,
                    key,
                })
            }
            other => Err(DecodeError::new(
                id,
                ErrorCode::UnknownType,
                format!(
                    "unknown type {:?}; expected subscribe, unsubscribe, publish or ping",
                    excerpt(other, 64)
                ),
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
    ///
    /// Like [`ClientMessage::decode`], fields the message's type does not use
    /// are ignored, so a newer server may add fields.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let f = parse_fields(text)?;
        let id = f.request_id();
        f.duplicate_error(id)?;
        let kind = f.kind.and_then(read::<String>).unwrap_or_default();
        // A required field of the message's type, of the right JSON type.
        fn need<'a, T: Deserialize<'a>>(
            raw: Option<&'a RawValue>,
            kind: &str,
            field: &str,
        ) -> Result<T, DecodeError> {
            let raw = raw.ok_or_else(|| {
                DecodeError::new(
                    None,
                    ErrorCode::BadRequest,
                    format!("`{kind}` without `{field}`"),
                )
            })?;
            read(raw).ok_or_else(|| {
                DecodeError::new(
                    None,
                    ErrorCode::BadRequest,
                    format!("`{kind}` with a `{field}` of the wrong type"),
                )
            })
        }
        // An optional field: absent or `null` is `None`.
        fn optional<'a, T: Deserialize<'a>>(
            raw: Option<&'a RawValue>,
            kind: &str,
            field: &str,
        ) -> Result<Option<T>, DecodeError> {
            match raw {
                None => Ok(None),
                Some(raw) => need::<Option<T>>(Some(raw), kind, field),
            }
        }
        let k = kind.as_str();
        Ok(match k {
            "welcome" => ServerMessage::Welcome {
                client: need(f.client, k, "client")?,
                ping_interval_ms: need(f.ping_interval_ms, k, "ping_interval_ms")?,
                pong_timeout_ms: need(f.pong_timeout_ms, k, "pong_timeout_ms")?,
                version: optional(f.version, k, "version")?.unwrap_or(PROTOCOL_VERSION),
            },
            "subscribed" => ServerMessage::Subscribed {
                id: need(f.id, k, "id")?,
                channel: need(f.channel, k, "channel")?,
                epoch: need(f.epoch, k, "epoch")?,
                offset: need(f.offset, k, "offset")?,
                recovered: optional(f.recovered, k, "recovered")?.unwrap_or(false),
                publications: optional(f.publications, k, "publications")?.unwrap_or_default(),
            },
            "unsubscribed" => ServerMessage::Unsubscribed {
                id: need(f.id, k, "id")?,
                channel: need(f.channel, k, "channel")?,
            },
            "message" => ServerMessage::Message {
                channel: need(f.channel, k, "channel")?,
                offset: need(f.offset, k, "offset")?,
                data: f.data.map(RawValue::to_owned).ok_or_else(|| {
                    DecodeError::new(None, ErrorCode::BadRequest, "`message` without `data`")
                })?,
            },
            "ack" => ServerMessage::Ack {
                id: need(f.id, k, "id")?,
                offset: need(f.offset, k, "offset")?,
            },
            // An error frame is read as far as it can be: its id is what
            // settles a pending request, so an odd `code` or `message` must
            // not lose it (an unknown code is `ErrorCode::Unknown`).
            "error" => ServerMessage::Error {
                id,
                code: f.code.and_then(read).unwrap_or(ErrorCode::Unknown),
                message: f.message.and_then(read).unwrap_or_default(),
            },
            "pong" => ServerMessage::Pong,
            other => {
                return Err(DecodeError::new(
                    id,
                    ErrorCode::UnknownType,
                    format!("unknown server message type {:?}", excerpt(other, 64)),
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
    #![allow(clippy::unwrap_used)] // test code: a panic is a test failure
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
    fn fields_of_any_name_or_type_are_ignored() {
        assert_eq!(
            ClientMessage::decode(r#"{"type":"ping","client":5,"code":[1],"publications":"x"}"#),
            Ok(ClientMessage::Ping)
        );
        let m = ClientMessage::decode(
            r#"{"type":"subscribe","id":1,"channel":"a","offset":"x","data":{"deep":[[[]]]},"z":null}"#,
        );
        assert_eq!(
            m,
            Ok(ClientMessage::Subscribe {
                id: 1,
                channel: "a".into(),
                recover: None,
            })
        );
        // Escaped keys are the same keys.
        let m = ClientMessage::decode(r#"{"t\u0079pe":"unsubscribe","id":2,"channel":"a"}"#);
        assert_eq!(
            m,
            Ok(ClientMessage::Unsubscribe {
                id: 2,
                channel: "a".into()
            })
        );
        // A newer server's fields do not break an older client.
        let m = ServerMessage::decode(
            r#"{"type":"ack","id":3,"offset":4,"channel":7,"recover":1,"key":[]}"#,
        );
        assert_eq!(m, Ok(ServerMessage::Ack { id: 3, offset: 4 }));
        let m = ServerMessage::decode(r#"{"type":"pong","client":1,"offset":"x"}"#);
        assert_eq!(m, Ok(ServerMessage::Pong));
    }

    #[test]
    fn every_error_keeps_a_readable_id() {
        for frame in [
            r#"{"type":5,"id":3}"#,
            r#"{"type":null,"id":3}"#,
            r#"{"type":["subscribe"],"id":3,"channel":"a"}"#,
            r#"{"id":3}"#,
            r#"{"type":"subscribe","id":3,"channel":7}"#,
            r#"{"type":"subscribe","id":3}"#,
            r#"{"type":"subscribe","id":3,"channel":"a","recover":"x"}"#,
            r#"{"type":"subscribe","id":3,"channel":"a","recover":{"epoch":"e"}}"#,
            r#"{"type":"subscribe","id":3,"channel":"a","recover":["e",41]}"#,
            r#"{"type":"unsubscribe","id":3,"channel":""}"#,
            r#"{"type":"publish","id":3,"channel":"a","key":9}"#,
            r#"{"type":"publish","id":3,"channel":"a","data":1,"key":""}"#,
            r#"{"type":"publish","id":3,"channel":"a"}"#,
            r#"{"type":"publish","id":3,"channel":"a","data":1,"channel":"b"}"#,
            r#"{"channel":"a","channel":"b","id":3,"type":"subscribe"}"#,
            r#"{"type":"dance","id":3}"#,
        ] {
            let e = ClientMessage::decode(frame).unwrap_err();
            assert_eq!(e.id, Some(3), "{frame}: {e}");
        }
    }

    #[test]
    fn an_unreadable_id_is_none() {
        for frame in [
            r#"{"type":"subscribe","id":-1,"channel":"a"}"#,
            r#"{"type":"subscribe","id":"3","channel":"a"}"#,
            r#"{"type":"subscribe","id":3.5,"channel":"a"}"#,
            r#"{"type":"subscribe","id":1e999,"channel":"a"}"#,
            r#"{"type":"subscribe","id":3,"id":3,"channel":"a"}"#,
        ] {
            let e = ClientMessage::decode(frame).unwrap_err();
            assert_eq!(
                (e.id, e.code),
                (None, ErrorCode::BadRequest),
                "{frame}: {e}"
            );
        }
    }

    #[test]
    fn duplicate_known_fields_are_refused_unknown_ones_skipped() {
        let e =
            ClientMessage::decode(r#"{"type":"publish","id":4,"channel":"a","data":1,"data":2}"#)
                .unwrap_err();
        assert_eq!((e.id, e.code), (Some(4), ErrorCode::BadRequest));
        assert!(e.message.contains("`data` appears more than once"), "{e}");
        assert_eq!(
            ClientMessage::decode(r#"{"type":"ping","x":1,"x":"y"}"#),
            Ok(ClientMessage::Ping)
        );
    }

    #[test]
    fn data_is_kept_raw_and_null_is_data() {
        let m = ClientMessage::decode(
            r#"{"type":"publish","id":1,"channel":"a","data": {"b" : 1.50}}"#,
        );
        match m {
            Ok(ClientMessage::Publish { data, .. }) => assert_eq!(data.get(), r#"{"b" : 1.50}"#),
            other => panic!("{other:?}"),
        }
        let m = ClientMessage::decode(r#"{"type":"publish","id":1,"channel":"a","data":null}"#);
        assert!(matches!(m, Ok(ClientMessage::Publish { data, .. }) if data.get() == "null"));
    }

    #[test]
    fn deep_nesting_and_long_types_cost_no_stack_or_echo() {
        let deep = format!(
            r#"{{"type":"ping","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        // Skipped iteratively (no recursion, so no stack overflow) and ignored.
        assert_eq!(ClientMessage::decode(&deep), Ok(ClientMessage::Ping));
        let deep = format!(
            r#"{{"type":"subscribe","id":2,"channel":"a","recover":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = ClientMessage::decode(&deep).unwrap_err();
        assert_eq!((e.id, e.code), (Some(2), ErrorCode::BadRequest));
        let long = format!(r#"{{"type":"{}","id":1}}"#, "x".repeat(100_000));
        let e = ClientMessage::decode(&long).unwrap_err();
        assert_eq!((e.id, e.code), (Some(1), ErrorCode::UnknownType));
        assert!(e.message.len() < 200, "{}", e.message.len());
    }

    #[test]
    fn publish_bodies() {
        let b = decode_publish_body(
            br#"{"channel":"a","data":[1, 2],"key":"k","extra":{"x":1}}"#,
            100,
        )
        .unwrap();
        assert_eq!(
            (b.channel.as_str(), b.data.get(), b.key.as_deref()),
            ("a", "[1, 2]", Some("k"))
        );
        let b = decode_publish_body(br#"{"data":null,"channel":"a","key":null}"#, 100).unwrap();
        assert_eq!((b.data.get(), b.key), ("null", None));
        for (body, code) in [
            (&b"{\"channel\":\"a\""[..], ErrorCode::BadRequest),
            (b"[1]", ErrorCode::BadRequest),
            (b"\xff\xfe", ErrorCode::BadRequest),
            (br#"{"channel":"a"}"#, ErrorCode::BadRequest),
            (br#"{"data":1}"#, ErrorCode::BadRequest),
            (br#"{"channel":1,"data":1}"#, ErrorCode::BadRequest),
            (
                br#"{"channel":"a","data":1,"key":""}"#,
                ErrorCode::BadRequest,
            ),
            (
                br#"{"channel":"a","data":1,"data":2}"#,
                ErrorCode::BadRequest,
            ),
            (
                br#"{"channel":"a","data":"0123456789"}"#,
                ErrorCode::BadRequest,
            ),
            (br#"{"channel":"a b","data":1}"#, ErrorCode::InvalidChannel),
        ] {
            let e = decode_publish_body(body, 10).unwrap_err();
            assert_eq!(
                (e.id, e.code),
                (None, code),
                "{}: {e}",
                String::from_utf8_lossy(body)
            );
            if code == ErrorCode::BadRequest && !e.message.contains("bytes; the limit") {
                assert!(e.message.starts_with(PUBLISH_BODY_SHAPE), "{e}");
            }
        }
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
