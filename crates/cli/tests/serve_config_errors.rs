//! `tether serve` refuses bad configuration in the user's terms, before
//! binding anything: a bare port, a misspelled TETHER_* variable (ignored
//! before); and `--print-config` writes durations as the docs do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use tether_test_util::STEP;
use tokio::{process::Command, time::timeout};

const BIN: &str = env!("CARGO_BIN_EXE_tether");

async fn serve(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .kill_on_drop(true);
    timeout(STEP, cmd.output())
        .await
        .expect("tether serve refused at once instead of starting")
        .expect("run tether serve")
}

fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_bare_port_is_refused_with_the_address_to_write() {
    let err = refused(&serve(&[], &["--listen", "8097"]).await);
    assert!(
        err.contains("--listen \"8097\"") && err.contains("127.0.0.1:8097"),
        "{err}"
    );
}

#[tokio::test]
async fn a_misspelled_variable_is_refused_with_the_right_name() {
    let out = serve(
        &[("TETHER_HISTORY_TLL", "5m")],
        &["--listen", "127.0.0.1:0"],
    )
    .await;
    let err = refused(&out);
    assert!(
        err.contains("TETHER_HISTORY_TLL") && err.contains("TETHER_HISTORY_TTL"),
        "{err}"
    );
}

#[tokio::test]
async fn print_config_writes_durations_as_the_docs_do() {
    let out = serve(&[("TETHER_TOKEN", "not a setting")], &["--print-config"]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("meta_ttl = \"24h\""), "{text}");
    assert!(!text.contains("1day"), "{text}");
}

/// `tether serve --config FILE` with `text` in the file, refused: stderr.
async fn refused_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("tether-rules-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    refused(&serve(&[], &["--config", file.to_str().unwrap()]).await)
}

#[tokio::test]
async fn bad_channel_rules_are_refused_with_their_line() {
    let head = "[history]\nsize = 10\n\n[[channels]]\npattern = \"chat:*\"\n\n[[channels]]\n";
    for (name, rest, says) in [
        (
            "pattern.toml",
            "pattern = \"chat:*:x\"\n",
            "pattern = \"chat:*:x\" at {file} line 8: `*` may only end a pattern",
        ),
        (
            "duplicate.toml",
            "pattern = \"chat:*\"\n",
            "pattern = \"chat:*\" at {file} line 8: the rule at line 5 has the same pattern",
        ),
        (
            "unknown.toml",
            "pattern = \"room:*\"\nhistory_tll = \"1m\"\n",
            "{file} line 9: unknown key history_tll in a [[channels]] rule (did you mean \
             history_ttl?)",
        ),
        (
            "join_leave.toml",
            "pattern = \"room:*\"\njoin_leave = true\n",
            "join_leave = true at {file} line 9: needs presence = true in the same rule (a \
             leave is sent for someone present, and a crashed node's clients are found in \
             presence; docs/presence.md)",
        ),
    ] {
        let err = refused_file(name, &format!("{head}{rest}")).await;
        let file = std::env::temp_dir()
            .join(format!("tether-rules-err-{}", std::process::id()))
            .join(name);
        let says = says.replace("{file}", &file.display().to_string());
        assert!(err.contains(&says), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
}

/// Presence works on both brokers: with `--broker redis` a rule that turns
/// it on is accepted, and `--presence-ttl` (how long a crashed node's
/// clients stay present) is refused outside 1s to 1h (docs/presence.md).
#[tokio::test]
async fn presence_with_the_redis_broker_is_accepted_and_its_ttl_checked() {
    let text = "[[channels]]\npattern = \"chat:*\"\n\n[[channels]]\npattern = \"room:*\"\npresence = true\njoin_leave = true\n";
    let dir = std::env::temp_dir().join(format!("tether-rules-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("presence-redis.toml");
    std::fs::write(&file, text).unwrap();
    let path = file.to_str().unwrap();
    let redis = [
        "--config",
        path,
        "--broker",
        "redis",
        "--redis-url",
        "redis://127.0.0.1:1",
    ];
    let out = serve(
        &[],
        &[&redis[..], &["--print-config", "--presence-ttl", "2s"]].concat(),
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("presence = true"), "{printed}");
    assert!(printed.contains("[presence]\nttl = \"2s\""), "{printed}");
    for (ttl, says) in [
        ("500ms", "--presence-ttl \"500ms\": must be 1s to 1h"),
        ("2h", "--presence-ttl \"2h\": must be 1s to 1h"),
    ] {
        let err = refused(&serve(&[], &[&redis[..], &["--presence-ttl", ttl]].concat()).await);
        assert!(err.contains(says), "{ttl}: {err}");
    }
}
