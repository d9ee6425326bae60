//! The bare baseline `tether bench` compares Tether against: a plain
//! tokio-websockets server with no protocol, no limits, no history.
//! `/echo` echoes every message; any other path joins one broadcast group in
//! which every message a connection sends goes to all the others.
//!
//! Run with: `cargo run --release --manifest-path benches/baseline/Cargo.toml -- 127.0.0.1:18081`
//! (prints `baseline listening on ADDR` when ready).

use futures_util::{SinkExt, StreamExt};
use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
};
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::broadcast,
};
use tokio_websockets::{Message, ServerBuilder};

/// Messages buffered for a subscriber that falls behind (then it skips).
const BROADCAST_CAPACITY: usize = 1024;
/// The accept queue: the same as Tether's (`LISTEN_BACKLOG` in
/// crates/server/src/listener.rs), Node's and Socket.IO's in benches/, so
/// that no server's connect rate is set by its backlog. (`TcpListener::bind`
/// asks for 128, which 256 handshakes in flight overflow.)
const LISTEN_BACKLOG: u32 = 4096;
/// Messages written before one flush.
const WRITE_BATCH: usize = 256;

type Group = broadcast::Sender<(u64, bytes::Bytes)>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[tokio::main]
async fn main() -> std::io::Result<()> {
    raise_open_files();
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
    println!("baseline listening on {}", listener.local_addr()?);
    let (group, _) = broadcast::channel(BROADCAST_CAPACITY);
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let group = group.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    serve(tcp, group).await;
                });
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

async fn serve(tcp: TcpStream, group: Group) {
    let Ok((request, mut ws)) = ServerBuilder::new().accept(tcp).await else {
        return;
    };
    if request.uri().path() == "/echo" {
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                return;
            }
        }
        return;
    }
    let me = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut rx = group.subscribe();
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(msg)) if msg.is_text() => {
                    let _ = group.send((me, msg.into_payload().into()));
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            item = rx.recv() => {
                let mut next = match item {
                    Ok(item) => Some(item),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let mut n = 0;
                while let Some((from, bytes)) = next.take() {
                    if from != me && ws.feed(Message::text(bytes)).await.is_err() {
                        return;
                    }
                    n += 1;
                    if n < WRITE_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Same as any server meant to hold 10k connections: soft limit = hard limit.
fn raise_open_files() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}
