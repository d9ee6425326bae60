//! The HTTP upgrade, written by hand over the raw stream: a WebSocket
//! library would turn every non-101 answer into one opaque error, while the
//! status, the one-line reason body and `Retry-After` are exactly what names
//! the cause.

use super::{
    report::{human, Step},
    target::Target,
};
use base64::Engine;
use std::time::{Duration, Instant};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::timeout,
};

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// A response head longer than this is not a WebSocket server's.
const MAX_HEAD: usize = 16 * 1024;
/// Enough of a refusal body to show its first line.
const MAX_BODY: usize = 4096;

/// What goes into the request besides the WebSocket headers.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    pub origin: Option<String>,
    pub token: Option<String>,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The first non-empty line of the body, for refusals.
    pub body_line: Option<String>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case(name)
                && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    }
}

pub fn accept_for(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

fn request(target: &Target, extras: &Extras, key: &str) -> String {
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: tether-doctor/{}\r\n",
        target.path,
        target.host_header(),
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(o) = &extras.origin {
        req.push_str(&format!("Origin: {o}\r\n"));
    }
    if let Some(t) = &extras.token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in &extras.headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Sends the upgrade request and checks the answer. On success the stream
/// is positioned right after the 101 head, ready for WebSocket frames.
pub async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    target: &Target,
    extras: &Extras,
    limit: Duration,
) -> Result<Step, Step> {
    let key_bytes: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    let key = base64::engine::general_purpose::STANDARD.encode(key_bytes);
    let started = Instant::now();
    let exchange = async {
        io.write_all(request(target, extras, &key).as_bytes())
            .await?;
        io.flush().await?;
        read_response(io, limit).await
    };
    let response = match timeout(limit, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Err(Step::fail(
                "upgrade",
                "no_http_response",
                format!("no HTTP response: {e}"),
                "the connection closed or sent something that is not HTTP: a non-HTTP service, a TLS port spoken to in plain text, or a proxy that refuses the request silently",
                "check the scheme (ws:// vs wss://) and that the port serves HTTP",
            )
            .took(started.elapsed()))
        }
        Err(_) => {
            return Err(Step::fail(
                "upgrade",
                "upgrade_timeout",
                format!("no response to the upgrade within {}", human(limit)),
                "the server or a proxy accepted the connection but never answered the request",
                "check that the port serves HTTP; a proxy may be waiting on an unreachable backend",
            )
            .took(started.elapsed()))
        }
    };
    let elapsed = started.elapsed();
    if response.status != 101 {
        let (finding, cause, fix) = explain_status(&response, extras.origin.as_deref());
        let mut figure = format!("HTTP {}", response.status);
        if let Some(line) = &response.body_line {
            figure.push_str(&format!(": {line:?}"));
        }
        if let Some(ra) = response.header("retry-after") {
            figure.push_str(&format!(" (Retry-After: {ra})"));
        }
        return Err(Step::fail("upgrade", finding, figure, cause, fix).took(elapsed));
    }
    let expected = accept_for(&key);
    match response.header("sec-websocket-accept") {
        Some(got) if got.trim() == expected => {}
        got => {
            return Err(Step::fail(
                "upgrade",
                "bad_accept",
                format!("101, but Sec-WebSocket-Accept is {:?} instead of {expected:?}", got.unwrap_or("missing")),
                "something answered 101 without computing the accept key from our Sec-WebSocket-Key: a proxy or server that rewrites or fakes the handshake, or a broken WebSocket implementation",
                "connect to the backend directly (--compare) to find which hop breaks it; fix or replace that hop",
            )
            .took(elapsed))
        }
    }
    if !response.has_token("upgrade", "websocket") || !response.has_token("connection", "upgrade") {
        return Ok(Step::warn(
            "upgrade",
            "sloppy_101",
            format!(
                "101 in {} but without Upgrade: websocket / Connection: Upgrade",
                human(elapsed)
            ),
            "strict clients (browsers) reject a 101 without these headers",
            "fix the server or proxy so the 101 carries both headers",
        )
        .took(elapsed));
    }
    Ok(Step::pass(
        "upgrade",
        format!(
            "101 Switching Protocols in {}, accept key valid",
            human(elapsed)
        ),
    )
    .took(elapsed))
}

