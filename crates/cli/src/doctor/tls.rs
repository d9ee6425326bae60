//! The TLS layer. A custom certificate verifier wraps webpki's and records
//! the error it finds, so a failed handshake is named (expired, self-signed,
//! wrong host name, unknown CA) instead of reported as "handshake failed";
//! with `--insecure` the error is still recorded but does not stop us.

use super::report::{human, Step};
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
        client::{
            danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
            WebPkiServerVerifier,
        },
        crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider},
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
    seen: Arc<Mutex<Option<Rejection>>>,
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
        let result = match &self.inner {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        if let Err(error) = &result {
            let rejection = Rejection {
                error: error.clone(),
                self_signed: intermediates.is_empty() && is_self_issued(end_entity),
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

fn roots(ca_file: Option<&Path>) -> RootCertStore {
    let mut store = RootCertStore::empty();
    let files = [Some(Path::new(SYSTEM_ROOTS)), ca_file];
    for file in files.into_iter().flatten() {
        if let Ok(certs) = CertificateDer::pem_file_iter(file) {
            for cert in certs.flatten() {
                let _ = store.add(cert);
            }
        }
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
    let store = roots(ca_file);
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

/// True when the certificate's issuer equals its subject. A tiny DER walk:
/// Certificate ::= SEQUENCE { tbs SEQUENCE { [0] version?, serial, sigAlg,
/// issuer, validity, subject, ... } ... }.
fn is_self_issued(cert: &[u8]) -> bool {
    fn inner(b: &[u8]) -> Option<&[u8]> {
        der_tlv(b).map(|(_, content, _)| content)
    }
    let Some(tbs) = inner(cert).and_then(inner) else {
        return false;
    };
    let mut fields = Vec::new();
    let mut rest = tbs;
    while let Some((tag, _, next)) = der_tlv(rest) {
        let whole = &rest[..rest.len() - next.len()];
        if tag != 0xa0 {
            fields.push(whole);
        }
        rest = next;
        if fields.len() == 5 {
            break;
        }
    }
    // serial, signature algorithm, issuer, validity, subject
    fields.len() == 5 && fields[2] == fields[4]
}

/// One DER element: `(tag, content, rest)`.
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, x| (acc << 8) | *x as usize);
        (len, 2 + n)
    };
    let content = b.get(header..header + len)?;
    Some((tag, content, &b[header + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_issued_detection() {
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["ca.test".into()]).unwrap();
        let ca = ca.self_signed(&key).unwrap();
        assert!(is_self_issued(ca.der()));
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["leaf.test".into()]).unwrap();
        let mut leaf = leaf;
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "leaf");
        let leaf = leaf.signed_by(&leaf_key, &ca, &key).unwrap();
        assert!(!is_self_issued(leaf.der()));
        assert!(!is_self_issued(b"\x30\x03\x02\x01"));
    }
}
