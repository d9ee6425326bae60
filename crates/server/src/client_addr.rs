//! Who the client is: the trusted-proxy list (`--trusted-proxies`), the
//! client address named by a trusted proxy in the one header
//! `--forwarded-header` names (`X-Forwarded-For`, or RFC 7239 `Forwarded`),
//! and the grouping of addresses for per-address limits (IPv6 by
//! `--ipv6-prefix`).
//!
//! Headers are only believed when the hop that sent them is trusted; from
//! anyone else they are ignored, so a client cannot pick its own identity
//! to dodge its caps or frame someone else. The other header is ignored even
//! from a trusted proxy: a proxy passes through whatever it does not set.

use crate::config::{ForwardedHeader, ProxyConfig};
use axum::http::{header, HeaderMap};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// One CIDR range: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `10.0.0.0/8`, `fd00::/8`, or a bare address (a /32 or /128).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR (e.g. 10.0.0.0/8, ::1)"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => {
                    return Err(format!(
                        "{text:?}: the prefix length must be a number from 0 to {max}"
                    ))
                }
            },
        };
        Ok(IpNet {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

/// `ip` with every bit after the first `prefix` cleared.
pub fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// The key per-address limits count under: IPv4 addresses as they are
/// (IPv4-mapped IPv6 too), IPv6 addresses by their first `ipv6_prefix` bits,
/// because one subscriber usually holds a whole /64 and could otherwise
/// take a fresh address for every connection.
pub fn group(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        v6 => mask(v6, ipv6_prefix),
    }
}

/// The proxies whose word on the client address is taken.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Parses `proxy.trusted`; the error names the bad entry.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let nets = entries
            .iter()
            .map(|e| IpNet::parse(e))
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies {
            nets,
            header: ForwardedHeader::default(),
        })
    }

    /// `proxy.trusted`, reading only `proxy.forwarded_header`.
    pub fn from_config(proxy: &ProxyConfig) -> Result<Self, String> {
        Ok(Self::parse(&proxy.trusted)?.reading(proxy.forwarded_header))
    }

    /// The same proxies, believed only in `header`.
    pub fn reading(self, header: ForwardedHeader) -> Self {
        TrustedProxies { header, ..self }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client behind `peer`: `peer` itself unless it is trusted; then the
    /// right-most address in the configured header that is not itself a
    /// trusted proxy. Left of that, every entry could
    /// have been written by the client, so none is believed.
    ///
    /// An entry that is not an address (`unknown`, an obfuscated
    /// `_identifier`, garbage) ends the walk at the last trusted hop: the
    /// client is unknown, and the proxy that reported it is the best identity
    /// there is for limits (all such clients share it, which is safe).
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if self.nets.is_empty() || !self.contains(peer.ip()) {
            return peer;
        }
        let chain = match self.header {
            ForwardedHeader::Forwarded => forwarded_chain(headers),
            ForwardedHeader::XForwardedFor => x_forwarded_for_chain(headers),
        };
        let mut last_trusted = peer;
        for hop in chain.iter().rev() {
            match hop {
                Some(addr) if self.contains(addr.ip()) => last_trusted = *addr,
                Some(addr) => return *addr,
                None => return last_trusted,
            }
        }
        last_trusted
    }
}

/// The hops named by `Forwarded: for=` (all header lines, in order); `None`
/// for an entry that is not an address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<SocketAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all(header::FORWARDED) {
        let Ok(value) = value.to_str() else {
            chain.push(None);
            continue;
        };
        for element in value.split(',') {
            let for_ = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
            });
            // An element without `for=` says nothing about this hop's
            // client: skip it rather than guess.
            if let Some(v) = for_ {
                chain.push(parse_node(v.trim_matches('"')));
            }
        }
    }
    chain
}

