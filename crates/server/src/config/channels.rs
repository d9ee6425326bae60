//! The `[[channels]]` rules as the file gives them. They exist only in the
//! file (a list of tables has no flag or variable), so every refusal names
//! the file and the line it is on: an unknown key (with the closest), a bad
//! pattern, a pattern given twice, a value of the wrong kind or out of
//! range, and options that need another (`join_leave` without `presence`).

use super::{duration, input, suggest, ConfigError, MAX_DURATION};
use crate::channel_rules::{check_pattern, ChannelRule};
use serde::Deserialize;
use std::{collections::BTreeMap, path::Path};
use toml::{Spanned, Table, Value};

/// The keys a rule takes, as docs/configuration.md lists them.
const RULE_KEYS: &[&str] = &[
    "pattern",
    "presence",
    "join_leave",
    "history_size",
    "history_ttl",
    "client_publish",
    "subscribe_hook",
    "publish_hook",
];

/// What a rule turns on that other settings must allow, with where it is
/// said, for [`super::load`] to check once flags and variables are read.
#[derive(Debug, Default)]
pub struct Noted {
    /// `subscribe_hook = true at FILE line N` (the first), which needs `--hook-subscribe`.
    pub subscribe_hook: Option<String>,
    /// `publish_hook = true at FILE line N` (the first), which needs `--hook-publish`.
    pub publish_hook: Option<String>,
}

/// Only `channels`, whatever it is; the rest of the file is read elsewhere.
#[derive(Deserialize)]
struct Outer {
    channels: Option<Spanned<Value>>,
}

type RawRule = BTreeMap<Spanned<String>, Spanned<Value>>;

