//! TLS (wss:// and https://) from PEM certificate and key files, on rustls.

use crate::config::TlsConfig;
use std::{fs::File, io::BufReader, path::Path, sync::Arc};
use tokio_rustls::{
    rustls::{self, pki_types::CertificateDer},
    TlsAcceptor,
};

/// The certificate or key could not be used; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

fn open(path: &Path, what: &str) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| TlsError(format!("cannot read {what} {}: {e}", path.display())))
}

/// Builds the acceptor, or `None` when TLS is not configured.
pub fn acceptor(cfg: &TlsConfig) -> Result<Option<TlsAcceptor>, TlsError> {
    let (Some(cert_path), Some(key_path)) = (&cfg.cert, &cfg.key) else {
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut open(cert_path, "--tls-cert")?)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                TlsError(format!(
                    "--tls-cert {} is not PEM: {e}",
                    cert_path.display()
                ))
            })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "--tls-cert {} holds no certificate",
            cert_path.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut open(key_path, "--tls-key")?)
        .map_err(|e| TlsError(format!("--tls-key {} is not PEM: {e}", key_path.display())))?
        .ok_or_else(|| {
            TlsError(format!(
                "--tls-key {} holds no private key",
                key_path.display()
            ))
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}
