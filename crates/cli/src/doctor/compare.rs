//! `--compare URL2`: two reports side by side (say, direct and through the
//! proxy), with the first layer where they differ called out — that layer
//! is where the hop in between breaks things.

use super::report::{Report, Step, Verdict};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Difference {
    pub step: &'static str,
    pub a: Verdict,
    pub b: Verdict,
    pub a_finding: Option<&'static str>,
    pub b_finding: Option<&'static str>,
    /// The cause and fix of whichever side failed there.
    pub explanation: String,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub ok: bool,
    pub a: Report,
    pub b: Report,
    pub first_difference: Option<Difference>,
}

pub fn compare(a: Report, b: Report) -> Comparison {
    let first_difference = a.steps.iter().find_map(|sa| {
        let sb = b.step(sa.step)?;
        let same = sa.verdict == sb.verdict && sa.finding == sb.finding;
        // A step that passed on one side and did not apply on the other
        // (no TLS on ws://) is no difference: nothing went wrong on either.
        if same || (fine(sa) && fine(sb)) {
            return None;
        }
        let worse = if rank(sb) >= rank(sa) { sb } else { sa };
        let explanation = match (&worse.cause, &worse.fix) {
            (Some(c), Some(f)) => format!("{c}; fix: {f}"),
            _ => worse.figure.clone(),
        };
        Some(Difference {
            step: sa.step,
            a: sa.verdict,
            b: sb.verdict,
            a_finding: sa.finding,
            b_finding: sb.finding,
            explanation,
        })
    });
    Comparison {
        ok: a.ok && b.ok,
        a,
        b,
        first_difference,
    }
}

/// Passed, or not run without anything having gone wrong.
fn fine(s: &Step) -> bool {
    matches!(s.verdict, Verdict::Pass | Verdict::Skip) && s.finding.is_none()
}

fn rank(s: &Step) -> u8 {
    match s.verdict {
        Verdict::Pass => 0,
        Verdict::Skip => 1,
        Verdict::Warn => 2,
        Verdict::Fail => 3,
    }
}

fn cell(s: Option<&Step>) -> String {
    match s {
        Some(s) => format!("{} {}", s.verdict.label(), s.figure),
        None => "-".into(),
    }
}

impl Comparison {
    /// One line per side under each step, so figures are shown whole
    /// whatever their length.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "tether doctor --compare\n  A: {}\n  B: {}\n\n",
            self.a.url, self.b.url
        );
        for sa in &self.a.steps {
            out.push_str(&format!(
                "{:<13} A {}\n{:<13} B {}\n",
                sa.step,
                cell(Some(sa)),
                "",
                cell(self.b.step(sa.step))
            ));
        }
        match &self.first_difference {
            Some(d) => out.push_str(&format!(
                "\nfirst difference: {}: A {:?}{}, B {:?}{}\n  {}\n",
                d.step,
                d.a,
                d.a_finding.map(|f| format!(" ({f})")).unwrap_or_default(),
                d.b,
                d.b_finding.map(|f| format!(" ({f})")).unwrap_or_default(),
                d.explanation
            )),
            None => out.push_str("\nno difference between A and B\n"),
        }
        out.push_str(if self.ok {
            "result: every step passed on both\n"
        } else {
            "result: FAILED\n"
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_differing_layer_is_named_with_the_failing_sides_fix() {
        let mut a = Report::new("ws://direct/ws");
        a.push(Step::pass("url", "u"));
        a.push(Step::pass("upgrade", "101"));
        let mut b = Report::new("ws://proxy/ws");
        b.push(Step::pass("url", "u"));
        b.push(Step::fail(
            "upgrade",
            "upgrade_headers_dropped",
            "400",
            "a proxy drops Upgrade",
            "nginx lines",
        ));
        let c = compare(a.close(false), b.close(false));
        let d = c.first_difference.as_ref().unwrap();
        assert_eq!(
            (d.step, d.b_finding),
            ("upgrade", Some("upgrade_headers_dropped"))
        );
        assert!(d.explanation.contains("nginx lines"));
        assert!(!c.ok);
        assert!(c.to_text().contains("first difference: upgrade"));
    }

    #[test]
    fn a_step_that_passed_on_one_side_and_did_not_apply_on_the_other_is_no_difference() {
        let long = "x".repeat(120);
        let mut a = Report::new("ws://direct/ws");
        a.push(Step::pass("url", "u"));
        a.push(Step::skip("tls", "plain ws://, no TLS"));
        a.push(Step::pass("first_message", long.clone()));
        let mut b = Report::new("wss://proxy/ws");
        b.push(Step::pass("url", "u"));
        b.push(Step::pass("tls", "TLSv1_3 in 3 ms"));
        b.push(Step::pass("first_message", "welcome"));
        let c = compare(a.close(false), b.close(false));
        assert!(c.first_difference.is_none(), "{:?}", c.first_difference);
        let text = c.to_text();
        assert!(text.contains("no difference between A and B"), "{text}");
        assert!(text.contains(&format!("A PASS {long}\n")), "{text}");
    }
}
