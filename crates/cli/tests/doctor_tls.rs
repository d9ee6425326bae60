//! TLS certificate problems, each named: self-signed, wrong host name,
//! expired; `--insecure` goes on (with a warning) and `--ca-file` trusts a
//! private certificate. The server is `tether serve` with `--tls-cert`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use tether_test_util::TestServer;

struct Tls {
    dir: TempDir,
}

impl Tls {
    /// Writes a self-signed certificate for `names`, valid from `years`
    /// (a range of calendar years) when given.
    fn new(names: &[&str], years: Option<(i32, i32)>) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if let Some((from, to)) = years {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let cert = params.self_signed(&key).unwrap();
        let dir = TempDir::new("tls");
        std::fs::write(dir.path("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path("key.pem"), key.serialize_pem()).unwrap();
        Tls { dir }
    }

    fn cert(&self) -> String {
        self.dir.path("cert.pem").to_string_lossy().into_owned()
    }

    async fn server(&self) -> TestServer {
        let key = self.dir.path("key.pem").to_string_lossy().into_owned();
        TestServer::start(&[("tls-cert", &self.cert()), ("tls-key", &key)]).await
    }
}

#[tokio::test]
async fn a_self_signed_certificate_is_named_and_insecure_goes_on() {
    let tls = Tls::new(&["localhost"], None);
    let server = tls.server().await;
    let url = format!("wss://localhost:{}/ws", server.addr.port());

    let (code, report) = doctor(&[&url]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_step(&report, "tcp", "pass", None);
    assert_step(&report, "tls", "fail", Some("self_signed"));
    assert_step(&report, "upgrade", "skip", None);

    let (code, report) = doctor(&[&url, "--insecure"]).await;
    assert_eq!(code, 0, "{report:#}");
    assert_step(&report, "tls", "warn", Some("self_signed"));
    assert_step(&report, "first_message", "pass", None);

    let (code, report) = doctor(&[&url, "--ca-file", &tls.cert()]).await;
    assert_healthy(code, &report);
}

#[tokio::test]
async fn a_certificate_for_another_name_is_named_wrong_host() {
    let tls = Tls::new(&["localhost"], None);
    let server = tls.server().await;
    let url = format!("wss://127.0.0.1:{}/ws", server.addr.port());
    let (code, report) = doctor(&[&url, "--ca-file", &tls.cert()]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_step(&report, "tls", "fail", Some("wrong_host"));
}

#[tokio::test]
async fn an_expired_certificate_is_named_expired() {
    let tls = Tls::new(&["localhost"], Some((2020, 2021)));
    let server = tls.server().await;
    let url = format!("wss://localhost:{}/echo", server.addr.port());
    let (code, report) = doctor(&[&url, "--ca-file", &tls.cert()]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_step(&report, "tls", "fail", Some("expired"));
    assert!(step(&report, "tls")["fix"]
        .as_str()
        .unwrap()
        .contains("renew"));
}

/// Makes the certificate a newcomer makes first, with the real openssl:
/// `openssl req -x509 ... -nodes -subj /CN=NAME -addext subjectAltName=SAN`,
/// which is CA:TRUE. Returns the certificate's and the key's paths.
fn openssl_req_x509(dir: &TempDir, cn: &str, san: &str) -> (String, String) {
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "2", "-nodes", "-subj", &format!("/CN={cn}")])
        .args(["-addext", &format!("subjectAltName={san}")])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl (Debian package openssl)");
    assert!(status.success());
    let path = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    (path(cert), path(key))
}

/// webpki refuses a CA certificate as the server's own, so an `openssl req
/// -x509` certificate failed with an undocumented `bad_certificate` even
/// with `--ca-file`.
#[tokio::test]
async fn an_openssl_req_x509_certificate_passes_with_ca_file_and_is_explained_without() {
    let dir = TempDir::new("openssl");
    let (cert, key) = openssl_req_x509(&dir, "localhost", "DNS:localhost,IP:127.0.0.1");
    let server = TestServer::start(&[("tls-cert", &cert), ("tls-key", &key)]).await;
    let port = server.addr.port();

    for host in ["localhost", "127.0.0.1"] {
        let url = format!("wss://{host}:{port}/ws");
        let (code, report) = doctor(&[&url, "--ca-file", &cert]).await;
        assert_healthy(code, &report);
    }

    let url = format!("wss://localhost:{port}/ws");
    let (code, report) = doctor(&[&url]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_step(&report, "tls", "fail", Some("self_signed_ca"));
    let fix = step(&report, "tls")["fix"].as_str().unwrap();
    assert!(
        fix.contains("--ca-file") && fix.contains("CA:FALSE"),
        "{fix}"
    );
}

/// Trusting a certificate with `--ca-file` does not make it valid for
/// every name.
#[tokio::test]
async fn a_pinned_openssl_certificate_still_has_to_name_the_host() {
    let dir = TempDir::new("openssl-other");
    let (cert, key) = openssl_req_x509(&dir, "elsewhere.test", "DNS:elsewhere.test");
    let server = TestServer::start(&[("tls-cert", &cert), ("tls-key", &key)]).await;
    let url = format!("wss://localhost:{}/ws", server.addr.port());
    let (code, report) = doctor(&[&url, "--ca-file", &cert]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_step(&report, "tls", "fail", Some("wrong_host"));
}
