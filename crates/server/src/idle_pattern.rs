//! Notices "disconnects at a fixed interval" by itself.
//!
//! The most common complaint about WebSocket servers is connections that
//! drop after exactly N seconds of quiet, and it is usually found by hand:
//! an intermediary (nginx `proxy_read_timeout`, a load balancer's idle
//! timeout, a NAT) closes idle connections, and the server only sees a TCP
//! close without a WebSocket close frame. This detector watches those
//! abnormal ends per peer subnet (/24 for IPv4, /64 for IPv6, so a proxy's
//! or an office's addresses count together) and reports once when several
//! happened after nearly the same idle time.
//!
//! Pure logic with the clock injected: the node feeds it and logs.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    net::IpAddr,
    time::{Duration, Instant},
};

/// Shorter silences are crashes, closed tabs or app exits, not timeouts.
const MIN_IDLE: Duration = Duration::from_secs(2);
/// Abnormal ends older than this are forgotten.
const WINDOW: Duration = Duration::from_secs(3600);
/// How many ends with nearly the same idle time make a pattern.
const NEEDED: usize = 3;
/// Most recent ends kept per subnet.
const KEEP: usize = 16;
/// After a warning, the same subnet stays quiet this long: one warning, not a flood.
const QUIET: Duration = Duration::from_secs(3600);
/// Subnets tracked at once; bounded so a scan of many addresses cannot grow memory.
const MAX_GROUPS: usize = 10_000;

/// A peer's network: the address masked to /24 (IPv4) or /64 (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subnet(IpAddr);

