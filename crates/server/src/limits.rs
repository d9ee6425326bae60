//! Admission limits: connection caps (global, per IP, and the open-file
//! budget), the per-IP handshake token bucket, and the per-connection message
//! bucket.
//!
//! Everything here refuses *new* work; nothing here ever touches a
//! connection that is already established, so overload degrades into
//! "try again later" instead of failing the clients that are connected.

use crate::config::LimitsConfig;
use parking_lot::Mutex;
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// The longest wait [`TokenBucket::take`] advises. A rate so small that
    /// the next token is further away (or one that is 0 or not a number,
    /// which `Config::validate` refuses anyway) says "a day", never panics.
    pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        // Keep the arithmetic below finite: NaN or a negative rate never
        // refills, an infinite one refills at once.
        let rate = if rate.is_nan() || rate <= 0.0 {
            0.0
        } else {
            rate.min(f64::MAX)
        };
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        // `elapsed * rate` may be +inf for a huge rate; `min` brings it back.
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes one token, or says how long until one is available (at most
    /// [`TokenBucket::MAX_WAIT`]).
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            // A tiny rate makes this +inf or beyond what a Duration holds;
            // a zero rate makes it +inf. Both saturate instead of panicking.
            let wait = (1.0 - self.tokens) / self.rate;
            Err(Duration::try_from_secs_f64(wait)
                .unwrap_or(Self::MAX_WAIT)
                .min(Self::MAX_WAIT))
        }
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Denied {
    /// The node holds `max_connections`.
    NodeFull,
    /// The process is near its open-file limit.
    FileLimit,
    /// This IP holds `max_connections_per_ip`.
    IpFull,
    /// This IP opened connections faster than its bucket allows.
    HandshakeRate { retry_after: Duration },
}

struct IpState {
    connections: usize,
    bucket: TokenBucket,
}

/// Counts connections and handshakes and decides admission.
pub struct Admission {
    cfg: LimitsConfig,
    /// Established WebSocket connections.
    connections: AtomicUsize,
    /// Open TCP sockets (accepted, any stage), against the file budget.
    sockets: AtomicUsize,
    /// Sockets the process may hold before refusing new handshakes.
    socket_budget: usize,
    per_ip: Mutex<HashMap<IpAddr, IpState>>,
}

