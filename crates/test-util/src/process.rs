//! The `tether` binary as a child process, for what only a real process
//! shows: signals, exit status, the ready line, file-descriptor limits.

use crate::{netns::Netns, STEP};
use std::{net::SocketAddr, path::PathBuf, process::Stdio};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    time::timeout,
};

/// Path of the built `tether` binary (next to the test executable's deps dir).
pub fn tether_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TETHER_BIN") {
        return p.into();
    }
    let mut dir = std::env::current_exe().expect("current exe");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("tether")
}

pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Runs `tether serve --listen 127.0.0.1:0 ARGS...` and waits for the ready line.
    pub async fn start(args: &[&str]) -> Self {
        Self::start_with(args, |_| {}).await
    }

    /// Like `start`, with a hook to adjust the command (env, pre_exec limits).
    pub async fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Self {
        Self::start_at("127.0.0.1:0", args, adjust).await
    }

    /// Like `start_with`, listening on `listen` (a fixed port lets a test
    /// restart the server where its clients will reconnect).
    pub async fn start_at(listen: &str, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Self {
        let bin = tether_bin();
        assert!(
            bin.exists(),
            "{} not built; run `cargo build` first",
            bin.display()
        );
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .args(["--listen", listen])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("spawn tether");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = timeout(STEP, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("tether listening on ") {
                    return addr.parse::<SocketAddr>().expect("address in ready line");
                }
            }
            panic!("tether exited before its ready line");
        })
        .await
        .expect("ready line in time");
        ServerProcess { child, addr }
    }

    /// Runs `tether serve --listen NSIP:0 ARGS...` inside `ns` (through
    /// `ip netns exec`, which execs, so the child's pid is the server's);
    /// `addr` is then the namespace's address, reachable from the test
    /// over the veth. A non-loopback listener needs `--allow-anonymous`
    /// (or auth) in `args`.
    pub async fn start_in(ns: &Netns, args: &[&str]) -> Self {
        let listen = format!("{}:0", ns.addr());
        let name = ns.name().to_owned();
        Self::start_at(&listen, args, move |cmd| {
            let std = cmd.as_std();
            let mut inside = Command::new("ip");
            inside
                .args(["netns", "exec", &name])
                .arg(std.get_program())
                .args(std.get_args())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            *cmd = inside;
        })
        .await
    }

    /// Runs the server under `sh -c 'ulimit ULIMIT && exec tether ...'`,
    /// e.g. `ulimit = "-n 256"`; stderr goes to `stderr` when given.
    pub async fn start_with_ulimit(
        args: &[&str],
        ulimit: &str,
        stderr: Option<std::fs::File>,
    ) -> Self {
        let bin = tether_bin();
        let script = format!("ulimit {ulimit} && exec \"$0\" \"$@\"");
        Self::start_with(args, move |cmd| {
            let args: Vec<String> = cmd
                .as_std()
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let mut shell = Command::new("sh");
            shell.arg("-c").arg(script).arg(&bin).args(&args);
            shell.stdout(Stdio::piped()).kill_on_drop(true);
            if let Some(file) = stderr {
                shell.stderr(file);
            }
            *cmd = shell;
        })
        .await
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }
}
