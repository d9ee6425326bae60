//! A real HTTP backend for hook and event tests: it records every request
//! (path, headers, JSON body) and answers as the test says — at once, late,
//! never, with garbage, or not at all (down: nothing listens on its port,
//! so connections are refused; up again on the same port).
//!
//! HTTP/1.1 by hand over tokio: small, and it can misbehave in ways a
//! framework would not let it. [`Backend::start_tls`] serves it over TLS
//! (`https://`) with a test certificate.

use serde_json::Value;
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::TcpListener,
    sync::Notify,
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

/// One request the backend received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The raw body.
    pub body: String,
}

impl Received {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status and a JSON body.
    Json(u16, Value),
    /// A status and any body (garbage included).
    Raw(u16, String),
    /// The reply after a delay.
    Late(Duration, Box<Reply>),
    /// Reads the request and never answers (until the backend stops).
    Hang,
    /// Closes the connection without answering.
    Close,
}

type Responder = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

struct Shared {
    received: Mutex<Vec<Received>>,
    responder: Mutex<Responder>,
    arrived: Notify,
}

pub struct Backend {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    /// Serves TLS with this, when started with [`Backend::start_tls`].
    tls: Option<TlsAcceptor>,
}

impl Backend {
    /// Starts on 127.0.0.1:0, answering every request `200 {}`.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Like [`Backend::start`], serving `https://` with `cert` (made for
    /// `127.0.0.1`, see [`crate::tls::TestCert`]).
    pub async fn start_tls(cert: &crate::tls::TestCert) -> Self {
        let certs = rustls_pemfile::certs(&mut cert.pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key_pem = std::fs::read(&cert.key_path).unwrap();
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .unwrap()
            .unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Self::start_with(Some(TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            responder: Mutex::new(Arc::new(|_| Reply::Json(200, serde_json::json!({})))),
            arrived: Notify::new(),
        });
        let task = Some(tokio::spawn(serve(listener, shared.clone(), tls.clone())));
        Backend {
            addr,
            shared,
            task,
            tls,
        }
    }

    /// `http://ADDR/PATH` (`https://` when serving TLS).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Answers from now on with `respond(request)`.
    pub fn respond(&self, respond: impl Fn(&Received) -> Reply + Send + Sync + 'static) {
        *self.shared.responder.lock().unwrap() = Arc::new(respond);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The requests so far to `path`.
    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `done(requests so far)` holds, or panics after `limit`.
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&[Received]) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let arrived = self.shared.arrived.notified();
            if done(&self.shared.received.lock().unwrap()) {
                return;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let n = self.shared.received.lock().unwrap().len();
                panic!("the backend's requests did not reach the expected state within {limit:?} ({n} received)");
            }
        }
    }

    /// Stops listening: new connections are refused, open ones are cut.
    pub async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn up(&mut self) {
        if self.task.is_some() {
            return;
        }
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let tls = self.tls.clone();
        self.task = Some(tokio::spawn(serve(listener, self.shared.clone(), tls)));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        match tls.clone() {
            None => connections.spawn(connection(stream, shared)),
            Some(tls) => connections.spawn(async move {
                if let Ok(stream) = tls.accept(stream).await {
                    connection(stream, shared).await;
                }
            }),
        };
        // Finished connections are reaped as new ones come.
        while connections.try_join_next().is_some() {}
    }
}

/// Serves keep-alive requests on one connection until it closes.
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(stream: S, shared: Arc<Shared>) {
    let mut stream = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut stream).await else {
            return;
        };
        let respond = shared.responder.lock().unwrap().clone();
        let mut reply = respond(&request);
        shared.received.lock().unwrap().push(request);
        shared.arrived.notify_waiters();
        let (status, body) = loop {
            match reply {
                Reply::Json(status, v) => break (status, v.to_string()),
                Reply::Raw(status, body) => break (status, body),
                Reply::Late(wait, then) => {
                    tokio::time::sleep(wait).await;
                    reply = *then;
                }
                Reply::Hang => std::future::pending::<()>().await,
                Reply::Close => return,
            }
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let out = stream.get_mut();
        if out.write_all(head.as_bytes()).await.is_err()
            || out.write_all(body.as_bytes()).await.is_err()
        {
            return;
        }
    }
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> Option<Received> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        stream.read_line(&mut line).await.ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.ok()?;
    Some(Received {
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
