//! Reading the backend's answers (docs/hooks.md, each hook's "answer"):
//! a refusal in any of them, and the shape each hook's answer has. Fields
//! a hook does not use are ignored; a field of the wrong kind, or a value
//! out of its bounds, makes the answer unusable (`internal`, with what was
//! wrong).

use super::{Hook, HookError, Refusal};
use crate::auth::{self, Grant, MAX_INFO_BYTES};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::{SystemTime, UNIX_EPOCH};
use tether_protocol::ErrorCode;

/// A hook's usable answer.
#[derive(Debug)]
pub enum Answer {
    /// connect: who the connection is.
    Connect(Box<ConnectAnswer>),
    /// subscribe, publish: `{"allow":true}` (a publish's data kept).
    Allowed,
    /// subscribe, publish: `{"allow":false}`.
    Denied,
    /// publish: `{"allow":true,"data":D}`: D is stored instead.
    Replaced(Box<RawValue>),
    /// rpc: the `result` (`null` when absent).
    Rpc(Box<RawValue>),
    /// refresh: the session's new expiry (in the past: it ends).
    Refresh(SystemTime),
}

/// The connect hook's answer: the connection's permissions, read like a
/// token's claims, and the channels it is subscribed to on its behalf.
#[derive(Debug)]
pub struct ConnectAnswer {
    pub grant: Grant,
}

/// The longest reason passed on: a close frame's reason is at most 123
/// bytes (RFC 6455), an error's message is kept to a line.
const MAX_CLOSE_REASON: usize = 123;
const MAX_ERROR_REASON: usize = 512;

/// `{"error":{"code":N,"reason":R}}` in `body`: `None` when the answer
/// carries no `error` (or is not a JSON object: its reader says so);
/// `Some(Err)` when the error is malformed.
pub fn refusal(hook: Hook, body: &[u8]) -> Option<Result<HookError, String>> {
    #[derive(Deserialize)]
    struct Envelope {
        error: Option<serde_json::Value>,
    }
    // Objects only: serde also reads a struct from an array (`[1]`).
    if !body.trim_ascii_start().starts_with(b"{") {
        return None;
    }
    let error = serde_json::from_slice::<Envelope>(body).ok()?.error?;
    Some(read_refusal(hook, &error))
}

fn read_refusal(hook: Hook, error: &serde_json::Value) -> Result<HookError, String> {
    let code = error
        .get("code")
        .ok_or("`error` without a `code`".to_owned())?;
    let reason = match error.get("reason") {
        None | Some(serde_json::Value::Null) => format!("refused by the {} hook", hook.name()),
        Some(serde_json::Value::String(r)) => r.clone(),
        Some(_) => return Err("`error.reason` is not a string".into()),
    };
    let is_close = |n: u64| n == 1008 || (4000..=4999).contains(&n);
    let closes = matches!(hook, Hook::Connect | Hook::Refresh);
    let code = match (code.as_u64(), code.as_str()) {
        (Some(n), _) if is_close(n) && closes => Refusal::Close(n as u16),
        (Some(n), _) if is_close(n) => Refusal::Error(ErrorCode::Forbidden),
        (Some(n), _) => {
            return Err(format!(
                "`error.code` {n} is not a close code a backend may use (1008 or 4000-4999)"
            ))
        }
        (None, Some(name)) if !closes => match serde_json::from_value(code.clone()) {
            Ok(ErrorCode::Unknown) | Err(_) => {
                return Err(format!(
                    "`error.code` {name:?} is not a Tether error code (docs/protocol.md)"
                ))
            }
            Ok(known) => Refusal::Error(known),
        },
        _ if closes => {
            return Err(format!(
                "the {} hook's `error.code` must be a close code (1008 or 4000-4999), not {code}",
                hook.name()
            ))
        }
        _ => {
            return Err(format!(
                "`error.code` {code} is neither an error code nor a number"
            ))
        }
    };
    let max = match code {
        Refusal::Close(_) => MAX_CLOSE_REASON,
        Refusal::Error(_) => MAX_ERROR_REASON,
    };
    Ok(HookError::Refused {
        code,
        reason: truncate(reason, max),
    })
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err("not a JSON object".into());
    }
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// `{"allow": bool}`.
pub fn subscribe(body: &[u8]) -> Result<Answer, String> {
    #[derive(Deserialize)]
    struct Body {
        allow: Option<bool>,
    }
    match parse::<Body>(body)?.allow {
        Some(true) => Ok(Answer::Allowed),
        Some(false) => Ok(Answer::Denied),
        None => Err("no `allow` (true or false)".into()),
    }
}

