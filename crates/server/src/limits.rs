//! Admission limits: connection caps (global, per client address, `/echo`'s,
//! and the open-file budget), the per-address handshake and API-publish token
//! buckets, and the per-connection message bucket. What one address may make
//! the node hold for channels (subscriptions, new channels) is in `channels`.
//!
//! Per address means per [`Admission::key`]: IPv4 addresses as they are,
//! IPv6 by `ipv6_prefix`. Every socket counts under its address from accept
//! on, HTTP or WebSocket; an upgraded socket is one place, not two.
//!
//! Everything here refuses *new* work; nothing here ever touches a
//! connection that is already established, so overload degrades into
//! "try again later" instead of failing the clients that are connected.

mod channels;

use crate::config::LimitsConfig;
pub use crate::token_bucket::TokenBucket;
pub use channels::{SubscriptionPermit, SubscriptionsFull};
use parking_lot::Mutex;
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Denied {
    /// The node holds `max_connections`.
    NodeFull,
    /// `/echo` holds `echo_max_connections`.
    EchoFull,
    /// The process is near its open-file limit.
    FileLimit,
    /// This address holds `max_connections_per_ip` sockets.
    IpFull,
    /// The node holds `max_long_poll_sessions`.
    LongPollFull,
    /// This address holds `max_long_poll_sessions_per_ip` sessions.
    LongPollIpFull,
    /// This address opened connections faster than its bucket allows.
    HandshakeRate { retry_after: Duration },
}

/// Which endpoint a connection is for: `/echo` has a cap of its own, so
/// diagnosis traffic cannot crowd out `/ws` and the other way round; so
/// have long-polling sessions, which hold no descriptor either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Tether,
    Echo,
    /// A long-polling session: a place under `--max-long-poll-sessions`
    /// and its per-address share, not under `--max-connections` (so
    /// sessions cannot starve WebSockets) nor the open-file budget (it has
    /// no socket of its own; its requests' sockets are counted as sockets).
    LongPoll,
}

/// What one client address (see [`crate::client_addr::group`]) holds.
struct IpState {
    /// Sockets from this address: HTTP connections in any stage plus
    /// WebSocket connections. An upgraded socket is counted once.
    held: usize,
    bucket: TokenBucket,
    /// `POST /api/publish` bucket, created on first use.
    publish: Option<TokenBucket>,
    /// Publish bodies being received from this address.
    bodies: usize,
    /// Subscriptions the sessions of this address hold.
    subscriptions: usize,
    /// Long-polling sessions of this address.
    longpoll: usize,
    /// New channels this address makes the node hold, created on first use.
    new_channels: Option<TokenBucket>,
}

/// `POST /api/publish` bodies one client address may have in flight at once:
/// each is held in memory while it arrives (up to `--max-message-bytes` +
/// 1 KiB), so one address can make the node hold at most this many.
pub const MAX_BODIES_PER_IP: usize = 64;

impl IpState {
    fn is_idle(&mut self, now: Instant) -> bool {
        self.held == 0
            && self.longpoll == 0
            && self.bodies == 0
            && self.subscriptions == 0
            && self.bucket.is_full(now)
            && self.publish.as_mut().is_none_or(|b| b.is_full(now))
            && self.new_channels.as_mut().is_none_or(|b| b.is_full(now))
    }
}

/// Counts sockets, connections and handshakes and decides admission.
pub struct Admission {
    cfg: LimitsConfig,
    echo_max_connections: usize,
    /// Established WebSocket connections (`/ws` and `/echo`) and
    /// long-polling sessions, as `tether_connections` shows them.
    connections: AtomicUsize,
    /// Of which on `/echo`.
    echo_connections: AtomicUsize,
    /// Of which long-polling sessions: under their own caps, not
    /// `max_connections`, and not in the open-file budget (no descriptor).
    longpoll_sessions: AtomicUsize,
    /// Open TCP sockets not (yet) upgraded, against the file budget.
    sockets: AtomicUsize,
    /// Sockets the process may hold before refusing new handshakes.
    socket_budget: usize,
    /// Sockets past the budget being answered 503 (each holds a descriptor
    /// of the reserve for up to a second); at most [`MAX_OVER_BUDGET_REFUSALS`].
    over_budget_refusals: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, IpState>>,
    /// Subscriptions held on the node (`channels`).
    subscriptions: AtomicUsize,
}

