//! The HTTP side of the WebSocket handshake: validating an upgrade request,
//! and refusing it with a real status and a one-line reason.
//!
//! One [`Refusal`] variant per way a handshake can be refused, each knowing
//! its HTTP status, its metric label and the sentence the client (and the log)
//! gets, so a refused client never just sees a dropped socket.

use axum::{
    body::Body,
    http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode},
};
use base64::Engine;
use std::time::Duration;

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a handshake was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Not a WebSocket upgrade (plain HTTP, missing headers, wrong method).
    NotUpgrade(String),
    /// A request the handshake cannot take as it is (a bad `data` query
    /// parameter for the connect hook).
    BadRequest(String),
    /// `Sec-WebSocket-Version` other than 13.
    BadVersion,
    /// No token, or a token that fails verification.
    Unauthorized(String),
    /// Origin not on the allow-list, or otherwise forbidden.
    Forbidden(String),
    /// The peer's handshake bucket is empty.
    RateLimited { retry_after: Duration },
    /// Connection cap, open-file limit, or draining.
    Unavailable {
        reason: &'static str,
        message: String,
        retry_after: Duration,
    },
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NotUpgrade(_) | Refusal::BadVersion | Refusal::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Refusal::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The label used in `tether_handshakes_total{outcome=...}`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Refusal::NotUpgrade(_) => "not_upgrade",
            Refusal::BadRequest(_) => "bad_request",
            Refusal::BadVersion => "bad_version",
            Refusal::Unauthorized(_) => "unauthorized",
            Refusal::Forbidden(_) => "forbidden",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::Unavailable { reason, .. } => reason,
        }
    }

    /// The one-line reason, as sent in the body and logged.
    pub fn message(&self) -> String {
        match self {
            Refusal::NotUpgrade(why) => format!("not a WebSocket upgrade request: {why}"),
            Refusal::BadRequest(why) => format!("bad request: {why}"),
            Refusal::BadVersion => {
                "unsupported Sec-WebSocket-Version; this server speaks version 13".into()
            }
            Refusal::Unauthorized(why) => format!("unauthorized: {why}"),
            Refusal::Forbidden(why) => format!("forbidden: {why}"),
            Refusal::RateLimited { retry_after } => format!(
                "too many connection attempts from your address; retry in {} s",
                retry_secs(*retry_after)
            ),
            Refusal::Unavailable {
                message,
                retry_after,
                ..
            } => {
                format!("{message}; retry in {} s", retry_secs(*retry_after))
            }
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut res = Response::new(Body::from(format!("{}\n", self.message())));
        *res.status_mut() = self.status();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match &self {
            Refusal::BadVersion => {
                headers.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            Refusal::RateLimited { retry_after } | Refusal::Unavailable { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_secs(*retry_after)),
                );
            }
            _ => {}
        }
        res
    }
}

/// `Retry-After` is whole seconds; never advise 0.
pub(crate) fn retry_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Checks that a request is a valid RFC 6455 upgrade; returns the
/// `Sec-WebSocket-Accept` value to answer with.
pub fn validate_upgrade(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, Refusal> {
    if method != Method::GET {
        return Err(Refusal::NotUpgrade(format!(
            "method is {method}, expected GET"
        )));
    }
    if !header_has_token(headers, header::UPGRADE, "websocket") {
        return Err(Refusal::NotUpgrade(
            "missing `Upgrade: websocket` (a proxy in between may be dropping it)".into(),
        ));
    }
    if !header_has_token(headers, header::CONNECTION, "upgrade") {
        return Err(Refusal::NotUpgrade(
            "missing `Connection: Upgrade` (a proxy in between may be dropping it)".into(),
        ));
    }
    match headers.get(header::SEC_WEBSOCKET_VERSION) {
        Some(v) if v.as_bytes() == b"13" => {}
        _ => return Err(Refusal::BadVersion),
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| Refusal::NotUpgrade("missing Sec-WebSocket-Key".into()))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key.as_bytes())
        .map_err(|_| Refusal::NotUpgrade("Sec-WebSocket-Key is not base64".into()))?;
    if decoded.len() != 16 {
        return Err(Refusal::NotUpgrade(
            "Sec-WebSocket-Key must encode 16 bytes".into(),
        ));
    }
    Ok(accept_key(key.as_bytes()))
}

/// `base64(sha1(key ++ GUID))`, per RFC 6455 section 4.2.2.
pub fn accept_key(key: &[u8]) -> HeaderValue {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(WS_GUID.as_bytes());
    let encoded = base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes());
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The 101 response.
pub fn switching_protocols(accept: HeaderValue, protocol: Option<HeaderValue>) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example_accept_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn plain_get_is_refused_with_a_reason() {
        let err = validate_upgrade(&Method::GET, &HeaderMap::new()).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.message().contains("Upgrade"));
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let r = Refusal::RateLimited {
            retry_after: Duration::from_millis(10),
        }
        .into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
