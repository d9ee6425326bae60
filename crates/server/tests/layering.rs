//! Imports run one way: edge → transports → session → node, log and
//! brokers → the leaves (configuration, limits, auth, metrics, ...). Each of
//! the server's top-level modules has a layer here, and every `crate::`
//! path in its files may only name a module of the same layer or a lower
//! one. A new module needs a layer, a new import against the direction is a
//! failure that names the file and the path (CONTRIBUTING: "Keep the layout
//! easy to see").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// Top-level modules by layer, highest first.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "edge",
        &["lib", "listener", "http", "proxy_protocol", "tls"],
    ),
    ("transports", &["transport"]),
    // What the edge and the transports both use to let a request in.
    ("gate", &["gate", "body"]),
    ("session", &["session"]),
    (
        "node, logs and brokers",
        &[
            "node",
            "hub",
            "broker",
            "channel_log",
            "doorbell",
            "heartbeat",
        ],
    ),
    // Calls to the operator's backend: the node holds them, the session
    // emits events, the Redis broker keeps the events' node registry.
    ("backend calls", &["events", "hooks"]),
    (
        "leaves",
        &[
            "auth",
            "channel_rules",
            "client_addr",
            "config",
            "duration",
            "fdlimit",
            "handshake",
            "idle_pattern",
            "limits",
            "metrics",
            "refused_origins",
            "token_bucket",
        ],
    ),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/session/joining.rs`
/// → `session`, `src/node.rs` → `node`).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a file's code (tests excluded) names through
/// `crate::`: plain paths (`crate::node::Node`) and the items of grouped
/// imports (`use crate::{auth::Grant, node::Node}`).
fn named_modules(text: &str) -> BTreeSet<String> {
    // Unit tests may reach anywhere; only the module's own code counts.
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut named = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The group's items at depth 0, up to its closing brace.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[j..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        let ident: String = group[j..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        named.insert(ident);
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                named.insert(ident);
            }
        }
    }
    // `crate::self`-like or re-exported names at the crate root are not modules.
    named.retain(|m| m.chars().next().is_some_and(|c| c.is_lowercase()));
    named
}

#[test]
fn imports_run_one_way() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut against = Vec::new();
    for file in &files {
        let module = module_of(file);
        let Some(own) = layer_of(&module) else {
            panic!(
                "{}: module `{module}` has no layer in tests/layering.rs",
                file.display()
            );
        };
        let text = std::fs::read_to_string(file).unwrap();
        for named in named_modules(&text) {
            if named == module {
                continue;
            }
            let Some(theirs) = layer_of(&named) else {
                panic!(
                    "{} names crate::{named}, which has no layer in tests/layering.rs",
                    file.display()
                );
            };
            if theirs < own {
                against.push(format!(
                    "{} ({}) imports crate::{named} ({})",
                    file.strip_prefix(src()).unwrap().display(),
                    LAYERS[own].0,
                    LAYERS[theirs].0
                ));
            }
        }
    }
    assert!(
        against.is_empty(),
        "imports against the layering:\n{}",
        against.join("\n")
    );
}

#[test]
fn the_four_imports_issue_17_moved_stay_moved() {
    let read = |f: &str| std::fs::read_to_string(src().join(f)).unwrap();
    let channel_log = named_modules(&read("channel_log.rs"));
    assert!(
        !channel_log.contains("broker"),
        "the log owns what it holds"
    );
    let node = named_modules(&read("node.rs"));
    assert!(
        !node.contains("listener") && !node.contains("transport"),
        "the node holds no transport's state and owns why it cannot start: {node:?}"
    );
    let mut session = BTreeSet::new();
    let mut files = Vec::new();
    rust_files(&src().join("session"), &mut files);
    for f in files {
        session.extend(named_modules(&std::fs::read_to_string(f).unwrap()));
    }
    assert!(
        !session.contains("transport"),
        "the engine owns why a session ends: {session:?}"
    );
}

#[test]
fn the_parser_sees_grouped_and_plain_paths() {
    let text = "use crate::{\n    auth::Grant,\n    broker::{Publication, X},\n    node::Node,\n};\nfn f() { crate::hub::Hub::new(); }\n#[cfg(test)]\nmod tests { use crate::listener::X; }";
    let named: Vec<String> = named_modules(text).into_iter().collect();
    assert_eq!(named, ["auth", "broker", "hub", "node"]);
}
