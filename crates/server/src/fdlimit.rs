//! The open-file limit: raised to the hard limit at start, and turned into a
//! socket budget so the node refuses new handshakes (503) before `accept`
//! starts failing, instead of failing the connections it already holds.

use tracing::{info, warn};

/// File descriptors kept free for everything that is not a client socket
/// (log files, the broker, DNS, a late `accept` that must answer 503).
pub const RESERVE: usize = 32;

/// Raises the soft limit to the hard limit; returns the resulting soft limit.
pub fn raise_to_hard_limit() -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    let mut after = before;
    if before.current != before.maximum {
        let wanted = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => after = getrlimit(Resource::Nofile),
            Err(e) => warn!(error = %e, "could not raise the open-file soft limit"),
        }
    }
    let show = |v: Option<u64>| v.map_or("unlimited".to_owned(), |n| n.to_string());
    info!(
        soft_before = %show(before.current),
        soft = %show(after.current),
        hard = %show(after.maximum),
        "open-file limit"
    );
    after.current.map_or(usize::MAX / 2, |n| n as usize)
}

/// Descriptors open right now (the baseline not used by client sockets).
pub fn open_now() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(16)
}

/// How many client sockets fit under `limit`.
pub fn socket_budget(limit: usize) -> usize {
    limit.saturating_sub(open_now() + RESERVE).max(1)
}
