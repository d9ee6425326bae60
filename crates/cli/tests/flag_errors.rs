//! A bad duration or number given to `tether pub`, `doctor` or `bench` is
//! refused naming the flag, what was typed and what is accepted, without
//! the parser's own words ("expected number at 0").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tether_test_util::STEP;
use tokio::{process::Command, time::timeout};

const BIN: &str = env!("CARGO_BIN_EXE_tether");

async fn refused(args: &[&str]) -> String {
    let out = timeout(
        STEP,
        Command::new(BIN).args(args).kill_on_drop(true).output(),
    )
    .await
    .expect("refused at once")
    .expect("run tether");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

#[tokio::test]
async fn bad_flag_values_say_what_is_accepted() {
    let duration = "expected a duration like 25s, 500ms, 10m or 24h";
    for (args, says) in [
        (
            &["pub", "ws://127.0.0.1:1/ws", "c", "1", "--timeout", "soon"][..],
            format!("tether: --timeout \"soon\": {duration}"),
        ),
        (
            &["doctor", "ws://127.0.0.1:1/ws", "--idle", "a while"][..],
            format!("tether: --idle \"a while\": {duration}"),
        ),
        (
            &["doctor", "ws://127.0.0.1:1/ws", "--pings", "x"][..],
            "tether: --pings \"x\": expected a whole number, like 5".to_owned(),
        ),
    ] {
        assert_eq!(refused(args).await, says);
    }
}
