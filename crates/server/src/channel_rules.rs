//! Channel rules: per-channel options (`[[channels]]` in the TOML file),
//! each chosen by the most specific pattern that matches the channel's name.
//!
//! A pattern is an exact channel name, `prefix*`, or `*`. An exact match
//! beats every prefix, a longer prefix beats a shorter one, and `*` comes
//! last. A channel no rule matches gets [`ChannelRule::default`]: what the
//! node does without rules. Rules are fixed at start; the file's line
//! numbers for refusals are added by `config::channels`.

use serde::{Deserialize, Serialize};
use std::{collections::HashMap, time::Duration};

/// The options of the channels one pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRule {
    /// An exact channel name, `prefix*`, or `*`.
    pub pattern: String,
    /// Presence and presence stats answered (docs/presence.md); refused
    /// at start with `--broker redis`, which does not hold presence yet.
    #[serde(default)]
    pub presence: bool,
    /// Subscribers receive join/leave (not built yet, as `presence`).
    #[serde(default)]
    pub join_leave: bool,
    /// Overrides `history.size` for these channels; 0 keeps no history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_size: Option<usize>,
    /// Overrides `history.ttl` for these channels.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration::option"
    )]
    pub history_ttl: Option<Duration>,
    /// Whether clients may publish here at all; still intersected with the
    /// token's `publish` claim. The backend's `POST /api/publish` is never
    /// affected.
    #[serde(default = "yes")]
    pub client_publish: bool,
    /// Subscribes by clients are decided by `--hook-subscribe`.
    #[serde(default)]
    pub subscribe_hook: bool,
    /// Publishes by clients are decided (and may be replaced) by
    /// `--hook-publish`.
    #[serde(default)]
    pub publish_hook: bool,
}

fn yes() -> bool {
    true
}

impl Default for ChannelRule {
    /// Today's behaviour: the node-wide history, publishing left to the token.
    fn default() -> Self {
        ChannelRule {
            pattern: "*".into(),
            presence: false,
            join_leave: false,
            history_size: None,
            history_ttl: None,
            client_publish: true,
            subscribe_hook: false,
            publish_hook: false,
        }
    }
}

impl ChannelRule {
    /// This rule's history size, or the node's.
    pub fn history_size_or(&self, node: usize) -> usize {
        self.history_size.unwrap_or(node)
    }

    /// This rule's history TTL, or the node's.
    pub fn history_ttl_or(&self, node: Duration) -> Duration {
        self.history_ttl.unwrap_or(node)
    }
}

/// Checks one pattern alone; `Err` says what is accepted.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    const ACCEPTED: &str = "write an exact channel name, `prefix*` (like chat:*) or `*`";
    if pattern.is_empty() {
        return Err(format!("the pattern is empty; {ACCEPTED}"));
    }
    let stem = pattern.strip_suffix('*').unwrap_or(pattern);
    if stem.contains('*') {
        return Err(format!("`*` may only end a pattern, once; {ACCEPTED}"));
    }
    if stem.is_empty() {
        return Ok(());
    }
    tether_protocol::message::validate_channel(stem).map_err(|e| format!("{e}; {ACCEPTED}"))
}

/// Every rule, indexed for lookup on the publish path.
///
/// [`ChannelRules::get`] allocates nothing: one hash lookup for exact names,
/// then the prefixes longest first, so at worst O(rules) comparisons (a
/// handful of rules is the norm).
#[derive(Debug, Default)]
pub struct ChannelRules {
    rules: Vec<ChannelRule>,
    /// Exact names → index in `rules`.
    exact: HashMap<String, usize>,
    /// `(prefix, index)`, longest prefix first.
    prefixes: Vec<(String, usize)>,
    /// The `*` rule, if any.
    any: Option<usize>,
    /// For channels no rule matches.
    fallback: ChannelRule,
}

