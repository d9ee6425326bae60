//! Self-signed certificates written to files, for servers started with
//! `--tls-cert`/`--tls-key` in tests.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

/// A certificate and its key, as PEM files in a directory of their own.
pub struct TestCert {
    /// The certificate in PEM, to hand to a client as a trusted root.
    pub pem: String,
    /// The certificate in DER, for a rustls root store.
    pub der: Vec<u8>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl TestCert {
    /// A self-signed certificate for `names` (e.g. `["localhost"]`).
    pub fn self_signed(names: &[&str]) -> Self {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .expect("certificate");
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tether-cert-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("cert dir");
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        std::fs::write(&cert_path, ck.cert.pem()).expect("write cert");
        std::fs::write(&key_path, ck.key_pair.serialize_pem()).expect("write key");
        TestCert {
            pem: ck.cert.pem(),
            der: ck.cert.der().to_vec(),
            cert_path,
            key_path,
        }
    }

    /// The `tether serve` flags that serve this certificate.
    pub fn flags(&self) -> [(&'static str, String); 2] {
        [
            ("tls-cert", self.cert_path.to_string_lossy().into_owned()),
            ("tls-key", self.key_path.to_string_lossy().into_owned()),
        ]
    }
}
