//! BENCHMARKS.md opens with the current figures, one screen: each row a
//! figure against the bare server with the command that reproduces it, every
//! figure one that a recorded run holds; every run lives verbatim in
//! benches/HISTORY.md, and the links of both files lead somewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod docs_support;

use docs_support::repo;

/// What fits on one screen: the head must not grow back into the history.
const MAX_LINES: usize = 60;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The cells of the current-figures table (rows after the header and rule).
fn current_rows(head: &str) -> Vec<Vec<String>> {
    let header = "| scenario: figure | Tether | bare server | Tether / bare | reproduce";
    let start = head
        .lines()
        .position(|l| l.starts_with(header))
        .expect("BENCHMARKS.md has the current-figures table");
    head.lines()
        .skip(start + 2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The numbers in a cell (`1,423,871; 0` → `["1,423,871", "0"]`, `0.84×` → `["0.84"]`).
fn numbers(cell: &str) -> Vec<String> {
    cell.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .map(|n| n.trim_matches(|c| c == '.' || c == ','))
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_current_figures_come_first_and_on_one_screen() {
    let head = read("BENCHMARKS.md");
    let lines = head.lines().count();
    assert!(
        lines <= MAX_LINES,
        "BENCHMARKS.md has {lines} lines: the current figures and how to reproduce them, \
         at most {MAX_LINES}; earlier runs go to benches/HISTORY.md"
    );
    assert!(head.contains("(benches/HISTORY.md)"), "links the history");
    assert!(head.contains("(docs/benchmarks.md)"), "links how to run");
    assert!(head.contains("**Machine**"), "names the machine");
}

#[test]
fn every_current_figure_has_its_command_and_is_a_recorded_one() {
    let head = read("BENCHMARKS.md");
    let history = read("benches/HISTORY.md");
    let rows = current_rows(&head);
    assert!(rows.len() >= 8, "a row per scenario, found {}", rows.len());
    let mut command = String::new();
    for row in &rows {
        assert_eq!(row.len(), 5, "five cells: {row:?}");
        let scenario = row[0].split([':', ' ']).next().unwrap();
        if row[4] != "the same" {
            command = row[4].clone();
        }
        assert!(
            command.starts_with('`') && command.contains("benches/run.sh"),
            "{scenario}: the command that reproduces it, found {command:?}"
        );
        assert!(
            command
                .trim_end_matches('`')
                .ends_with(&format!(" {scenario}")),
            "{scenario}: the command runs that scenario: {command}"
        );
        for cell in &row[1..4] {
            for n in numbers(cell) {
                assert!(
                    history.contains(&n),
                    "{scenario}: {n} is in no run recorded in benches/HISTORY.md"
                );
            }
        }
    }
}

/// A figure is the code's it was measured at, not the current code's: each
/// row names its run and commit (`(run L at `5e6c718`)`), that run's section
/// of benches/HISTORY.md names the same commit, and the head says how to
/// measure again.
#[test]
fn every_current_figure_names_the_commit_it_was_measured_at() {
    let head = read("BENCHMARKS.md");
    let history = read("benches/HISTORY.md");
    for row in current_rows(&head) {
        let label = row[0]
            .split("(run ")
            .nth(1)
            .unwrap_or_else(|| panic!("{:?}: no `(run X at `commit`)`", row[0]));
        let (run, commit) = label
            .split_once(" at `")
            .unwrap_or_else(|| panic!("{:?}: no commit after the run", row[0]));
        let commit = commit.split('`').next().unwrap();
        assert!(
            commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{:?}: {commit} is not a commit",
            row[0]
        );
        let section = history
            .split(&format!("### Run {run}:"))
            .nth(1)
            .unwrap_or_else(|| panic!("{:?}: no run {run} in benches/HISTORY.md", row[0]));
        let section = section.split("\n### ").next().unwrap();
        assert!(
            section.contains(&format!("`{commit}`")),
            "{:?}: run {run}'s section of benches/HISTORY.md does not name {commit}",
            row[0]
        );
    }
    assert!(
        head.lines()
            .any(|l| l.starts_with("**Re-measure**") && l.contains("benches/run.sh")),
        "BENCHMARKS.md says how to measure the current code again"
    );
}

#[test]
fn the_history_holds_every_run() {
    let history = read("benches/HISTORY.md");
    for run in ["M", "L", "K", "J", "I", "F", "E", "D"] {
        assert!(
            history.contains(&format!("### Run {run}:")),
            "benches/HISTORY.md has run {run}"
        );
    }
    assert!(history.contains("The figures before the fixes (runs A–C)"));
    for section in ["## The machine", "## The commands", "## Caveats"] {
        assert!(history.contains(section), "{section}");
    }
}

#[test]
fn links_in_the_benchmark_pages_resolve() {
    for page in ["BENCHMARKS.md", "benches/HISTORY.md", "docs/benchmarks.md"] {
        let text = read(page);
        let dir = repo().join(page).parent().unwrap().to_path_buf();
        for (at, _) in text.match_indices("](") {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')').unwrap()];
            let path = target.split('#').next().unwrap();
            if path.is_empty() || path.contains("://") {
                continue;
            }
            assert!(
                dir.join(path).exists(),
                "{page}: link to {target} leads nowhere"
            );
        }
    }
}
