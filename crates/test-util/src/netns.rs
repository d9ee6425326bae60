//! A network namespace per test, for faults that must happen in the kernel:
//! a link that goes down without a FIN or RST, a firewall that swallows
//! packets, a slow line. The proxy (`proxy.rs`) fakes latency in user
//! space; this is the real thing.
//!
//! Each [`Netns`] is joined to the root namespace by a veth pair with its
//! own /30 from 10.200.0.0/16: the root side is `host_addr()`, the
//! namespace side `addr()`. Clients in the test process reach a server
//! started inside it (`process::ServerProcess::start_in`) at `addr()`.
//! Dropping it deletes the namespace and the root-side veth, panicking
//! test or not; a test process killed before its drop ran leaves them
//! behind, so creating one first deletes those of dead processes.
//!
//! Needs root (and `ip`, `nft`, `tc`: `scripts/setup` installs them).

use std::{
    net::Ipv4Addr,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

/// Tells apart the namespaces of one test process.
static CREATED: AtomicU32 = AtomicU32::new(0);

/// Namespaces are named `tether-<pid>-<n>`, so the pid says whose they are.
const PREFIX: &str = "tether-";

/// The veth's name inside the namespace (it has its own name space).
const NS_IF: &str = "tether0";

/// The nftables table `drop_port` fills; deleting it clears every drop.
const TABLE: &str = "tether_chaos";

/// /30 blocks in 10.200.0.0/16.
const BLOCKS: u32 = 1 << 14;

/// A network namespace with a veth to the root namespace.
pub struct Netns {
    name: String,
    host_if: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
}

impl Netns {
    /// Creates the namespace, its veth pair and addresses, with `lo` and
    /// both ends up. Panics (with what to do) when not root.
    pub fn new() -> Self {
        assert!(
            is_root(),
            "network namespaces need root: run the chaos tests as root \
             (e.g. sudo -E cargo nextest run ...)"
        );
        remove_leftovers();
        let pid = std::process::id();
        let n = CREATED.fetch_add(1, Ordering::Relaxed);
        let block = free_block(pid, n);
        let base = u32::from(Ipv4Addr::new(10, 200, 0, 0)) + block * 4;
        let ns = Netns {
            name: format!("{PREFIX}{pid}-{n}"),
            host_if: host_if(pid, n),
            host_ip: Ipv4Addr::from(base + 1),
            ns_ip: Ipv4Addr::from(base + 2),
        };
        // From here on a failure panics with `ns` alive, so its drop
        // removes whatever was made.
        ns.setup();
        ns
    }

    fn setup(&self) {
        let (name, host_if) = (self.name.as_str(), self.host_if.as_str());
        let host_cidr = format!("{}/30", self.host_ip);
        let ns_cidr = format!("{}/30", self.ns_ip);
        ip(&["netns", "add", name]);
        ip(&[
            "link", "add", host_if, "type", "veth", "peer", "name", NS_IF, "netns", name,
        ]);
        ip(&["addr", "add", &host_cidr, "dev", host_if]);
        ip(&["link", "set", host_if, "up"]);
        ip(&["-n", name, "addr", "add", &ns_cidr, "dev", NS_IF]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
        ip(&["-n", name, "link", "set", NS_IF, "up"]);
        self.wait_for_carrier();
    }

    /// Waits until both ends of the veth carry packets (`LOWER_UP`): on a
    /// busy machine that can lag `link set up`, and a SYN sent before it is
    /// lost and retried only after a second (a fresh namespace that did not
    /// answer at once failed tests).
    fn wait_for_carrier(&self) {
        let ns_side = ["-n", self.name.as_str(), "-o", "link", "show", "dev", NS_IF];
        let host_side = ["-o", "link", "show", "dev", self.host_if.as_str()];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !(output("ip", &ns_side).contains("LOWER_UP")
            && output("ip", &host_side).contains("LOWER_UP"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "veth {} not up within 5 s",
                self.host_if
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace side's address: where a server inside listens.
    pub fn addr(&self) -> Ipv4Addr {
        self.ns_ip
    }

    /// The root side's address: where connections from the test come from.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// `ip netns exec NAME program`: a command run inside the namespace.
    pub fn command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program])
            .kill_on_drop(true);
        cmd
    }

    /// Sets the veth down inside the namespace: packets vanish both ways,
    /// nobody gets a FIN or an RST, and open connections go half-open.
    /// The namespace can still reach its own address.
    pub fn link_down(&self) {
        ip(&["-n", &self.name, "link", "set", NS_IF, "down"]);
    }

    /// Brings the veth back (its address and route return with it).
    pub fn link_up(&self) {
        ip(&["-n", &self.name, "link", "set", NS_IF, "up"]);
        self.wait_for_carrier();
    }

    /// Drops every packet to or from TCP `port` on the veth (nftables, in
    /// the namespace): a firewall that swallows the traffic, as one does
    /// after losing its connection state. Both directions, so neither side
    /// hears anything. Traffic inside the namespace is not touched.
    pub fn drop_port(&self, port: u16) {
        let script = format!(
            "add table inet {TABLE}; \
             add chain inet {TABLE} input {{ type filter hook input priority 0 ; }}; \
             add chain inet {TABLE} output {{ type filter hook output priority 0 ; }}; \
             add rule inet {TABLE} input iifname {NS_IF} tcp dport {port} drop; \
             add rule inet {TABLE} output oifname {NS_IF} tcp sport {port} drop"
        );
        self.nft(&script);
    }

    /// Removes every rule `drop_port` added.
    pub fn clear_drops(&self) {
        // `add` first: deleting a table that was never made is an error.
        self.nft(&format!(
            "add table inet {TABLE}; delete table inet {TABLE}"
        ));
    }

    /// Limits what leaves the namespace over the veth (a server's sends to
    /// the root side) to `bits_per_second`, with a token bucket (tbf): a
    /// slow line. What does not fit waits in the qdisc, then is dropped and
    /// retransmitted, as on a congested link.
    pub fn slow(&self, bits_per_second: u64) {
        let rate = format!("{bits_per_second}bit");
        // The burst is what may leave at once: a few packets, so the rate
        // holds over short windows; the queue holds a second's worth.
        let burst = (bits_per_second / 8 / 20).max(4 * 1514).to_string();
        ip_tool(
            "tc",
            &[
                "-n", &self.name, "qdisc", "replace", "dev", NS_IF, "root", "tbf", "rate", &rate,
                "burst", &burst, "latency", "1s",
            ],
        );
    }

    /// Removes the rate limit.
    pub fn unslow(&self) {
        ip_tool(
            "tc",
            &["-n", &self.name, "qdisc", "del", "dev", NS_IF, "root"],
        );
    }

    fn nft(&self, script: &str) {
        ip_tool("ip", &["netns", "exec", &self.name, "nft", script]);
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the root end removes the pair at once; the namespace
        // itself lingers in the kernel until its last process is gone.
        quiet(&["link", "del", &self.host_if]);
        quiet(&["netns", "del", &self.name]);
    }
}

/// Root-side veth names: at most 15 bytes (`tt` + pid + `h` + counter).
fn host_if(pid: u32, n: u32) -> String {
    format!("tt{pid}h{n}")
}

/// Whether namespace or veth names `name` belongs to a live process's test.
/// `None` when the name is not one of ours.
fn owner_alive(name: &str) -> Option<bool> {
    let pid = if let Some(rest) = name.strip_prefix(PREFIX) {
        rest.split_once('-')?.0
    } else {
        name.strip_prefix("tt")?.split_once('h')?.0
    };
    let pid: u32 = pid.parse().ok()?;
    Some(std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// Deletes namespaces and root-side veths whose test process is gone.
fn remove_leftovers() {
    for line in output("ip", &["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if owner_alive(name) == Some(false) {
            quiet(&["netns", "del", name]);
        }
    }
    for line in output("ip", &["-o", "link", "show"]).lines() {
        // `7: tt123h0@if2: <...>`
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if owner_alive(name) == Some(false) {
            quiet(&["link", "del", name]);
        }
    }
}

/// A /30 block no interface in the root namespace uses, starting from one
/// derived from the pid and the counter (so concurrent test processes
/// start far apart).
fn free_block(pid: u32, n: u32) -> u32 {
    let used = output("ip", &["-o", "-4", "addr", "show"]);
    let start = (pid.wrapping_mul(16).wrapping_add(n)) % BLOCKS;
    (0..BLOCKS)
        .map(|i| (start + i) % BLOCKS)
        .find(|b| {
            let host = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + b * 4 + 1);
            !used.contains(&format!(" {host}/"))
        })
        .expect("a free /30 in 10.200.0.0/16")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn ip(args: &[&str]) {
    ip_tool("ip", args);
}

/// Runs `tool args`, panicking with its stderr when it fails.
fn ip_tool(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{tool} not runnable ({e}): run scripts/setup"));
    assert!(
        out.status.success(),
        "{tool} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// `ip args`, ignoring failure (cleanup of what may already be gone).
fn quiet(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn output(tool: &str, args: &[&str]) -> String {
    Command::new(tool)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{io::ErrorKind, net::SocketAddr, time::Duration};
    use tokio::{net::TcpStream, time::timeout};

    /// Nothing listens on these ports in a fresh namespace: a reachable
    /// one answers a connect with an RST at once.
    const CLOSED_PORT: u16 = 9;
    const OTHER_PORT: u16 = 10;

    /// Longer than a refused connect over a veth takes, far shorter than
    /// the first SYN retransmission (1 s): no answer within it means the
    /// packets vanished.
    const NO_ANSWER: Duration = Duration::from_millis(700);

    /// `Some(kind)` when the connect ended (refused, say); `None` when
    /// nothing came back within `NO_ANSWER`.
    async fn connect(addr: SocketAddr) -> Option<ErrorKind> {
        match timeout(NO_ANSWER, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => panic!("nothing should listen on {addr}"),
            Ok(Err(e)) => Some(e.kind()),
            Err(_) => None,
        }
    }

    /// Whether `ip WHAT` lists `name` (as a whole word, before any `@`).
    fn exists(what: &[&str], name: &str) -> bool {
        output("ip", what)
            .split(|c: char| c.is_whitespace() || c == '@' || c == ':')
            .any(|word| word == name)
    }

    #[test]
    fn owner_is_read_from_the_name() {
        let me = std::process::id();
        assert_eq!(owner_alive(&format!("tether-{me}-3")), Some(true));
        assert_eq!(owner_alive(&host_if(me, 3)), Some(true));
        assert_eq!(owner_alive("tether-4294967-0"), Some(false));
        assert_eq!(owner_alive("eth0"), None);
        assert_eq!(owner_alive("tether-x-1"), None);
        assert!(host_if(4_194_304, 99_999).len() <= 15, "fits IFNAMSIZ");
    }

    #[test]
    fn dropping_removes_namespace_and_veth() {
        let ns = Netns::new();
        let (name, host_if) = (ns.name().to_owned(), ns.host_if.clone());
        assert!(exists(&["netns", "list"], &name));
        assert!(exists(&["-o", "link", "show"], &host_if));
        drop(ns);
        assert!(!exists(&["netns", "list"], &name), "namespace left behind");
        assert!(
            !exists(&["-o", "link", "show"], &host_if),
            "veth left behind"
        );
    }

    #[test]
    fn leftovers_of_dead_processes_are_removed() {
        // A pid above the kernel's maximum is never alive.
        let dead = "tether-4194305-0";
        ip(&["netns", "add", dead]);
        let ns = Netns::new();
        assert!(
            !exists(&["netns", "list"], dead),
            "dead test's namespace kept"
        );
        assert!(
            exists(&["netns", "list"], ns.name()),
            "own namespace removed"
        );
    }

    #[tokio::test]
    async fn link_down_makes_connects_time_out() {
        let ns = Netns::new();
        let addr = SocketAddr::from((ns.addr(), CLOSED_PORT));
        assert_eq!(connect(addr).await, Some(ErrorKind::ConnectionRefused));
        ns.link_down();
        assert_eq!(
            connect(addr).await,
            None,
            "no answer while the link is down"
        );
        ns.link_up();
        assert_eq!(connect(addr).await, Some(ErrorKind::ConnectionRefused));
    }

    #[tokio::test]
    async fn drop_port_swallows_that_port_only() {
        let ns = Netns::new();
        let dropped = SocketAddr::from((ns.addr(), CLOSED_PORT));
        let other = SocketAddr::from((ns.addr(), OTHER_PORT));
        ns.drop_port(CLOSED_PORT);
        assert_eq!(connect(dropped).await, None, "dropped, not refused");
        assert_eq!(connect(other).await, Some(ErrorKind::ConnectionRefused));
        ns.clear_drops();
        assert_eq!(connect(dropped).await, Some(ErrorKind::ConnectionRefused));
        ns.clear_drops(); // twice is fine
    }

    #[test]
    fn slow_installs_and_removes_a_tbf() {
        let ns = Netns::new();
        let qdisc = || output("tc", &["-n", ns.name(), "qdisc", "show", "dev", NS_IF]);
        ns.slow(256_000);
        assert!(qdisc().contains("tbf"), "{}", qdisc());
        assert!(qdisc().contains("256Kbit"), "{}", qdisc());
        ns.unslow();
        assert!(!qdisc().contains("tbf"), "{}", qdisc());
    }
}
