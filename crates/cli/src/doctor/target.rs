//! The URL layer: what we are about to connect to, and the mistakes that are
//! visible before a single packet is sent (wrong scheme, mixed content).

use super::report::Step;

/// What the first message should look like, decided by the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/ws`: the Tether protocol, which starts with a `welcome`.
    Tether,
    /// `/echo`: every message comes back unchanged.
    Echo,
    /// Anything else: a foreign WebSocket server; an open socket is enough.
    Foreign,
}

#[derive(Clone, Debug)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, as sent in the request line.
    pub path: String,
    pub route: Route,
}

impl Target {
    /// The `Host` header: the port only when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Parses and checks `url`; `page_origin` is the origin of the page that
/// would open it (from `--page-origin`, or `--origin`).
pub fn check(url: &str, page_origin: Option<&str>) -> (Step, Option<Target>) {
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            return (
                Step::fail(
                    "url",
                    "bad_url",
                    format!("{url:?} is not a URL: {e}"),
                    "the URL cannot be parsed",
                    "write it as ws://host:port/path or wss://host/path",
                ),
                None,
            )
        }
    };
    let mut notes = Vec::new();
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        // Browsers reject http(s):// in `new WebSocket`; diagnose the rest anyway.
        Some("http") => {
            notes.push("http:// taken as ws:// (browsers need ws:// here)");
            false
        }
        Some("https") => {
            notes.push("https:// taken as wss:// (browsers need wss:// here)");
            true
        }
        other => {
            return (
                Step::fail(
                    "url",
                    "bad_scheme",
                    format!("scheme {:?}", other.unwrap_or("")),
                    "a WebSocket URL starts with ws:// or wss://",
                    "use ws://host:port/ws, or wss://host/ws behind TLS",
                ),
                None,
            )
        }
    };
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return (
            Step::fail(
                "url",
                "bad_url",
                "no host in the URL",
                "the URL names no server",
                "write it as ws://host:port/path",
            ),
            None,
        );
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    let bare = uri.path().trim_end_matches('/');
    let route = if bare.ends_with("/ws") {
        Route::Tether
    } else if bare.ends_with("/echo") {
        Route::Echo
    } else {
        Route::Foreign
    };
    let target = Target {
        tls,
        host,
        port,
        path,
        route,
    };
    let what = match route {
        Route::Tether => "the Tether protocol route",
        Route::Echo => "the echo route",
        Route::Foreign => "not a Tether route: expecting any WebSocket server",
    };
    let mut figure = format!(
        "{}://{}{} ({what})",
        if tls { "wss" } else { "ws" },
        target.host_header(),
        target.path
    );
    for n in notes {
        figure.push_str("; ");
        figure.push_str(n);
    }
    if !tls {
        if let Some(origin) = page_origin.filter(|o| o.starts_with("https://")) {
            // Mixed content: the browser blocks it before any network traffic.
            return (
                Step::fail(
                    "url",
                    "mixed_content",
                    figure,
                    format!("a page served from {origin} may only open wss:// WebSockets; the browser blocks ws:// as mixed content"),
                    "serve the WebSocket over TLS (tether serve --tls-cert/--tls-key, or a TLS-terminating proxy) and use wss://",
                ),
                Some(target),
            );
        }
    }
    (Step::pass("url", figure), Some(target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::Verdict;

    #[test]
    fn routes_ports_and_host_header() {
        let (s, t) = check("ws://127.0.0.1:8080/ws?token=x", None);
        let t = t.unwrap();
        assert_eq!(s.verdict, Verdict::Pass);
        assert_eq!(
            (t.port, t.route, t.path.as_str()),
            (8080, Route::Tether, "/ws?token=x")
        );
        assert_eq!(t.host_header(), "127.0.0.1:8080");
        let t = check("wss://example.com/echo", None).1.unwrap();
        assert_eq!(
            (t.port, t.route, t.host_header().as_str()),
            (443, Route::Echo, "example.com")
        );
        let t = check("ws://[::1]:9/", None).1.unwrap();
        assert_eq!((t.host.as_str(), t.route), ("::1", Route::Foreign));
        assert_eq!(t.host_header(), "[::1]:9");
    }

    #[test]
    fn ws_from_an_https_page_needs_wss() {
        let (s, t) = check("ws://example.com/ws", Some("https://app.example.com"));
        assert_eq!(s.finding, Some("mixed_content"));
        assert!(t.is_some());
        let (s, _) = check("wss://example.com/ws", Some("https://app.example.com"));
        assert_eq!(s.verdict, Verdict::Pass);
    }

    #[test]
    fn other_schemes_are_refused() {
        let (s, t) = check("ftp://example.com/ws", None);
        assert_eq!(s.finding, Some("bad_scheme"));
        assert!(t.is_none());
    }
}
