//! The connect `data` (docs/hooks.md): a JSON object the client sends with
//! every connect for the backend's connect hook, as the `data=` query
//! parameter of the WebSocket URL, URL-encoded the way JavaScript's
//! `encodeURIComponent` does (the browser client's encoding, so both
//! clients meet the same bound), at most
//! [`MAX_CONNECT_DATA_BYTES`] (4 KiB) so encoded.

use crate::{reconnect::Ended, Error};
use std::sync::Arc;
use tether_protocol::MAX_CONNECT_DATA_BYTES;

/// The data a client sends on connect: fixed, or asked of the application
/// before every attempt.
#[derive(Clone)]
pub(crate) enum ConnectData {
    /// Already checked and encoded.
    Fixed(String),
    Each(Arc<dyn Fn() -> serde_json::Value + Send + Sync>),
}

/// `value` checked (a JSON object of at most 4 KiB encoded) and URL-encoded.
pub(crate) fn encode(value: &serde_json::Value) -> Result<String, Error> {
    if !value.is_object() {
        return Err(Error::InvalidConnectData(format!(
            "expected a JSON object, got {}",
            kind(value)
        )));
    }
    let encoded = url_encode(&value.to_string());
    if encoded.len() > MAX_CONNECT_DATA_BYTES {
        return Err(Error::InvalidConnectData(format!(
            "it is {} bytes URL-encoded; the server accepts at most {MAX_CONNECT_DATA_BYTES}",
            encoded.len()
        )));
    }
    Ok(encoded)
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Percent-encodes every byte but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`, as
/// `encodeURIComponent` does for UTF-8 text.
pub(crate) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URI of the next attempt: `uri` with `data=` added to its query when
/// there is connect data. A closure's answer that is not a usable object
/// fails this attempt (and the client retries with backoff, asking again).
pub(crate) fn target(uri: &http::Uri, data: Option<&ConnectData>) -> Result<http::Uri, Ended> {
    let encoded = match data {
        None => return Ok(uri.clone()),
        Some(ConnectData::Fixed(encoded)) => encoded.clone(),
        Some(ConnectData::Each(f)) => encode(&f()).map_err(|e| Ended::Lost {
            reason: e.to_string(),
        })?,
    };
    let path = uri.path();
    let path_and_query = match uri.query() {
        Some(q) if !q.is_empty() => format!("{path}?{q}&data={encoded}"),
        _ => format!("{path}?data={encoded}"),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().map_err(|e| Ended::Lost {
        reason: format!("cannot add the connect data to the URL: {e}"),
    })?);
    http::Uri::from_parts(parts).map_err(|e| Ended::Lost {
        reason: format!("cannot add the connect data to the URL: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_like_encode_uri_component() {
        assert_eq!(
            url_encode(r#"{"a":"b c","é":"!~*'()-_."}"#),
            "%7B%22a%22%3A%22b%20c%22%2C%22%C3%A9%22%3A%22!~*'()-_.%22%7D"
        );
    }

    #[test]
    fn only_objects_within_the_bound() {
        assert!(encode(&json!([1])).is_err());
        assert!(encode(&json!("x")).is_err());
        // {"k":"xxx…"} is 8 + n characters, 7 of them encoded as 3: 22 + n.
        let fits = json!({"k": "x".repeat(MAX_CONNECT_DATA_BYTES - 22)});
        assert_eq!(
            encode(&fits).map(|e| e.len()).ok(),
            Some(MAX_CONNECT_DATA_BYTES)
        );
        let over = json!({"k": "x".repeat(MAX_CONNECT_DATA_BYTES - 21)});
        match encode(&over) {
            Err(Error::InvalidConnectData(why)) => {
                assert!(why.contains("4097 bytes URL-encoded"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_query_gets_data() {
        let uri: http::Uri = "ws://h:1/ws".parse().unwrap_or_default();
        let data = ConnectData::Fixed("%7B%7D".into());
        let t = target(&uri, Some(&data)).map(|u| u.to_string()).ok();
        assert_eq!(t.as_deref(), Some("ws://h:1/ws?data=%7B%7D"));
        let uri: http::Uri = "ws://h:1/ws?x=1".parse().unwrap_or_default();
        let each = ConnectData::Each(Arc::new(|| json!({"n": 1})));
        let t = target(&uri, Some(&each)).map(|u| u.to_string()).ok();
        assert_eq!(t.as_deref(), Some("ws://h:1/ws?x=1&data=%7B%22n%22%3A1%7D"));
        let bad = ConnectData::Each(Arc::new(|| json!(null)));
        assert!(matches!(target(&uri, Some(&bad)), Err(Ended::Lost { .. })));
        assert_eq!(target(&uri, None).ok(), Some(uri));
    }
}
