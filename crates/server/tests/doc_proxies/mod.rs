//! The proxy configs the docs show: every ```nginx and ```haproxy block in
//! docs/*.md, read from the files and run as written but for the
//! substitutions docs/deployment.md names ("How these configs are tested"):
//! the `listen`/`bind` line becomes a free loopback port without TLS, and
//! every upstream `server` address becomes the server under test. The
//! `tether serve` line after each block gives the server its proxy flags,
//! so the docs cannot pair a config with flags the test does not run.
#![allow(dead_code)]

use std::net::SocketAddr;
use tether_test_util::{haproxy::Haproxy, nginx::Nginx};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Haproxy,
}

/// One proxy config block from the docs.
#[derive(Debug)]
pub struct DocProxy {
    /// `docs/deployment.md:49`, for failure messages.
    pub origin: String,
    pub kind: Kind,
    pub text: String,
    /// The proxy flags of the `tether serve` line that follows the block
    /// (`--proxy-protocol`, `--forwarded-header`), `--trusted-proxies`
    /// pointed at the proxy's address in the test (127.0.0.1).
    pub flags: Vec<(String, String)>,
}

/// A proxy started from a doc block.
pub enum Running {
    Nginx(Nginx),
    Haproxy(Haproxy),
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Running::Nginx(n) => n.addr(),
            Running::Haproxy(h) => h.addr(),
        }
    }

    /// The proxy's own log, for a failure message.
    pub fn log(&self) -> String {
        match self {
            Running::Nginx(n) => n.log(),
            Running::Haproxy(h) => h.log(),
        }
    }
}

/// A fenced block: its language, the line its fence opens on, its text.
struct Block {
    lang: String,
    line: usize,
    text: String,
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in doc.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_owned(),
                    line: n + 1,
                    text: String::new(),
                })
            }
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some(b), None) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// Every nginx and HAProxy config in docs/*.md, in file and line order.
pub fn all() -> Vec<DocProxy> {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let mut files: Vec<_> = std::fs::read_dir(&docs)
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read doc");
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = format!("docs/{}", name.unwrap_or_default());
        let blocks = blocks(&text);
        for (i, b) in blocks.iter().enumerate() {
            let kind = match b.lang.as_str() {
                "nginx" => Kind::Nginx,
                "haproxy" => Kind::Haproxy,
                _ => continue,
            };
            let origin = format!("{name}:{}", b.line);
            // The `tether serve` line that goes with it: the next console
            // block, before any other proxy config.
            let serve = blocks[i + 1..]
                .iter()
                .take_while(|n| n.lang != "nginx" && n.lang != "haproxy")
                .find(|n| n.lang == "console" && n.text.contains("$ tether serve"))
                .unwrap_or_else(|| {
                    panic!("{origin}: no `$ tether serve ...` console block follows this config")
                });
            out.push(DocProxy {
                flags: serve_flags(&origin, &serve.text),
                origin,
                kind,
                text: b.text.clone(),
            });
        }
    }
    assert!(
        out.iter().any(|d| d.kind == Kind::Nginx) && out.iter().any(|d| d.kind == Kind::Haproxy),
        "no nginx or no haproxy block found in docs/: {out:?}"
    );
    out
}

/// The proxy flags of a `$ tether serve ...` line (with `\` continuations).
fn serve_flags(origin: &str, console: &str) -> Vec<(String, String)> {
    let joined = console.replace("\\\n", " ");
    let line = joined
        .lines()
        .find_map(|l| l.trim().strip_prefix("$ tether serve"))
        .unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut flags = Vec::new();
    let mut trusted = false;
    for (i, w) in words.iter().enumerate() {
        let value = words.get(i + 1).filter(|v| !v.starts_with("--"));
        match *w {
            "--trusted-proxies" => trusted = true,
            "--proxy-protocol" => flags.push(("proxy-protocol".into(), String::new())),
            "--forwarded-header" => {
                let v =
                    value.unwrap_or_else(|| panic!("{origin}: --forwarded-header without a value"));
                flags.push(("forwarded-header".into(), v.to_string()));
            }
            _ => {}
        }
    }
    assert!(
        trusted,
        "{origin}: its `tether serve` line sets no --trusted-proxies"
    );
    flags.push(("trusted-proxies".into(), "127.0.0.1".into()));
    flags
}

impl DocProxy {
    /// The server's flags for this config plus `extra`.
    pub fn server_flags<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut all: Vec<(&str, &str)> = self
            .flags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        all.extend_from_slice(extra);
        all
    }

    /// The config with the documented substitutions, listening on `port`
    /// and forwarding to `upstream`.
    pub fn substituted(&self, port: u16, upstream: SocketAddr) -> String {
        let mut out = String::new();
        let mut listened = false;
        for line in self.text.lines() {
            let t = line.trim_start();
            let words: Vec<&str> = t.split_whitespace().collect();
            let replaced = match (self.kind, words.first().copied()) {
                (Kind::Nginx, Some("listen")) if listened => continue,
                (Kind::Nginx, Some("listen")) => {
                    listened = true;
                    format!("listen 127.0.0.1:{port};")
                }
                (Kind::Nginx, Some("ssl_certificate" | "ssl_certificate_key")) => continue,
                // `server ADDR [params];` in an upstream, not `server {`.
                (Kind::Nginx, Some("server")) if words.get(1) != Some(&"{") => {
                    t.replacen(words[1].trim_end_matches(';'), &upstream.to_string(), 1)
                }
                (Kind::Haproxy, Some("bind")) => format!("bind 127.0.0.1:{port}"),
                (Kind::Haproxy, Some("server")) if words.len() >= 3 => {
                    t.replacen(words[2], &upstream.to_string(), 1)
                }
                _ => t.to_owned(),
            };
            let indent = &line[..line.len() - t.len()];
            out.push_str(indent);
            out.push_str(&replaced);
            out.push('\n');
        }
        // Test traffic stays on loopback: an address the substitutions
        // missed (say, an upstream written on one line) stops the test here.
        let stray = out
            .split(|c: char| c.is_whitespace() || ";{}".contains(c))
            .filter_map(|w| w.parse::<SocketAddr>().ok())
            .find(|a| !a.ip().is_loopback());
        assert!(
            stray.is_none(),
            "{}: {stray:?} is left after the documented substitutions:\n{out}",
            self.origin
        );
        out
    }

    /// Starts the proxy in front of `upstream`.
    pub async fn start(&self, upstream: SocketAddr) -> Running {
        match self.kind {
            Kind::Nginx => {
                Running::Nginx(Nginx::start_http(|port| self.substituted(port, upstream)).await)
            }
            Kind::Haproxy => {
                Running::Haproxy(Haproxy::start(|port| self.substituted(port, upstream)).await)
            }
        }
    }
}

/// Runs `check` on every doc config, each in its own task so that one
/// failure does not hide the others; fails naming every config that failed.
pub async fn each<F, Fut>(check: F)
where
    F: Fn(DocProxy) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut failed = Vec::new();
    for doc in all() {
        let origin = format!("{} ({:?})", doc.origin, doc.kind);
        if tokio::spawn(check(doc)).await.is_err() {
            failed.push(origin);
        }
    }
    assert!(failed.is_empty(), "failed through: {failed:?}");
}
