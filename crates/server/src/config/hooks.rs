//! `[hooks]`: the operator's backend, called over HTTP (docs/hooks.md) —
//! its URLs (checked at start: `http://` or `https://`, a host, a port if
//! not the scheme's), the bounds on calls, the secret that signs them, and
//! what the connect hook is shown of a request.

use super::{duration, input::Names, list, ConfigError};
use serde::{de, Deserialize, Deserializer, Serialize};
use std::time::Duration;

/// The hooks and how they are called.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// Called for every new connection before its `welcome`.
    #[serde(deserialize_with = "url", skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
    /// Called for subscribes to channels whose rule says `subscribe_hook`.
    #[serde(deserialize_with = "url", skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<String>,
    /// Called for publishes to channels whose rule says `publish_hook`.
    #[serde(deserialize_with = "url", skip_serializing_if = "Option::is_none")]
    pub publish: Option<String>,
    /// Answers clients' `rpc` requests.
    #[serde(deserialize_with = "url", skip_serializing_if = "Option::is_none")]
    pub rpc: Option<String>,
    /// Called before a session's expiry to extend it.
    #[serde(deserialize_with = "url", skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    /// How long one call may take, connecting included.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Calls in flight on the node at once, over every hook.
    pub concurrency: usize,
    /// Signs every request (HMAC-SHA256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Cookies the connect hook is shown, by name.
    #[serde(deserialize_with = "list::deserialize")]
    pub cookies: Vec<String>,
    /// Request headers the connect hook is shown, by name.
    #[serde(deserialize_with = "list::deserialize")]
    pub headers: Vec<String>,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            connect: None,
            subscribe: None,
            publish: None,
            rpc: None,
            refresh: None,
            timeout: Duration::from_secs(2),
            concurrency: 256,
            secret: None,
            cookies: Vec::new(),
            headers: Vec::new(),
        }
    }
}

/// The longest `--hook-timeout` accepted: a call holds its connection's
/// requests (not its deliveries) while it waits.
pub const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

impl HooksConfig {
    /// `(setting, url)` of every hook that is set.
    pub fn urls(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("hooks.connect", &self.connect),
            ("hooks.subscribe", &self.subscribe),
            ("hooks.publish", &self.publish),
            ("hooks.rpc", &self.rpc),
            ("hooks.refresh", &self.refresh),
        ]
        .into_iter()
        .filter_map(|(key, url)| url.as_deref().map(|u| (key, u)))
    }

    /// Checks what parses but cannot work: a hook without a secret, a
    /// timeout out of range, what the connect hook is shown without one.
    pub(super) fn validate(&self, names: &Names<'_>) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if let Some((key, _)) = self.urls().next() {
            if self.secret.as_deref().is_none_or(str::is_empty) {
                return bad(format!(
                    "{} needs {}: every hook request is signed with it, so that the backend \
                     can refuse requests that do not come from Tether (docs/hooks.md, \
                     \"Signatures\")",
                    names.name(key),
                    names.name("hooks.secret"),
                ));
            }
        }
        if self.timeout.is_zero() || self.timeout > MAX_HOOK_TIMEOUT {
            return bad(format!(
                "{}: must be above 0 and at most {}",
                names.value("hooks.timeout", duration::format(self.timeout)),
                duration::format(MAX_HOOK_TIMEOUT)
            ));
        }
        if self.concurrency == 0 {
            return bad(format!(
                "{}: must be at least 1 (0 would refuse every hook call)",
                names.value("hooks.concurrency", 0)
            ));
        }
        for (key, shown) in [
            ("hooks.cookies", &self.cookies),
            ("hooks.headers", &self.headers),
        ] {
            if !shown.is_empty() && self.connect.is_none() {
                return bad(format!(
                    "{}: that is what the connect hook is shown, and there is none: add {} \
                     or leave it out",
                    names.value(key, ""),
                    names.name("hooks.connect"),
                ));
            }
        }
        for name in &self.cookies {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return bad(format!(
                    "{}: {name:?} is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)",
                    names.value("hooks.cookies", "")
                ));
            }
        }
        for name in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return bad(format!(
                    "{}: {name:?} is not a header name",
                    names.value("hooks.headers", "")
                ));
            }
            if name.eq_ignore_ascii_case("cookie") {
                return bad(format!(
                    "{}: cookies are shown one by one, by name: list them in {}",
                    names.value("hooks.headers", ""),
                    names.name("hooks.cookies")
                ));
            }
        }
        Ok(())
    }
}

/// An RFC 7230 token character (what a cookie name is made of).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What a hook URL setting accepts, for error messages.
pub const URL_ACCEPTED: &str =
    "an http:// or https:// URL like http://127.0.0.1:9000/tether/connect";

/// Checks a hook URL: `http` or `https`, a host, a valid port, no user
/// name or password (the secret signs the request instead).
pub fn check_url(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("expected {URL_ACCEPTED}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "expected {URL_ACCEPTED}: the scheme is {other}, not http or https"
            ))
        }
        None => return Err(format!("expected {URL_ACCEPTED}: the scheme is missing")),
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("expected {URL_ACCEPTED}: the host is missing"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "expected {URL_ACCEPTED}: no user or password in the URL (requests are signed \
             with --hook-secret)"
        ));
    }
    if authority.host().is_empty() {
        return Err(format!("expected {URL_ACCEPTED}: the host is missing"));
    }
    // `http` leaves out a port it cannot read (`:99999`) rather than refuse it.
    let port_text = authority.as_str().len() > authority.host().len();
    if port_text && authority.port_u16().is_none_or(|p| p == 0) {
        return Err(format!("expected {URL_ACCEPTED}: the port is missing or 0"));
    }
    Ok(uri)
}

fn url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    check_url(&text).map_err(de::Error::custom)?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_urls() {
        for ok in [
            "http://127.0.0.1:9000/tether/connect",
            "https://backend.internal/hooks?x=1",
            "http://[::1]:80/",
            "http://backend",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("ftp://x/", "the scheme is ftp"),
            ("/connect", "the scheme is missing"),
            ("backend:9000", "expected"),
            ("http://user:pw@backend/", "no user or password"),
            ("http://backend:0/", "the port is missing or 0"),
            ("http://backend:/", "the port is missing or 0"),
            ("http://backend:99999/", "the port is missing or 0"),
        ] {
            let err = check_url(bad).err().unwrap_or_default();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
