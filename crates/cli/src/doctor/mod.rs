//! `tether doctor URL`: finds out why a WebSocket connection fails or drops,
//! and says how to fix it.
//!
//! It follows the method that finds these problems by hand — look at every
//! layer in order, bare first, then through each proxy — and stops at the
//! first layer that fails, naming the likely cause and the fix:
//! url → dns → tcp → tls → upgrade → first_message → rtt → idle.
//! Each layer lives in its own module; `report` renders the result.

mod compare;
mod der;
mod net;
mod probe;
mod report;
mod target;
mod tls;
mod upgrade;

use crate::value_arg;
use anyhow::Context;
use clap::{Arg, ArgAction, ArgMatches, Command};
use report::{Report, Step};
use std::{path::PathBuf, process::ExitCode, time::Duration};
use target::Target;
use tokio_websockets::ClientBuilder;

pub fn command() -> Command {
    Command::new("doctor")
        .about("Diagnose a WebSocket URL layer by layer: DNS, TCP, TLS, upgrade, first message, RTT, idle cuts")
        .after_help("Exit status: 0 when every step passed, 1 when one failed, 2 on a usage error.\nExamples:\n  tether doctor ws://127.0.0.1:8080/ws\n  tether doctor wss://example.com/ws --origin https://example.com --idle 90s\n  tether doctor ws://127.0.0.1:8080/ws --compare wss://proxy.example.com/ws")
        .arg(Arg::new("url").required(true).value_name("URL").help("ws:// or wss:// URL; /ws is Tether's protocol route, /echo its echo, any other path a foreign server"))
        .arg(value_arg("origin", "send this Origin header (what a browser on that page sends)").value_name("ORIGIN"))
        .arg(value_arg("page-origin", "origin of the page that will open the socket (checks ws:// vs wss://); defaults to --origin").value_name("ORIGIN"))
        .arg(value_arg("token", "send `Authorization: Bearer TOKEN`").value_name("TOKEN"))
        .arg(
            Arg::new("header")
                .long("header")
                .value_name("K:V")
                .help("extra request header (repeatable)")
                .action(ArgAction::Append),
        )
        .arg(Arg::new("insecure").long("insecure").help("do not verify the TLS certificate (still report what is wrong with it)").action(ArgAction::SetTrue))
        .arg(value_arg("ca-file", "also trust the certificates in this PEM file (a private CA, or the server's own self-signed certificate, even a CA:TRUE one)").value_name("FILE"))
        .arg(value_arg("timeout", "limit for each step (connect, TLS, upgrade, each ping)").value_name("DURATION").default_value("10s"))
        .arg(value_arg("pings", "number of pings for the round-trip times").value_name("N").default_value("5"))
        .arg(value_arg("idle", "hold the connection silent this long and report whether and how something cuts it").value_name("DURATION"))
        .arg(Arg::new("no-pong").long("no-pong").help("during --idle, do not answer the server's pings either (tests the server's heartbeat)").action(ArgAction::SetTrue))
        .arg(value_arg("compare", "run the same checks on a second URL and show both side by side").value_name("URL2"))
        .arg(Arg::new("json").long("json").help("print one machine-readable JSON report").action(ArgAction::SetTrue))
}

/// Everything a run needs besides the URL.
#[derive(Clone, Debug)]
pub struct Options {
    pub extras: upgrade::Extras,
    pub page_origin: Option<String>,
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub pings: u32,
    pub idle: Option<Duration>,
    pub no_pong: bool,
}

fn duration(m: &ArgMatches, name: &str) -> anyhow::Result<Option<Duration>> {
    m.get_one::<String>(name)
        .map(|v| crate::parse_duration_flag(name, v))
        .transpose()
}

