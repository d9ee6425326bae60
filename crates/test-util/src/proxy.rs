//! A fault-injecting TCP proxy: what a flaky network, a restarting load
//! balancer or a half-dead NAT does to a connection, on demand.
//!
//! Listens on `127.0.0.1:0` and forwards every connection to one target. A
//! test can cut all current connections (with an RST, like a crashed
//! middlebox, or a FIN, like one that closes politely), stall forwarding
//! while keeping the sockets open (a half-open connection), and delay every
//! forwarded chunk.

use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::watch,
    task::JoinHandle,
};

/// How [`Proxy::cut`] ends connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Abort both sockets with a TCP reset (SO_LINGER 0).
    Reset,
    /// Close both sockets with a FIN.
    Fin,
}

struct Control {
    /// Bumped by every cut; connections compare it with the value they started with.
    cuts: watch::Sender<(u64, Cut)>,
    paused: watch::Sender<bool>,
    delay: watch::Sender<Duration>,
    accepted: watch::Sender<u64>,
}

pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    control: Arc<Control>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let control = Arc::new(Control {
            cuts: watch::channel((0, Cut::Reset)).0,
            paused: watch::channel(false).0,
            delay: watch::channel(Duration::ZERO).0,
            accepted: watch::channel(0).0,
        });
        let ctl = control.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                ctl.accepted.send_modify(|n| *n += 1);
                let ctl = ctl.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        pipe(client, server, &ctl).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            control,
            task,
        }
    }

    /// `ws://ADDR{path}` through the proxy.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Ends every connection open now; later connections are not affected.
    pub fn cut(&self, how: Cut) {
        self.control.cuts.send_modify(|(n, cut)| {
            *n += 1;
            *cut = how;
        });
    }

    /// Stops forwarding in both directions without closing anything (bytes
    /// wait in the proxy and the kernel buffers), or resumes it.
    pub fn pause(&self, paused: bool) {
        self.control.paused.send_replace(paused);
    }

    /// Delays every forwarded chunk by `delay`.
    pub fn delay(&self, delay: Duration) {
        self.control.delay.send_replace(delay);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        *self.control.accepted.borrow()
    }

    /// Waits until at least `n` connections were accepted.
    pub async fn wait_accepted(&self, n: u64) {
        let mut rx = self.control.accepted.subscribe();
        tokio::time::timeout(crate::STEP, rx.wait_for(|a| *a >= n))
            .await
            .expect("proxy connection in time")
            .expect("proxy running");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut(Cut::Reset);
    }
}

/// Forwards both directions until either side closes or a cut arrives.
async fn pipe(client: TcpStream, server: TcpStream, ctl: &Control) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut cuts = ctl.cuts.subscribe();
    let (started, _) = *cuts.borrow_and_update();
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let cut = tokio::select! {
        cut = async {
            loop {
                if cuts.changed().await.is_err() {
                    return Cut::Reset;
                }
                let (n, how) = *cuts.borrow();
                if n > started {
                    return how;
                }
            }
        } => Some(cut),
        _ = async {
            tokio::join!(forward(&mut cr, &mut sw, ctl), forward(&mut sr, &mut cw, ctl))
        } => None,
    };
    match cut {
        Some(Cut::Reset) => {
            for (r, w) in [(cr, cw), (sr, sw)] {
                if let Ok(stream) = r.reunite(w) {
                    // Linger 0 makes close() send an RST instead of a FIN; the
                    // socket is non-blocking, so the drop does not block.
                    #[allow(deprecated)]
                    let _ = stream.set_linger(Some(Duration::ZERO));
                    drop(stream);
                }
            }
        }
        Some(Cut::Fin) => {
            let _ = cw.shutdown().await;
            let _ = sw.shutdown().await;
        }
        None => {}
    }
}

/// Copies one direction chunk by chunk, honouring pause and delay; on EOF
/// passes the FIN on.
async fn forward(from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf, ctl: &Control) {
    let mut paused = ctl.paused.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = *ctl.delay.borrow();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if paused.wait_for(|p| !*p).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
