//! Who a connection is and what it may do: JWT verification before the
//! upgrade (HS256 and RS256), and the channel permissions its claims grant.
//!
//! Tokens are accepted from `Authorization: Bearer`, a `token` query
//! parameter, or — because browsers cannot set headers on a WebSocket — a
//! `Sec-WebSocket-Protocol` entry of the form `bearer.<jwt>`.

use crate::config::AuthConfig;
use http::HeaderMap;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The permissions and expiry of one connection.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// The `sub` claim, when a token was presented.
    pub user: Option<String>,
    /// When the token expires; the connection is closed with 4002 then.
    pub expires_at: Option<SystemTime>,
    /// Channel patterns this connection may subscribe to; `None` = any.
    pub subscribe: Option<Vec<String>>,
    /// Channel patterns this connection may publish to; `None` = any.
    pub publish: Option<Vec<String>>,
    /// Channel patterns whose presence this connection may ask without
    /// subscribing (the `presence` claim); none by default.
    pub presence: Vec<String>,
    /// The `info` claim: a JSON object shown in presence, at most
    /// [`MAX_INFO_BYTES`].
    pub info: Option<Box<serde_json::value::RawValue>>,
    /// Channels the backend's connect hook subscribed this connection to
    /// (server-side subscriptions): held whatever `subscribe` says, and
    /// never put to the subscribe hook.
    pub channels: Vec<String>,
}

/// The largest `info` claim accepted, serialised: every presence answer
/// carries it once per client of that token.
pub const MAX_INFO_BYTES: usize = 1024;

impl Grant {
    /// Open access: used when no JWT key is configured at all.
    pub fn anonymous() -> Self {
        Grant::default()
    }

    /// Whether this is [`Grant::anonymous`]: no user, no expiry, any channel.
    pub fn is_anonymous(&self) -> bool {
        self.user.is_none()
            && self.expires_at.is_none()
            && self.subscribe.is_none()
            && self.publish.is_none()
            && self.presence.is_empty()
            && self.info.is_none()
            && self.channels.is_empty()
    }

    /// A tokenless client on a server that has JWT auth but also
    /// `--allow-anonymous`: it may subscribe anywhere, publish nowhere.
    pub fn anonymous_restricted() -> Self {
        Grant {
            publish: Some(Vec::new()),
            ..Grant::default()
        }
    }

    pub fn can_subscribe(&self, channel: &str) -> bool {
        self.is_server_channel(channel) || matches_any(self.subscribe.as_deref(), channel)
    }

    /// Whether the connect hook subscribed this connection to `channel`.
    pub fn is_server_channel(&self, channel: &str) -> bool {
        self.channels.iter().any(|c| c == channel)
    }

    pub fn can_publish(&self, channel: &str) -> bool {
        matches_any(self.publish.as_deref(), channel)
    }

    /// Whether the `presence` claim lets this connection ask `channel`'s
    /// presence without holding it.
    pub fn can_see_presence(&self, channel: &str) -> bool {
        matches_any(Some(&self.presence), channel)
    }
}

/// `None` allows everything; otherwise an entry matches exactly, `*` matches
/// all, and `prefix*` matches any channel starting with `prefix`.
fn matches_any(patterns: Option<&[String]>, channel: &str) -> bool {
    let Some(patterns) = patterns else {
        return true;
    };
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => p == channel,
    })
}

/// The claims Tether reads; others are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    /// A JSON number of seconds since the epoch (RFC 7519 NumericDate: an
    /// integer or not); kept as f64 so that no value can overflow here.
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<f64>,
    /// Channel patterns the client may subscribe to; absent = any channel.
    #[serde(default)]
    subscribe: Option<Vec<String>>,
    /// Channel patterns the client may publish to; absent = none.
    #[serde(default)]
    publish: Option<Vec<String>>,
    /// Channel patterns whose presence the client may ask; absent = none.
    #[serde(default)]
    presence: Option<Vec<String>>,
    /// Shown with the client in presence: a JSON object.
    #[serde(default)]
    info: Option<serde_json::Value>,
}

