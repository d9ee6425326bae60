//! A minimal HTTP/1.1 client over a raw TCP stream: one request per
//! connection, enough for the API, health and metrics routes, and for
//! sending deliberately malformed requests.

use crate::STEP;
use std::net::SocketAddr;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    time::timeout,
};

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request as text, with `Connection: close`.
fn request_text(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

/// Sends one request and reads the whole response (`Connection: close`).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    raw(
        addr,
        request_text(addr, method, path, headers, body).as_bytes(),
    )
    .await
}

/// Like `request`, from a chosen loopback source address (e.g. 127.0.0.2).
pub async fn request_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let tcp = connect_from(source, addr).await.expect("connect");
    raw_on(
        tcp,
        request_text(addr, method, path, headers, body).as_bytes(),
    )
    .await
}

/// A TCP connection from a chosen local address (e.g. 127.0.0.2).
pub async fn connect_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
) -> std::io::Result<TcpStream> {
    let socket = if source.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// Sends raw bytes and parses whatever HTTP response comes back.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> HttpResponse {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    raw_on(tcp, bytes).await
}

/// Like `raw`, on an existing connection.
pub async fn raw_on(mut tcp: TcpStream, bytes: &[u8]) -> HttpResponse {
    tcp.write_all(bytes).await.expect("write");
    // Until the server closes, or a complete response with a Content-Length
    // has arrived (upgrade answers keep the socket open).
    parse(&read_response(&mut tcp).await)
}

fn complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    if head.starts_with("HTTP/1.1 101") {
        return true;
    }
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .is_some_and(|len| body.len() >= len)
}

fn parse(buf: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A WebSocket upgrade request for `path`, as raw bytes, from `source`;
/// returns the response (101 or the refusal).
pub async fn upgrade_from(source: std::net::IpAddr, addr: SocketAddr, path: &str) -> HttpResponse {
    let tcp = connect_from(source, addr).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    raw_on(tcp, req.as_bytes()).await
}

/// A WebSocket upgrade request for `path` with extra header lines
/// (`"X-Forwarded-For: 192.0.2.1"`), sent from `source` on a fresh socket.
/// Returns the response and the socket, which a 101 keeps open.
pub async fn upgrade_with(
    source: std::net::IpAddr,
    addr: SocketAddr,
    path: &str,
    extra: &[&str],
) -> (HttpResponse, TcpStream) {
    let tcp = connect_from(source, addr).await.expect("connect");
    upgrade_on(tcp, addr, path, extra).await
}

/// Like `upgrade_with`, on a socket the caller opened (and may already
/// have written a PROXY header to).
pub async fn upgrade_on(
    mut tcp: TcpStream,
    addr: SocketAddr,
    path: &str,
    extra: &[&str],
) -> (HttpResponse, TcpStream) {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let buf = read_response(&mut tcp).await;
    (parse(&buf), tcp)
}

/// Reads one response (head plus a Content-Length body, or a 101 head, or
/// until the server closes), within `STEP`, leaving the socket open.
pub async fn read_response(tcp: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 8192];
        loop {
            let n = tcp.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if complete(&buf) {
                break;
            }
        }
    };
    let _ = timeout(STEP, read).await;
    buf
}

/// Parses raw response bytes (as `read_response` returns them).
pub fn parse_response(buf: &[u8]) -> HttpResponse {
    parse(buf)
}

/// Completes a WebSocket upgrade by hand on a raw TCP connection and
/// returns the socket: a peer whose every later byte the test controls
/// (one that never reads, never answers pings, ...).
pub async fn raw_websocket(addr: SocketAddr, path: &str) -> TcpStream {
    use tokio::io::AsyncReadExt as _;
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 1024];
    let n = timeout(STEP, tcp.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"),
        "upgrade refused: {}",
        String::from_utf8_lossy(&buf[..n])
    );
    tcp
}

/// A client text frame (under 126 bytes); the all-zero mask leaves the
/// payload as it is.
pub fn masked_text(text: &str) -> Vec<u8> {
    assert!(text.len() < 126, "short frames only");
    let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// Any client frame: `opcode` (1 text, 2 binary, 0 continuation, 8 close,
/// 9 ping, 10 pong), the FIN bit, and a payload of up to 64 KiB; the
/// all-zero mask leaves the payload as it is.
pub fn masked_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![opcode | if fin { 0x80 } else { 0 }];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n => {
            let n = u16::try_from(n).expect("at most 64 KiB");
            frame.push(0x80 | 126);
            frame.extend_from_slice(&n.to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// `POST /api/publish` with `body` that may be refused: the status and the
/// parsed answer.
pub async fn try_publish(addr: SocketAddr, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let res = request(
        addr,
        "POST",
        "/api/publish",
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
    .await;
    (res.status, res.json())
}

/// `POST /api/publish`; returns the parsed answer.
pub async fn publish(
    addr: SocketAddr,
    channel: &str,
    data: serde_json::Value,
) -> serde_json::Value {
    let (status, answer) =
        try_publish(addr, &serde_json::json!({"channel": channel, "data": data})).await;
    assert_eq!(status, 200, "publish failed: {answer}");
    answer
}

/// `POST /api/publish` from a chosen loopback source address.
pub async fn publish_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
    channel: &str,
    data: serde_json::Value,
) -> serde_json::Value {
    let body = serde_json::json!({"channel": channel, "data": data}).to_string();
    let headers = [("Content-Type", "application/json")];
    let res = request_from(source, addr, "POST", "/api/publish", &headers, &body).await;
    assert_eq!(res.status, 200, "publish failed: {}", res.body);
    res.json()
}

/// The value of a metric line (first match of `name` with all `labels`).
pub async fn metric(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let res = request(addr, "GET", "/metrics", &[], "").await;
    metric_value(&res, name, labels)
}

/// Like `metric`, scraped from `source` (when 127.0.0.1 is a trusted proxy
/// expected to send a PROXY header, say).
pub async fn metric_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let res = request_from(source, addr, "GET", "/metrics", &[], "").await;
    metric_value(&res, name, labels)
}

fn metric_value(res: &HttpResponse, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(&res.body, name)
        .find(|(line, _)| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .map_or(0.0, |(_, value)| value)
}

/// The samples of metric `name` in a Prometheus text, each line with its
/// value; `name` may end with its first label to pick some
/// (`tether_closes_total{code="4004"`).
pub fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(move |l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ', ',', '}']))
        .filter_map(|l| Some((l, l.rsplit(' ').next()?.parse().ok()?)))
}
