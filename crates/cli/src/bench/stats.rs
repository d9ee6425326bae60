//! Figures: a fixed-size latency histogram, and memory read from /proc.

use serde::Serialize;

/// Sub-buckets per power of two: values are kept within 1/64 (~1.6 %).
const SUB: usize = 64;
const POWERS: usize = 40;

/// A log-linear histogram of microsecond values; fixed size (20 KiB), so a
/// long run at a high rate costs no more memory than a short one.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; SUB * POWERS],
            total: 0,
            max: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let power = 63 - v.leading_zeros() as usize; // >= 6
    let shift = power - 6;
    let sub = ((v >> shift) as usize) - SUB; // 0..SUB
    ((power - 5) * SUB + sub).min(SUB * POWERS - 1)
}

/// Lowest value of a bucket (the inverse of `bucket`).
fn floor_of(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let power = b / SUB + 5;
    let sub = (b % SUB) as u64;
    (SUB as u64 + sub) << (power - 6)
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1), to bucket precision.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return floor_of(b).min(self.max);
            }
        }
        self.max
    }

    /// p50/p90/p99/max in milliseconds.
    pub fn summary_ms(&self) -> Latency {
        let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
        Latency {
            samples: self.total,
            p50_ms: ms(self.quantile(0.50)),
            p90_ms: ms(self.quantile(0.90)),
            p99_ms: ms(self.quantile(0.99)),
            max_ms: ms(self.max),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms, self.samples
        )
    }
}

/// A process's memory, in KiB, from /proc/PID/status.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Memory {
    pub vm_rss_kib: u64,
    pub rss_anon_kib: u64,
}

/// Reads `VmRSS` and `RssAnon` of `pid` ("self" for this process).
pub fn memory(pid: &str) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(Memory {
        vm_rss_kib: field("VmRSS:")?,
        rss_anon_kib: field("RssAnon:").unwrap_or(0),
    })
}

/// The kernel's slab memory, system-wide (socket structures live there, and
/// are not in any process's RSS).
pub fn slab_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU seconds `pid` has used so far (from /proc/PID/stat;
/// Linux reports them in USER_HZ = 100 ticks a second on every platform
/// Tether targets).
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Read and write system calls `pid` has made so far (`syscr`, `syscw` in
/// /proc/PID/io; readable for our own processes).
pub fn syscalls(pid: &str) -> Option<(u64, u64)> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((field("syscr:")?, field("syscw:")?))
}

/// Work per server CPU-second, when the CPU time is known and non-zero.
pub fn per_cpu_sec(count: u64, cpu: Option<f64>) -> Option<f64> {
    cpu.filter(|c| *c > 0.0).map(|c| (count as f64 / c).round())
}

/// `after - before` per unit, in KiB with two decimals.
pub fn per_unit(before: u64, after: u64, units: usize) -> f64 {
    if units == 0 {
        return 0.0;
    }
    let delta = after as f64 - before as f64;
    (delta / units as f64 * 100.0).round() / 100.0
}

/// Rounds a rate for display and JSON.
pub fn rate(count: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    (count as f64 / secs).round()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_within_precision() {
        for v in [
            0u64, 1, 63, 64, 65, 100, 1000, 12_345, 1_000_000, 60_000_000,
        ] {
            let f = floor_of(bucket(v));
            assert!(f <= v && v - f <= v / 64 + 1, "{v} -> {f}");
        }
    }

    #[test]
    fn reads_own_cpu_time() {
        assert!(cpu_secs("self").is_some_and(|c| c >= 0.0));
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let p50 = h.quantile(0.5);
        assert!((490..=500).contains(&p50), "{p50}");
        assert_eq!(h.quantile(1.0), 1000);
        assert!(h.quantile(0.99) >= 975);
    }
}
