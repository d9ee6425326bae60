//! docs/security.md's threat table is one row per attack with the test that
//! proves its bound: every test it cites exists, every attack test (one
//! that keeps a `Bystander`) is cited, and two attacks with different
//! bounds do not share a row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod docs_support;

use docs_support::repo;

/// The rows (after each header and rule) of the tables under
/// "## Threats and their bounds", as `(line, cells)`.
fn rows() -> Vec<(usize, Vec<String>)> {
    let doc = std::fs::read_to_string(repo().join("docs/security.md")).unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    for (i, line) in doc.lines().enumerate() {
        if line.starts_with("## ") {
            inside = line == "## Threats and their bounds";
        }
        if !inside || !line.starts_with("| ") || line.starts_with("| attack |") {
            continue;
        }
        if line.starts_with("| ---") {
            continue;
        }
        let cells = line
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_owned())
            .collect();
        out.push((i + 1, cells));
    }
    assert!(out.len() > 20, "threat table not found: {out:?}");
    out
}

/// The `crates/...` paths a cell cites.
fn cited(cell: &str) -> Vec<String> {
    cell.split('`')
        .filter(|w| w.starts_with("crates/") && !w.contains(' '))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_cited_test_exists_and_every_attack_test_is_cited() {
    let rows = rows();
    let all: Vec<String> = rows
        .iter()
        .flat_map(|(_, cells)| cited(cells.last().unwrap()))
        .collect();
    for path in &all {
        assert!(
            repo().join(path).exists(),
            "security.md cites {path}, which does not exist"
        );
    }
    let tests = repo().join("crates/server/tests");
    for entry in std::fs::read_dir(&tests).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let name = format!(
            "crates/server/tests/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        if text.contains("Bystander") {
            assert!(
                all.contains(&name),
                "{name} is an attack test (it keeps a Bystander) but no row of \
                 security.md's threat table cites it"
            );
        }
    }
}

/// Issue 17 items 4 and 6: subscribing many channels on a Redis node is
/// bound by `--max-channels` on the node; filling Redis by `maxmemory`.
/// One row for both hid the first behind an attack about publishing.
#[test]
fn the_node_channel_cap_and_a_full_redis_have_rows_of_their_own() {
    let rows = rows();
    let row_citing = |test: &str| {
        rows.iter()
            .find(|(_, cells)| cited(cells.last().unwrap()).iter().any(|p| p == test))
            .unwrap_or_else(|| panic!("no row cites {test}"))
    };
    let (cap_line, cap) = row_citing("crates/server/tests/channel_cap_redis.rs");
    let (full_line, full) = row_citing("crates/server/tests/redis_maxmemory.rs");
    assert_ne!(cap_line, full_line, "one row for two attacks: {cap:?}");
    assert!(
        cap[0].contains("ubscrib") && cap[0].contains("--broker redis"),
        "line {cap_line}: its attack is subscribing many channels on a Redis node: {cap:?}"
    );
    assert!(
        cap[1].contains("--max-channels"),
        "line {cap_line}: bound by --max-channels: {cap:?}"
    );
    assert!(
        full[1].contains("maxmemory") && full[1].contains("noeviction"),
        "line {full_line}: bound by maxmemory with noeviction: {full:?}"
    );
}
