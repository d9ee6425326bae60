//! What the user gave, and errors about it in the user's terms: every
//! refused value names what was typed, where (flag, environment variable or
//! file key), and what the setting accepts — never a serde or TOML type name.

use super::{suggest, Config, ConfigError, Key, KEYS};
use std::path::Path;
use toml::{Table, Value};

/// `TETHER_*` variables that are not settings but are read by Tether's
/// other commands or its tests: `tether sub`/`pub`'s token, and the binary
/// the test suites run.
pub const NOT_SETTINGS: &[&str] = &["TETHER_TOKEN", "TETHER_BIN"];

/// Where a value came from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    File(&'a Path),
    Env,
    Flag,
}

/// One value the user gave: its key, where it came from and what was typed.
#[derive(Debug, Clone)]
pub struct Given<'a> {
    pub key: &'static Key,
    pub origin: Origin<'a>,
    pub typed: String,
}

impl Given<'_> {
    /// `--history-ttl "soon"`, `environment variable TETHER_HISTORY_TTL="soon"`,
    /// `history.ttl = "soon" in tether.toml`.
    pub fn describe(&self) -> String {
        let key = self.key;
        match self.origin {
            Origin::Flag if key.switch => format!("--{}", key.flag),
            Origin::Flag => format!("--{} {:?}", key.flag, self.typed),
            Origin::Env => format!("environment variable {}={:?}", key.env_var(), self.typed),
            Origin::File(path) => format!(
                "{}.{} = {} in {}",
                key.section,
                key.key,
                self.typed,
                path.display()
            ),
        }
    }

    /// The error for this value: where it came from, then why.
    pub fn refused(&self, why: &str) -> ConfigError {
        ConfigError::Invalid(format!("{}: {why}", self.describe()))
    }
}

/// Checks one value alone against its setting; `Err` says what is accepted.
pub fn check(key: &Key, value: &Value) -> Result<(), String> {
    let mut section = Table::new();
    section.insert(key.key.to_owned(), value.clone());
    let mut table = Table::new();
    table.insert(key.section.to_owned(), Value::Table(section));
    Value::Table(table)
        .try_into::<Config>()
        .map(|_| ())
        .map_err(|e| plain(e.message()))
}

/// A flag's or variable's text as the value its setting takes: a TOML
/// literal when the setting takes one (`100`, `true`, `1.5`), otherwise the
/// text itself (`--node-id 5` is the name "5", not the number 5).
pub fn typed(key: &Key, raw: &str) -> Result<Value, String> {
    let scalar = parse_scalar(raw);
    match check(key, &scalar) {
        Ok(()) => Ok(scalar),
        Err(why) => {
            let text = Value::String(raw.to_owned());
            if !scalar.is_str() && check(key, &text).is_ok() {
                Ok(text)
            } else {
                Err(why)
            }
        }
    }
}

/// Reads a scalar the way a user writes it on a command line: a TOML literal
/// when it is one (`100`, `true`, `1.5`), otherwise a string (`25s`, `127.0.0.1:80`).
fn parse_scalar(raw: &str) -> Value {
    let doc = format!("v = {raw}");
    match doc.parse::<Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(v @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_))) => v,
            _ => Value::String(raw.to_owned()),
        },
        Err(_) => Value::String(raw.to_owned()),
    }
}

/// serde's words ("invalid type: string \"x\", expected usize") in the
/// user's ("expected a whole number"). Our own deserializers already speak
/// plainly and start with "expected".
pub(super) fn plain(message: &str) -> String {
    let message = message.trim();
    if message.starts_with("expected ") {
        return message.to_owned();
    }
    let expected = message.rsplit_once("expected ").map(|(_, e)| e.trim());
    match expected {
        Some("usize" | "u64") => "expected a whole number (0 or more)".into(),
        Some("u32") => format!("expected a whole number from 0 to {}", u32::MAX),
        Some("u16") => format!("expected a whole number from 0 to {}", u16::MAX),
        Some("u8") => format!("expected a whole number from 0 to {}", u8::MAX),
        Some("f64" | "f32") => "expected a number, like 100 or 0.5".into(),
        Some("a boolean" | "bool") => "expected true or false".into(),
        Some("a string") => "expected text (in a TOML file, in quotes)".into(),
        Some(variants) if message.starts_with("unknown variant") => {
            format!("expected {}", variants.replace('`', ""))
        }
        _ => "expected a value of the kind docs/configuration.md shows for this setting".into(),
    }
}

/// The sections of [`KEYS`], each once, in table order.
fn sections() -> impl Iterator<Item = &'static str> {
    let mut seen: Vec<&str> = Vec::new();
    KEYS.iter().map(|k| k.section).filter(move |s| {
        let new = !seen.contains(s);
        if new {
            seen.push(s);
        }
        new
    })
}