fn options(m: &ArgMatches) -> anyhow::Result<Options> {
    let mut headers = Vec::new();
    for h in m.get_many::<String>("header").into_iter().flatten() {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?}: expected NAME:VALUE"))?;
        let (k, v) = (k.trim(), v.trim());
        anyhow::ensure!(
            !k.is_empty()
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !v.contains(['\r', '\n']),
            "--header {h:?}: not a valid header"
        );
        headers.push((k.to_owned(), v.to_owned()));
    }
    let origin = m.get_one::<String>("origin").cloned();
    let pings = m
        .get_one::<String>("pings")
        .map(|p| {
            p.parse::<u32>()
                .map_err(|_| anyhow::anyhow!("--pings {p:?}: expected a whole number, like 5"))
        })
        .transpose()?
        .unwrap_or(5);
    Ok(Options {
        page_origin: m
            .get_one::<String>("page-origin")
            .cloned()
            .or_else(|| origin.clone()),
        extras: upgrade::Extras {
            origin,
            token: m.get_one::<String>("token").cloned(),
            headers,
        },
        insecure: m.get_flag("insecure"),
        ca_file: m.get_one::<String>("ca-file").map(PathBuf::from),
        timeout: duration(m, "timeout")?.unwrap_or(Duration::from_secs(10)),
        pings: pings.max(1),
        idle: duration(m, "idle")?,
        no_pong: m.get_flag("no-pong"),
    })
}

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    let opts = options(m)?;
    let url = m.get_one::<String>("url").cloned().unwrap_or_default();
    let json = m.get_flag("json");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let ok = runtime.block_on(async {
        match m.get_one::<String>("compare") {
            Some(url2) => {
                let (a, b) = tokio::join!(diagnose(&url, &opts), diagnose(url2, &opts));
                let c = compare::compare(a, b);
                print_out(json, &c, || c.to_text())?;
                anyhow::Ok(c.ok)
            }
            None => {
                let r = diagnose(&url, &opts).await;
                print_out(json, &r, || r.to_text())?;
                anyhow::Ok(r.ok)
            }
        }
    })?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_out<T: serde::Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text());
    }
    Ok(())
}

/// Runs every layer against `url`; never fails, a failure is a report.
pub async fn diagnose(url: &str, opts: &Options) -> Report {
    let mut report = Report::new(url);
    layers(url, opts, &mut report).await;
    report.close(opts.idle.is_some())
}

/// Pushes one step per layer until one fails (`None` then stops the run).
async fn layers(url: &str, opts: &Options, r: &mut Report) -> Option<()> {
    let (step, target) = target::check(url, opts.page_origin.as_deref());
    r.push(step);
    let target: Target = target?;
    let addrs = take(r, net::resolve(&target, opts.timeout).await)?;
    let tcp = take(r, net::connect(&addrs, opts.timeout).await)?;
    let io: Box<dyn probe::Io> = if target.tls {
        let tls = tls::handshake(
            tcp,
            &target.host,
            opts.insecure,
            opts.ca_file.as_deref(),
            opts.timeout,
        )
        .await;
        Box::new(take(r, tls)?)
    } else {
        r.push(Step::skip("tls", "plain ws://, no TLS"));
        Box::new(tcp)
    };
    let (mut gate, mute) = probe::Gate::new(io);
    let upgraded = upgrade::upgrade(&mut gate, &target, &opts.extras, opts.timeout).await;
    match upgraded {
        Ok(step) => r.push(step),
        Err(step) => {
            r.push(step);
            return None;
        }
    }
    // The 101 is checked; from here on the stream is a WebSocket.
    let ws = ClientBuilder::new().take_over(gate);
    let mut probe = probe::Probe::new(ws, mute, target.route, opts.timeout);
    push_checked(r, probe.first_message().await)?;
    let (step, stats) = probe.rtt(opts.pings).await;
    r.rtt = stats;
    push_checked(r, step)?;
    if let Some(hold) = opts.idle {
        let (step, outcome) = probe.idle(hold, opts.no_pong).await;
        r.idle = Some(outcome);
        push_checked(r, step)?;
    }
    Some(())
}

fn take<T>(r: &mut Report, result: Result<(Step, T), Step>) -> Option<T> {
    match result {
        Ok((step, value)) => {
            r.push(step);
            Some(value)
        }
        Err(step) => {
            r.push(step);
            None
        }
    }
}

fn push_checked(r: &mut Report, step: Step) -> Option<()> {
    let failed = step.verdict == report::Verdict::Fail;
    r.push(step);
    (!failed).then_some(())
}