/// Why a token was refused (the text goes into the 401 body).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("a token is required (Authorization: Bearer, ?token=, or Sec-WebSocket-Protocol bearer.<jwt>)")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token algorithm {0} is not accepted; use {1}")]
    WrongAlgorithm(String, &'static str),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error(
        "the token's `info` claim is {0} bytes as JSON; at most {MAX_INFO_BYTES} are accepted"
    )]
    InfoTooLarge(usize),
    #[error("the token's `info` claim must be a JSON object")]
    InfoNotObject,
}

/// Cannot build a verifier from the configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// Verifies client tokens with the configured keys.
pub struct Verifier {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    allow_anonymous: bool,
}

impl Verifier {
    /// `None` when no JWT key is configured (open access).
    pub fn from_config(cfg: &AuthConfig) -> Result<Option<Self>, KeyError> {
        if !cfg.jwt_configured() {
            return Ok(None);
        }
        let hs256 = cfg
            .jwt_secret
            .as_ref()
            .map(|s| DecodingKey::from_secret(s.as_bytes()));
        let rs256 = match &cfg.jwt_public_key {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    KeyError(format!(
                        "cannot read --jwt-public-key {}: {e}",
                        path.display()
                    ))
                })?;
                Some(DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                    KeyError(format!(
                        "--jwt-public-key {} is not an RSA public key in PEM: {e}",
                        path.display()
                    ))
                })?)
            }
            None => None,
        };
        Ok(Some(Verifier {
            hs256,
            rs256,
            allow_anonymous: cfg.allow_anonymous,
        }))
    }

    fn accepted(&self) -> &'static str {
        match (&self.hs256, &self.rs256) {
            (Some(_), Some(_)) => "HS256 or RS256",
            (Some(_), None) => "HS256",
            _ => "RS256",
        }
    }

    /// Verifies `token` (or the lack of one) into a grant.
    pub fn verify(&self, token: Option<&str>) -> Result<Grant, AuthError> {
        let Some(token) = token else {
            return if self.allow_anonymous {
                Ok(Grant::anonymous_restricted())
            } else {
                Err(AuthError::Missing)
            };
        };
        let claims = self.claims(token, true)?;
        let now = SystemTime::now();
        let expires_at = claims.exp.map(|exp| expiry(exp, now));
        if expires_at.is_some_and(|at| at <= now) {
            return Err(AuthError::Expired);
        }
        Ok(Grant {
            user: claims.sub,
            expires_at,
            subscribe: claims.subscribe,
            publish: Some(claims.publish.unwrap_or_default()),
            presence: claims.presence.unwrap_or_default(),
            info: read_info(claims.info)?,
            channels: Vec::new(),
        })
    }

    /// The subject of a token that verifies but has expired (whose session
    /// an expired token may end: its own, nobody else's).
    pub fn expired_subject(&self, token: &str) -> Option<String> {
        self.claims(token, false).ok()?.sub
    }

    /// A token's claims, once its signature verifies with our key for its
    /// algorithm (and, with `check_exp`, it has not expired).
    fn claims(&self, token: &str, check_exp: bool) -> Result<Claims, AuthError> {
        // A JWT is base64url segments and dots. Saying so up front gives a
        // `?token=` that percent-decoded to non-UTF-8 (now U+FFFD) or to any
        // other non-ASCII text one clear reason.
        if !token.is_ascii() {
            return Err(AuthError::Malformed(
                "a token is ASCII (base64url segments separated by dots)".into(),
            ));
        }
        let header = decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        // The key is chosen by our configuration, never by the token: an
        // HS256 token is checked only against the HS256 secret, so a token
        // "signed" with the RSA public key as an HMAC secret cannot pass.
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| AuthError::WrongAlgorithm(format!("{:?}", header.alg), self.accepted()))?;
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = check_exp;
        validation.leeway = 0;
        validation.validate_aud = false;
        let data = decode::<Claims>(token, key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            jsonwebtoken::errors::ErrorKind::InvalidSignature => AuthError::BadSignature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                AuthError::WrongAlgorithm(format!("{:?}", header.alg), self.accepted())
            }
            _ => AuthError::Malformed(e.to_string()),
        })?;
        Ok(data.claims)
    }
}

