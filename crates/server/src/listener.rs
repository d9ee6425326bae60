//! The listener: accepts TCP connections, serves HTTP/1.1 on each (with the
//! upgrade to WebSocket), and runs the graceful drain.
//!
//! Near the open-file limit a new socket is answered with a raw 503 and
//! closed at once, so the node keeps a descriptor to say "try later" with
//! and never fails the connections it already holds.

use crate::{
    config::Config,
    fdlimit,
    http::{router, PeerAddr},
    node::Node,
};
use axum::body::Body;
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    time::timeout,
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{info, warn};

/// A bound, not yet running server.
pub struct Server {
    node: Arc<Node>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
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
    Auth(#[from] crate::auth::KeyError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl Server {
    /// Binds the configured address and builds the node. Raises the
    /// open-file limit first, so the socket budget reflects it.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let limit = fdlimit::raise_to_hard_limit();
        let tls = crate::tls::acceptor(&config.tls)?;
        let addr = config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let node = Node::new(config, fdlimit::socket_budget(limit))?;
        Ok(Server {
            node,
            listener,
            tls,
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
        } = self;
        let app = router(node.clone());
        let sweeper = tokio::spawn({
            let node = node.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(10));
                loop {
                    tick.tick().await;
                    node.sweep();
                }
            }
        });
        tokio::pin!(signal);
        loop {
            tokio::select! {
                () = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => accept(&node, &app, tls.as_ref(), tcp, peer),
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
        let drain = node.config.server.drain_timeout;
        if timeout(drain, node.tasks.wait()).await.is_err() {
            warn!(
                left = node.admission.connections(),
                "drain timeout reached; exiting with clients still connected"
            );
        } else {
            info!("drained");
        }
        sweeper.abort();
    }
}

fn accept(
    node: &Arc<Node>,
    app: &axum::Router,
    tls: Option<&TlsAcceptor>,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let socket = node.admission.socket();
    if node.admission.over_file_budget() {
        node.metrics.handshake("file_limit");
        node.tasks.spawn(refuse_raw(tcp, peer));
        return;
    }
    let _ = tcp.set_nodelay(true);
    let node = node.clone();
    let app = app.clone();
    let tls = tls.cloned();
    node.clone().tasks.spawn(async move {
        let _socket = socket;
        match tls {
            None => serve_http(node, app, tcp, peer).await,
            Some(acceptor) => {
                // The handshake timeout covers TLS too: a peer that stalls
                // mid-handshake holds a socket, so it gets the same budget.
                match timeout(node.config.limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => serve_http(node, app, stream, peer).await,
                    Ok(Err(e)) => info!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => info!(%peer, "handshake timed out during TLS"),
                }
            }
        }
    });
}

/// Serves HTTP/1.1 (with upgrades) on one accepted stream.
async fn serve_http<I>(node: Arc<Node>, app: axum::Router, io: I, peer: SocketAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    {
        let service = service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(PeerAddr(peer));
            app.clone().oneshot(req.map(Body::new))
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(node.config.limits.handshake_timeout)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            res = conn.as_mut() => log_conn_end(peer, res),
            () = node.shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = timeout(Duration::from_secs(2), conn).await;
            }
        }
    }
}

fn log_conn_end(peer: SocketAddr, res: Result<(), hyper::Error>) {
    if let Err(e) = res {
        if e.is_timeout() {
            info!(%peer, "handshake timed out: request headers not received in time");
        } else {
            tracing::debug!(%peer, error = %e, "http connection ended with an error");
        }
    }
}

/// Answers a socket the node has no room for with a 503 and closes it.
async fn refuse_raw(mut tcp: TcpStream, peer: SocketAddr) {
    info!(%peer, status = 503, reason = "server near its open-file limit", "handshake refused");
    let body = "server near its open-file limit; retry in 2 s\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 2\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = timeout(Duration::from_secs(1), tcp.write_all(response.as_bytes())).await;
    let _ = tcp.shutdown().await;
}
