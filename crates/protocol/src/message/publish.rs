//! The publish checks shared by every path (WebSocket `publish`,
//! `POST /api/publish`): channel names, `data` size, idempotency keys, and
//! the `POST /api/publish` body decoder.

use super::{
    decode::{parse_fields, read},
    DecodeError, ErrorCode,
};
use serde_json::value::RawValue;

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
    let depth = nesting_depth(data.get());
    if depth > MAX_DATA_DEPTH {
        return Err((
            ErrorCode::BadRequest,
            format!(
                "`data` nests {depth} arrays/objects deep; the limit is {MAX_DATA_DEPTH} \
                 (clients' JSON parsers refuse deeper values)"
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

/// How deep `data` may nest arrays and objects: every subscriber must be
/// able to parse what it is sent, and common parsers stop at 128 (serde_json)
/// or less.
pub const MAX_DATA_DEPTH: usize = 64;

/// The deepest nesting of arrays and objects in valid JSON text (brackets
/// inside strings do not count).
fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
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

/// The body of `POST /api/publish`: `{"channel": "...", "data": <any JSON>}`
/// with an optional idempotency `key`.
#[derive(Debug, Clone)]
pub struct PublishBody {
    pub channel: String,
    pub data: Box<RawValue>,
    pub key: Option<String>,
}

/// What every body error message starts with, so the caller sees the shape.
pub(super) const PUBLISH_BODY_SHAPE: &str =
    "body must be {\"channel\": \"...\", \"data\": <any JSON>}";

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

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap_or_else(|_| unreachable!("test JSON"))
    }

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert_eq!(nesting_depth("1"), 0);
        assert_eq!(nesting_depth(r#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(nesting_depth(r#"["[[[{{{", "\"[["]"#), 1);
    }

    #[test]
    fn data_nested_past_the_limit_is_refused() {
        let at_limit = format!(
            "{}{}",
            "[".repeat(MAX_DATA_DEPTH),
            "]".repeat(MAX_DATA_DEPTH)
        );
        assert!(validate_publish("c", &raw(&at_limit), None, 1 << 20).is_ok());
        let deeper = format!("[{at_limit}]");
        let (code, message) =
            validate_publish("c", &raw(&deeper), None, 1 << 20).expect_err("one level too deep");
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(
            message.contains("65") && message.contains("64"),
            "{message}"
        );
    }
}
