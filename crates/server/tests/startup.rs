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
