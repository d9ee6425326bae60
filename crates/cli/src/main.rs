//! The `tether` binary: `serve` runs the gateway; the other subcommands are
//! tools built on the client crate.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod bench;
mod doctor;
mod human;
mod publish;
mod serve;
mod sub;

use clap::{Arg, ArgAction, ArgMatches, Command};
use std::process::ExitCode;

fn cli() -> Command {
    Command::new("tether")
        .about("A WebSocket gateway whose connections stay up, and whose clients lose nothing when they don't")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(serve::command())
        .subcommand(doctor::command())
        .subcommand(sub::command())
        .subcommand(publish::command())
        .subcommand(bench::command())
}

fn main() -> ExitCode {
    let matches = cli().get_matches();
    let result = match matches.subcommand() {
        Some(("serve", m)) => serve::run(m),
        Some(("doctor", m)) => doctor::run(m),
        Some(("sub", m)) => sub::run(m),
        Some(("pub", m)) => publish::run(m),
        Some(("bench", m)) => bench::run(m),
        _ => unreachable_subcommand(&matches),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tether: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, each cause once. `{:#}` alone
/// repeats a cause whose text the message above it already includes
/// (`cannot read config file F: No such file ...: No such file ...`).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(text.trim()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn unreachable_subcommand(_: &ArgMatches) -> anyhow::Result<ExitCode> {
    anyhow::bail!("unknown subcommand; see `tether --help`")
}

/// A duration flag's value, or an error that says what was typed and what
/// is accepted (humantime's own words, "expected number at 0", are not
/// shown: they point into a string the user cannot see).
pub fn parse_duration_flag(name: &str, value: &str) -> anyhow::Result<std::time::Duration> {
    humantime::parse_duration(value.trim()).map_err(|_| {
        anyhow::anyhow!("--{name} {value:?}: expected a duration like 25s, 500ms, 10m or 24h")
    })
}

/// A flag that takes a value.
pub fn value_arg(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name).long(name).help(help).action(ArgAction::Set)
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_bad_duration_flag_says_what_is_accepted_and_nothing_else() {
        let e = super::parse_duration_flag("timeout", "soon").unwrap_err();
        assert_eq!(
            one_line(&e),
            "--timeout \"soon\": expected a duration like 25s, 500ms, 10m or 24h"
        );
        assert!(super::parse_duration_flag("timeout", "1h30m").is_ok());
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(io).context("cannot listen on X: Address already in use");
        assert_eq!(one_line(&e), "cannot listen on X: Address already in use");
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(io).context("cannot listen on X");
        assert_eq!(one_line(&e), "cannot listen on X: Address already in use");
    }
}
