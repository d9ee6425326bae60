//! The TLS layer. A custom certificate verifier wraps webpki's and records
//! the error it finds, so a failed handshake is named (expired, self-signed,
//! wrong host name, unknown CA) instead of reported as "handshake failed";
//! with `--insecure` the error is still recorded but does not stop us.
//!
//! A certificate given with `--ca-file` is also trusted as the server's own
//! certificate when it is exactly the one the server shows: webpki refuses a
//! CA certificate (what a plain `openssl req -x509` makes) as an end entity
//! whatever the roots, so without this `--ca-file` could not help.

use super::{
    der,
    report::{human, Step},
};
use rustls_pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::{net::TcpStream, time::timeout};
use tokio_rustls::{
    client::TlsStream,
    rustls::{
        self,
        client::verify_server_name,
        client::{
            danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
            WebPkiServerVerifier,
        },
        crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider},
        server::ParsedCertificate,
        CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme,
    },
    TlsConnector,
};

/// Where Debian and most distributions keep the system's trusted roots.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What the verifier saw wrong with the certificate.
#[derive(Debug, Clone)]
struct Rejection {
    error: rustls::Error,
    self_signed: bool,
}

#[derive(Debug)]
struct RecordingVerifier {
    /// `None` when no trusted root could be loaded at all.
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    insecure: bool,
    /// The certificates from `--ca-file`, trusted as they are.
    pinned: Vec<CertificateDer<'static>>,
    seen: Arc<Mutex<Option<Rejection>>>,
}

impl RecordingVerifier {
    /// A certificate the user handed us with `--ca-file` is trusted as it
    /// is, like a pinned one: only its host name and dates are checked
    /// (the handshake signature proves the server holds its key).
    fn verify_pinned(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Option<Result<ServerCertVerified, rustls::Error>> {
        if !self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return None;
        }
        let checked = (|| {
            let parsed = ParsedCertificate::try_from(end_entity)?;
            verify_server_name(&parsed, server_name)?;
            let (not_before, not_after) = der::validity(end_entity).ok_or(
                rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
            )?;
            let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
            if now < not_before {
                return Err(CertificateError::NotValidYet.into());
            }
            if now > not_after {
                return Err(CertificateError::Expired.into());
            }
            Ok(ServerCertVerified::assertion())
        })();
        Some(checked)
    }
}

/// True for webpki's refusal of a CA certificate as the server's own,
/// which rustls passes on as an opaque `Other`.
fn is_ca_as_end_entity(error: &rustls::Error) -> bool {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut result = match &self.inner {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        if result.is_err() {
            if let Some(pinned) = self.verify_pinned(end_entity, server_name, now) {
                result = pinned;
            }
        }
        if let Err(error) = &result {
            let rejection = Rejection {
                error: error.clone(),
                self_signed: intermediates.is_empty() && der::is_self_issued(end_entity),
            };
            if let Ok(mut seen) = self.seen.lock() {
                *seen = Some(rejection);
            }
        }
        if self.insecure {
            Ok(ServerCertVerified::assertion())
        } else {
            result
        }
    }

    // Handshake signatures are checked even with --insecure: they prove the
    // peer holds the key of the certificate it showed, whatever that is.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The certificates in a PEM file; none when it cannot be read.
fn pem_certs(file: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(file)
        .map(|certs| certs.flatten().collect())
        .unwrap_or_default()
}

fn roots(ca_file: &[CertificateDer<'static>]) -> RootCertStore {
    let mut store = RootCertStore::empty();
    let system = pem_certs(Path::new(SYSTEM_ROOTS));
    for cert in system.into_iter().chain(ca_file.iter().cloned()) {
        let _ = store.add(cert);
    }
    store
}

pub async fn handshake(
    tcp: TcpStream,
    host: &str,
    insecure: bool,
    ca_file: Option<&Path>,
    limit: Duration,
) -> Result<(Step, TlsStream<TcpStream>), Step> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pinned = ca_file.map(pem_certs).unwrap_or_default();
    let store = roots(&pinned);
    let inner = if store.is_empty() {
        None
    } else {
        WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
            .build()
            .ok()
    };
    let seen = Arc::new(Mutex::new(None));
    let verifier = RecordingVerifier {
        inner,
        provider: provider.clone(),
        insecure,
        pinned,
        seen: seen.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        });
    let mut config = match config {
        Ok(c) => c,
        Err(e) => {
            return Err(Step::fail(
                "tls",
                "tls_setup",
                e.to_string(),
                "the TLS library could not be set up",
                "report this as a bug",
            ))
        }
    };
    // WebSocket runs over HTTP/1.1; a proxy offering h2 would not upgrade.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = match ServerName::try_from(host.to_owned()) {
        Ok(n) => n,
        Err(e) => {
            return Err(Step::fail(
                "tls",
                "bad_server_name",
                format!("{host:?}: {e}"),
                "the host cannot be used as a TLS server name",
                "use the host name the certificate was issued for",
            ))
        }
    };
    let started = Instant::now();
    let connector = TlsConnector::from(Arc::new(config));
    let outcome = timeout(limit, connector.connect(name, tcp)).await;
    let elapsed = started.elapsed();
    let rejection = seen.lock().ok().and_then(|s| s.clone());
    match outcome {
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            let version = conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
            let figure = format!("{version} in {}", human(elapsed));
            let step = match rejection {
                Some(r) => {
                    let (finding, cause, fix) = explain(&r, host);
                    Step::warn("tls", finding, format!("{figure}; certificate NOT verified (--insecure)"), cause, fix)
                }
                None => Step::pass("tls", format!("{figure}; certificate valid for {host}")),
            };
            Ok((step.took(elapsed), stream))
        }
        Ok(Err(e)) => Err(match rejection {
            Some(r) => {
                let (finding, cause, fix) = explain(&r, host);
                Step::fail("tls", finding, format!("certificate rejected: {}", r.error), cause, fix)
            }
            None => Step::fail(
                "tls",
                "tls_handshake",
                format!("handshake failed: {e}"),
                "the port does not speak TLS (a plain ws:// server?) or the server refused every protocol version and cipher we offer",
                "use ws:// if the server has no TLS; otherwise check its TLS configuration (openssl s_client -connect HOST:PORT)",
            ),
        }
        .took(elapsed)),
        Err(_) => Err(Step::fail(
            "tls",
            "tls_timeout",
            format!("no TLS answer within {}", human(limit)),
            "the server accepted TCP but never answered the TLS hello: a plain TCP service, or a proxy waiting for something else",
            "check that the port serves TLS (wss://); use ws:// if it does not",
        )
        .took(elapsed)),
    }
}

