//! A list written either as a TOML array or as a comma-separated string.

use serde::{de, Deserializer};
use std::fmt;

/// What a list setting accepts, for error messages.
pub const ACCEPTED: &str =
    "a comma-separated list like \"a, b\" (or in TOML an array like [\"a\", \"b\"])";

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(Visitor)
}

struct Visitor;

impl<'de> de::Visitor<'de> for Visitor {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ACCEPTED)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<String>, E> {
        Ok(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<toml::Value>()? {
            match item {
                toml::Value::String(s) => out.push(s),
                other => {
                    return Err(de::Error::custom(format!(
                        "expected {ACCEPTED}; {other} in the array is not text in quotes"
                    )))
                }
            }
        }
        Ok(out)
    }
}