/// Refusals past the socket budget answered at once: half the open-file
/// reserve, so a wave of them can never use the descriptors up. One more is
/// closed without an answer.
pub const MAX_OVER_BUDGET_REFUSALS: usize = crate::fdlimit::RESERVE / 2;

/// One over-budget refusal in progress; its place is released on drop.
pub struct OverBudgetRefusal(Arc<Admission>);

impl Drop for OverBudgetRefusal {
    fn drop(&mut self) {
        self.0.over_budget_refusals.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(cfg: LimitsConfig, echo_max_connections: usize, socket_budget: usize) -> Arc<Self> {
        Arc::new(Admission {
            cfg,
            echo_max_connections,
            connections: AtomicUsize::new(0),
            echo_connections: AtomicUsize::new(0),
            longpoll_sessions: AtomicUsize::new(0),
            sockets: AtomicUsize::new(0),
            socket_budget,
            over_budget_refusals: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            subscriptions: AtomicUsize::new(0),
        })
    }

    /// The key `ip` is counted under (IPv6 grouped by `ipv6_prefix`).
    pub fn key(&self, ip: IpAddr) -> IpAddr {
        crate::client_addr::group(ip, self.cfg.ipv6_prefix)
    }

    fn new_state(&self, now: Instant) -> IpState {
        IpState {
            held: 0,
            bucket: TokenBucket::new(
                self.cfg.handshake_rate_per_ip,
                self.cfg.handshake_burst_per_ip,
                now,
            ),
            publish: None,
            bodies: 0,
            subscriptions: 0,
            longpoll: 0,
            new_channels: None,
        }
    }

    /// Registers an accepted TCP socket, counted globally (file budget)
    /// and, when `client` is given, against that address's cap. `None` is
    /// for sockets from a trusted proxy whose client is not known yet (or
    /// is only named per request, by `X-Forwarded-For`): counting them
    /// under the proxy's address would lump every client behind it together.
    pub fn socket(self: &Arc<Self>, client: Option<IpAddr>) -> Result<SocketGuard, Denied> {
        let mut guard = SocketGuard {
            admission: self.clone(),
            key: None,
            transferred: AtomicBool::new(false),
        };
        self.sockets.fetch_add(1, Ordering::AcqRel);
        if let Some(ip) = client {
            guard.assign(ip)?;
        }
        Ok(guard)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn echo_connections(&self) -> usize {
        self.echo_connections.load(Ordering::Acquire)
    }

    pub fn longpoll_sessions(&self) -> usize {
        self.longpoll_sessions.load(Ordering::Acquire)
    }

    pub fn sockets(&self) -> usize {
        self.sockets.load(Ordering::Acquire)
    }

    /// Sockets held by the address `ip` belongs to (HTTP and WebSocket).
    pub fn held_by(&self, ip: IpAddr) -> usize {
        let key = self.key(ip);
        self.per_ip.lock().get(&key).map_or(0, |s| s.held)
    }

    /// A place to answer a socket past the budget with 503, or `None` when
    /// [`MAX_OVER_BUDGET_REFUSALS`] are being answered already.
    pub fn over_budget_refusal(self: &Arc<Self>) -> Option<OverBudgetRefusal> {
        let taken = self.over_budget_refusals.fetch_add(1, Ordering::AcqRel);
        let slot = OverBudgetRefusal(self.clone());
        (taken < MAX_OVER_BUDGET_REFUSALS).then_some(slot)
    }

    /// Whether the open sockets (handshaking or upgraded) have reached the
    /// budget the open-file limit allows: then new work is refused.
    /// Long-polling sessions hold no descriptor and do not count.
    pub fn over_file_budget(&self) -> bool {
        let longpoll = self.longpoll_sessions.load(Ordering::Acquire);
        self.sockets() + self.connections().saturating_sub(longpoll) > self.socket_budget
    }

    /// Takes one place for `key` if it has room.
    fn hold(&self, key: IpAddr) -> Result<(), Denied> {
        let mut map = self.per_ip.lock();
        let state = map
            .entry(key)
            .or_insert_with(|| self.new_state(Instant::now()));
        if state.held >= self.cfg.max_connections_per_ip {
            return Err(Denied::IpFull);
        }
        state.held += 1;
        Ok(())
    }

    fn unhold(&self, key: IpAddr) {
        let mut map = self.per_ip.lock();
        let now = Instant::now();
        if let Some(state) = map.get_mut(&key) {
            state.held = state.held.saturating_sub(1);
            // Forget idle addresses whose buckets have refilled, so the map stays small.
            if state.is_idle(now) {
                map.remove(&key);
            }
        }
    }

    /// Admits one `/ws` connection from `ip` (no socket to take over; for
    /// tests and transports that have none).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Denied> {
        self.admit_on(ip, None, Lane::Tether)
    }

    /// Admits one WebSocket connection (or, on [`Lane::LongPoll`], one
    /// long-polling session) from client `ip` on `lane`, or says
    /// why not. When `socket` is the connection's own socket and is already
    /// counted under the same address, the connection takes its place over
    /// (one socket, counted once); otherwise it takes a place of its own.
    pub fn admit_on(
        self: &Arc<Self>,
        ip: IpAddr,
        socket: Option<&SocketGuard>,
        lane: Lane,
    ) -> Result<ConnectionPermit, Denied> {
        // A long-polling session takes no descriptor: the socket its
        // request came on passed the budget at accept.
        if lane != Lane::LongPoll && self.over_file_budget() {
            return Err(Denied::FileLimit);
        }
        let echo = self.echo_connections();
        let longpoll = self.longpoll_sessions();
        let websockets = self.connections().saturating_sub(echo + longpoll);
        match lane {
            Lane::Tether if websockets >= self.cfg.max_connections => return Err(Denied::NodeFull),
            Lane::Echo if echo >= self.echo_max_connections => return Err(Denied::EchoFull),
            Lane::LongPoll if longpoll >= self.cfg.max_long_poll_sessions => {
                return Err(Denied::LongPollFull)
            }
            _ => {}
        }
        let key = self.key(ip);
        let takes_over = socket.is_some_and(|s| s.key == Some(key));
        let now = Instant::now();
        {
            let mut map = self.per_ip.lock();
            let state = map.entry(key).or_insert_with(|| self.new_state(now));
            if lane == Lane::LongPoll {
                if state.longpoll >= self.cfg.max_long_poll_sessions_per_ip {
                    return Err(Denied::LongPollIpFull);
                }
            } else if !takes_over && state.held >= self.cfg.max_connections_per_ip {
                return Err(Denied::IpFull);
            }
            state
                .bucket
                .take(now)
                .map_err(|retry_after| Denied::HandshakeRate { retry_after })?;
            // Taking over must happen under the lock, so the place is
            // never counted twice nor dropped in between.
            if lane == Lane::LongPoll {
                // A session is a place of its own, not a socket.
                state.longpoll += 1;
            } else {
                let took_over = takes_over
                    && socket.is_some_and(|s| !s.transferred.swap(true, Ordering::AcqRel));
                if !took_over {
                    state.held += 1;
                }
            }
        }
        self.connections.fetch_add(1, Ordering::AcqRel);
        match lane {
            Lane::Echo => self.echo_connections.fetch_add(1, Ordering::AcqRel),
            Lane::LongPoll => self.longpoll_sessions.fetch_add(1, Ordering::AcqRel),
            Lane::Tether => 0,
        };
        Ok(ConnectionPermit {
            admission: self.clone(),
            key,
            lane,
            subscriptions: 0,
        })
    }

    /// Takes one token from `ip`'s `POST /api/publish` bucket, or says how
    /// long until one is free.
    pub fn take_publish(&self, ip: IpAddr) -> Result<(), Duration> {
        let key = self.key(ip);
        let now = Instant::now();
        let mut map = self.per_ip.lock();
        let state = map.entry(key).or_insert_with(|| self.new_state(now));
        state
            .publish
            .get_or_insert_with(|| {
                TokenBucket::new(
                    self.cfg.publish_rate_per_ip,
                    self.cfg.publish_burst_per_ip,
                    now,
                )
            })
            .take(now)
    }

    /// Takes one of the address's places for a publish body being received
    /// ([`MAX_BODIES_PER_IP`]); `None` when all are taken. Released on drop.
    pub fn receive_body(self: &Arc<Self>, ip: IpAddr) -> Option<BodyPermit> {
        let key = self.key(ip);
        let now = Instant::now();
        let mut map = self.per_ip.lock();
        let state = map.entry(key).or_insert_with(|| self.new_state(now));
        if state.bodies >= MAX_BODIES_PER_IP {
            return None;
        }
        state.bodies += 1;
        Some(BodyPermit {
            admission: self.clone(),
            key,
        })
    }

    fn release(&self, key: IpAddr, lane: Lane) {
        match lane {
            Lane::Echo => self.echo_connections.fetch_sub(1, Ordering::AcqRel),
            Lane::LongPoll => self.longpoll_sessions.fetch_sub(1, Ordering::AcqRel),
            Lane::Tether => 0,
        };
        self.connections.fetch_sub(1, Ordering::AcqRel);
        if lane == Lane::LongPoll {
            self.unhold_longpoll(key);
        } else {
            self.unhold(key);
        }
    }

    fn unhold_longpoll(&self, key: IpAddr) {
        let mut map = self.per_ip.lock();
        if let Some(state) = map.get_mut(&key) {
            state.longpoll = state.longpoll.saturating_sub(1);
            if state.is_idle(Instant::now()) {
                map.remove(&key);
            }
        }
    }

    /// Drops per-address entries that hold nothing; called periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.per_ip.lock().retain(|_, s| !s.is_idle(now));
    }
}