/// The hops named by `X-Forwarded-For` (all header lines, in order); `None`
/// for an entry that is not an address.
fn x_forwarded_for_chain(headers: &HeaderMap) -> Vec<Option<SocketAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            chain.push(None);
            continue;
        };
        chain.extend(value.split(',').map(|v| parse_node(v.trim())));
    }
    chain
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`,
/// or a bare IPv6 address (as X-Forwarded-For writes it). Port 0 when none.
fn parse_node(text: &str) -> Option<SocketAddr> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(SocketAddr::new(sa.ip().to_canonical(), sa.port()));
    }
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
    bare.unwrap_or(text)
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip.to_canonical(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_and_bare_addresses() {
        let t = trusted(&["10.0.0.0/8", "192.0.2.7", "fd00::/8", "::1"]);
        assert!(t.contains("10.200.0.1".parse().unwrap()));
        assert!(t.contains("192.0.2.7".parse().unwrap()));
        assert!(!t.contains("192.0.2.8".parse().unwrap()));
        assert!(t.contains("fd12::5".parse().unwrap()));
        assert!(t.contains("::1".parse().unwrap()));
        assert!(!t.contains("::2".parse().unwrap()));
        // IPv4-mapped IPv6 (a dual-stack socket) is the IPv4 address.
        assert!(t.contains("::ffff:10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn bad_entries_are_named() {
        let err = TrustedProxies::parse(&["10.0.0.0/8".into(), "10.0.0.0/33".into()]).unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
        let err = TrustedProxies::parse(&["nginx.local".into()]).unwrap_err();
        assert!(err.contains("nginx.local"), "{err}");
    }

    #[test]
    fn untrusted_peers_headers_are_ignored() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(t.client(sa("203.0.113.9:5000"), &h), sa("203.0.113.9:5000"));
        let none = TrustedProxies::default();
        assert_eq!(none.client(sa("10.0.0.1:5000"), &h), sa("10.0.0.1:5000"));
    }

    #[test]
    fn right_most_untrusted_xff_entry_wins() {
        let t = trusted(&["10.0.0.0/8"]);
        // The client wrote "6.6.6.6" itself; 1.2.3.4 is what the edge proxy saw.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.5")]);
        assert_eq!(
            t.client(sa("10.0.0.1:80"), &h).ip(),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        // Several header lines form one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        assert_eq!(
            t.client(sa("10.0.0.1:80"), &h).ip(),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        // Only trusted hops: the left-most one is the furthest we know.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.5")]);
        assert_eq!(
            t.client(sa("10.0.0.1:80"), &h).ip(),
            "10.9.9.9".parse::<IpAddr>().unwrap()
        );
        // No header at all: the proxy itself.
        assert_eq!(
            t.client(sa("10.0.0.1:80"), &HeaderMap::new()),
            sa("10.0.0.1:80")
        );
        // Garbage stops the walk at the last trusted hop.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, unknown, 10.0.0.5")]);
        assert_eq!(
            t.client(sa("10.0.0.1:80"), &h).ip(),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_for_with_quotes_ports_and_v6() {
        let t = trusted(&["10.0.0.0/8"]).reading(ForwardedHeader::Forwarded);
        let h = headers(&[(
            "forwarded",
            r#"for=6.6.6.6, For="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.5"#,
        )]);
        assert_eq!(
            t.client(sa("10.0.0.1:80"), &h),
            sa("[2001:db8:cafe::17]:4711")
        );
        let h = headers(&[("forwarded", "proto=https;for=192.0.2.60:8080;by=10.0.0.1")]);
        assert_eq!(t.client(sa("10.0.0.1:80"), &h), sa("192.0.2.60:8080"));
        // An obfuscated identifier: the client is unknown.
        let h = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(t.client(sa("10.0.0.1:80"), &h), sa("10.0.0.1:80"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        // A proxy sets one header and passes the other through as the
        // client wrote it: the other one must not name the client.
        let both = headers(&[
            ("forwarded", "for=198.51.100.7"),
            ("x-forwarded-for", "192.0.2.60"),
        ]);
        let xff = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            xff.client(sa("10.0.0.1:80"), &both).ip(),
            "192.0.2.60".parse::<IpAddr>().unwrap()
        );
        let fwd = trusted(&["10.0.0.0/8"]).reading(ForwardedHeader::Forwarded);
        assert_eq!(
            fwd.client(sa("10.0.0.1:80"), &both).ip(),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // Only the other header: the proxy itself, not the client's claim.
        let forged = headers(&[("forwarded", "for=198.51.100.7")]);
        assert_eq!(xff.client(sa("10.0.0.1:80"), &forged), sa("10.0.0.1:80"));
        let forged = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(fwd.client(sa("10.0.0.1:80"), &forged), sa("10.0.0.1:80"));
    }

    #[test]
    fn ipv6_is_grouped_by_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(group(a, 64), group(b, 64));
        assert_ne!(group(a, 64), group(c, 64));
        assert_ne!(group(a, 128), group(b, 128));
        assert_eq!(group(a, 48), group(c, 48));
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(group(v4, 64), v4);
        assert_eq!(group("::ffff:192.0.2.1".parse().unwrap(), 64), v4);
        assert_eq!(mask(v4, 0), IpAddr::from([0, 0, 0, 0]));
    }
}