/// Reads the response head byte by byte (so no WebSocket byte after it is
/// consumed), then, for a refusal, the start of the body.
async fn read_response<S: AsyncRead + Unpin>(
    io: &mut S,
    limit: Duration,
) -> std::io::Result<Response> {
    let mut head = Vec::with_capacity(512);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(std::io::Error::other("response head too long"));
        }
        match io.read_u8().await {
            Ok(b) => head.push(b),
            Err(e) if head.is_empty() => return Err(e),
            Err(_) => {
                return Err(std::io::Error::other(format!(
                    "connection closed mid-response after {:?}",
                    String::from_utf8_lossy(&head)
                )))
            }
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => {
            return Err(std::io::Error::other(format!(
                "not an HTTP response: {:?}",
                String::from_utf8_lossy(&head[..head.len().min(80)])
            )))
        }
    }
    let mut response = Response {
        status: parsed.code.unwrap_or(0),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body_line: None,
    };
    if response.status != 101 {
        let len = response
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok());
        let want = len.unwrap_or(MAX_BODY).min(MAX_BODY);
        let mut body = vec![0u8; want];
        let mut got = 0;
        // Without a length the body ends at close, which may never come: a
        // short grace period is enough to catch a one-line reason.
        let grace = if len.is_some() {
            limit
        } else {
            Duration::from_millis(300)
        };
        let _ = timeout(grace, async {
            while got < want {
                match io.read(&mut body[got..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
        })
        .await;
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"));
        response.body_line = first_line(&body[..got], chunked);
    }
    Ok(response)
}

fn first_line(body: &[u8], chunked: bool) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if chunked {
        // The first line is a chunk size in hex; the reason follows.
        lines.next();
    }
    let line = lines.next()?;
    Some(line.chars().take(200).collect())
}