/// One publish body being received; its place is released on drop.
pub struct BodyPermit {
    admission: Arc<Admission>,
    key: IpAddr,
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        if let Some(state) = self.admission.per_ip.lock().get_mut(&self.key) {
            state.bodies = state.bodies.saturating_sub(1);
        }
    }
}

/// Holds one established connection's place, and the places of the
/// subscriptions its session holds ([`SubscriptionPermit::keep`]); all are
/// released on drop.
pub struct ConnectionPermit {
    admission: Arc<Admission>,
    key: IpAddr,
    lane: Lane,
    /// Subscription places kept here (fits in the struct's padding).
    subscriptions: u32,
}

impl ConnectionPermit {
    /// The address (see [`Admission::key`]) the connection counts under.
    pub fn key(&self) -> IpAddr {
        self.key
    }

    /// Gives back the place of one subscription the session dropped.
    pub fn release_subscription(&mut self) {
        if self.subscriptions > 0 {
            self.subscriptions -= 1;
            self.admission.release_subscriptions(self.key, 1);
        }
    }

    /// Gives back the places of every subscription the session held.
    pub fn release_subscriptions(&mut self) {
        let n = std::mem::take(&mut self.subscriptions);
        self.admission.release_subscriptions(self.key, n as usize);
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.release_subscriptions();
        self.admission.release(self.key, self.lane);
    }
}

/// One accepted socket's place: globally always, and under its client
/// address once that is known. Released on drop, except for a place a
/// WebSocket connection took over.
pub struct SocketGuard {
    admission: Arc<Admission>,
    key: Option<IpAddr>,
    transferred: AtomicBool,
}

impl SocketGuard {
    /// Counts this socket under client `ip` from now on (once the PROXY
    /// header has named it). Refused when that address is at its cap.
    pub fn assign(&mut self, ip: IpAddr) -> Result<(), Denied> {
        if self.key.is_some() {
            return Ok(());
        }
        let key = self.admission.key(ip);
        self.admission.hold(key)?;
        self.key = Some(key);
        Ok(())
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.admission.sockets.fetch_sub(1, Ordering::AcqRel);
        if let Some(key) = self.key {
            if !self.transferred.load(Ordering::Acquire) {
                self.admission.unhold(key);
            }
        }
    }
}

#[cfg(test)]
mod tests;
