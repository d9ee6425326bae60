//! Every TOML configuration shown in the docs is one `tether serve` runs:
//! each ```toml block in README.md and docs/*.md is written to a file as it
//! stands, `--print-config` must load it and echo its settings, and a
//! server started with it (on a loopback port instead of its `listen`) must
//! come up and answer `/healthz`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod docs_support;

use docs_support::{doc_files, repo};
use std::path::PathBuf;
use tether_test_util::{http, process::ServerProcess, STEP};
use tokio::{process::Command, time::timeout};

const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// `(file, line, block)` for every ```toml block of the docs.
fn toml_blocks() -> Vec<(String, usize, String)> {
    let files: Vec<PathBuf> = doc_files().iter().map(|f| repo().join(f)).collect();
    let mut blocks = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut open: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            match &mut open {
                None if line.trim_start() == "```toml" => open = Some((i + 1, String::new())),
                Some((start, body)) if line.trim_start() == "```" => {
                    let name = file.file_name().unwrap().to_string_lossy().into_owned();
                    blocks.push((name, *start, std::mem::take(body)));
                    open = None;
                }
                Some((_, body)) => {
                    body.push_str(line);
                    body.push('\n');
                }
                None => {}
            }
        }
    }
    blocks
}

/// The `key = value` lines of a block whose value is a single scalar (what
/// `--print-config` writes back the same way).
fn scalar_settings(block: &str) -> Vec<String> {
    block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| l.contains(" = ") && !l.contains('['))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_toml_config_in_the_docs_loads_and_serves() {
    let blocks = toml_blocks();
    assert!(!blocks.is_empty(), "no ```toml block found in the docs");
    let dir = std::env::temp_dir().join(format!("tether-doc-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, line, block) in blocks {
        let at = format!("{file}:{line}");
        let path = dir.join(format!("{}-{line}.toml", file.replace('.', "_")));
        std::fs::write(&path, &block).unwrap();
        let config = path.to_str().unwrap();

        let printed = timeout(
            STEP,
            Command::new(BIN)
                .args(["serve", "--config", config, "--print-config"])
                .output(),
        )
        .await
        .expect("--print-config in time")
        .unwrap();
        let stdout = String::from_utf8_lossy(&printed.stdout);
        assert!(
            printed.status.success(),
            "{at}: --print-config refused the docs' config: {}",
            String::from_utf8_lossy(&printed.stderr)
        );
        for setting in scalar_settings(&block) {
            // Secrets are printed as `"<set>"`, never as given.
            let key = setting.split(" = ").next().unwrap_or_default();
            let setting = if key.contains("secret") || key == "api_key" {
                format!("{key} = \"<set>\"")
            } else {
                setting
            };
            assert!(
                stdout.lines().any(|l| l.trim() == setting),
                "{at}: `{setting}` is not in the effective configuration:\n{stdout}"
            );
        }

        let server = ServerProcess::start(&["--config", config]).await;
        let health = http::request(server.addr, "GET", "/healthz", &[], "").await;
        assert_eq!(health.status, 200, "{at}: {health:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