impl Subnet {
    pub fn of(ip: IpAddr) -> Self {
        let ip = ip.to_canonical();
        let prefix = if ip.is_ipv4() { 24 } else { 64 };
        Subnet(crate::client_addr::mask(ip, prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}/24"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// A repeated idle cut: `count` abnormal ends from `subnet` after ~`idle`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    pub subnet: Subnet,
    pub idle: Duration,
    pub count: usize,
}

impl Pattern {
    /// The sentence for the log: the figure, the likely culprit, the fix.
    pub fn advice(&self) -> String {
        let secs = self.idle.as_secs_f64().round() as u64;
        let known = match secs {
            55..=65 => {
                " (60 s is nginx's default proxy_read_timeout and AWS ALB's default idle timeout)"
            }
            95..=105 => " (100 s is Cloudflare's idle timeout)",
            340..=360 => " (350 s is AWS NLB's idle timeout)",
            _ => "",
        };
        format!(
            "an intermediary (proxy, load balancer or NAT) in front of {} likely closes idle connections after ~{secs} s{known}: keep ping_interval under {secs} s, or raise that timeout (nginx proxy_read_timeout, HAProxy timeout tunnel, the load balancer's idle timeout)",
            self.subnet
        )
    }
}

#[derive(Default)]
struct Group {
    /// (when it ended, how long the peer had been silent)
    ends: VecDeque<(Instant, Duration)>,
    reported_at: Option<Instant>,
}

#[derive(Default)]
pub struct IdlePatterns {
    groups: HashMap<Subnet, Group>,
}

impl IdlePatterns {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a session from `ip` that ended without a close frame after
    /// `idle` without any inbound frame; returns a pattern the first time
    /// one shows (and not again for that subnet for an hour).
    pub fn record(&mut self, ip: IpAddr, idle: Duration, now: Instant) -> Option<Pattern> {
        if idle < MIN_IDLE {
            return None;
        }
        let subnet = Subnet::of(ip);
        if !self.groups.contains_key(&subnet) && self.groups.len() >= MAX_GROUPS {
            self.sweep(now);
            if self.groups.len() >= MAX_GROUPS {
                return None;
            }
        }
        let group = self.groups.entry(subnet).or_default();
        group
            .ends
            .retain(|(at, _)| now.saturating_duration_since(*at) < WINDOW);
        group.ends.push_back((now, idle));
        while group.ends.len() > KEEP {
            group.ends.pop_front();
        }
        if group
            .reported_at
            .is_some_and(|at| now.saturating_duration_since(at) < QUIET)
        {
            return None;
        }
        let mut idles: Vec<Duration> = group.ends.iter().map(|(_, d)| *d).collect();
        let (idle, count) = largest_cluster(&mut idles)?;
        group.reported_at = Some(now);
        Some(Pattern {
            subnet,
            idle,
            count,
        })
    }

    /// Forgets subnets with nothing recent; called from the node's sweep.
    pub fn sweep(&mut self, now: Instant) {
        self.groups.retain(|_, g| {
            let recent = |at: Instant| now.saturating_duration_since(at) < WINDOW.max(QUIET);
            g.ends.back().is_some_and(|(at, _)| recent(*at)) || g.reported_at.is_some_and(recent)
        });
    }

    pub fn tracked(&self) -> usize {
        self.groups.len()
    }
}

/// Two idle times are "nearly the same" within 10 % or half a second,
/// whichever is larger: timeouts are exact, our measurement is not.
fn tolerance(d: Duration) -> Duration {
    (d / 10).max(Duration::from_millis(500))
}

/// The largest group of idle times within tolerance of its smallest, if it
/// has at least `NEEDED` members: `(median, size)`.
fn largest_cluster(idles: &mut [Duration]) -> Option<(Duration, usize)> {
    idles.sort();
    let mut best: Option<(usize, usize)> = None;
    for i in 0..idles.len() {
        let limit = idles[i] + tolerance(idles[i]);
        let j = idles[i..].iter().take_while(|d| **d <= limit).count() + i;
        if j - i >= NEEDED && best.is_none_or(|(bi, bj)| j - i > bj - bi) {
            best = Some((i, j));
        }
    }
    best.map(|(i, j)| (idles[i + (j - i) / 2], j - i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn three_cuts_at_the_same_idle_time_from_one_subnet_make_one_warning() {
        let mut p = IdlePatterns::new();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(p.record(ip("10.1.2.3"), s(60), t0), None);
        assert_eq!(
            p.record(ip("10.1.2.99"), Duration::from_millis(60_400), t0 + s(70)),
            None
        );
        let found = p
            .record(ip("10.1.2.7"), Duration::from_millis(59_800), t0 + s(140))
            .unwrap();
        assert_eq!(found.count, 3);
        assert_eq!(found.idle, s(60));
        assert_eq!(found.subnet.to_string(), "10.1.2.0/24");
        assert!(found.advice().contains("~60 s") && found.advice().contains("proxy_read_timeout"));
        // Once per subnet per hour, however many more.
        assert_eq!(p.record(ip("10.1.2.3"), s(60), t0 + s(200)), None);
        let later = t0 + s(200) + QUIET;
        assert_eq!(p.record(ip("10.1.2.3"), s(60), later), None);
        assert_eq!(p.record(ip("10.1.2.4"), s(60), later + s(60)), None);
        assert!(p.record(ip("10.1.2.5"), s(60), later + s(120)).is_some());
    }

    #[test]
    fn scattered_idle_times_short_ones_and_other_subnets_do_not_count() {
        let mut p = IdlePatterns::new();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        for (i, idle) in [5, 17, 42, 90, 130].into_iter().enumerate() {
            assert_eq!(p.record(ip("192.168.0.1"), s(idle), t0 + s(i as u64)), None);
        }
        for i in 0..5 {
            assert_eq!(
                p.record(ip("172.16.0.1"), Duration::from_millis(300), t0 + s(i)),
                None
            );
        }
        assert_eq!(p.record(ip("10.0.1.1"), s(30), t0), None);
        assert_eq!(p.record(ip("10.0.2.1"), s(30), t0), None);
        assert_eq!(p.record(ip("10.0.3.1"), s(30), t0), None);
    }

    #[test]
    fn old_ends_are_forgotten_and_swept() {
        let mut p = IdlePatterns::new();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        p.record(ip("10.0.0.1"), s(3), t0);
        p.record(ip("10.0.0.1"), s(3), t0 + s(1));
        assert_eq!(p.record(ip("10.0.0.1"), s(3), t0 + WINDOW + s(2)), None);
        assert_eq!(p.tracked(), 1);
        p.sweep(t0 + s(3) + WINDOW * 3);
        assert_eq!(p.tracked(), 0);
    }

    #[test]
    fn ipv6_peers_group_by_64_and_mapped_v4_as_v4() {
        assert_eq!(
            Subnet::of(ip("2001:db8:1:2:aaaa::1")),
            Subnet::of(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_eq!(
            Subnet::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            Subnet::of(ip("::ffff:10.0.0.5")),
            Subnet::of(ip("10.0.0.200"))
        );
    }

    #[test]
    fn the_largest_cluster_wins() {
        let s = Duration::from_secs;
        let mut v = vec![s(3), s(60), s(3), s(61), s(60), s(3), s(59), s(100)];
        assert_eq!(largest_cluster(&mut v), Some((s(60), 4)));
    }
}
