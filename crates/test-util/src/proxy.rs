//! A fault-injecting TCP proxy: what a flaky network, a restarting load
//! balancer or a half-dead NAT does to a connection, on demand.
//!
//! Listens on `127.0.0.1:0` and forwards every connection to one target. A
//! test can cut all current connections (with an RST, like a crashed
//! middlebox, or a FIN, like one that closes politely), stall forwarding
//! while keeping the sockets open (a half-open connection), delay every
//! forwarded chunk with or without jitter, and cap each direction's
//! bandwidth. The kernel has no netem here (see FACTS.md), so latency and
//! jitter live in this proxy.

use std::{net::SocketAddr, pin::pin, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::{mpsc, watch},
    task::JoinHandle,
    time::{sleep_until, Instant},
};

/// Chunks read but not yet written, per direction: enough to keep a
/// delayed pipe full, small enough that a stalled one pushes back on its
/// sender through TCP instead of buffering without bound.
const IN_FLIGHT: usize = 64;

/// The largest chunk read at once.
const CHUNK: usize = 16 * 1024;

/// A bandwidth cap releases at most this fraction of a second's worth of
/// bytes at once, so the rate holds over short windows too.
const PACING_SLICES_PER_SECOND: u64 = 50;

/// The delay each forwarded chunk waits: uniform in `base ± jitter`.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    base: Duration,
    jitter: Duration,
}

