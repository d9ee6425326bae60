//! What the connect hook is shown of a new connection: its transport, the
//! client's address (as the trusted-proxy rules resolved it), its origin,
//! the cookies and headers the operator listed (`--hook-cookies`,
//! `--hook-headers`; nothing else of the request), the token if any, and
//! the `data` object the client sent in the `data` query parameter.

use super::Hooks;
use http::{header, HeaderMap};
use serde_json::{value::RawValue, Map, Value};
use std::net::IpAddr;

/// The most bytes the `data` query parameter may have, as sent
/// (URL-encoded); more is refused 400 at the handshake.
pub const MAX_DATA_BYTES: usize = 4096;

/// One connection as the connect hook sees it.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The client id its `welcome` will carry.
    pub client: String,
    /// `websocket` or `longpoll`.
    pub transport: &'static str,
    pub address: IpAddr,
    pub origin: Option<String>,
    pub cookies: Map<String, Value>,
    pub headers: Map<String, Value>,
    pub token: Option<String>,
    pub data: Option<Box<RawValue>>,
}

impl ConnectRequest {
    /// The request body (docs/hooks.md, "connect").
    pub fn body(&self) -> Value {
        serde_json::json!({
            "client": self.client,
            "transport": self.transport,
            "address": self.address.to_string(),
            "origin": self.origin,
            "cookies": self.cookies,
            "headers": self.headers,
            "token": self.token,
            "data": self.data,
        })
    }
}

impl Hooks {
    /// The connect hook's view of a request with `headers` from `address`
    /// (`client` is filled in once the session has its id).
    pub fn connect_request(
        &self,
        transport: &'static str,
        address: IpAddr,
        headers: &HeaderMap,
        token: Option<String>,
        data: Option<Box<RawValue>>,
    ) -> ConnectRequest {
        let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
        let mut cookies = Map::new();
        if !self.cookies.is_empty() {
            for pair in headers
                .get_all(header::COOKIE)
                .iter()
                .flat_map(|v| v.to_str().unwrap_or_default().split(';'))
            {
                let Some((name, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                let name = name.trim();
                if self.cookies.iter().any(|c| c == name) && !cookies.contains_key(name) {
                    cookies.insert(name.to_owned(), value.trim().into());
                }
            }
        }
        let mut shown = Map::new();
        for name in &self.headers {
            let values: Vec<String> = headers.get_all(name).iter().map(text).collect();
            if !values.is_empty() {
                shown.insert(name.as_str().to_owned(), values.join(", ").into());
            }
        }
        ConnectRequest {
            client: String::new(),
            transport,
            address,
            origin: headers.get(header::ORIGIN).map(text),
            cookies,
            headers: shown,
            token,
            data,
        }
    }
}

/// The `data` query parameter: absent, or a URL-encoded JSON object of at
/// most [`MAX_DATA_BYTES`] as sent. `Err` is the reason for a 400.
pub fn data_param(query: Option<&str>) -> Result<Option<Box<RawValue>>, String> {
    let Some(raw) = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("data="))) else {
        return Ok(None);
    };
    if raw.len() > MAX_DATA_BYTES {
        return Err(format!(
            "the `data` query parameter is {} bytes; at most {MAX_DATA_BYTES} (URL-encoded)",
            raw.len()
        ));
    }
    let text = crate::auth::percent_decode(&raw.replace('+', " "));
    if !text.trim_start().starts_with('{') {
        return Err("the `data` query parameter must be a URL-encoded JSON object".into());
    }
    RawValue::from_string(text)
        .map(Some)
        .map_err(|e| format!("the `data` query parameter is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_a_url_encoded_object_of_at_most_4_kib() {
        let got = data_param(Some("token=x&data=%7B%22room%22%3A%22a+b%22%7D")).unwrap_or_default();
        assert_eq!(
            got.map(|d| d.get().to_owned()).as_deref(),
            Some(r#"{"room":"a b"}"#)
        );
        assert!(matches!(data_param(Some("token=x")), Ok(None)));
        assert!(matches!(data_param(None), Ok(None)));
        for bad in ["data=%5B1%5D", "data=7", "data=%7Bx", "data=%7B%22a%22%3A1"] {
            assert!(data_param(Some(bad)).is_err(), "{bad}");
        }
        let long = format!("data=%7B%22a%22%3A%22{}%22%7D", "x".repeat(MAX_DATA_BYTES));
        let err = data_param(Some(&long)).err().unwrap_or_default();
        assert!(err.contains("at most 4096"), "{err}");
    }
}
