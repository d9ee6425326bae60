//! The listener: accepts TCP connections, serves HTTP/1.1 on each (with the
//! upgrade to WebSocket), and runs the graceful drain.
//!
//! Every accepted socket is counted from accept on: globally (the open-file
//! budget) and under its client address (`max_connections_per_ip`). Near the
//! open-file limit, or when its address is at its cap, a new socket is
//! answered with a raw 503 and closed at once, so the node keeps a
//! descriptor to say "try later" with and never fails the connections it
//! already holds. With `--proxy-protocol`, trusted peers' sockets start with
//! a PROXY header, read here before TLS and HTTP.

use crate::{
    client_addr::TrustedProxies,
    config::Config,
    fdlimit,
    gate::denied_to_refusal,
    handshake::{retry_secs, Refusal},
    http::{router, DeadlineBody, PeerAddr},
    limits::{Denied, SocketGuard},
    node::Node,
    proxy_protocol::{self, Source},
};
use axum::body::Body;
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    time::timeout,
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{info, warn};

/// Connections the kernel may hold for us before we accept them (the
/// accept queue; the kernel caps it at `net.core.somaxconn`, 4096 by
/// default since Linux 5.4). `TcpListener::bind` asks for 128 (the standard
/// library's value), which a burst of a few hundred handshakes overflows:
/// the kernel then drops SYNs and clients retry after 1, 3, 7 s.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` the way `TcpListener::bind` does (`SO_REUSEADDR` on Unix),
/// with a [`LISTEN_BACKLOG`]-deep accept queue.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A bound, not yet running server.
pub struct Server {
    node: Arc<Node>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    trusted: Arc<TrustedProxies>,
}

/// Why the server could not start; each names what to fix.
///
/// Each cause appears once in `{:#}` (anyhow's chain): a variant either
/// shows its cause in its own message or exposes it as `source()`, never
/// both. `Auth` and `Tls` messages already name the flag and file.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The OS error is the `source()`, printed after this by `{:#}`.
    #[error("cannot listen on {addr}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("--trusted-proxies: {0}")]
    TrustedProxies(String),
}

impl Server {
    /// Binds the configured address and builds the node. Raises the
    /// open-file limit first, so the socket budget reflects it.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let limit = fdlimit::raise_to_hard_limit();
        let tls = crate::tls::acceptor(&config.tls)?;
        let trusted =
            TrustedProxies::from_config(&config.proxy).map_err(StartError::TrustedProxies)?;
        let addr = config.server.listen;
        let listener = listen(addr).map_err(|source| StartError::Bind { addr, source })?;
        let node = Node::new(config, fdlimit::socket_budget(limit))?;
        Ok(Server {
            node,
            listener,
            tls,
            trusted: Arc::new(trusted),
        })
    }

    /// `wss`/`https` when TLS is configured.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn node(&self) -> Arc<Node> {
        self.node.clone()
    }

    /// Serves until `signal` resolves, then drains: refuse new connections,
    /// close every client with 1012, wait up to `drain_timeout`.
    pub async fn run(self, signal: impl Future<Output = ()>) {
        let Server {
            node,
            listener,
            tls,
            trusted,
        } = self;
        let edge = Arc::new(Edge {
            node: node.clone(),
            app: router(node.clone()),
            tls,
            trusted,
        });
        let sweeper = tokio::spawn({
            let node = node.clone();
            async move {
                let every = Duration::from_secs(10);
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    node.sweep();
                }
            }
        });
        let ticker = tokio::spawn({
            let node = node.clone();
            async move {
                let hb = &node.config.heartbeat;
                let period = crate::heartbeat::Ticker::period(hb.ping_interval, hb.pong_timeout);
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    node.ticker.tick(tokio::time::Instant::now());
                }
            }
        });
        tokio::pin!(signal);
        loop {
            tokio::select! {
                () = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => accept(&edge, tcp, peer),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        let open = node.admission.connections();
        info!(
            connections = open,
            "draining: closing every client with 1012"
        );
        node.start_drain();
        node.tasks.close();
        let deadline = tokio::time::Instant::now() + node.config.server.drain_timeout;
        if tokio::time::timeout_at(deadline, node.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                left = node.admission.connections(),
                "drain timeout reached; exiting with clients still connected"
            );
        } else {
            info!("drained");
        }
        // The sessions' leaves: sent before the node goes (with Redis they
        // would otherwise wait for the entries to expire).
        if timeout(Duration::from_secs(2), node.broker.presence_flushed())
            .await
            .is_err()
        {
            warn!("presence leaves not all written to the broker before exit");
        }
        sweeper.abort();
        ticker.abort();
        flush_events(&node, deadline).await;
    }
}

