//! Signed JSON POSTs with a deadline and a node-wide bound on calls in
//! flight: a slow or dead backend costs a bounded number of waiting calls,
//! each for at most the timeout, and the next caller is refused at once
//! ([`CallError::Busy`]) rather than queued.

use super::tls::Connector;
use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use ring::hmac;
use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::sync::Semaphore;

/// Unix seconds when the request was signed.
pub const TIMESTAMP_HEADER: &str = "tether-timestamp";
/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "tether-signature";

/// The most of an answer read; a longer one is a failure.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Why a call got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Every slot for calls in flight is taken: not called.
    #[error("too many calls to the backend in flight")]
    Busy,
    #[error("the backend did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the backend could not be reached: {0}")]
    Unreachable(String),
    /// The answer (status and body) was not 2xx.
    #[error("the backend answered HTTP {0}")]
    Status(u16, Bytes),
    #[error("the backend's answer is unreadable: {0}")]
    Unreadable(String),
}

/// The client every hook and the event sender use.
#[derive(Clone)]
pub struct HookClient {
    http: Client<Connector, Full<Bytes>>,
    key: Arc<hmac::Key>,
    timeout: Duration,
    slots: Arc<Semaphore>,
    /// Why `https://` cannot be used, if it cannot.
    https_unusable: Option<Arc<str>>,
}

impl HookClient {
    pub fn new(secret: &str, timeout: Duration, concurrency: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let connector = Connector::new(connector);
        let https_unusable = connector.https_unusable().map(Arc::from);
        HookClient {
            https_unusable,
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            key: Arc::new(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())),
            timeout,
            slots: Arc::new(Semaphore::new(concurrency)),
        }
    }

    /// Why `https://` URLs cannot be called (no CA bundle), if they cannot.
    pub fn https_unusable(&self) -> Option<String> {
        self.https_unusable.as_deref().map(str::to_owned)
    }

    /// Whether a call would find a free slot now (to shed before starting
    /// work a call would follow).
    pub fn has_room(&self) -> bool {
        self.slots.available_permits() > 0
    }

    /// POSTs `body` (JSON) to `url`, signed; the 2xx answer's body.
    pub async fn post(&self, url: &Uri, body: Bytes) -> Result<Bytes, CallError> {
        let _slot = self.slots.try_acquire().map_err(|_| CallError::Busy)?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let request = Request::post(url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, sign(&self.key, timestamp, &body))
            .body(Full::new(body))
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let call = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| CallError::Unreachable(error_chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    CallError::Unreadable(if e.is::<http_body_util::LengthLimitError>() {
                        format!("longer than {MAX_ANSWER_BYTES} bytes")
                    } else {
                        format!("cut short: {e}")
                    })
                })?
                .to_bytes();
            if status.is_success() {
                Ok(body)
            } else {
                Err(CallError::Status(status.as_u16(), body))
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| CallError::Timeout(self.timeout))?
    }
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn sign(key: &hmac::Key, timestamp: u64, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut out = String::with_capacity(3 + 64);
    out.push_str("v1=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// [`sign`] with the secret as text: what a backend computes to check a
/// request (docs/hooks.md, "Signatures").
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    sign(
        &hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
        timestamp,
        body,
    )
}

/// An error and its causes on one line (hyper's top-level error says
/// little: "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // openssl dgst -sha256 -hmac secret <<< -n '1700000000.{"a":1}'
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
        assert_eq!(
            sign(&key, 1_700_000_000, br#"{"a":1}"#),
            "v1=".to_owned() + &openssl_like("secret", "1700000000.{\"a\":1}")
        );
    }

    #[test]
    fn the_example_in_the_docs_is_what_tether_sends() {
        let body = br#"{"client":"n1-1f","data":null,"method":"ping","user":"42"}"#;
        assert_eq!(
            signature("change-me", 1_765_152_000, body),
            "v1=dc5bbcbaf653e189d482aaa3ce01fa4ea9b27fe5dfe77c591a7042c1ee7d75ad"
        );
        let docs = include_str!("../../../../docs/hooks.md");
        assert!(
            docs.contains("v1=dc5bbcbaf653e189d482aaa3ce01fa4ea9b27fe5dfe77c591a7042c1ee7d75ad")
        );
        // Bodies are JSON objects with their keys in order, as shown.
        let sent =
            serde_json::json!({"user": "42", "method": "ping", "client": "n1-1f", "data": null});
        assert_eq!(sent.to_string().as_bytes(), body);
    }

    /// The same HMAC computed in one piece.
    fn openssl_like(secret: &str, message: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        hmac::sign(&key, message.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
