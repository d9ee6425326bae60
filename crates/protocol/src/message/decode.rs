//! Decoding of client and server frames through a flat envelope of raw
//! fields (`Fields`), so `data` stays raw JSON and a bad message still
//! yields its `id`.

use super::{
    publish::validate_channel, validate_rpc_method, ClientMessage, DecodeError, ErrorCode,
    ServerMessage, StreamPosition, MAX_KEY_LEN, PROTOCOL_VERSION,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

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
pub(super) struct Fields<'a> {
    kind: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    pub(super) channel: Option<&'a RawValue>,
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
    poll_timeout_ms: Option<&'a RawValue>,
    public_client: Option<&'a RawValue>,
    reason: Option<&'a RawValue>,
    clients: Option<&'a RawValue>,
    users: Option<&'a RawValue>,
    user: Option<&'a RawValue>,
    info: Option<&'a RawValue>,
    method: Option<&'a RawValue>,
    result: Option<&'a RawValue>,
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
    PollTimeoutMs,
    PublicClient,
    Reason,
    Clients,
    Users,
    User,
    Info,
    Method,
    Result,
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
                        Field::PollTimeoutMs => (&mut f.poll_timeout_ms, "poll_timeout_ms"),
                        Field::PublicClient => (&mut f.public_client, "public_client"),
                        Field::Reason => (&mut f.reason, "reason"),
                        Field::Clients => (&mut f.clients, "clients"),
                        Field::Users => (&mut f.users, "users"),
                        Field::User => (&mut f.user, "user"),
                        Field::Info => (&mut f.info, "info"),
                        Field::Method => (&mut f.method, "method"),
                        Field::Result => (&mut f.result, "result"),
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
pub(super) fn read<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
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

pub(super) fn parse_fields(text: &str) -> Result<Fields<'_>, DecodeError> {
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
    pub(super) fn data(&self, id: Option<u64>) -> Result<Box<RawValue>, DecodeError> {
        self.data
            .map(RawValue::to_owned)
            .ok_or_else(|| DecodeError::new(id, ErrorCode::BadRequest, "missing `data`"))
    }

    /// `method` of an `rpc`: a string of 1 to 256 bytes.
    fn method(&self, id: u64) -> Result<String, DecodeError> {
        let method = self.method.and_then(read::<String>).ok_or_else(|| {
            DecodeError::new(
                Some(id),
                ErrorCode::BadRequest,
                "`rpc` needs a string `method`",
            )
        })?;
        validate_rpc_method(&method)
            .map_err(|m| DecodeError::new(Some(id), ErrorCode::BadRequest, m))?;
        Ok(method)
    }

    /// `key`: absent or `null` for none, else a string of 1 to 256 bytes.
    pub(super) fn key(&self, id: Option<u64>) -> Result<Option<String>, DecodeError> {
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

    pub(super) fn duplicate_error(&self, id: Option<u64>) -> Result<(), DecodeError> {
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
                    "`type` must be a string: subscribe, unsubscribe, publish, presence, presence_stats, rpc or ping",
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
            "presence" => {
                let id = f.require_id(&kind)?;
                let channel = f.channel(Some(id))?;
                Ok(ClientMessage::Presence { id, channel })
            }
            "presence_stats" => {
                let id = f.require_id(&kind)?;
                let channel = f.channel(Some(id))?;
                Ok(ClientMessage::PresenceStats { id, channel })
            }
            "rpc" => {
                let id = f.require_id(&kind)?;
                let method = f.method(id)?;
                // `data` is optional: none is `null`.
                let data = match f.data {
                    Some(raw) => raw.to_owned(),
                    None => RawValue::NULL.to_owned(),
                };
                Ok(ClientMessage::Rpc { id, method, data })
            }
            other => Err(DecodeError::new(
                id,
                ErrorCode::UnknownType,
                format!(
                    "unknown type {:?}; expected subscribe, unsubscribe, publish, presence, presence_stats, rpc or ping",
                    excerpt(other, 64)
                ),
            )),
        }
    }
}

impl ServerMessage {
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
                poll_timeout_ms: optional(f.poll_timeout_ms, k, "poll_timeout_ms")?,
                public_client: optional(f.public_client, k, "public_client")?,
            },
            "subscribed" => ServerMessage::Subscribed {
                id: optional(f.id, k, "id")?,
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
                channel: f.channel.and_then(read),
            },
            "close" => ServerMessage::Close {
                code: need(f.code, k, "code")?,
                reason: optional(f.reason, k, "reason")?.unwrap_or_default(),
            },
            "presence" => ServerMessage::Presence {
                id: need(f.id, k, "id")?,
                channel: need(f.channel, k, "channel")?,
                clients: need(f.clients, k, "clients")?,
            },
            "presence_stats" => ServerMessage::PresenceStats {
                id: need(f.id, k, "id")?,
                channel: need(f.channel, k, "channel")?,
                clients: need(f.clients, k, "clients")?,
                users: need(f.users, k, "users")?,
            },
            "join" | "leave" => {
                let channel = need(f.channel, k, "channel")?;
                let client = need(f.client, k, "client")?;
                let user = optional(f.user, k, "user")?;
                let info = match f.info {
                    Some(raw) if raw.get() != "null" => Some(raw.to_owned()),
                    _ => None,
                };
                if k == "join" {
                    ServerMessage::Join {
                        channel,
                        client,
                        user,
                        info,
                    }
                } else {
                    ServerMessage::Leave {
                        channel,
                        client,
                        user,
                        info,
                    }
                }
            }
            "rpc" => ServerMessage::Rpc {
                id: need(f.id, k, "id")?,
                // An answer without `result` is a `null` result.
                result: f
                    .result
                    .map_or_else(|| RawValue::NULL.to_owned(), RawValue::to_owned),
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
