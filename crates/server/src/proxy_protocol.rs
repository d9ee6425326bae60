//! The PROXY protocol (v1 text, v2 binary): reading the header a trusted
//! proxy (HAProxy `send-proxy-v2`, AWS NLB, ...) writes before anything else
//! on the connection, to learn the client's address.
//!
//! Only called for peers in `--trusted-proxies` when `--proxy-protocol` is
//! on: an untrusted peer's bytes are never interpreted as a PROXY header.
//! Parsing is `ppp`'s; this module owns the bounded read (at most
//! [`MAX_HEADER`] bytes, within the handshake timeout) and hands back the
//! bytes read past the header, which belong to TLS or HTTP.

use ppp::{HeaderResult, PartialResult};
use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The largest header accepted: v1 is at most 107 bytes; v2 is 16 bytes plus
/// addresses (at most 216) plus TLVs, which proxies keep small (ALPN, SNI,
/// a unique id, TLS details). A longer header is refused, not buffered.
pub const MAX_HEADER: usize = 1024;

/// Why a trusted peer's connection was dropped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("connection closed before a complete PROXY header")]
    Closed,
    #[error("no valid PROXY protocol header: {0}")]
    Invalid(String),
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// What the header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client's address and port.
    Client(SocketAddr),
    /// `LOCAL` (v2) or `UNKNOWN` (v1): the proxy's own connection, e.g. a
    /// health check; the peer address stands.
    Local,
}

/// Reads one PROXY header from `io`. Returns the source and `io` wrapped so
/// that the bytes read past the header come first.
pub async fn read_header<S>(mut io: S) -> Result<(Source, Rewind<S>), ProxyHeaderError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        // Never read more than could still belong to a header, so a peer
        // cannot make us buffer past MAX_HEADER.
        let room = (MAX_HEADER + 1 - buf.len()).min(chunk.len());
        let n = io.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        let parsed = HeaderResult::parse(&buf);
        if parsed.is_incomplete() {
            if buf.len() > MAX_HEADER {
                return Err(ProxyHeaderError::TooLong);
            }
            continue;
        }
        let (source, used) = match parsed {
            HeaderResult::V1(Ok(h)) => (v1_source(&h.addresses), h.header.len()),
            HeaderResult::V2(Ok(h)) => (v2_source(&h), h.len()),
            HeaderResult::V1(Err(e)) => return Err(ProxyHeaderError::Invalid(e.to_string())),
            HeaderResult::V2(Err(e)) => return Err(ProxyHeaderError::Invalid(e.to_string())),
        };
        if used > MAX_HEADER {
            return Err(ProxyHeaderError::TooLong);
        }
        let rest = buf.split_off(used.min(buf.len()));
        return Ok((
            source,
            Rewind {
                prefix: rest,
                pos: 0,
                inner: io,
            },
        ));
    }
}

fn v1_source(a: &ppp::v1::Addresses) -> Source {
    match a {
        ppp::v1::Addresses::Tcp4(ip) => {
            Source::Client(SocketAddr::new(ip.source_address.into(), ip.source_port))
        }
        ppp::v1::Addresses::Tcp6(ip) => {
            Source::Client(SocketAddr::new(ip.source_address.into(), ip.source_port))
        }
        ppp::v1::Addresses::Unknown => Source::Local,
    }
}

fn v2_source(h: &ppp::v2::Header<'_>) -> Source {
    if h.command == ppp::v2::Command::Local {
        return Source::Local;
    }
    match &h.addresses {
        ppp::v2::Addresses::IPv4(ip) => {
            Source::Client(SocketAddr::new(ip.source_address.into(), ip.source_port))
        }
        ppp::v2::Addresses::IPv6(ip) => {
            Source::Client(SocketAddr::new(ip.source_address.into(), ip.source_port))
        }
        // Unix sockets and unspecified families carry no client IP.
        _ => Source::Local,
    }
}

/// A stream whose first bytes were already read: they are replayed first.
pub struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let rest = &this.prefix[this.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                // Free the replay buffer: the connection may live for days.
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn parse(bytes: &[u8]) -> Result<(Source, Vec<u8>), ProxyHeaderError> {
        let (source, mut rest) = read_header(bytes).await?;
        let mut tail = Vec::new();
        rest.read_to_end(&mut tail).await?;
        Ok((source, tail))
    }

    #[tokio::test]
    async fn v1_tcp4_and_tcp6_keep_what_follows() {
        let (s, tail) = parse(b"PROXY TCP4 192.0.2.1 10.0.0.1 4711 80\r\nGET / HTTP/1.1\r\n")
            .await
            .unwrap();
        assert_eq!(s, Source::Client("192.0.2.1:4711".parse().unwrap()));
        assert_eq!(tail, b"GET / HTTP/1.1\r\n");
        let (s, _) = parse(b"PROXY TCP6 2001:db8::1 ::1 4711 80\r\n")
            .await
            .unwrap();
        assert_eq!(s, Source::Client("[2001:db8::1]:4711".parse().unwrap()));
        let (s, _) = parse(b"PROXY UNKNOWN\r\n").await.unwrap();
        assert_eq!(s, Source::Local);
    }

    #[tokio::test]
    async fn v2_proxy_and_local() {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 192, 0, 2, 9, 10, 0, 0, 1, 0x12, 0x67, 0, 80,
        ]);
        h.extend_from_slice(b"rest");
        let (s, tail) = parse(&h).await.unwrap();
        assert_eq!(s, Source::Client("192.0.2.9:4711".parse().unwrap()));
        assert_eq!(tail, b"rest");
        let mut l = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        l.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&l).await.unwrap().0, Source::Local);
    }

    #[tokio::test]
    async fn garbage_truncation_and_length_are_refused() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await,
            Err(ProxyHeaderError::Invalid(_))
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3").await,
            Err(ProxyHeaderError::Closed)
        ));
        let long = vec![b'P'; 2000];
        assert!(parse(&long).await.is_err());
        let mut big = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        big.resize(big.len() + 5000, 0);
        assert!(matches!(parse(&big).await, Err(ProxyHeaderError::TooLong)));
    }
}
