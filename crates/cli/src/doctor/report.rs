//! What the doctor found: one [`Step`] per layer, printed as aligned text
//! lines or as one JSON document.
//!
//! Every failing step carries a stable `finding` id (for scripts and tests),
//! the likely cause and the fix, so the output can be acted on without
//! reading the doctor's source.

use serde::Serialize;
use std::time::Duration;

/// The layers, in the order they run. A failure skips everything after it.
pub const LAYERS: &[&str] = &[
    "url",
    "dns",
    "tcp",
    "tls",
    "upgrade",
    "first_message",
    "rtt",
    "idle",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    /// Worked, but something deserves attention; does not fail the run.
    Warn,
    Fail,
    /// Not run: not applicable, or an earlier step failed.
    Skip,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub verdict: Verdict,
    /// The measured figure or what was seen (time, status, address).
    pub figure: String,
    /// Stable id of what was found: `connection_refused`, `self_signed`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finding: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The step's duration in milliseconds, where it measured one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<f64>,
}

impl Step {
    pub fn pass(step: &'static str, figure: impl Into<String>) -> Self {
        Step {
            step,
            verdict: Verdict::Pass,
            figure: figure.into(),
            finding: None,
            cause: None,
            fix: None,
            ms: None,
        }
    }

    pub fn skip(step: &'static str, figure: impl Into<String>) -> Self {
        Step {
            verdict: Verdict::Skip,
            ..Step::pass(step, figure)
        }
    }

    pub fn fail(
        step: &'static str,
        finding: &'static str,
        figure: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Step {
            verdict: Verdict::Fail,
            finding: Some(finding),
            cause: Some(cause.into()),
            fix: Some(fix.into()),
            ..Step::pass(step, figure)
        }
    }

    /// Like `fail`, but the run still counts as passed.
    pub fn warn(
        step: &'static str,
        finding: &'static str,
        figure: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Step {
            verdict: Verdict::Warn,
            ..Step::fail(step, finding, figure, cause, fix)
        }
    }

    pub fn took(mut self, d: Duration) -> Self {
        self.ms = Some(ms(d));
        self
    }
}

/// Round-trip statistics over the ping series.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RttStats {
    pub sent: u32,
    pub lost: u32,
    pub min_ms: f64,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl RttStats {
    /// `samples` are the answered pings; `sent - samples.len()` were lost.
    pub fn from_samples(sent: u32, samples: &[Duration]) -> Option<Self> {
        let mut v: Vec<f64> = samples.iter().map(|d| ms(*d)).collect();
        v.sort_by(f64::total_cmp);
        let (first, last) = (*v.first()?, *v.last()?);
        // Nearest-rank percentiles: no interpolation between two samples.
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(RttStats {
            sent,
            lost: sent.saturating_sub(v.len() as u32),
            min_ms: first,
            median_ms: rank(0.5),
            p99_ms: rank(0.99),
            max_ms: last,
        })
    }
}

/// How the idle probe ended.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct IdleOutcome {
    /// `survived`, `close_frame`, `fin`, `rst`, `silence` or `error`.
    pub how: &'static str,
    /// Seconds of our silence before the cut (or the whole hold when it survived).
    pub after_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_code: Option<u16>,
    /// Pings the server sent while we held still (answered unless `--no-pong`).
    pub server_pings: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub url: String,
    /// True when no step failed: the exit status is 0 exactly then.
    pub ok: bool,
    pub steps: Vec<Step>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt: Option<RttStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleOutcome>,
}

impl Report {
    pub fn new(url: &str) -> Self {
        Report {
            url: url.to_owned(),
            ok: true,
            steps: Vec::new(),
            rtt: None,
            idle: None,
        }
    }

    pub fn push(&mut self, step: Step) {
        if step.verdict == Verdict::Fail {
            self.ok = false;
        }
        self.steps.push(step);
    }

    /// Marks every layer not yet reported as skipped, so reports always
    /// list the same layers (which is what `--compare` lines up).
    pub fn close(mut self, idle_requested: bool) -> Self {
        let failed = !self.ok;
        for layer in LAYERS {
            if *layer == "idle" && !idle_requested {
                continue;
            }
            if !self.steps.iter().any(|s| s.step == *layer) {
                let why = if failed {
                    "not run: an earlier step failed"
                } else {
                    "not run"
                };
                self.steps.push(Step::skip(layer, why));
            }
        }
        self
    }

    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.step == name)
    }

    pub fn to_text(&self) -> String {
        let mut out = format!("tether doctor {}\n", self.url);
        for s in &self.steps {
            out.push_str(&format!(
                "{}  {:<13} {}\n",
                s.verdict.label(),
                s.step,
                s.figure
            ));
            if let Some(c) = &s.cause {
                out.push_str(&format!("      cause: {c}\n"));
            }
            if let Some(f) = &s.fix {
                out.push_str(&format!("      fix:   {f}\n"));
            }
        }
        out.push_str(if self.ok {
            "result: every step passed\n"
        } else {
            "result: FAILED (see the first FAIL above)\n"
        });
        out
    }
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `0.2 ms`, `35 ms`, `3.01 s`: short figures for one-line verdicts.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.01 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{:.2} ms", s * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = RttStats::from_samples(101, &samples).unwrap();
        assert_eq!(
            (s.min_ms, s.median_ms, s.p99_ms, s.max_ms, s.lost),
            (1.0, 50.0, 99.0, 100.0, 1)
        );
        assert!(RttStats::from_samples(3, &[]).is_none());
    }

    #[test]
    fn a_failure_skips_the_rest_and_fails_the_run() {
        let mut r = Report::new("ws://x/ws");
        r.push(Step::pass("url", "ok"));
        r.push(Step::fail("dns", "no_such_host", "x", "c", "f"));
        let r = r.close(false);
        assert!(!r.ok);
        assert_eq!(r.steps.len(), LAYERS.len() - 1);
        assert_eq!(r.step("tcp").unwrap().verdict, Verdict::Skip);
        assert!(r.to_text().contains("cause: c"));
    }
}
