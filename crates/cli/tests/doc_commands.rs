//! Every `tether serve` command line the docs show is one tether accepts.
//!
//! Each fenced code block of README.md and docs/*.md is read; a line (with
//! its `\` continuations) is a command when, after an optional `$ ` prompt
//! and `NAME=value` environment words (and a `taskset -c CPU`), it runs
//! `tether serve` (or a path ending in `/tether`, or `scripts/serve`, which
//! is `tether serve`). A `# comment` and a trailing `&` are dropped. It runs
//! with `--print-config` appended and must exit 0. `--print-config` binds
//! nothing, so `--listen` stays as written and the refusal of a public
//! address without auth is part of the check. Placeholders, the documented rule (CONTRIBUTING.md,
//! "Commands in the docs are run"): a value `...`, `$NAME` or `"$NAME"` is
//! replaced by `doc-placeholder`.
//!
//! Commands another test runs, or that cannot run as written, are skipped
//! only through `SKIP`, each with its reason; a stale entry fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod docs_support;

use docs_support::{doc_files, repo};
use tether_test_util::STEP;
use tokio::{process::Command, time::timeout};

const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// What a `$NAME` or `...` value becomes.
const PLACEHOLDER: &str = "doc-placeholder";

const ERROR_LINES: &str = "an example of a refusal: compared with what tether prints by \
                           config::tests::documented_error_lines_are_what_tether_prints";

/// `(file, command as joined, why it is not run here)`.
const SKIP: &[(&str, &str, &str)] = &[
    (
        "docs/configuration.md",
        "tether serve --listen 8097",
        ERROR_LINES,
    ),
    (
        "docs/configuration.md",
        "tether serve --listen example.com:8080",
        ERROR_LINES,
    ),
    (
        "docs/configuration.md",
        "tether serve --history-ttl soon",
        ERROR_LINES,
    ),
    (
        "docs/configuration.md",
        "tether serve --history-size many",
        ERROR_LINES,
    ),
    (
        "docs/configuration.md",
        "tether serve --history-ttl 800d",
        ERROR_LINES,
    ),
    (
        "docs/configuration.md",
        "TETHER_HEARTBEAT_PING_INTERVAL=soon tether serve",
        ERROR_LINES,
    ),
    (
        "docs/configuration.md",
        "TETHER_HISTORY_TLL=5m tether serve",
        ERROR_LINES,
    ),
    (
        "docs/configuration.md",
        "TETHER_CHANNELS_PATTERN=chat:* tether serve",
        ERROR_LINES,
    ),
    (
        "docs/configuration.md",
        "TETHER_LIMITS_MAX_SUBSCRIPTIONS_TOTAL=0 tether serve",
        ERROR_LINES,
    ),
    (
        "docs/configuration.md",
        "tether serve --max-message-bytes 2000000",
        ERROR_LINES,
    ),
    (
        "docs/benchmarks.md",
        "taskset -c 0 target/release/tether serve --listen 127.0.0.1:8080 ...limits above...",
        "stands for the bench-limits command just above it, which is run",
    ),
];

/// One command found in the docs.
#[derive(Debug)]
struct DocCommand {
    /// `docs/scaling.md:8`
    at: String,
    file: String,
    /// The command as written, continuations joined, prompt and comment dropped.
    text: String,
    env: Vec<(String, String)>,
    /// The arguments after `serve`.
    args: Vec<String>,
}

/// Splits a command line into words; double and single quotes group.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => out.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    out
}

/// A parsed command: its text, its environment words, its arguments after `serve`.
type Parsed = (String, Vec<(String, String)>, Vec<String>);

/// The command a code line runs, if it is a `tether serve`.
fn parse(line: &str) -> Option<Parsed> {
    let line = line.trim();
    let line = line.strip_prefix("$ ").unwrap_or(line);
    let line = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    let line = line.trim().trim_end_matches('&').trim();
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut ws = words(&line).into_iter().peekable();
    let mut env = Vec::new();
    while let Some(w) = ws.next_if(|w| w.contains('=') && !w.starts_with('-')) {
        let (k, v) = w.split_once('=').unwrap_or_default();
        env.push((k.to_owned(), v.to_owned()));
    }
    let mut program = ws.next()?;
    if program == "taskset" {
        // `taskset -c CPU tether serve ...`: the pinning is the shell's.
        ws.next_if_eq("-c")?;
        ws.next()?;
        program = ws.next()?;
    }
    if program == "scripts/serve" {
    } else if program == "tether" || program.ends_with("/tether") {
        if ws.next()? != "serve" {
            return None;
        }
    } else {
        return None;
    }
    Some((line, env, ws.collect()))
}

