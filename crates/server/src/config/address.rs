//! The listen address: `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`. A bare
//! port or another host name is refused with the form to write instead:
//! names are not resolved, so what the server binds is what the config says.

use serde::{de, Deserializer};
use std::{
    fmt,
    net::{Ipv4Addr, SocketAddr},
};

/// What an address setting accepts, for error messages.
pub const ACCEPTED: &str = "an address like 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080";

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    d.deserialize_any(Visitor)
}

/// Parses a listen address, or says what to write instead.
pub fn parse(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(port) = text.parse::<u16>() {
        return Err(bare_port(port.into()));
    }
    if let Some((host, port)) = text.rsplit_once(':') {
        if let Ok(port) = port.parse::<u16>() {
            if host.eq_ignore_ascii_case("localhost") {
                return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
            }
            if !host.is_empty() {
                return Err(format!(
                    "expected {ACCEPTED}: host names other than localhost are not resolved, \
                     write an IP address of this machine, or 0.0.0.0:{port} for every interface"
                ));
            }
        }
    }
    Err(format!("expected {ACCEPTED}"))
}

fn bare_port(port: i128) -> String {
    format!(
        "expected {ACCEPTED}: a bare port is not enough, write 127.0.0.1:{port} (this machine \
         only) or 0.0.0.0:{port} (every interface)"
    )
}

struct Visitor;

impl de::Visitor<'_> for Visitor {
    type Value = SocketAddr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ACCEPTED)
    }

    fn visit_i64<E: de::Error>(self, port: i64) -> Result<SocketAddr, E> {
        Err(E::custom(bare_port(port.into())))
    }

    fn visit_u64<E: de::Error>(self, port: u64) -> Result<SocketAddr, E> {
        Err(E::custom(bare_port(port.into())))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<SocketAddr, E> {
        parse(text).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_what_to_write_instead() {
        assert_eq!(
            parse("127.0.0.1:80"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 80)))
        );
        assert_eq!(parse("[::1]:80").map(|a| a.is_ipv6()), Ok(true));
        assert_eq!(
            parse("localhost:8097"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 8097)))
        );
        let bare = parse("8097").unwrap_err();
        assert!(
            bare.contains("bare port") && bare.contains("127.0.0.1:8097"),
            "{bare}"
        );
        let host = parse("example.com:80").unwrap_err();
        assert!(
            host.contains("not resolved") && host.contains("0.0.0.0:80"),
            "{host}"
        );
        assert!(parse("nonsense")
            .unwrap_err()
            .starts_with("expected an address"));
    }
}