impl Latency {
    /// One chunk's delay; `unit` is uniform in `[0, 1)`.
    fn sample(self, unit: f64) -> Duration {
        let secs = self.base.as_secs_f64() + self.jitter.as_secs_f64() * (2.0 * unit - 1.0);
        Duration::from_secs_f64(secs.max(0.0))
    }
}

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
    latency: watch::Sender<Latency>,
    /// Bytes per second per direction; `None` is unlimited.
    bandwidth: watch::Sender<Option<u64>>,
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
            latency: watch::channel(Latency::default()).0,
            bandwidth: watch::channel(None).0,
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

    /// Delays every forwarded chunk by `delay` (latency, not a rate
    /// limit: chunks read meanwhile travel behind it, each `delay` after
    /// it was read).
    pub fn delay(&self, delay: Duration) {
        self.jitter(delay, Duration::ZERO);
    }

    /// Delays every forwarded chunk by `delay ± jitter`, uniformly random
    /// per chunk (never below zero). A chunk never overtakes the one read
    /// before it in the same direction: TCP's bytes stay in order, as on a
    /// real path whose queueing delay varies.
    pub fn jitter(&self, delay: Duration, jitter: Duration) {
        self.control.latency.send_replace(Latency {
            base: delay,
            jitter,
        });
    }

    /// Caps each direction of every connection at `bytes_per_second`
    /// (`None` lifts the cap). Bytes beyond it wait in the proxy, then in
    /// the kernel's buffers, so the sender feels it as TCP backpressure.
    pub fn bandwidth(&self, bytes_per_second: Option<u64>) {
        self.control
            .bandwidth
            .send_replace(bytes_per_second.filter(|b| *b > 0));
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

/// Copies one direction: a reader stamps each chunk with the time it may
/// leave (its delay, never earlier than the chunk before it), a writer
/// releases chunks at those times, honouring pause and the bandwidth cap.
/// On EOF the writer drains what was read, then passes the FIN on; a
/// failed write ends the direction at once.
async fn forward(from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf, ctl: &Control) {
    let (chunks, mut queued) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let read = async move {
        let mut rng = fastrand::Rng::new();
        let mut buf = vec![0u8; CHUNK];
        let mut last_due = Instant::now();
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let latency = *ctl.latency.borrow();
            let due = (Instant::now() + latency.sample(rng.f64())).max(last_due);
            last_due = due;
            if chunks.send((due, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
        // The writer drains until every sender is gone.
        drop(chunks);
    };
    let mut write = pin!(async {
        let mut paused = ctl.paused.subscribe();
        let mut next_free = Instant::now();
        'chunks: while let Some((due, chunk)) = queued.recv().await {
            sleep_until(due).await;
            if paused.wait_for(|p| !*p).await.is_err() {
                break;
            }
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let rate = *ctl.bandwidth.borrow();
                let n = match rate {
                    None => rest.len(),
                    Some(rate) => {
                        sleep_until(next_free).await;
                        let n = rest.len().min(slice_len(rate));
                        let cost = Duration::from_secs_f64(n as f64 / rate as f64);
                        next_free = next_free.max(Instant::now()) + cost;
                        n
                    }
                };
                if to.write_all(&rest[..n]).await.is_err() {
                    break 'chunks;
                }
                rest = &rest[n..];
            }
        }
        let _ = to.shutdown().await;
    });
    tokio::select! {
        _ = read => write.await,
        _ = &mut write => {}
    }
}

/// The bytes one paced write may carry at `rate` bytes per second.
fn slice_len(rate: u64) -> usize {
    usize::try_from(rate / PACING_SLICES_PER_SECOND)
        .unwrap_or(usize::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant as StdInstant;

    /// Accepts one connection and returns everything it sent before EOF.
    async fn sink() -> (SocketAddr, JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("sink addr");
        let task = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut all = Vec::new();
            tcp.read_to_end(&mut all).await.expect("read");
            all
        });
        (addr, task)
    }

    #[test]
    fn latency_stays_within_its_spread() {
        let l = Latency {
            base: Duration::from_millis(100),
            jitter: Duration::from_millis(50),
        };
        assert_eq!(l.sample(0.0), Duration::from_millis(50));
        assert_eq!(l.sample(0.5), Duration::from_millis(100));
        assert!(l.sample(0.999_999) <= Duration::from_millis(150));
        assert!(l.sample(0.999_999) > Duration::from_millis(149));
        let wide = Latency {
            base: Duration::from_millis(10),
            jitter: Duration::from_millis(50),
        };
        assert_eq!(wide.sample(0.0), Duration::ZERO, "never below zero");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jitter_keeps_each_direction_in_order() {
        const CHUNKS: u32 = 200;
        let (target, received) = sink().await;
        let proxy = Proxy::start(target).await;
        // The spread (0..40 ms) is far wider than the gap between writes
        // (1 ms): chunks delayed independently would arrive shuffled.
        proxy.jitter(Duration::from_millis(20), Duration::from_millis(20));
        let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let mut pace = tokio::time::interval(Duration::from_millis(1));
        let mut sent = Vec::new();
        for i in 0..CHUNKS {
            pace.tick().await;
            let bytes = i.to_be_bytes();
            tcp.write_all(&bytes).await.expect("write");
            sent.extend_from_slice(&bytes);
        }
        tcp.shutdown().await.expect("fin");
        let got = tokio::time::timeout(crate::STEP, received)
            .await
            .expect("sink done in time")
            .expect("sink task");
        assert_eq!(got.len(), sent.len(), "every byte arrived");
        assert!(got == sent, "bytes arrived in the order they were sent");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bandwidth_cap_paces_a_direction() {
        const BYTES: usize = 100 * 1024;
        const RATE: u64 = 200 * 1024;
        let (target, received) = sink().await;
        let proxy = Proxy::start(target).await;
        proxy.bandwidth(Some(RATE));
        let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
        let started = StdInstant::now();
        tcp.write_all(&vec![7u8; BYTES]).await.expect("write");
        tcp.shutdown().await.expect("fin");
        let got = tokio::time::timeout(crate::STEP, received)
            .await
            .expect("sink done in time")
            .expect("sink task");
        let took = started.elapsed();
        assert_eq!(got.len(), BYTES);
        // 100 KiB at 200 KiB/s: half a second, less the one slice that
        // may leave at once; far less than that without a cap.
        assert!(took >= Duration::from_millis(450), "too fast: {took:?}");
        assert!(took < Duration::from_secs(3), "too slow: {took:?}");
    }

    #[tokio::test]
    async fn delay_applies_per_direction() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut byte = [0u8; 1];
            while tcp.read_exact(&mut byte).await.is_ok() {
                if tcp.write_all(&byte).await.is_err() {
                    break;
                }
            }
        });
        let proxy = Proxy::start(target).await;
        proxy.delay(Duration::from_millis(100));
        let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
        let started = StdInstant::now();
        tcp.write_all(b"x").await.expect("write");
        let mut echo = [0u8; 1];
        tokio::time::timeout(crate::STEP, tcp.read_exact(&mut echo))
            .await
            .expect("echo in time")
            .expect("echo");
        let rtt = started.elapsed();
        assert_eq!(&echo, b"x");
        assert!(
            rtt >= Duration::from_millis(200),
            "both ways delayed: {rtt:?}"
        );
        assert!(rtt < Duration::from_secs(2), "{rtt:?}");
    }
}
