//! Every finding id the doctor can print is explained in
//! docs/troubleshooting.md (`bad_certificate` and a dozen others were not).
//! The ids are read from the doctor's source: the second argument of
//! `Step::fail`/`Step::warn`, and the first element of the
//! `(finding, cause, fix)` tuples the explain functions return.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, path::Path};

/// The string literal at the start of `s` (after blanks), and the rest.
fn literal(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start().strip_prefix('"')?;
    let end = s.find('"')?;
    Some((&s[..end], &s[end + 1..]))
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn findings(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in src.match_indices('(') {
        let before = src[..i].chars().next_back().unwrap_or(' ');
        let after = &src[i + 1..];
        let id = if src[..i].ends_with("Step::fail") || src[..i].ends_with("Step::warn") {
            literal(after)
                .and_then(|(_, rest)| rest.trim_start().strip_prefix(','))
                .and_then(literal)
                .map(|(id, _)| id)
        } else if !(before.is_alphanumeric() || matches!(before, '_' | ':' | '!')) {
            literal(after)
                .filter(|(_, rest)| rest.trim_start().starts_with(','))
                .map(|(id, _)| id)
        } else {
            None
        };
        if let Some(id) = id.filter(|id| is_id(id)) {
            out.insert(id.to_owned());
        }
    }
    out
}

#[test]
fn every_finding_is_in_troubleshooting_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../../docs/troubleshooting.md")).unwrap();
    let mut all = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("src/doctor")).unwrap() {
        let src = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let code = src.split("#[cfg(test)]").next().unwrap_or_default();
        all.extend(findings(code));
    }
    // The scan finds the ids it should (a guard against it finding none).
    for known in [
        "connection_refused",
        "self_signed_ca",
        "bad_certificate",
        "dropped",
    ] {
        assert!(all.contains(known), "{known} not found in {all:?}");
    }
    let missing: Vec<_> = all
        .iter()
        .filter(|id| !doc.contains(&format!("`{id}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md does not explain {missing:?}"
    );
}
