//! At start the server raises its open-file soft limit to the hard limit and
//! logs both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tether_test_util::process::ServerProcess;

#[tokio::test]
async fn soft_limit_is_raised_to_the_hard_limit_and_logged() {
    let log = std::env::temp_dir().join(format!("tether-fdlog-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    // Lower only the soft limit; the hard one stays where it is.
    let server = ServerProcess::start_with_ulimit(&[], "-S -n 300", Some(file)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("open-file limit"))
        .expect("the limit is logged");
    assert!(line.contains("soft_before=300"), "{line}");
    let field = |name: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .map(|v| {
                v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                    .to_owned()
            })
            .unwrap_or_else(|| panic!("{name} in {line}"))
    };
    assert_eq!(field("soft"), field("hard"), "{line}");
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", server.child.id().unwrap())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums[0], nums[1], "soft == hard in /proc: {open_files}");
    let _ = std::fs::remove_file(&log);
}
