//! An nginx config in the docs is a ```nginx block, which
//! `crates/server/tests/doc_proxies/` runs through the real nginx; none
//! hides in prose or in another language's block (a JS comment, an inline
//! code span), where no test would run it and a reader would still copy it.
//! A directive is named freely in words (`proxy_read_timeout 75s`); written
//! whole (ending in `;`, or a `location / {` block) outside a ```nginx
//! block, it fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod docs_support;

use docs_support::{doc_files, repo};

/// The text of a doc outside its ```nginx and ```haproxy blocks, with the
/// number of the line each piece starts on. Lines of other fenced blocks are
/// pieces of their own; prose is cut into its inline code spans (which may
/// wrap across lines).
fn unrun_code(doc: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    let mut span: Option<(usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        let n = i + 1;
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(lang.trim().to_owned()),
            };
            continue;
        }
        match fence.as_deref() {
            Some("nginx" | "haproxy") => continue,
            Some(_) => {
                out.push((n, line.to_owned()));
                continue;
            }
            None => {}
        }
        for (k, part) in line.split('`').enumerate() {
            if k > 0 {
                // A backtick: a span opens or closes here.
                match span.take() {
                    Some(done) => out.push(done),
                    None => span = Some((n, String::new())),
                }
            }
            if let Some((_, text)) = &mut span {
                text.push_str(part);
            }
        }
        if let Some((_, text)) = &mut span {
            text.push(' ');
        }
        if line.trim().is_empty() {
            // A paragraph ends: an unmatched backtick closes nothing.
            span = None;
        }
    }
    out
}

/// Whether a piece of code writes an nginx directive whole.
fn writes_nginx(code: &str) -> bool {
    let directive = ["proxy_pass ", "proxy_set_header ", "proxy_http_version "]
        .iter()
        .any(|d| code.contains(d))
        && code.contains(';');
    directive || (code.contains("location /") && code.contains('{'))
}

#[test]
fn no_nginx_config_outside_an_nginx_block() {
    let files = doc_files();
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(repo().join(&file)).unwrap();
        for (line, code) in unrun_code(&text) {
            if writes_nginx(&code) {
                found.push(format!("{file}:{line}: {}", code.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "nginx config outside a ```nginx block (no test runs it): make it a block \
         doc_proxies runs, or say it in words:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scanner_finds_spans_and_block_lines() {
    let doc = "write `proxy_set_header X-Forwarded-For\n$proxy_add_x_forwarded_for;` instead\n\
               ```js\n// e.g. nginx: location /app/ { proxy_pass http://x; }\n```\n\
               ```nginx\nlocation / { proxy_pass http://tether; }\n```\n\
               its `proxy_read_timeout 75s` covers both\n";
    let hits: Vec<usize> = unrun_code(doc)
        .into_iter()
        .filter(|(_, c)| writes_nginx(c))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(hits, vec![1, 4]);
}