/// `channels` once it is known to be a list of tables.
#[derive(Deserialize)]
struct Rules {
    channels: Vec<Spanned<RawRule>>,
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Refuses the first bad `[[channels]]` rule of the file's `text`; returns
/// what rules turned on that depends on other settings (known only once
/// flags and variables are read): the hooks (refused without their URL).
pub fn check(text: &str, path: &Path) -> Result<Noted, ConfigError> {
    let file = path.display();
    let invalid = |m: String| ConfigError::Invalid(m);
    let unreadable = |e: toml::de::Error| invalid(format!("{file}: channels: {}", e.message()));
    let Outer { channels } = toml::from_str(text).map_err(unreadable)?;
    let Some(channels) = channels else {
        return Ok(Noted::default());
    };
    let is_list = matches!(channels.get_ref(), Value::Array(a) if a.iter().all(Value::is_table));
    if !is_list {
        return Err(invalid(format!(
            "{file} line {}: channels must be a list of rules, each a [[channels]] table with a \
             pattern (docs/configuration.md shows them)",
            line_of(text, channels.span().start)
        )));
    }
    let Rules { channels } = toml::from_str(text).map_err(unreadable)?;
    // (pattern, line) of every rule so far, to refuse a duplicate.
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut noted = Noted::default();
    for rule in &channels {
        let mut entries: Vec<_> = rule.get_ref().iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        let mut pattern = None;
        let (mut presence, mut join_leave_at) = (false, None);
        for (key, value) in entries {
            let line = line_of(text, key.span().start);
            let (name, value) = (key.get_ref().as_str(), value.get_ref());
            if !RULE_KEYS.contains(&name) {
                let close = suggest::close_matches(name, RULE_KEYS.iter().copied(), 3);
                return Err(invalid(format!(
                    "{file} line {line}: unknown key {name} in a [[channels]] rule{}; a rule \
                     takes {}",
                    suggest::did_you_mean(&close),
                    RULE_KEYS.join(", ")
                )));
            }
            let refuse =
                |why: String| invalid(format!("{name} = {value} at {file} line {line}: {why}"));
            check_value(name, value).map_err(refuse)?;
            match (name, value) {
                ("pattern", Value::String(p)) => {
                    check_pattern(p).map_err(refuse)?;
                    if let Some((_, first)) = seen.iter().find(|(s, _)| s == p) {
                        return Err(refuse(format!(
                            "the rule at line {first} has the same pattern; one rule per pattern"
                        )));
                    }
                    pattern = Some((p.clone(), line));
                }
                ("presence", Value::Boolean(true)) => presence = true,
                ("join_leave", Value::Boolean(true)) => join_leave_at = Some(line),
                ("subscribe_hook", Value::Boolean(true)) => {
                    let at = format!("subscribe_hook = true at {file} line {line}");
                    noted.subscribe_hook.get_or_insert(at);
                }
                ("publish_hook", Value::Boolean(true)) => {
                    let at = format!("publish_hook = true at {file} line {line}");
                    noted.publish_hook.get_or_insert(at);
                }
                ("history_ttl", value) => {
                    let ttl = value.as_str().and_then(duration::parse).or_else(|| {
                        value
                            .as_integer()
                            .and_then(|s| u64::try_from(s).ok())
                            .map(std::time::Duration::from_secs)
                    });
                    if ttl.is_some_and(|ttl| ttl > MAX_DURATION) {
                        return Err(refuse(format!(
                            "must be at most {} (365 days), like history.ttl",
                            duration::format(MAX_DURATION)
                        )));
                    }
                }
                _ => {}
            }
        }
        if let (Some(line), false) = (join_leave_at, presence) {
            return Err(invalid(format!(
                "join_leave = true at {file} line {line}: needs presence = true in the same rule \
                 (a leave is sent for someone present, and a crashed node's clients are found in \
                 presence; docs/presence.md)"
            )));
        }
        match pattern {
            Some(p) => seen.push(p),
            None => {
                return Err(invalid(format!(
                    "{file} line {}: a [[channels]] rule without a pattern; add pattern = \
                     \"chat:*\" (an exact channel name, prefix* or *)",
                    line_of(text, rule.span().start)
                )))
            }
        }
    }
    Ok(noted)
}

/// Checks one key's value alone, as a rule would read it; `Err` says what
/// is accepted.
fn check_value(name: &str, value: &Value) -> Result<(), String> {
    let mut rule = Table::new();
    rule.insert("pattern".into(), Value::String("x".into()));
    rule.insert(name.into(), value.clone());
    Value::Table(rule)
        .try_into::<ChannelRule>()
        .map(|_| ())
        .map_err(|e| input::plain(e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> String {
        match check(text, Path::new("tether.toml")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn good_rules_pass() {
        let text = "[history]\nsize = 5\n\n[[channels]]\npattern = \"chat:*\"\nhistory_size = \
                    0\nhistory_ttl = \"1m\"\nclient_publish = false\npresence = false\n\n\
                    [[channels]]\npattern = \"*\"\njoin_leave = false\n";
        assert!(check(text, Path::new("t.toml")).is_ok());
        assert!(check("[history]\nsize = 5\n", Path::new("t.toml")).is_ok());
    }

    #[test]
    fn each_refusal_names_its_line() {
        let head = "[history]\nsize = 5\n\n[[channels]]\npattern = \"chat:*\"\n\n[[channels]]\n";
        for (rest, says) in [
            (
                "pattern = \"a*b\"\n",
                "pattern = \"a*b\" at tether.toml line 8: `*` may only end",
            ),
            ("pattern = \"\"\n", "line 8: the pattern is empty"),
            (
                "pattern = \"chat:*\"\n",
                "pattern = \"chat:*\" at tether.toml line 8: the rule at line 5 has the same",
            ),
            (
                "pattern = \"x\"\nhistroy_size = 3\n",
                "tether.toml line 9: unknown key histroy_size in a [[channels]] rule (did you \
                 mean history_size?)",
            ),
            (
                "pattern = \"x\"\njoin_leave = true\n",
                "join_leave = true at tether.toml line 9: needs presence = true in the same rule",
            ),
            (
                "pattern = \"x\"\nhistory_size = -1\n",
                "line 9: expected a whole number",
            ),
            (
                "pattern = \"x\"\nhistory_ttl = \"soon\"\n",
                "line 9: expected a duration",
            ),
            (
                "pattern = \"x\"\nhistory_ttl = \"800d\"\n",
                "line 9: must be at most 8760h",
            ),
            (
                "pattern = \"x\"\nclient_publish = \"no\"\n",
                "line 9: expected true or false",
            ),
            (
                "pattern = 5\n",
                "pattern = 5 at tether.toml line 8: expected text",
            ),
            (
                "history_size = 3\n",
                "tether.toml line 7: a [[channels]] rule without a pattern",
            ),
        ] {
            let err = refusal(&format!("{head}{rest}"));
            assert!(err.contains(says), "{rest}: {err}");
        }
        let err = refusal("[channels]\npattern = \"x\"\n");
        assert!(
            err.contains("line 1: channels must be a list of rules"),
            "{err}"
        );
        let err = refusal("channels = 3\n");
        assert!(err.contains("line 1: channels must be a list"), "{err}");
    }
}