/// Every `tether serve` command in the fenced blocks of README.md and docs/*.md.
fn doc_commands() -> Vec<DocCommand> {
    let files = doc_files();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(repo().join(&file)).unwrap();
        let mut in_block = false;
        let mut pending: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_block = !in_block;
                continue;
            }
            if !in_block {
                continue;
            }
            let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
            match line.trim_end().strip_suffix('\\') {
                Some(head) => {
                    joined.push_str(head);
                    joined.push(' ');
                    pending = Some((start, joined));
                }
                None => {
                    joined.push_str(line);
                    if let Some((text, env, args)) = parse(&joined) {
                        out.push(DocCommand {
                            at: format!("{file}:{start}"),
                            file: file.clone(),
                            text,
                            env,
                            args,
                        });
                    }
                }
            }
        }
    }
    out
}

fn substituted(value: &str) -> String {
    if value == "..." || value.starts_with('$') {
        PLACEHOLDER.to_owned()
    } else {
        value.to_owned()
    }
}

fn skip_reason(c: &DocCommand) -> Option<&'static str> {
    SKIP.iter()
        .find(|(file, text, _)| *file == c.file && *text == c.text)
        .map(|(_, _, why)| *why)
}

#[tokio::test]
async fn every_tether_serve_command_in_the_docs_is_accepted() {
    let commands = doc_commands();
    for page in [
        "README.md",
        "docs/scaling.md",
        "docs/benchmarks.md",
        "docs/deployment.md",
    ] {
        assert!(
            commands.iter().any(|c| c.file == page),
            "no `tether serve` command found in {page}: {commands:#?}"
        );
    }
    for (file, text, _) in SKIP {
        assert!(
            commands.iter().any(|c| c.file == *file && c.text == *text),
            "SKIP names `{text}` in {file}, which the docs no longer show: drop the entry"
        );
    }
    let mut failed = Vec::new();
    for c in commands.iter().filter(|c| skip_reason(c).is_none()) {
        let args: Vec<String> = c.args.iter().map(|a| substituted(a)).collect();
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .arg("serve")
            .args(&args)
            .arg("--print-config");
        for (k, v) in &c.env {
            cmd.env(k, substituted(v));
        }
        let out = timeout(STEP, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{}: --print-config did not exit in time", c.at))
            .unwrap();
        if !out.status.success() {
            failed.push(format!(
                "{}: `{}` was refused ({}): {}",
                c.at,
                c.text,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// A page that asks for `--trusted-proxies` shows it in its commands that
/// listen beyond loopback: a reader copies the command, not the sentence.
#[test]
fn public_commands_on_a_page_about_proxies_trust_the_proxy() {
    let mut missing = Vec::new();
    for c in doc_commands()
        .into_iter()
        .filter(|c| skip_reason(c).is_none())
    {
        let page = std::fs::read_to_string(repo().join(&c.file)).unwrap();
        let listen = c
            .args
            .iter()
            .position(|a| a == "--listen")
            .and_then(|i| c.args.get(i + 1));
        let public = listen.is_some_and(|l| !l.starts_with("127.") && !l.starts_with("[::1]"));
        if public
            && page.contains("--trusted-proxies")
            && !c.args.iter().any(|a| a == "--trusted-proxies")
        {
            missing.push(format!("{}: `{}`", c.at, c.text));
        }
    }
    assert!(
        missing.is_empty(),
        "these pages ask for --trusted-proxies but their command leaves it out:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_command_parser_reads_what_the_docs_write() {
    let (text, env, args) = parse("$ TETHER_X=1 tether serve --a \"$SECRET\" # why").unwrap();
    assert_eq!(text, "TETHER_X=1 tether serve --a \"$SECRET\"");
    assert_eq!(env, vec![("TETHER_X".to_owned(), "1".to_owned())]);
    assert_eq!(args, vec!["--a", "$SECRET"]);
    let (_, _, args) = parse("scripts/serve &   # prints: tether listening").unwrap();
    assert!(args.is_empty());
    assert!(parse("tether doctor ws://127.0.0.1:8080/ws").is_none());
    assert!(parse("cargo build --release -p tether").is_none());
    let (_, _, args) = parse("taskset -c 0 target/release/tether serve --listen x &").unwrap();
    assert_eq!(args, vec!["--listen", "x"]);
}