/// The end of a drain with lifecycle events: every session's `disconnect`
/// is queued by now; they are sent (within what is left of the drain
/// timeout) and the node leaves the broker's node registry. A backend that
/// does not acknowledge them in time loses them, unless (`--broker redis`)
/// another node is there to send them as `node_lost`.
async fn flush_events(node: &Node, deadline: tokio::time::Instant) {
    let Some(events) = &node.events else {
        return;
    };
    if events.flush(deadline).await {
        info!("lifecycle events delivered");
    } else {
        warn!(
            waiting = events.waiting(),
            "drain timeout reached with lifecycle events the backend has not acknowledged"
        );
    }
    // Leaving the registry is quick; it gets a moment even when the drain
    // ran out, or another node would wait --node-ttl to claim this one.
    let leave_by = deadline.max(tokio::time::Instant::now() + Duration::from_secs(1));
    let _ = tokio::time::timeout_at(leave_by, node.broker.node_leaving()).await;
}

/// What every connection task needs besides the node.
struct Edge {
    node: Arc<Node>,
    app: axum::Router,
    tls: Option<TlsAcceptor>,
    trusted: Arc<TrustedProxies>,
}

fn accept(edge: &Arc<Edge>, tcp: TcpStream, peer: SocketAddr) {
    let node = &edge.node;
    // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    // Counted globally at once, so the budget check sees this socket too.
    let Ok(mut socket) = node.admission.socket(None) else {
        return;
    };
    if node.admission.over_file_budget() {
        // Answering holds a descriptor of the reserve for up to a second:
        // only so many at once, the rest are closed unanswered.
        let Some(slot) = node.admission.over_budget_refusal() else {
            node.metrics.handshake("file_limit_unanswered");
            return;
        };
        let node = node.clone();
        node.clone().tasks.spawn(async move {
            refuse_raw(node, tcp, peer, Denied::FileLimit, socket).await;
            drop(slot);
        });
        return;
    }
    let trusted = edge.trusted.contains(peer.ip());
    // A trusted proxy's socket is not counted under the proxy's address:
    // that would put every client behind it under one cap. Its client is
    // counted once known (PROXY header below, or per upgrade from
    // the header --forwarded-header names).
    if !trusted {
        if let Err(denied) = socket.assign(peer.ip()) {
            node.tasks
                .spawn(refuse_raw(node.clone(), tcp, peer, denied, socket));
            return;
        }
    }
    let _ = tcp.set_nodelay(true);
    let edge = edge.clone();
    node.clone().tasks.spawn(async move {
        if !(trusted && edge.node.config.proxy.protocol) {
            return serve(edge, tcp, peer, socket).await;
        }
        let wait = edge.node.config.limits.handshake_timeout;
        match timeout(wait, proxy_protocol::read_header(tcp)).await {
            Ok(Ok((source, stream))) => {
                let client = match source {
                    Source::Client(c) => SocketAddr::new(c.ip().to_canonical(), c.port()),
                    Source::Local => peer,
                };
                if !edge.trusted.contains(client.ip()) {
                    if let Err(denied) = socket.assign(client.ip()) {
                        let node = edge.node.clone();
                        return refuse_raw(node, stream, client, denied, socket).await;
                    }
                }
                serve(edge, stream, client, socket).await
            }
            Ok(Err(e)) => {
                edge.node.metrics.refusal("proxy_header");
                warn!(%peer, error = %e, "dropping a connection from a trusted proxy: --proxy-protocol is on and it sent no valid PROXY header");
            }
            Err(_) => {
                edge.node.metrics.refusal("proxy_header");
                warn!(%peer, "dropping a connection from a trusted proxy: --proxy-protocol is on and no PROXY header arrived within the handshake timeout");
            }
        }
    });
}

