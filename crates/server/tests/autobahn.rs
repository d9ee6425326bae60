//! `/echo` passes the Autobahn TestSuite cases 1–10 (run natively by the
//! `kosoku` package from PyPI, which scripts/setup installs in target/kosoku-venv) with zero FAILED.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tether_test_util::process::ServerProcess;

#[tokio::test(flavor = "multi_thread")]
async fn echo_passes_autobahn_cases_1_to_10() {
    let kosoku = kosoku().expect(
        "kosoku not found in target/kosoku-venv or on PATH: run scripts/setup (it installs \
         the pinned version in target/kosoku-venv)",
    );
    // Autobahn sends messages of up to 16 MiB; /echo accepts --max-message-bytes by default.
    // Autobahn sends messages of up to 16 MiB and thousands of frames per
    // case; /echo takes --max-message-bytes and the /ws message rate.
    let server = ServerProcess::start(&[
        "--echo-max-message-bytes",
        "16777216",
        "--messages-per-second",
        "1000000",
        "--messages-burst",
        "1000000",
    ])
    .await;
    let outdir = std::env::temp_dir().join(format!("tether-autobahn-{}", std::process::id()));
    let output = tokio::process::Command::new(kosoku)
        .args(["-p", "4", "-x", "12.*", "-x", "13.*", "-o"])
        .arg(&outdir)
        .arg(format!("{}/echo", server.addr))
        .output()
        .await
        .expect("run kosoku");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "kosoku failed");
    // Count the verdicts in the JSON reports.
    let mut ok = 0;
    let mut failed = Vec::new();
    for entry in std::fs::read_dir(&outdir).expect("reports") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("report");
            let v: serde_json::Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(_) => continue,
            };
            match v["behavior"].as_str() {
                Some("FAILED") => failed.push(path.display().to_string()),
                Some(_) => ok += 1,
                None => {}
            }
        }
    }
    let _ = std::fs::remove_dir_all(&outdir);
    assert!(ok > 240, "only {ok} cases reported");
    assert!(failed.is_empty(), "FAILED cases: {failed:?}");
}

/// The pinned kosoku that scripts/setup installs in the workspace's
/// `target/kosoku-venv` (so `cargo nextest` by hand finds it), else PATH.
fn kosoku() -> Option<std::path::PathBuf> {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/kosoku-venv/bin/kosoku");
    if venv.exists() {
        return Some(venv);
    }
    which("kosoku")
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
}
