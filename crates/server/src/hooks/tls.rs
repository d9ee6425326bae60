//! `https://` hook URLs: the pooled client's connector, which opens TCP
//! through hyper-util's `HttpConnector` (name resolution, connect timeout,
//! TCP_NODELAY) and, for `https`, runs TLS over it with tokio-rustls,
//! verifying the backend's certificate against the system's CA bundle.
//!
//! The bundle is the PEM file `SSL_CERT_FILE` names, or the first of the
//! usual places that exists (`/etc/ssl/certs/ca-certificates.crt` and
//! others); without one an `https` hook is refused at start.

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::{
    client::legacy::connect::{Connected, Connection, HttpConnector},
    rt::TokioIo,
};
use std::{
    future::Future,
    io,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tokio::net::TcpStream;
use tokio_rustls::{
    client::TlsStream,
    rustls::{self, pki_types::ServerName},
    TlsConnector,
};

/// Where a CA bundle usually is (Debian/Ubuntu/Alpine, RHEL/Fedora, others).
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// The CA bundle's path: `SSL_CERT_FILE`, or the first usual place that exists.
fn bundle_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        return Some(path.into());
    }
    BUNDLES.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// A TLS client configuration trusting the system's CAs; `Err` says why
/// there is none.
pub fn client_config() -> Result<TlsConnector, String> {
    let path = bundle_path().ok_or_else(|| {
        format!(
            "no CA certificate bundle found (looked at SSL_CERT_FILE and {}); set SSL_CERT_FILE \
             to a PEM file of the CAs that sign your backend's certificate",
            BUNDLES.join(", ")
        )
    })?;
    let pem = std::fs::read(&path)
        .map_err(|e| format!("cannot read the CA bundle {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let mut reader = pem.as_slice();
    for cert in rustls_pemfile::certs(&mut reader) {
        let cert = cert.map_err(|e| format!("the CA bundle {} is not PEM: {e}", path.display()))?;
        // One odd certificate in a system bundle does not spoil the rest.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!(
            "the CA bundle {} holds no usable certificate",
            path.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Opens connections for `http://` and `https://` URLs.
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    /// `Err`: why `https` cannot be used (no CA bundle).
    tls: Result<TlsConnector, Arc<str>>,
}

impl Connector {
    pub fn new(http: HttpConnector) -> Self {
        let mut http = http;
        http.enforce_http(false);
        Connector {
            http,
            tls: client_config().map_err(Arc::from),
        }
    }

    /// Why `https://` URLs cannot be called, if they cannot.
    pub fn https_unusable(&self) -> Option<&str> {
        self.tls.as_ref().err().map(|e| &**e)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower::Service::<http::Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = self.tls.clone();
        let connecting = tower::Service::call(&mut self.http, uri);
        Box::pin(async move {
            let tcp = connecting.await?;
            if !https {
                return Ok(Stream::Plain(tcp));
            }
            let tls = tls.map_err(|e| BoxError::from(e.to_string()))?;
            let name = ServerName::try_from(host)?;
            let stream = tls.connect(name, tcp.into_inner()).await?;
            Ok(Stream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

/// A connection to a backend, plain or over TLS.
pub enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(s) => s.connected(),
            Stream::Tls(_) => Connected::new(),
        }
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