/// Serves one stream whose connection-level client is `client` (the peer,
/// or what its PROXY header said): TLS first when configured, then HTTP.
async fn serve<I>(edge: Arc<Edge>, io: I, client: SocketAddr, socket: SocketGuard)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let socket = Arc::new(socket);
    match edge.tls.clone() {
        None => serve_http(edge, io, client, socket).await,
        Some(acceptor) => {
            // The handshake timeout covers TLS too: a peer that stalls
            // mid-handshake holds a socket, so it gets the same budget.
            let wait = edge.node.config.limits.handshake_timeout;
            match timeout(wait, acceptor.accept(io)).await {
                Ok(Ok(stream)) => serve_http(edge, stream, client, socket).await,
                Ok(Err(e)) => info!(peer = %client, error = %e, "TLS handshake failed"),
                Err(_) => info!(peer = %client, "handshake timed out during TLS"),
            }
        }
    }
}

/// Serves HTTP/1.1 (with upgrades) on one accepted stream.
///
/// Time bounds, all `handshake_timeout`: the request head (and, because
/// hyper starts that timer whenever it waits for a head, an idle keep-alive
/// socket between requests), and each request body ([`DeadlineBody`]).
async fn serve_http<I>(edge: Arc<Edge>, io: I, client: SocketAddr, socket: Arc<SocketGuard>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let wait = edge.node.config.limits.handshake_timeout;
    let app = edge.app.clone();
    let trusted = edge.trusted.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        // Headers only count when the hop that sent them is trusted.
        let addr = trusted.client(client, req.headers());
        let mut req = req.map(|body| Body::new(DeadlineBody::new(body, wait)));
        req.extensions_mut().insert(PeerAddr {
            addr,
            socket: socket.clone(),
        });
        app.clone().oneshot(req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(wait)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => log_conn_end(client, res),
        () = edge.node.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = timeout(Duration::from_secs(2), conn).await;
        }
    }
}

fn log_conn_end(peer: SocketAddr, res: Result<(), hyper::Error>) {
    if let Err(e) = res {
        if e.is_timeout() {
            info!(%peer, "connection closed: no request head within the handshake timeout (slow or idle client)");
        } else {
            tracing::debug!(%peer, error = %e, "http connection ended with an error");
        }
    }
}

/// Answers a socket the node has no room for with a short 503 and closes
/// it, holding its place (`_socket`) until then. Nothing of the request is
/// parsed; what the client sent is read and discarded for a moment after
/// the answer, because closing with unread data makes the kernel send a
/// reset that can destroy the answer before the client reads it.
async fn refuse_raw<I>(
    node: Arc<Node>,
    mut io: I,
    peer: SocketAddr,
    denied: Denied,
    _socket: SocketGuard,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let refusal = denied_to_refusal(denied);
    node.metrics.handshake(refusal.outcome());
    let status = refusal.status();
    let reason = refusal.message();
    info!(%peer, status = status.as_u16(), %reason, "connection refused");
    let body = format!("{reason}\n");
    let retry = match &refusal {
        Refusal::RateLimited { retry_after } | Refusal::Unavailable { retry_after, .. } => {
            format!("Retry-After: {}\r\n", retry_secs(*retry_after))
        }
        _ => String::new(),
    };
    let response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n{retry}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    let _ = timeout(Duration::from_secs(1), async {
        io.write_all(response.as_bytes()).await?;
        io.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match io.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
}
