//! A port whose packets are dropped, for real: a network namespace made by
//! the test, with an nftables rule dropping TCP to one port on its loopback.
//! The connect times out and the doctor names a firewall; a port without
//! the rule in the same namespace is refused at once, for contrast.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::process::Command;

/// A network namespace that is deleted (rules and all) on drop.
struct Netns(String);

impl Netns {
    fn create() -> Self {
        let name = format!("tdoc{}", std::process::id());
        let out = Command::new("ip").args(["netns", "add", &name]).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "`ip netns add` is not permitted here (this test needs root / CAP_NET_ADMIN): {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run `ip` (apt-get install -y iproute2): {e}"),
        }
        let ns = Netns(name);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, cmd: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(cmd)
            .output()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[tokio::test]
async fn dropped_packets_are_named_a_firewall() {
    assert!(
        Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "nft not found: run scripts/test (installs nftables), or apt-get install -y nftables"
    );
    let ns = Netns::create();
    let port = 9443u16;
    ns.exec(&["nft", "add", "table", "inet", "t"]);
    ns.exec(&[
        "nft",
        "add",
        "chain",
        "inet",
        "t",
        "input",
        "{ type filter hook input priority 0 ; }",
    ]);
    ns.exec(&[
        "nft",
        "add",
        "rule",
        "inet",
        "t",
        "input",
        "tcp",
        "dport",
        &port.to_string(),
        "drop",
    ]);
    let exec = ["ip", "netns", "exec", ns.0.as_str()];

    let url = format!("ws://127.0.0.1:{port}/ws");
    let (code, report) = doctor_in(&exec, &[&url, "--timeout", "2s"]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_step(&report, "tcp", "fail", Some("connect_timeout"));
    let s = step(&report, "tcp");
    assert!(s["cause"].as_str().unwrap().contains("firewall"), "{s}");
    assert!(s["ms"].as_f64().unwrap() >= 1900.0, "{s}");

    let url = format!("ws://127.0.0.1:{}/ws", port + 1);
    let (_, report) = doctor_in(&exec, &[&url, "--timeout", "2s"]).await;
    assert_step(&report, "tcp", "fail", Some("connection_refused"));
}