/// Names a certificate rejection: `(finding, cause, fix)`.
fn explain(r: &Rejection, host: &str) -> (&'static str, String, String) {
    use CertificateError as C;
    match &r.error {
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => (
            "expired",
            "the certificate has expired (or this machine's clock is wrong)".into(),
            "renew the certificate (certbot renew, or your CA's tooling) and reload the server; check the clock with `date`".into(),
        ),
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => (
            "not_yet_valid",
            "the certificate is not valid yet: a clock is wrong here or on the machine that issued it".into(),
            "fix the clock (NTP) or wait until the certificate's start date".into(),
        ),
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => (
            "wrong_host",
            format!("the certificate is not issued for {host:?}"),
            format!("use the host name the certificate names, or issue one that includes {host}"),
        ),
        error if is_ca_as_end_entity(error) && r.self_signed => (
            "self_signed_ca",
            "the certificate is self-signed and marked as a CA (basicConstraints CA:TRUE, what a plain `openssl req -x509` makes): no trusted authority vouches for it, and a CA certificate is refused as a server's own certificate".into(),
            "for a test, trust this very certificate with --ca-file CERT.pem (or skip checks with --insecure); or make a proper leaf certificate: add `-addext basicConstraints=critical,CA:FALSE` to the openssl command, or use one from a CA (e.g. Let's Encrypt)".into(),
        ),
        error if is_ca_as_end_entity(error) => (
            "ca_as_server_cert",
            "the server shows a CA certificate (basicConstraints CA:TRUE) as its own: verifiers only accept a leaf certificate there".into(),
            "serve a leaf certificate issued by that CA (CA:FALSE), with the CA's certificate after it in the chain file; or trust this very certificate with --ca-file CERT.pem".into(),
        ),
        rustls::Error::InvalidCertificate(C::UnknownIssuer) if r.self_signed => (
            "self_signed",
            "the certificate is self-signed: no trusted authority vouches for it, and browsers refuse it".into(),
            "use a certificate from a public CA (e.g. Let's Encrypt); for a test, trust it with --ca-file or skip checks with --insecure".into(),
        ),
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => (
            "unknown_issuer",
            "the certificate chain does not lead to a trusted root: a private CA, or the server does not send its intermediate certificates".into(),
            "serve the full chain (fullchain.pem, not cert.pem), or trust the private CA with --ca-file".into(),
        ),
        other => (
            "bad_certificate",
            format!("the certificate was rejected: {other}"),
            "check the certificate with `openssl s_client -connect HOST:PORT -showcerts`".into(),
        ),
    }
}
