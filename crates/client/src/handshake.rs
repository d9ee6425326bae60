//! Opening a WebSocket to the gateway. tokio-websockets performs the upgrade,
//! but it reports a refused handshake only as a status number; the
//! `Retry-After` header and the one-line reason a Tether server sends with a
//! 429 or 503 are read from a copy of the response head kept by [`Recorded`].

use crate::reconnect::Ended;
use http::{HeaderName, HeaderValue, Uri};
use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{
    client::TlsStream,
    rustls::{self, pki_types::ServerName, RootCertStore},
    TlsConnector,
};
use tokio_util::either::Either;
use tokio_websockets::{ClientBuilder, WebSocketStream};

/// The socket type of an open connection: plain TCP, or TLS over it for `wss://`.
pub(crate) type Ws = WebSocketStream<Recorded<Either<TcpStream, TlsStream<TcpStream>>>>;

/// A TLS connector trusting the Mozilla roots plus `extra_roots` (PEM).
pub(crate) fn tls_connector(extra_roots: &[Vec<u8>]) -> Result<TlsConnector, crate::Error> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for pem in extra_roots {
        let mut reader = pem.as_slice();
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert = cert.map_err(|e| crate::Error::InvalidCertificate(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| crate::Error::InvalidCertificate(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| crate::Error::InvalidCertificate(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// How much of the handshake response is kept for diagnosis.
const HEAD_LIMIT: usize = 4096;

/// Connects and performs the upgrade within `limit`.
pub(crate) async fn connect(
    uri: &Uri,
    token: Option<&str>,
    tls: Option<&TlsConnector>,
    limit: Duration,
) -> Result<Ws, Ended> {
    match tokio::time::timeout(limit, connect_inner(uri, token, tls)).await {
        Ok(result) => result,
        Err(_) => Err(Ended::Lost {
            reason: format!("no handshake answer within {} ms", limit.as_millis()),
        }),
    }
}

async fn connect_inner(
    uri: &Uri,
    token: Option<&str>,
    tls: Option<&TlsConnector>,
) -> Result<Ws, Ended> {
    let lost = |reason: String| Ended::Lost { reason };
    let host = uri.host().unwrap_or("127.0.0.1");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| lost(format!("cannot connect to {host}:{port}: {e}")))?;
    // Small frames (pings, acks) must not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    let io = match tls {
        None => Either::Left(tcp),
        Some(connector) => {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| lost(format!("{host} is not a valid TLS server name: {e}")))?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| lost(format!("TLS handshake with {host} failed: {e}")))?;
            Either::Right(stream)
        }
    };
    let mut builder = ClientBuilder::from_uri(uri.clone());
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| lost("the token contains characters not allowed in a header".into()))?;
        builder = builder
            .add_header(HeaderName::from_static("authorization"), value)
            .map_err(|e| lost(format!("cannot add the authorization header: {e}")))?;
    }
    let head = Arc::new(Mutex::new(Vec::new()));
    let stream = Recorded {
        inner: io,
        head: head.clone(),
        recorded: 0,
    };
    match builder.connect_on(stream).await {
        Ok((ws, _response)) => Ok(ws),
        Err(tokio_websockets::Error::Upgrade(
            tokio_websockets::upgrade::Error::DidNotSwitchProtocols(status),
        )) => {
            let head = head.lock().map(|h| h.clone()).unwrap_or_default();
            Err(refused(status, &head))
        }
        Err(e) => Err(lost(format!("handshake failed: {e}"))),
    }
}

/// Reads `Retry-After` (whole seconds) and a one-line reason from a refused
/// handshake's response head (and the start of its body, when it came along).
fn refused(status: u16, head: &[u8]) -> Ended {
    let text = String::from_utf8_lossy(head);
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = headers.lines();
    let status_line = lines.next().unwrap_or_default();
    let retry_after = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, v)| retry_after_secs(v.trim()))
        .map(Duration::from_secs);
    let reason = body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_else(|| {
            status_line
                .splitn(3, ' ')
                .nth(2)
                .unwrap_or("no reason given")
        })
        .to_owned();
    Ended::Refused {
        status,
        retry_after,
        reason,
    }
}

/// `Retry-After` in whole seconds; more digits than a u64 holds saturate (the
/// backoff cuts any hint to `max_delay`). The HTTP-date form is not used by
/// Tether servers and is ignored.
fn retry_after_secs(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().unwrap_or(u64::MAX))
}

/// A stream that keeps a copy of the first [`HEAD_LIMIT`] bytes it reads.
/// The copy is shared because tokio-websockets consumes (and, on a refused
/// upgrade, drops) the stream.
pub(crate) struct Recorded<S> {
    inner: S,
    head: Arc<Mutex<Vec<u8>>>,
    /// Bytes copied so far; past the limit reads skip the lock entirely.
    recorded: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.recorded < HEAD_LIMIT {
            let new = &buf.filled()[before..];
            let take = new.len().min(HEAD_LIMIT - self.recorded);
            if let Ok(mut head) = self.head.lock() {
                head.extend_from_slice(&new[..take]);
            }
            self.recorded += take;
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after(head: &str) -> Option<Duration> {
        match refused(503, head.as_bytes()) {
            Ended::Refused { retry_after, .. } => retry_after,
            _ => None,
        }
    }

    #[test]
    fn retry_after_is_read_and_saturates() {
        let head = |v: &str| format!("HTTP/1.1 503 Busy\r\nRetry-After: {v}\r\n\r\nbusy\n");
        assert_eq!(retry_after(&head("2")), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(&head("99999999999999999999999")),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(retry_after(&head("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(&head("-1")), None);
    }
}
