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
        if sa.verdict == sb.verdict && sa.finding == sb.finding {
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

fn rank(s: &Step) -> u8 {
    match s.verdict {
        Verdict::Pass => 0,
        Verdict::Skip => 1,
        Verdict::Warn => 2,
        Verdict::Fail => 3,
    }
}

fn cell(s: Option<&Step>, width: usize) -> String {
    let text = match s {
        Some(s) => format!("{} {}", s.verdict.label(), s.figure),
        None => "-".into(),
    };
    let mut t: String = text.chars().take(width).collect();
    while t.chars().count() < width {
        t.push(' ');
    }
    t
}

impl Comparison {
    pub fn to_text(&self) -> String {
        const W: usize = 48;
        let mut out = format!(
            "tether doctor --compare\n  A: {}\n  B: {}\n\n{:<13} {:<W$} B\n",
            self.a.url, self.b.url, "step", "A"
        );
        for sa in &self.a.steps {
            out.push_str(&format!(
                "{:<13} {} {}\n",
                sa.step,
                cell(Some(sa), W),
                cell(self.b.step(sa.step), W).trim_end()
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
}