/// `{"allow": bool, "data": any}`.
pub fn publish(body: &[u8]) -> Result<Answer, String> {
    #[derive(Deserialize)]
    struct Body {
        allow: Option<bool>,
        data: Option<Box<RawValue>>,
    }
    let answer: Body = parse(body)?;
    match (answer.allow, answer.data) {
        (Some(true), Some(data)) => Ok(Answer::Replaced(data)),
        (Some(true), None) => Ok(Answer::Allowed),
        (Some(false), _) => Ok(Answer::Denied),
        (None, _) => Err("no `allow` (true or false)".into()),
    }
}

/// `{"result": any}`.
pub fn rpc(body: &[u8]) -> Result<Answer, String> {
    #[derive(Deserialize)]
    struct Body {
        result: Option<Box<RawValue>>,
    }
    let result = parse::<Body>(body)?.result;
    let null = || RawValue::from_string("null".into()).map_err(|e| e.to_string());
    Ok(Answer::Rpc(match result {
        Some(r) => r,
        None => null()?,
    }))
}

/// `{"expire_at": unix seconds}`.
pub fn refresh(body: &[u8]) -> Result<Answer, String> {
    #[derive(Deserialize)]
    struct Body {
        expire_at: Option<f64>,
    }
    let at = parse::<Body>(body)?
        .expire_at
        .ok_or("no `expire_at` (unix seconds)")?;
    Ok(Answer::Refresh(auth::expiry(at, SystemTime::now())))
}

/// The longest `user` a connect answer may give.
pub const MAX_USER_BYTES: usize = 256;

/// `{"user":..,"info":{..},"expire_at":..,"channels":[..],"subscribe":[..],
/// "publish":[..],"presence":[..]}`, every field optional.
pub fn connect(body: &[u8], max_channels: usize) -> Result<Answer, String> {
    #[derive(Deserialize)]
    struct Body {
        user: Option<String>,
        info: Option<serde_json::Value>,
        expire_at: Option<f64>,
        channels: Option<Vec<String>>,
        subscribe: Option<Vec<String>>,
        publish: Option<Vec<String>>,
        presence: Option<Vec<String>>,
    }
    let answer: Body = parse(body)?;
    // It is copied into every event, presence entry and join/leave.
    if let Some(user) = answer.user.as_deref().filter(|u| u.len() > MAX_USER_BYTES) {
        return Err(format!(
            "`user` is {} bytes; at most {MAX_USER_BYTES}",
            user.len()
        ));
    }
    let now = SystemTime::now();
    let expires_at = answer.expire_at.map(|at| auth::expiry(at, now));
    if expires_at.is_some_and(|at| at <= now) {
        return Err("`expire_at` is not in the future".into());
    }
    let info = auth::read_info(answer.info).map_err(|e| match e {
        auth::AuthError::InfoTooLarge(n) => {
            format!("`info` is {n} bytes as JSON; at most {MAX_INFO_BYTES}")
        }
        _ => "`info` must be a JSON object".into(),
    })?;
    let channels = answer.channels.unwrap_or_default();
    if channels.len() > max_channels {
        return Err(format!(
            "`channels` names {} channels; a connection holds at most {max_channels} \
             (--max-subscriptions)",
            channels.len()
        ));
    }
    for channel in &channels {
        tether_protocol::message::validate_channel(channel)
            .map_err(|e| format!("`channels`: {e}"))?;
    }
    Ok(Answer::Connect(Box::new(ConnectAnswer {
        grant: Grant {
            user: answer.user,
            expires_at,
            subscribe: answer.subscribe,
            publish: Some(answer.publish.unwrap_or_default()),
            presence: answer.presence.unwrap_or_default(),
            info,
            channels,
        },
    })))
}

