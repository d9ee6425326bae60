//! What a leak or a spin looks like from outside a server process, read
//! from `/proc/PID`: memory, open descriptors, threads and CPU time. The
//! chaos and soak tests compare these before and after, never trusting the
//! server's own word for it.

use std::time::Duration;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStats {
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// Entries in `/proc/PID/fd`.
    pub fds: usize,
    /// `Threads` of `/proc/PID/status`.
    pub threads: u64,
    /// User plus system CPU time so far.
    pub cpu: Duration,
}

/// `/proc/PID/stat` counts CPU time in clock ticks of `USER_HZ`, which the
/// kernel fixes at 100 for user space on every architecture it exports it to.
const USER_HZ: u64 = 100;

impl ProcStats {
    /// Reads process `pid` now; panics if it is gone (a crash is a failure).
    pub fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e} (did the process die?)"));
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
            .count();
        ProcStats {
            rss_kib: field("VmRSS:"),
            fds,
            threads: field("Threads:"),
            cpu: cpu_time(pid),
        }
    }
}

/// utime + stime of `pid`. The fields after the command name are counted
/// from its closing parenthesis, since the name itself may hold spaces.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e} (did the process die?)"));
    let after_name = &stat[stat.rfind(')').expect("comm in stat") + 2..];
    // After the name: state is field 3, utime field 14, stime field 15.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 1000 / USER_HZ)
}