/// Refuses a section or key the file has and Tether does not, with the
/// closest known names.
pub fn check_file_keys(table: &Table, path: &Path) -> Result<(), ConfigError> {
    let file = path.display();
    for (section, value) in table {
        if section == "channels" {
            continue; // checked with its line numbers by `channels::check`
        }
        if !sections().any(|s| s == section) {
            let known = || sections().chain(["channels"]);
            let close = suggest::close_matches(section, known(), 3);
            return Err(ConfigError::Invalid(format!(
                "{file}: unknown section [{section}]{}; sections are {} (and [[channels]] rules)",
                suggest::did_you_mean(&close),
                sections().collect::<Vec<_>>().join(", ")
            )));
        }
        let Value::Table(keys) = value else {
            return Err(ConfigError::Invalid(format!(
                "{file}: {section} = {value} is not a section; write [{section}] on a line of \
                 its own and its keys below it"
            )));
        };
        for name in keys.keys() {
            if KEYS.iter().any(|k| k.section == section && k.key == name) {
                continue;
            }
            let dotted: Vec<String> = KEYS
                .iter()
                .map(|k| format!("{}.{}", k.section, k.key))
                .collect();
            let typed = format!("{section}.{name}");
            let mut close: Vec<&str> =
                suggest::close_matches(&typed, dotted.iter().map(String::as_str), 3);
            // The right key in the wrong section.
            for (k, d) in KEYS.iter().zip(&dotted) {
                if k.key == name && !close.contains(&d.as_str()) {
                    close.insert(0, d);
                }
            }
            return Err(ConfigError::Invalid(format!(
                "{file}: unknown key {typed}{}; docs/configuration.md lists every key",
                suggest::did_you_mean(&close)
            )));
        }
    }
    Ok(())
}

/// Refuses a `TETHER_*` environment variable that looks like a setting but
/// is none (a typo would otherwise be ignored, while the same typo in the
/// file is refused): any `TETHER_<SECTION>_…` of a known section, any
/// `TETHER_CHANNELS…` (rules live only in the file), and any name within
/// two edits of a setting's variable. Others, and
/// [`NOT_SETTINGS`], are left alone.
pub fn check_env_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), ConfigError> {
    let vars: Vec<String> = KEYS.iter().map(Key::env_var).collect();
    for name in names {
        let Some(rest) = name.strip_prefix("TETHER_") else {
            continue;
        };
        if NOT_SETTINGS.contains(&name) || vars.iter().any(|v| v == name) {
            continue;
        }
        if rest == "CHANNELS" || rest.starts_with("CHANNELS_") {
            return Err(ConfigError::Invalid(format!(
                "environment variable {name}: channel rules are read only from the TOML file, \
                 as [[channels]] tables (docs/configuration.md, \"Channel rules\"): move it \
                 there or unset it"
            )));
        }
        let in_section = sections().any(|s| {
            rest.strip_prefix(&s.to_uppercase())
                .is_some_and(|r| r.starts_with('_'))
        });
        let close = suggest::close_matches(name, vars.iter().map(String::as_str), 2);
        let wider;
        let shown = if close.is_empty() && in_section {
            wider = suggest::close_matches(name, vars.iter().map(String::as_str), 4);
            &wider
        } else {
            &close
        };
        if in_section || !close.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "environment variable {name} is not a Tether setting{}; settings are \
                 TETHER_SECTION_KEY as docs/configuration.md lists them: fix or unset it",
                suggest::did_you_mean(shown)
            )));
        }
    }
    Ok(())
}

/// How the checks on a loaded configuration ([`Config::validate`]) name a
/// setting: the way the user gave it (the last of flag, variable or file
/// key wins, as in [`super::load`]), or its flag when it was not given.
pub struct Names<'a> {
    pub given: &'a [Given<'a>],
}

impl Names<'_> {
    fn key(dotted: &str) -> Option<&'static Key> {
        KEYS.iter()
            .find(|k| dotted.split_once('.') == Some((k.section, k.key)))
    }

    fn last(&self, dotted: &str) -> Option<&Given<'_>> {
        self.given
            .iter()
            .rev()
            .find(|g| dotted.split_once('.') == Some((g.key.section, g.key.key)))
    }

    /// What was typed, where (`--history-ttl "800d"`), as the subject of a
    /// refusal; `--history-ttl (default 10m)` when it was not given.
    pub fn value(&self, dotted: &str, default: impl std::fmt::Display) -> String {
        match (self.last(dotted), Self::key(dotted)) {
            (Some(g), _) => g.describe(),
            (None, Some(k)) => format!("--{} (default {default})", k.flag),
            (None, None) => dotted.to_owned(),
        }
    }

    /// The setting's name as the user gave it (`--max-message-bytes`,
    /// `TETHER_LIMITS_MAX_MESSAGE_BYTES`, `limits.max_message_bytes`), for a
    /// refusal about another setting.
    pub fn name(&self, dotted: &str) -> String {
        match (self.last(dotted), Self::key(dotted)) {
            (Some(g), _) => match g.origin {
                Origin::Flag => format!("--{}", g.key.flag),
                Origin::Env => g.key.env_var(),
                Origin::File(_) => dotted.to_owned(),
            },
            (None, Some(k)) => format!("--{}", k.flag),
            (None, None) => dotted.to_owned(),
        }
    }
}