/// Why a server or proxy answered the upgrade with `status` instead of 101:
/// `(finding, cause, fix)`. `origin` is the Origin we sent, if any.
pub fn explain_status(r: &Response, origin: Option<&str>) -> (&'static str, String, String) {
    const NGINX_FIX: &str = "in the proxy, forward the upgrade: nginx needs `proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\";` in the location (see docs/troubleshooting.md); HAProxy forwards them by itself";
    let body = r.body_line.as_deref().unwrap_or("").to_ascii_lowercase();
    let retry = r
        .header("retry-after")
        .map(|s| format!("; the server asks to retry after {} s", s.trim()))
        .unwrap_or_default();
    let s = |x: &str| x.to_owned();
    match r.status {
        200..=299 => (
            "plain_http_response",
            format!("an HTTP server answered {} to the upgrade as if it were a plain request: usually a proxy that does not forward the Upgrade and Connection headers (so the backend never saw a WebSocket request), or a URL that is a web page, not a WebSocket endpoint", r.status),
            format!("{NGINX_FIX}; and check that the path is the WebSocket route (/ws or /echo on Tether)"),
        ),
        301 | 302 | 303 | 307 | 308 => (
            "redirect",
            format!("the server redirects to {:?}; WebSocket clients do not follow redirects", r.header("location").unwrap_or("?")),
            s("connect to the final URL directly (often wss:// instead of ws://, or a trailing slash)"),
        ),
        400 if body.contains("upgrade") || body.contains("connection") => (
            "upgrade_headers_dropped",
            s("the server got a plain request without `Upgrade: websocket` / `Connection: Upgrade`: a proxy in between drops these hop-by-hop headers"),
            s(NGINX_FIX),
        ),
        400 if body.contains("version") => (
            "bad_version",
            s("the server does not accept Sec-WebSocket-Version 13"),
            s("use an RFC 6455 (version 13) client; check that nothing rewrites the header"),
        ),
        400 => (
            "bad_request",
            s("the server refused the upgrade request as malformed"),
            s("read the reason above; a proxy may be altering the request (--compare with the direct URL)"),
        ),
        401 => (
            "unauthorized",
            s("the server needs a valid token: none was sent, or it is wrong or expired"),
            s("pass one with --token (sent as Authorization: Bearer), check its secret/key and expiry; browsers send it as ?token= in the URL"),
        ),
        403 if origin.is_some() || body.contains("origin") => (
            "origin_refused",
            format!("the server refuses the Origin {:?}", origin.unwrap_or("(none)")),
            s("add the page's origin to the server's allow-list (tether serve --allowed-origins https://app.example.com), or open the page from an allowed origin"),
        ),
        403 => (
            "forbidden",
            s("the server or a proxy forbids this request (an ACL, a WAF, or a token without permission)"),
            s("read the reason above; check proxy access rules and the token's permissions"),
        ),
        404 => (
            "wrong_path",
            s("nothing is served at this path"),
            s("check the path: Tether serves /ws (protocol) and /echo (plain echo); behind a proxy check the location block and any path rewrite"),
        ),
        405 => (
            "method_not_allowed",
            s("the endpoint does not accept GET: not a WebSocket endpoint"),
            s("check the path"),
        ),
        426 => (
            "upgrade_required",
            s("the server requires a different protocol: another WebSocket version, or TLS"),
            s("try wss://, and check the Sec-WebSocket-Version the server wants"),
        ),
        429 => (
            "rate_limited",
            format!("too many connection attempts from this address: the server's handshake rate limit{retry}"),
            s("clients must reconnect with jittered backoff and honour Retry-After; raise --handshake-rate-per-ip if the load is legitimate (many users behind one NAT)"),
        ),
        502 => (
            "bad_gateway",
            s("a proxy answered: it could not reach the WebSocket backend"),
            s("check that the backend runs and that the proxy's upstream address is right"),
        ),
        503 => (
            "unavailable",
            format!("the server is at its connection limit or draining for a restart{retry}"),
            s("retry after the advised delay; if it persists raise --max-connections / the open-file limit, or add nodes"),
        ),
        504 => (
            "gateway_timeout",
            s("a proxy answered: the backend did not respond in time"),
            s("check the backend's health and the proxy's connect/read timeouts"),
        ),
        500..=599 => (
            "server_error",
            format!("the server failed with {}", r.status),
            s("check the server's log around this time"),
        ),
        _ => (
            "unexpected_status",
            format!("HTTP {} is not a WebSocket answer", r.status),
            s("check the URL and what serves it"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str, headers: &[(&str, &str)]) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body_line: Some(body.into()).filter(|b: &String| !b.is_empty()),
        }
    }

    #[test]
    fn every_refusal_status_is_named() {
        let cases: &[(u16, &str, &str)] = &[
            (200, "<html>", "plain_http_response"),
            (301, "", "redirect"),
            (
                400,
                "not a WebSocket upgrade request: missing `Upgrade: websocket`",
                "upgrade_headers_dropped",
            ),
            (400, "unsupported Sec-WebSocket-Version", "bad_version"),
            (400, "bad", "bad_request"),
            (401, "unauthorized: no token", "unauthorized"),
            (
                403,
                "forbidden: origin \"https://evil\" is not allowed",
                "origin_refused",
            ),
            (403, "nope", "forbidden"),
            (404, "not found", "wrong_path"),
            (426, "", "upgrade_required"),
            (429, "too many", "rate_limited"),
            (502, "", "bad_gateway"),
            (503, "draining", "unavailable"),
            (504, "", "gateway_timeout"),
            (500, "", "server_error"),
            (418, "", "unexpected_status"),
        ];
        for (status, body, finding) in cases {
            let (got, cause, fix) = explain_status(&resp(*status, body, &[]), None);
            assert_eq!(got, *finding, "status {status} body {body:?}");
            assert!(!cause.is_empty() && !fix.is_empty());
        }
    }

    #[test]
    fn retry_after_and_origin_are_quoted() {
        let (_, cause, _) = explain_status(&resp(503, "x", &[("Retry-After", "7")]), None);
        assert!(cause.contains("7 s"), "{cause}");
        let (f, cause, _) =
            explain_status(&resp(403, "forbidden", &[]), Some("https://evil.example"));
        assert_eq!(f, "origin_refused");
        assert!(cause.contains("evil.example"));
    }

    #[test]
    fn rfc_accept_key_and_chunked_bodies() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            first_line(b"1a\r\nnot found here\r\n0\r\n", true).as_deref(),
            Some("not found here")
        );
        assert_eq!(
            first_line(b"\n  hello \nworld", false).as_deref(),
            Some("hello")
        );
    }
}