impl Admission {
    pub fn new(cfg: LimitsConfig, socket_budget: usize) -> Arc<Self> {
        Arc::new(Admission {
            cfg,
            connections: AtomicUsize::new(0),
            sockets: AtomicUsize::new(0),
            socket_budget,
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Registers an accepted TCP socket for as long as the guard lives.
    pub fn socket(self: &Arc<Self>) -> SocketGuard {
        self.sockets.fetch_add(1, Ordering::AcqRel);
        SocketGuard(self.clone())
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn sockets(&self) -> usize {
        self.sockets.load(Ordering::Acquire)
    }

    /// Whether the open sockets (handshaking or upgraded) have reached the
    /// budget the open-file limit allows: then new work is refused.
    pub fn over_file_budget(&self) -> bool {
        self.sockets() + self.connections() > self.socket_budget
    }

    /// Admits one WebSocket connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Denied> {
        if self.over_file_budget() {
            return Err(Denied::FileLimit);
        }
        if self.connections() >= self.cfg.max_connections {
            return Err(Denied::NodeFull);
        }
        let now = Instant::now();
        let mut map = self.per_ip.lock();
        let state = map.entry(ip).or_insert_with(|| IpState {
            connections: 0,
            bucket: TokenBucket::new(
                self.cfg.handshake_rate_per_ip,
                self.cfg.handshake_burst_per_ip,
                now,
            ),
        });
        if state.connections >= self.cfg.max_connections_per_ip {
            return Err(Denied::IpFull);
        }
        state
            .bucket
            .take(now)
            .map_err(|retry_after| Denied::HandshakeRate { retry_after })?;
        state.connections += 1;
        self.connections.fetch_add(1, Ordering::AcqRel);
        Ok(ConnectionPermit {
            admission: self.clone(),
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
        let mut map = self.per_ip.lock();
        let now = Instant::now();
        if let Some(state) = map.get_mut(&ip) {
            state.connections = state.connections.saturating_sub(1);
            // Forget idle IPs whose bucket has refilled, so the map stays small.
            if state.connections == 0 && state.bucket.is_full(now) {
                map.remove(&ip);
            }
        }
    }

    /// Drops per-IP entries that hold nothing; called periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.per_ip
            .lock()
            .retain(|_, s| s.connections > 0 || !s.bucket.is_full(now));
    }
}

/// Holds one established connection's place; released on drop.
pub struct ConnectionPermit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.admission.release(self.ip);
    }
}

pub struct SocketGuard(Arc<Admission>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitsConfig {
        LimitsConfig {
            max_connections: 3,
            max_connections_per_ip: 2,
            handshake_rate_per_ip: 1.0,
            handshake_burst_per_ip: 2,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 1, t0);
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert!(wait <= Duration::from_millis(500) && wait > Duration::from_millis(400));
        assert!(b.take(t0 + Duration::from_millis(500)).is_ok());
    }

    #[test]
    fn absurd_rates_saturate_instead_of_panicking() {
        let t0 = Instant::now();
        for rate in [
            1e-300,
            1e-320, // subnormal
            f64::MIN_POSITIVE,
            0.0,
            -1.0,
            f64::NAN,
            f64::NEG_INFINITY,
        ] {
            let mut b = TokenBucket::new(rate, 1, t0);
            assert!(b.take(t0).is_ok(), "{rate}: the burst is there");
            let wait = b.take(t0).unwrap_err();
            assert_eq!(wait, TokenBucket::MAX_WAIT, "{rate}");
            // Much later the bucket is still total (and a tiny rate has refilled nothing).
            let later = t0 + Duration::from_secs(3600);
            assert_eq!(b.take(later).unwrap_err(), TokenBucket::MAX_WAIT, "{rate}");
        }
        for rate in [f64::MAX, f64::INFINITY] {
            let mut b = TokenBucket::new(rate, 1, t0);
            assert!(b.take(t0).is_ok());
            let wait = b.take(t0).unwrap_err();
            assert!(wait <= Duration::from_nanos(1), "{rate}: {wait:?}");
            assert!(b.take(t0 + Duration::from_millis(1)).is_ok(), "{rate}");
        }
        // A small but sane rate advises its real wait.
        let mut b = TokenBucket::new(0.001, 1, t0);
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert!(wait > Duration::from_secs(999) && wait <= Duration::from_secs(1000));
    }

    #[test]
    fn per_ip_and_global_caps() {
        let a = Admission::new(cfg(), 1000);
        let ip1: IpAddr = [10, 0, 0, 1].into();
        let ip2: IpAddr = [10, 0, 0, 2].into();
        let p1 = a.admit(ip1).expect("first");
        let _p2 = a.admit(ip1).expect("second");
        assert_eq!(a.admit(ip1).err(), Some(Denied::IpFull));
        let _p3 = a.admit(ip2).expect("other ip");
        assert_eq!(a.admit(ip2).err(), Some(Denied::NodeFull));
        drop(p1);
        assert_eq!(a.connections(), 2);
    }

    #[test]
    fn handshake_bucket_limits_bursts() {
        let mut c = cfg();
        c.max_connections_per_ip = 100;
        c.max_connections = 100;
        let a = Admission::new(c, 1000);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let _a = a.admit(ip).expect("1");
        let _b = a.admit(ip).expect("2");
        assert!(matches!(a.admit(ip), Err(Denied::HandshakeRate { .. })));
    }

    #[test]
    fn socket_budget_refuses_before_the_file_limit() {
        let a = Admission::new(cfg(), 1);
        let _s1 = a.socket();
        let _s2 = a.socket();
        assert_eq!(a.admit([10, 0, 0, 1].into()).err(), Some(Denied::FileLimit));
    }
}
