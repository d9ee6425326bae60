//! "Did you mean": the known names closest to a misspelled one.

/// Optimal string alignment distance: edits, with a swap of two
/// neighbours (`HISTROY`) counted as one.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Up to three of `known` within `max` edits of `typed`, closest first.
pub fn close_matches<'a>(
    typed: &str,
    known: impl IntoIterator<Item = &'a str>,
    max: usize,
) -> Vec<&'a str> {
    let mut found: Vec<(usize, &str)> = known
        .into_iter()
        .map(|k| (distance(typed, k), k))
        .filter(|(d, _)| *d <= max)
        .collect();
    found.sort();
    found.dedup();
    found.into_iter().take(3).map(|(_, k)| k).collect()
}

/// ` (did you mean a?)`, ` (did you mean one of a, b?)`, or nothing.
pub fn did_you_mean(matches: &[impl AsRef<str>]) -> String {
    match matches {
        [] => String::new(),
        [one] => format!(" (did you mean {}?)", one.as_ref()),
        more => {
            let names: Vec<&str> = more.iter().map(AsRef::as_ref).collect();
            format!(" (did you mean one of {}?)", names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_names() {
        assert_eq!(distance("HISTROY", "HISTORY"), 1);
        assert_eq!(distance("ttl", "tll"), 1);
        let known = ["ttl", "meta_ttl", "size"];
        assert_eq!(close_matches("tll", known, 2), ["ttl"]);
        assert!(close_matches("zzzzzz", known, 2).is_empty());
        assert_eq!(did_you_mean(&["a"]), " (did you mean a?)");
    }
}
