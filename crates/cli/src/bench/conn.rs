//! Lean load-client connections: a raw HTTP/1.1 upgrade written by hand on a
//! `TcpSocket` bound to a chosen source address, then a bare
//! tokio-websockets stream. No reconnecting client, no per-connection
//! channels: what a connection costs the load generator is the socket, the
//! library's buffers and the future that drives it.

use anyhow::{bail, Context};
use base64::Engine;
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    time::timeout,
};
use tokio_websockets::{ClientBuilder, Limits, WebSocketStream};

pub type Ws = WebSocketStream<TcpStream>;

/// Longest response head accepted; a 101 or a refusal is far shorter.
const MAX_HEAD: usize = 4096;

/// Where the load goes: a `ws://` URL resolved once.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host[:port]` as written, for the Host header.
    pub authority: String,
    /// Path and query.
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = if let Some(r) = url.strip_prefix("ws://") {
            r
        } else if url.starts_with("wss://") {
            bail!("{url}: the bench speaks plain ws:// only (measure the gateway, not TLS)");
        } else {
            bail!("{url}: expected a ws:// URL such as ws://127.0.0.1:8080/ws");
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("{url}: cannot resolve {authority}"))?
            .find(SocketAddr::is_ipv4)
            .with_context(|| format!("{url}: {authority} has no IPv4 address"))?;
        Ok(Target {
            addr,
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// Source addresses to spread connections over: 127.0.0.1..127.0.0.k for a
/// loopback target (each (source, destination) pair has only ~28k ephemeral
/// ports), the kernel's choice otherwise.
pub fn sources(target: &Target, k: usize) -> Vec<Option<IpAddr>> {
    if !target.addr.ip().is_loopback() {
        return vec![None];
    }
    (0..k.clamp(1, 254))
        .map(|i| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + i as u8))))
        .collect()
}

/// The result of one upgrade attempt.
pub enum Opened {
    Open(Box<Ws>),
    /// The server answered with a status other than 101.
    Refused {
        status: u16,
        retry_after: Option<Duration>,
    },
}

/// Opens a WebSocket to `target` from `source`, within `limit`.
pub async fn open(
    target: &Target,
    source: Option<IpAddr>,
    limit: Duration,
) -> anyhow::Result<Opened> {
    match timeout(limit, open_inner(target, source)).await {
        Ok(r) => r,
        Err(_) => bail!("no upgrade response within {limit:?}"),
    }
}

async fn open_inner(target: &Target, source: Option<IpAddr>) -> anyhow::Result<Opened> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("bind {ip}"))?;
    }
    let mut tcp = socket.connect(target.addr).await.context("connect")?;
    tcp.set_nodelay(true)?;
    let key = base64::engine::general_purpose::STANDARD.encode(fastrand::u128(..).to_le_bytes());
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.path, target.authority
    );
    tcp.write_all(request.as_bytes())
        .await
        .context("send upgrade")?;
    let head_len = read_head_len(&tcp).await?;
    let mut head = vec![0u8; head_len];
    tcp.read_exact(&mut head).await.context("read response")?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    res.parse(&head).context("malformed HTTP response")?;
    let status = res.code.unwrap_or(0);
    if status != 101 {
        let retry_after = res
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64);
        return Ok(Opened::Refused {
            status,
            retry_after,
        });
    }
    let ws = ClientBuilder::new()
        .limits(Limits::unlimited())
        .take_over(tcp);
    Ok(Opened::Open(Box::new(ws)))
}

/// Length of the response head, found by peeking so that a frame the server
/// sends right after the 101 (Tether's welcome) stays in the socket for the
/// WebSocket reader.
async fn read_head_len(tcp: &TcpStream) -> anyhow::Result<usize> {
    let mut buf = vec![0u8; MAX_HEAD];
    loop {
        let n = tcp.peek(&mut buf).await.context("read response")?;
        if n == 0 {
            bail!("connection closed before the upgrade response");
        }
        if let Some(i) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(i + 4);
        }
        if n == buf.len() {
            bail!("upgrade response head longer than {MAX_HEAD} bytes");
        }
        // Only part of the head has arrived; peek returns at once, so wait.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Makes room for `needed` descriptors: raises the soft open-file limit to
/// the hard limit, and refuses clearly when even that is not enough.
pub fn ensure_open_files(needed: usize) -> anyhow::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    if before.current != before.maximum {
        let wanted = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, wanted) {
            eprintln!("tether bench: could not raise the open-file soft limit: {e}");
        }
    }
    let now = getrlimit(Resource::Nofile);
    let soft = now.current.unwrap_or(u64::MAX);
    // stdio, the runtime's own descriptors, /proc reads, and some slack.
    let wanted = needed as u64 + 64;
    if wanted > soft {
        let hard = now.maximum.map_or("unlimited".into(), |h| h.to_string());
        bail!(
            "{needed} connections need about {wanted} open files, but this process may hold at most \
             {soft} (hard limit {hard}); lower the count, or split the load over several \
             `tether bench` processes"
        );
    }
    Ok(soft)
}

/// Microseconds since the Unix epoch: the timestamp stamped into messages,
/// comparable across the publisher and subscribers on one machine.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse("ws://127.0.0.1:8080/ws?x=1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t.addr,
            "127.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}"))
        );
        assert_eq!(t.path, "/ws?x=1");
        assert!(Target::parse("http://x").is_err());
        assert!(Target::parse("wss://127.0.0.1/ws").is_err());
    }

    #[test]
    fn spreads_sources_on_loopback() {
        let t = Target::parse("ws://127.0.0.1:1/").unwrap_or_else(|e| panic!("{e}"));
        let s = sources(&t, 3);
        assert_eq!(s.len(), 3);
        assert_eq!(s[2], Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))));
    }
}
