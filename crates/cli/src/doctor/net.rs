//! The DNS and TCP layers: does the name resolve, and does anything answer
//! on the port — and if not, was the connection refused (nothing listening)
//! or were the packets dropped (a firewall)?

use super::{
    report::{human, Step},
    target::Target,
};
use std::{
    io::ErrorKind,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};
use tokio::{net::TcpStream, time::timeout};

pub async fn resolve(target: &Target, limit: Duration) -> Result<(Step, Vec<SocketAddr>), Step> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        let addr = SocketAddr::new(ip, target.port);
        return Ok((
            Step::pass("dns", format!("{ip} (a literal address, no lookup)")),
            vec![addr],
        ));
    }
    let started = Instant::now();
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    match timeout(limit, lookup).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                return Err(no_such_host(target, "no addresses").took(started.elapsed()));
            }
            let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            let figure = format!("{} → {} in {}", target.host, list.join(", "), human(started.elapsed()));
            Ok((Step::pass("dns", figure).took(started.elapsed()), addrs))
        }
        Ok(Err(e)) => Err(no_such_host(target, &e.to_string()).took(started.elapsed())),
        Err(_) => Err(Step::fail(
            "dns",
            "dns_timeout",
            format!("no answer for {} within {}", target.host, human(limit)),
            "the resolver does not answer (no network, or a DNS server that is down or unreachable)",
            "check /etc/resolv.conf and that a DNS server is reachable; try the IP address directly",
        )
        .took(started.elapsed())),
    }
}

fn no_such_host(target: &Target, error: &str) -> Step {
    Step::fail(
        "dns",
        "no_such_host",
        format!("{} does not resolve: {error}", target.host),
        "the name has no address: a typo, a record not created yet, or a name only an internal DNS knows",
        "check the spelling and the DNS record (dig/nslookup the name); from inside a container use the service name",
    )
}

/// Connects to the first address that answers. The step reports the first
/// address's failure when none does, since that is where clients go first.
pub async fn connect(addrs: &[SocketAddr], limit: Duration) -> Result<(Step, TcpStream), Step> {
    let mut first_failure = None;
    for addr in addrs {
        let started = Instant::now();
        let failure = match timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Small frames (pings) must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                let elapsed = started.elapsed();
                let figure = format!("connected to {addr} in {}", human(elapsed));
                return Ok((Step::pass("tcp", figure).took(elapsed), stream));
            }
            Ok(Err(e)) => connect_error(*addr, &e, started.elapsed()),
            Err(_) => Step::fail(
                "tcp",
                "connect_timeout",
                format!("no answer from {addr} within {} (SYN unanswered)", human(limit)),
                "packets are silently dropped: a firewall (iptables/nftables DROP, a cloud security group) or a host that is down",
                format!("open port {} to this client in the firewall or security group; a closed port without a firewall would refuse at once", addr.port()),
            ),
        };
        first_failure.get_or_insert(failure.took(started.elapsed()));
    }
    Err(first_failure.unwrap_or_else(|| {
        Step::fail(
            "tcp",
            "no_address",
            "no address to connect to",
            "DNS gave nothing",
            "check the host",
        )
    }))
}

fn connect_error(addr: SocketAddr, e: &std::io::Error, elapsed: Duration) -> Step {
    match e.kind() {
        ErrorKind::ConnectionRefused => Step::fail(
            "tcp",
            "connection_refused",
            format!("{addr} refused the connection in {}", human(elapsed)),
            "nothing is listening on that port (server not running, wrong port, or bound to another address such as 127.0.0.1 only)",
            format!("start the server, or check the port; on the server `ss -ltnp | grep :{}` shows what listens", addr.port()),
        ),
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => Step::fail(
            "tcp",
            "unreachable",
            format!("{addr}: {e}"),
            "no route to that address (wrong address, network down, or a firewall answering with ICMP unreachable)",
            "check the address and the route to it (ip route get ADDR), and firewall REJECT rules",
        ),
        _ => Step::fail(
            "tcp",
            "connect_error",
            format!("{addr}: {e}"),
            "the TCP connection could not be made",
            "check the address, the port and the network between here and there",
        ),
    }
}