/// An `info` claim (or a connect hook's `info`): absent or `null` for
/// none, else a JSON object of at most [`MAX_INFO_BYTES`].
pub fn read_info(
    info: Option<serde_json::Value>,
) -> Result<Option<Box<serde_json::value::RawValue>>, AuthError> {
    match info {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => {
            let text = v.to_string();
            if text.len() > MAX_INFO_BYTES {
                return Err(AuthError::InfoTooLarge(text.len()));
            }
            Ok(serde_json::value::RawValue::from_string(text).ok())
        }
        Some(_) => Err(AuthError::InfoNotObject),
    }
}

/// Finds a token in the request (Authorization header, `token` query
/// parameter, or a `bearer.<jwt>` subprotocol), and the subprotocol to
/// answer with.
pub fn token_from_request(
    headers: &HeaderMap,
    query: Option<&str>,
) -> (Option<String>, Option<String>) {
    let offered: Vec<String> = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .filter(|p| !p.is_empty())
        .collect();
    let proto_token = offered
        .iter()
        .find_map(|p| p.strip_prefix("bearer.").map(str::to_owned));
    // Answer with `tether` when offered; otherwise echo the token entry,
    // because a browser fails the connection if none of its offers is chosen.
    let protocol = if offered.iter().any(|p| p == "tether") {
        Some("tether".to_owned())
    } else {
        offered.iter().find(|p| p.starts_with("bearer.")).cloned()
    };
    let header_token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned());
    let query_token = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| percent_decode(v))
    });
    (header_token.or(query_token).or(proto_token), protocol)
}

/// The furthest ahead a token's expiry is taken literally. A later `exp`
/// (up to `u64::MAX` seconds, or `1e300`) means "no expiry we could ever
/// reach" and is clamped to this, so that `expires_at` is always a time that
/// `SystemTime` and `Instant` arithmetic can hold.
pub const EXPIRY_HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// When a token with `exp` (seconds since the epoch) expires, seen at `now`:
/// never later than `now + EXPIRY_HORIZON`, and `now` when already past.
pub fn expiry(exp: f64, now: SystemTime) -> SystemTime {
    let since_epoch = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let left = exp - since_epoch;
    // NaN (not producible from JSON, but cheap to rule out) counts as past.
    if left.is_nan() || left <= 0.0 {
        return now;
    }
    let left = Duration::try_from_secs_f64(left)
        .unwrap_or(EXPIRY_HORIZON)
        .min(EXPIRY_HORIZON);
    // Cannot fail for a clock within a few centuries of today; if it ever
    // did, treating the token as expired is the safe side.
    now.checked_add(left).unwrap_or(now)
}

/// `exp` as any JSON number: unsigned, negative or fractional.
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Unsigned(u64),
        Signed(i64),
        Float(f64),
    }
    Ok(Option::<Num>::deserialize(d)?.map(|n| match n {
        Num::Unsigned(u) => u as f64,
        Num::Signed(i) => i as f64,
        Num::Float(f) => f,
    }))
}

