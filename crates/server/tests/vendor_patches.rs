//! The notes about the vendored tokio-websockets agree with its code: the
//! root Cargo.toml names each of its patches, the read-buffer pool's stated
//! bound is the one its constants give, and the upstream reports in
//! vendor/README.md carry the very code Tether runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn read(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const STREAM: &str = "vendor/tokio-websockets/src/proto/stream.rs";

/// The value of `const NAME: usize = N;` in the vendored stream.
fn constant(stream: &str, name: &str) -> usize {
    let prefix = format!("const {name}: usize = ");
    let line = stream
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{STREAM} has no {name}"));
    line.trim_end_matches(';').parse().unwrap()
}

/// The `[patch.crates-io]` section of the root Cargo.toml with the comment above it.
fn patch_section(cargo: &str) -> &str {
    let at = cargo
        .find("[patch.crates-io]")
        .expect("a [patch.crates-io]");
    let comment_start = cargo[..at].trim_end().rfind("\n\n").map_or(0, |i| i + 2);
    &cargo[comment_start..]
}

#[test]
fn cargo_toml_names_every_patch() {
    let stream = read(STREAM);
    let cargo = read("Cargo.toml");
    let section = patch_section(&cargo);
    // Each patch by what it changes, as vendor/README.md numbers them, and
    // the code that carries it next to a "Tether patch" marker.
    let patches = [
        (
            "1. a 1 KiB initial read buffer",
            "READ_BUFFER_INITIAL_CAPACITY,",
        ),
        ("2. at most one pong pending", "remove_unsent_pong();"),
        (
            "3. 1009 for a message over the limit",
            "CloseCode::MESSAGE_TOO_BIG",
        ),
        ("4. the read buffer given back", "read_buffer_pool::give("),
    ];
    for (named, code) in patches {
        assert!(
            section.contains(named),
            "Cargo.toml's [patch.crates-io] comment names patch {named:?}:\n{section}"
        );
        assert!(stream.contains(code), "{STREAM} has {code}");
    }
    let markers = stream.matches("Tether patch").count();
    assert!(markers >= patches.len(), "{markers} markers");
    let readme = read("vendor/README.md");
    assert!(readme.contains("**four changes**"));
    assert!(read("CONTRIBUTING.md").contains("carries four patches"));
}

#[test]
fn the_pools_stated_bound_is_the_codes() {
    let stream = read(STREAM);
    let keep = constant(&stream, "KEEP");
    let initial = constant(&stream, "READ_BUFFER_INITIAL_CAPACITY");
    // give() keeps only buffers whose capacity is initial..=2 * initial.
    assert!(stream.contains("buffer.capacity() > 2 * READ_BUFFER_INITIAL_CAPACITY"));
    let own_kib = keep * 2 * initial / 1024;
    let comment = format!("{keep} x\n/// 2 KiB = {own_kib} KiB");
    assert!(
        stream.contains(&comment),
        "the pool's comment states {keep} x 2 KiB = {own_kib} KiB"
    );
    assert!(
        !stream.contains("at most `KEEP` KiB"),
        "the old understated bound is gone"
    );
    // The worst case, a pooled view pinning its whole allocation: at the
    // default --max-message-bytes (64 KiB), KEEP x 4 x (64 KiB + 14).
    let worst_mib = (keep * 4 * (64 * 1024 + 14)) as f64 / (1024.0 * 1024.0);
    assert_eq!(worst_mib.round(), 16.0);
    assert!(stream.contains("about 16 MiB"));
    let readme = read("vendor/README.md");
    assert!(readme.contains(&format!("{keep} × 2 KiB = {own_kib} KiB")));
    assert!(readme.contains("about\n   16 MiB"));
}

#[test]
fn upstream_reports_carry_the_code_tether_runs() {
    let readme = read("vendor/README.md");
    let stream = read(STREAM);
    assert!(readme.contains("**nothing has been filed yet**"));
    let reports = readme.split("\n### Report ").skip(1).collect::<Vec<_>>();
    assert_eq!(reports.len(), 2, "two reports: the pong queue and the 1009");
    assert!(reports[0].contains("pong queue"));
    assert!(reports[1].contains("no 1009 close frame"));
    for report in reports {
        let diff = report
            .split("```diff\n")
            .nth(1)
            .and_then(|d| d.split("```").next())
            .expect("a report has its patch as a diff");
        assert!(report.contains("```rust\n"), "and a reproduction");
        let added: Vec<&str> = diff
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .map(|l| l[1..].trim())
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .collect();
        assert!(added.len() >= 5, "the diff adds code");
        for line in added {
            assert!(stream.contains(line), "{STREAM} runs {line:?}");
        }
    }
}