impl ChannelRules {
    /// Indexes `rules`; refuses bad patterns and duplicates (the file's
    /// reader has refused them with their line already).
    pub fn new(rules: &[ChannelRule]) -> Result<Self, String> {
        let mut out = ChannelRules {
            rules: rules.to_vec(),
            ..ChannelRules::default()
        };
        for (i, rule) in rules.iter().enumerate() {
            let p = rule.pattern.as_str();
            check_pattern(p).map_err(|e| format!("channel rule pattern {p:?}: {e}"))?;
            if rules[..i].iter().any(|r| r.pattern == p) {
                return Err(format!(
                    "channel rule pattern {p:?} is given twice; one rule per pattern"
                ));
            }
            match p.strip_suffix('*') {
                Some("") => out.any = Some(i),
                Some(prefix) => out.prefixes.push((prefix.to_owned(), i)),
                None => {
                    out.exact.insert(p.to_owned(), i);
                }
            }
        }
        out.prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(out)
    }

    /// The rule for `channel`: exact name, else longest prefix, else `*`,
    /// else the default (today's behaviour).
    pub fn get(&self, channel: &str) -> &ChannelRule {
        let found = (!self.exact.is_empty())
            .then(|| self.exact.get(channel).copied())
            .flatten()
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(prefix, _)| channel.starts_with(prefix.as_str()))
                    .map(|&(_, i)| i)
            })
            .or(self.any);
        found.map_or(&self.fallback, |i| &self.rules[i])
    }

    /// The rules as given, in file order.
    pub fn rules(&self) -> &[ChannelRule] {
        &self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, size: usize) -> ChannelRule {
        ChannelRule {
            pattern: pattern.into(),
            history_size: Some(size),
            ..ChannelRule::default()
        }
    }

    fn size_for(rules: &ChannelRules, channel: &str) -> Option<usize> {
        rules.get(channel).history_size
    }

    #[test]
    fn the_most_specific_pattern_wins_whatever_the_order() {
        let given = [
            rule("*", 1),
            rule("chat:*", 2),
            rule("chat:vip:*", 3),
            rule("chat:vip:lobby", 4),
            rule("chat", 5),
        ];
        for order in [given.to_vec(), given.iter().rev().cloned().collect()] {
            let rules = ChannelRules::new(&order).expect("valid");
            assert_eq!(size_for(&rules, "chat:vip:lobby"), Some(4));
            assert_eq!(size_for(&rules, "chat:vip:other"), Some(3));
            assert_eq!(size_for(&rules, "chat:general"), Some(2));
            assert_eq!(size_for(&rules, "chat"), Some(5));
            assert_eq!(size_for(&rules, "chat:"), Some(2));
            assert_eq!(size_for(&rules, "news"), Some(1));
        }
    }

    #[test]
    fn no_matching_rule_is_todays_behaviour() {
        let rules = ChannelRules::new(&[rule("room:*", 7), rule("exact", 8)]).expect("valid");
        assert_eq!(rules.get("other"), &ChannelRule::default());
        assert_eq!(rules.get("room"), &ChannelRule::default());
        assert_eq!(rules.get("exactly"), &ChannelRule::default());
        assert_eq!(size_for(&rules, "room:1"), Some(7));
        let none = ChannelRules::new(&[]).expect("valid");
        assert!(none.get("x").client_publish);
        assert_eq!(none.get("x").history_size, None);
    }

    #[test]
    fn patterns_are_names_with_at_most_a_trailing_star() {
        for good in ["*", "chat:*", "room:1", "a", "user@x/y-z_.:*"] {
            assert_eq!(check_pattern(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("", "empty"),
            ("**", "only end a pattern"),
            ("*chat", "only end a pattern"),
            ("chat:*:x", "only end a pattern"),
            ("ch*t*", "only end a pattern"),
            ("chat room", "contains ' '"),
            ("chat?*", "contains '?'"),
        ] {
            let err = check_pattern(bad).expect_err(bad);
            assert!(
                err.contains(says) && err.contains("prefix*"),
                "{bad}: {err}"
            );
        }
        let long = "a".repeat(tether_protocol::message::MAX_CHANNEL_LEN + 1);
        assert!(check_pattern(&long).is_err());
    }

    #[test]
    fn duplicates_and_bad_patterns_are_refused() {
        let err = ChannelRules::new(&[rule("a:*", 1), rule("a:*", 2)]).expect_err("dup");
        assert!(err.contains("twice"), "{err}");
        let err = ChannelRules::new(&[rule("a*b", 1)]).expect_err("bad");
        assert!(err.contains("a*b"), "{err}");
    }
}