/// Enough percent-decoding for a JWT in a query string. Works on bytes, so
/// any input is fine: a `%` followed by anything but two hex digits is kept
/// as it is, and bytes that do not form UTF-8 become U+FFFD (which `verify`
/// then refuses as a malformed token).
pub fn percent_decode(s: &str) -> String {
    fn hex(b: &u8) -> Option<u8> {
        (*b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn hs_verifier() -> Verifier {
        Verifier {
            hs256: Some(DecodingKey::from_secret(b"k")),
            rs256: None,
            allow_anonymous: false,
        }
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    #[test]
    fn patterns() {
        let g = Grant {
            subscribe: Some(vec!["news".into(), "chat:*".into()]),
            publish: Some(vec![]),
            ..Grant::default()
        };
        assert!(g.can_subscribe("news"));
        assert!(g.can_subscribe("chat:room1"));
        assert!(!g.can_subscribe("newsroom"));
        assert!(!g.can_publish("news"));
        assert!(Grant::anonymous().can_publish("anything"));
    }

    #[test]
    fn hs256_claims_become_a_grant() {
        let claims = serde_json::json!({"sub": "u1", "exp": now() + 60, "subscribe": ["a*"], "publish": ["chat"]});
        let t = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap_or_default();
        let g = hs_verifier().verify(Some(&t)).unwrap_or_default();
        assert_eq!(g.user.as_deref(), Some("u1"));
        assert!(g.can_subscribe("abc") && !g.can_subscribe("b"));
        assert!(g.can_publish("chat") && !g.can_publish("other"));
    }

    #[test]
    fn refusals() {
        let v = hs_verifier();
        assert_eq!(v.verify(None).err(), Some(AuthError::Missing));
        let expired = serde_json::json!({"exp": now() - 10});
        let t = encode(
            &Header::new(Algorithm::HS256),
            &expired,
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap_or_default();
        assert_eq!(v.verify(Some(&t)).err(), Some(AuthError::Expired));
        let wrong = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({}),
            &EncodingKey::from_secret(b"x"),
        )
        .unwrap_or_default();
        assert_eq!(v.verify(Some(&wrong)).err(), Some(AuthError::BadSignature));
        // alg: none, hand-made (the library cannot produce it).
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";
        assert!(v.verify(Some(none)).is_err());
    }

    #[test]
    fn token_sources() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            "tether, bearer.abc.def.ghi"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        let (t, p) = token_from_request(&h, None);
        assert_eq!(t.as_deref(), Some("abc.def.ghi"));
        assert_eq!(p.as_deref(), Some("tether"));
        let (t, _) = token_from_request(&HeaderMap::new(), Some("x=1&token=a%2Eb"));
        assert_eq!(t.as_deref(), Some("a.b"));
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("a%2E"), "a.");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        // A multi-byte character right after `%` used to be sliced mid-char.
        assert_eq!(percent_decode("%€€"), "%€€");
        assert_eq!(percent_decode("%4€"), "%4€");
        // Percent-encoded bytes that are not UTF-8.
        assert_eq!(percent_decode("%ff%fe"), "\u{fffd}\u{fffd}");
        let v = hs_verifier();
        for q in ["token=%€€", "token=%ff%fe.a.b", "token=%C3%A9"] {
            let (t, _) = token_from_request(&HeaderMap::new(), Some(q));
            assert!(
                matches!(v.verify(t.as_deref()), Err(AuthError::Malformed(_))),
                "{q}"
            );
        }
    }

    fn sign(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap_or_default()
    }

    #[test]
    fn far_future_expiry_is_clamped_to_the_horizon() {
        let v = hs_verifier();
        for exp in [
            serde_json::json!(u64::MAX),
            serde_json::json!(1e19),
            serde_json::json!(1e300),
            serde_json::json!(now() + 100 * 365 * 24 * 3600 + 1),
        ] {
            let g = v
                .verify(Some(&sign(serde_json::json!({ "exp": exp }))))
                .unwrap_or_else(|e| panic!("exp {exp}: {e}"));
            let at = g.expires_at.unwrap_or(UNIX_EPOCH);
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            assert!(left <= EXPIRY_HORIZON, "exp {exp}");
            assert!(left > EXPIRY_HORIZON - Duration::from_secs(60), "exp {exp}");
            // What the session does with it must be representable.
            assert!(std::time::Instant::now().checked_add(left).is_some());
        }
        // Fractional and negative NumericDates are numbers too.
        let g = v.verify(Some(&sign(serde_json::json!({"exp": now() as f64 + 60.5}))));
        assert!(g.is_ok_and(|g| g.expires_at.is_some()));
        let neg = sign(serde_json::json!({"exp": -5}));
        assert_eq!(v.verify(Some(&neg)).err(), Some(AuthError::Expired));
    }
}
