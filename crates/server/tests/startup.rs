//! `tether serve` start-up: the ready line, `--print-config` with the
//! documented precedence, and refusals that explain themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tether_test_util::process::{tether_bin, ServerProcess};

fn serve(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(tether_bin())
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run tether")
}

#[test]
fn print_config_shows_flags_over_env_over_file() {
    let dir = std::env::temp_dir().join(format!("tether-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tether.toml");
    std::fs::write(
        &file,
        "[heartbeat]\nping_interval = \"7s\"\npong_timeout = \"4s\"\n[history]\nsize = 5\n",
    )
    .unwrap();
    let out = serve(
        &[
            "--config",
            file.to_str().unwrap(),
            "--print-config",
            "--history-size",
            "9",
        ],
        &[
            ("TETHER_HEARTBEAT_PING_INTERVAL", "6s"),
            ("TETHER_HISTORY_SIZE", "8"),
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("ping_interval = \"6s\""),
        "env beats file:\n{text}"
    );
    assert!(
        text.contains("pong_timeout = \"4s\""),
        "file beats default:\n{text}"
    );
    assert!(text.contains("size = 9"), "flag beats env:\n{text}");
}

#[test]
fn public_address_without_auth_is_refused_with_an_explanation() {
    let out = serve(&["--listen", "0.0.0.0:0"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-anonymous"), "{err}");
}

/// Runs `tether serve ARGS`, expects it to refuse to start (exit 2), and
/// returns stderr after checking that `cause` appears in it exactly once.
fn refused_once(args: &[&str], cause: &str) -> String {
    let out = serve(args, &[]);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.matches(cause).count(), 1, "{cause:?} once in:\n{err}");
    // Log lines (the open-file limit) may come first; the refusal is one line.
    let said: Vec<_> = err.lines().filter(|l| l.starts_with("tether: ")).collect();
    assert_eq!(said.len(), 1, "one line:\n{err}");
    err
}

#[test]
fn public_address_with_half_the_auth_is_refused_once_each() {
    let err = refused_once(
        &["--listen", "0.0.0.0:0", "--jwt-secret", "s"],
        "refusing to listen",
    );
    assert!(err.contains("Add --api-key"), "{err}");
    let err = refused_once(
        &["--listen", "0.0.0.0:0", "--api-key", "k"],
        "refusing to listen",
    );
    assert!(
        err.contains("Add --jwt-secret, --jwt-public-key or --hook-connect"),
        "{err}"
    );
    // A connect hook authenticates clients like a JWT key (docs/hooks.md).
    let err = refused_once(
        &[
            "--listen",
            "0.0.0.0:0",
            "--hook-connect",
            "http://127.0.0.1:9/connect",
            "--hook-secret",
            "s",
        ],
        "refusing to listen",
    );
    assert!(
        err.contains("with a connect hook but no --api-key"),
        "{err}"
    );
}

#[test]
fn a_busy_port_says_address_in_use_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = refused_once(&["--listen", &addr], "Address already in use");
    assert_eq!(err.matches(&addr).count(), 1, "{err}");
}

#[test]
fn missing_files_and_bad_config_say_their_cause_once() {
    let missing = "No such file or directory";
    let err = refused_once(&["--config", "/nonexistent/tether.toml"], missing);
    assert!(err.contains("/nonexistent/tether.toml"), "{err}");
    let err = refused_once(
        &[
            "--listen",
            "127.0.0.1:0",
            "--jwt-public-key",
            "/nonexistent/k.pem",
        ],
        missing,
    );
    assert!(err.contains("--jwt-public-key /nonexistent/k.pem"), "{err}");
    let err = refused_once(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent/c.pem",
            "--tls-key",
            "/nonexistent/k.pem",
        ],
        missing,
    );
    assert!(err.contains("--tls-cert /nonexistent/c.pem"), "{err}");
    refused_once(&["--messages-per-second", "1e-300"], "at least 0.001");
}

#[test]
fn bad_values_are_explained() {
    let out = serve(&["--ping-interval", "soon"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--ping-interval") && err.contains("25s"),
        "{err}"
    );
    let out = serve(&["--config", "/nonexistent/tether.toml"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tether.toml"));
}

#[tokio::test]
async fn ready_line_names_the_real_address() {
    let server = ServerProcess::start(&[]).await;
    assert_ne!(server.addr.port(), 0);
    let res = tether_test_util::http::request(server.addr, "GET", "/healthz", &[], "").await;
    assert_eq!(res.status, 200);
}