/// Seconds since the epoch (0 before it).
pub fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(hook: Hook, body: &str) -> Result<HookError, String> {
        refusal(hook, body.as_bytes()).unwrap_or_else(|| Err("no error".into()))
    }

    #[test]
    fn refusals_carry_close_codes_for_connect_and_error_codes_for_the_rest() {
        let close = refused(Hook::Connect, r#"{"error":{"code":4403,"reason":"no"}}"#);
        assert_eq!(
            close,
            Ok(HookError::Refused {
                code: Refusal::Close(4403),
                reason: "no".into()
            })
        );
        for (hook, body) in [
            (Hook::Connect, r#"{"error":{"code":1011}}"#),
            (Hook::Connect, r#"{"error":{"code":"forbidden"}}"#),
            (Hook::Refresh, r#"{"error":{"code":3999}}"#),
            (Hook::Rpc, r#"{"error":{"code":"nope"}}"#),
            (Hook::Rpc, r#"{"error":{"code":200}}"#),
            (Hook::Rpc, r#"{"error":{"reason":"x"}}"#),
            (Hook::Rpc, r#"{"error":{"code":"forbidden","reason":7}}"#),
        ] {
            assert!(refused(hook, body).is_err(), "{body}");
        }
        let as_forbidden = refused(Hook::Publish, r#"{"error":{"code":4001}}"#);
        assert!(matches!(
            as_forbidden,
            Ok(HookError::Refused {
                code: Refusal::Error(ErrorCode::Forbidden),
                ..
            })
        ));
        let long = format!(
            r#"{{"error":{{"code":4001,"reason":"{}"}}}}"#,
            "é".repeat(100)
        );
        let Ok(HookError::Refused { reason, .. }) = refused(Hook::Connect, &long) else {
            panic!("not a refusal");
        };
        assert!(reason.len() <= 123 && reason.starts_with('é'), "{reason}");
        assert!(refusal(Hook::Rpc, b"[1]").is_none());
        assert!(refusal(Hook::Rpc, br#"{"result":1}"#).is_none());
    }

    #[test]
    fn a_connect_answer_is_read_like_claims_within_bounds() {
        let Ok(Answer::Connect(a)) = connect(br#"{}"#, 4) else {
            panic!("{{}} is a valid answer");
        };
        assert!(a.grant.user.is_none() && a.grant.can_subscribe("any"));
        assert!(!a.grant.can_publish("any"), "publish: none when absent");
        let Ok(Answer::Connect(a)) = connect(
            br#"{"user":"u","channels":["user:u"],"subscribe":[],"publish":["chat:*"],"info":{"n":1}}"#,
            4,
        ) else {
            panic!("valid");
        };
        assert!(a.grant.can_subscribe("user:u") && !a.grant.can_subscribe("other"));
        assert!(a.grant.can_publish("chat:1"));
        assert_eq!(a.grant.info.as_ref().map(|i| i.get()), Some(r#"{"n":1}"#));
        for (body, says) in [
            (
                r#"{"channels":["a","b","c","d","e"]}"#.to_owned(),
                "at most 4",
            ),
            (r#"{"channels":["a b"]}"#.to_owned(), "`channels`"),
            (r#"{"info":[1]}"#.to_owned(), "`info` must be a JSON object"),
            (
                format!(r#"{{"info":{{"x":"{}"}}}}"#, "x".repeat(1100)),
                "at most 1024",
            ),
            (r#"{"expire_at":1}"#.to_owned(), "not in the future"),
            (r#"{"user":7}"#.to_owned(), "invalid type"),
            (
                format!(r#"{{"user":"{}"}}"#, "u".repeat(257)),
                "`user` is 257 bytes; at most 256",
            ),
            ("[]".to_owned(), "not a JSON object"),
        ] {
            let err = connect(body.as_bytes(), 4).err().unwrap_or_default();
            assert!(err.contains(says), "{body}: {err}");
        }
    }

    #[test]
    fn subscribe_publish_rpc_and_refresh_answers() {
        assert!(matches!(
            subscribe(br#"{"allow":true}"#),
            Ok(Answer::Allowed)
        ));
        assert!(matches!(
            subscribe(br#"{"allow":false}"#),
            Ok(Answer::Denied)
        ));
        assert!(subscribe(br#"{}"#).is_err());
        assert!(matches!(publish(br#"{"allow":true}"#), Ok(Answer::Allowed)));
        let Ok(Answer::Replaced(d)) = publish(br#"{"allow":true,"data":[1, 2]}"#) else {
            panic!("replaced");
        };
        assert_eq!(d.get(), "[1, 2]");
        let Ok(Answer::Rpc(r)) = rpc(br#"{}"#) else {
            panic!("rpc");
        };
        assert_eq!(r.get(), "null");
        assert!(refresh(br#"{}"#).is_err());
        assert!(matches!(
            refresh(br#"{"expire_at":4102444800}"#),
            Ok(Answer::Refresh(_))
        ));
    }
}
