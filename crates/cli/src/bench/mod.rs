//! `tether bench`: the load and storm generator.
//!
//! Four bounded scenarios, each printing one human summary (or `--json`):
//! `idle` (memory and connect rate at N idle connections), `fanout`
//! (deliveries/s, latency and losses for N subscribers of one channel),
//! `echo` (round trips/s against `/echo`), `storm` (N clients at once,
//! retrying as told by `Retry-After`), `presence` (what presence costs
//! Redis for N present clients, and a `presence` answer's latency) and
//! `hooks` (the bench as the backend: connect hook latency, events/s). The same scenarios run against a bare
//! WebSocket server (`--protocol raw`) and against Socket.IO 4
//! (`--protocol socketio`), so Tether can be compared with baselines in one
//! run (see `benches/run.sh` and BENCHMARKS.md).

mod conn;
mod echo;
mod fanout;
mod hooks;
mod idle;
mod presence;
mod socketio;
mod stats;
mod storm;

use crate::value_arg;
use anyhow::{bail, Context};
use clap::{Arg, ArgAction, ArgMatches, Command};
use conn::{Opened, Target, Ws};
use futures_util::{SinkExt, StreamExt};
use std::{net::IpAddr, process::ExitCode, time::Duration};
use tokio_websockets::Message;

pub fn command() -> Command {
    let url = || {
        Arg::new("url")
            .required(true)
            .value_name("URL")
            .help("ws://HOST:PORT/PATH of the server under test (/ws speaks Tether's protocol, /socket.io/ Socket.IO's)")
    };
    let common = |c: Command| {
        c.arg(url())
            .arg(value_arg("protocol", "tether (subscribe/publish JSON), raw (bare frames, for a baseline server) or socketio (Engine.IO v4 / Socket.IO v5 events over the websocket transport; a bare ws://HOST:PORT gets /socket.io/?EIO=4&transport=websocket); default: tether for a /ws path, socketio for /socket.io/, raw otherwise").value_name("tether|raw|socketio"))
            .arg(value_arg("sources", "spread connections over 127.0.0.1..127.0.0.K (default: one per 20,000 connections)").value_name("K"))
            .arg(value_arg("timeout", "give up on the run after this long").value_name("DURATION").default_value("120s"))
            .arg(Arg::new("json").long("json").help("print one machine-readable JSON object").action(ArgAction::SetTrue))
    };
    Command::new("bench")
        .about("Load and storm generator: idle memory, fan-out latency, echo throughput, reconnect storms")
        .subcommand_required(true)
        .after_help("Exit status: 0 when the run met its own checks (all connected, nothing lost), 1 when not, 2 on a usage error.\nRun the server and the load in separate processes (and on separate CPUs: taskset -c 0 / -c 1).\nExamples:\n  tether bench idle ws://127.0.0.1:8080/ws --connections 10000 --server-pid $(pgrep -n tether)\n  tether bench fanout ws://127.0.0.1:8080/ws --subscribers 2000 --rate 25 --duration 10s\n  tether bench echo ws://127.0.0.1:8080/echo --connections 100 --size 20\n  tether bench storm ws://127.0.0.1:8080/ws --clients 2000\n  tether bench presence ws://127.0.0.1:8080/ws --clients 10000 --redis-url redis://127.0.0.1:6379")
        .subcommand(common(Command::new("idle").about("Open N idle connections, hold them, report connect rate and the server's RSS per connection"))
            .arg(value_arg("connections", "connections to open").value_name("N").default_value("1000"))
            .arg(value_arg("hold", "how long to hold them once all are open").value_name("DURATION").default_value("5s"))
            .arg(value_arg("concurrency", "handshakes in flight at once").value_name("C").default_value("256"))
            .arg(value_arg("channel", "with --protocol tether, each connection subscribes here (\"\" for none)").value_name("NAME").default_value("bench-idle"))
            .arg(value_arg("server-pid", "read this process's VmRSS before and after, for memory per connection").value_name("PID")))
        .subcommand(common(Command::new("fanout").about("N subscribers on one channel, one publisher at R msg/s; deliveries/s, latency, losses"))
            .arg(value_arg("subscribers", "subscribers").value_name("N").default_value("100"))
            .arg(value_arg("rate", "publications per second").value_name("R").default_value("25"))
            .arg(value_arg("duration", "how long to publish").value_name("DURATION").default_value("5s"))
            .arg(value_arg("size", "approximate payload bytes per publication").value_name("B").default_value("64"))
            .arg(value_arg("concurrency", "handshakes in flight at once").value_name("C").default_value("256"))
            .arg(value_arg("channel", "channel name (tether protocol)").value_name("NAME").default_value("bench-fanout"))
            .arg(value_arg("envelope", "with --protocol raw or socketio, what the publisher sends for the server to relay: message (default: the same {\"type\":\"message\",\"channel\":..,\"offset\":..,\"data\":..} frame Tether delivers, so subscribers read equal bytes from every server) or none (the bare stamped payload)").value_name("message|none").default_value("message"))
            .arg(value_arg("window", "closed loop: publish only while fewer than W publications are not yet delivered to every subscriber (with a high --rate, this measures the most the server sustains); 0 = open loop").value_name("W").default_value("0"))
            .arg(value_arg("server-pid", "read this process's CPU time, for deliveries per server CPU-second").value_name("PID")))
        .subcommand(common(Command::new("echo").about("N connections doing round trips of B-byte messages against /echo"))
            .arg(value_arg("connections", "connections").value_name("N").default_value("100"))
            .arg(value_arg("size", "message bytes").value_name("B").default_value("20"))
            .arg(value_arg("duration", "how long to run").value_name("DURATION").default_value("5s"))
            .arg(value_arg("server-pid", "read this process's CPU time, for messages per server CPU-second").value_name("PID")))
        .subcommand(common(Command::new("storm").about("N clients connect at once (a reconnect storm); count 101/429/503 and time until all are in"))
            .arg(value_arg("clients", "clients").value_name("N").default_value("1000"))
            .arg(value_arg("hold", "how long to hold them once all are in").value_name("DURATION").default_value("1s")))
        .subcommand(common(Command::new("hooks").about("The bench is the backend (--backend-listen): N connections to their welcome through the server's connect hook, then closed; handshakes/s, welcome latency, and the lifecycle events delivered per second"))
            .arg(value_arg("connections", "connections").value_name("N").default_value("2000"))
            .arg(value_arg("concurrency", "handshakes in flight at once").value_name("C").default_value("64"))
            .arg(value_arg("backend-listen", "where the bench answers the server's hooks (--hook-connect http://ADDR/connect) and receives its events (--events-url http://ADDR/events)").value_name("ADDR").required(true))
            .arg(value_arg("settle", "how long to wait for the events after the last close").value_name("DURATION").default_value("30s")))
        .subcommand(common(Command::new("presence").about("N clients present over K presence channels: Redis commands/s and CPU while they are held, and the latency of presence on one channel"))
            .arg(value_arg("clients", "clients present").value_name("N").default_value("10000"))
            .arg(value_arg("channels", "channels PREFIX:0 .. PREFIX:K-1 they are spread over (the server's rule must give them presence = true)").value_name("K").default_value("10"))
            .arg(value_arg("prefix", "channel name prefix").value_name("PREFIX").default_value("bench-presence"))
            .arg(value_arg("requests", "presence requests on PREFIX:0, one at a time, for the latency").value_name("R").default_value("200"))
            .arg(value_arg("window", "how long to read Redis's counters (and the server's CPU) with the clients held and quiet; cover a few refreshes (--presence-ttl / 3 each)").value_name("DURATION").default_value("30s"))
            .arg(value_arg("concurrency", "handshakes in flight at once").value_name("C").default_value("256"))
            .arg(value_arg("redis-url", "the server's Redis: read INFO before and after the window").value_name("URL"))
            .arg(value_arg("server-pid", "read this process's CPU time over the window").value_name("PID")))
}

/// Which wire protocol the connections speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Tether JSON: subscribe, publish, message envelopes.
    Tether,
    /// Bare frames: whatever a subscriber receives is the payload itself.
    Raw,
    /// Socket.IO 4 over the websocket transport: `42["event",payload]`
    /// packets, Engine.IO pings answered (see `socketio.rs`).
    Socketio,
}

/// What every scenario needs.
#[derive(Clone, Debug)]
pub struct Common {
    pub target: Target,
    pub protocol: Protocol,
    pub sources: Vec<Option<IpAddr>>,
    pub timeout: Duration,
    pub json: bool,
}

/// Time limit for one handshake (and the subscribe that follows it).
pub const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

fn duration(m: &ArgMatches, name: &str) -> anyhow::Result<Duration> {
    let v = m
        .get_one::<String>(name)
        .with_context(|| format!("--{name} is required"))?;
    crate::parse_duration_flag(name, v)
}

fn number<T: std::str::FromStr>(m: &ArgMatches, name: &str) -> anyhow::Result<T> {
    let v = m
        .get_one::<String>(name)
        .with_context(|| format!("--{name} is required"))?;
    v.parse()
        .map_err(|_| anyhow::anyhow!("--{name} {v:?}: expected a number"))
}

/// `--server-pid`, checked to be a number.
fn server_pid(m: &ArgMatches) -> anyhow::Result<Option<String>> {
    match m.get_one::<String>("server-pid") {
        Some(_) => Ok(Some(number::<u32>(m, "server-pid")?.to_string())),
        None => Ok(None),
    }
}

fn common(m: &ArgMatches, connections: usize) -> anyhow::Result<Common> {
    let url = m.get_one::<String>("url").context("URL is required")?;
    let mut target = Target::parse(url)?;
    let protocol = match m.get_one::<String>("protocol").map(String::as_str) {
        Some("tether") => Protocol::Tether,
        Some("raw") => Protocol::Raw,
        Some("socketio") => Protocol::Socketio,
        Some(other) => bail!("--protocol {other:?}: expected tether, raw or socketio"),
        None if target.path.split('?').next() == Some("/ws") => Protocol::Tether,
        None if target.path.starts_with("/socket.io/") => Protocol::Socketio,
        None => Protocol::Raw,
    };
    if protocol == Protocol::Socketio && target.path == "/" {
        target.path = socketio::DEFAULT_PATH.to_owned();
    }
    let k = match m.get_one::<String>("sources") {
        Some(_) => number::<usize>(m, "sources")?,
        None => connections.div_ceil(20_000),
    };
    if k == 0 || k > 254 {
        bail!("--sources {k}: expected 1 to 254");
    }
    Ok(Common {
        sources: conn::sources(&target, k),
        target,
        protocol,
        timeout: duration(m, "timeout")?,
        json: m.get_flag("json"),
    })
}

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    let (name, sub) = m
        .subcommand()
        .context("a scenario is required: idle, fanout, echo, storm, presence or hooks")?;
    let count: usize = match name {
        "idle" | "echo" => number(sub, "connections")?,
        "fanout" => number::<usize>(sub, "subscribers")? + 1,
        "storm" => number(sub, "clients")?,
        "presence" => number::<usize>(sub, "clients")? + 1,
        "hooks" => number(sub, "connections")?,
        other => bail!("unknown scenario {other:?}"),
    };
    if count == 0 {
        bail!("nothing to do: the connection count is 0");
    }
    conn::ensure_open_files(count)?;
    let c = common(sub, count)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let json = c.json;
    let outcome = runtime.block_on(async move {
        let run = async {
            match name {
                "idle" => idle::run(&c, idle::Options::from(sub)?).await,
                "fanout" => fanout::run(&c, fanout::Options::from(sub)?).await,
                "echo" => echo::run(&c, echo::Options::from(sub)?).await,
                "presence" => presence::run(&c, presence::Options::from(sub)?).await,
                "hooks" => hooks::run(&c, hooks::Options::from(sub)?).await,
                _ => storm::run(&c, storm::Options::from(sub)?).await,
            }
        };
        // The scenarios bound themselves; this is the backstop.
        match tokio::time::timeout(c.timeout + Duration::from_secs(30), run).await {
            Ok(r) => r,
            Err(_) => bail!("the run did not finish within --timeout {:?}", c.timeout),
        }
    });
    // Dropping thousands of sockets is quick; do not wait for stragglers.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let outcome = outcome?;
    if json {
        println!("{}", outcome.json);
    } else {
        print!("{}", outcome.human);
    }
    Ok(if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A finished scenario: its figures twice (for people and for scripts) and
/// whether it met its own checks.
pub struct Outcome {
    pub human: String,
    pub json: serde_json::Value,
    pub ok: bool,
}

impl Outcome {
    pub fn new<R: serde::Serialize>(report: &R, human: String, ok: bool) -> anyhow::Result<Self> {
        Ok(Outcome {
            human,
            json: serde_json::to_value(report)?,
            ok,
        })
    }
}

/// Why a connection did not get ready, as counted in reports.
pub fn failure_label(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    if text.contains("Too many open files") {
        "emfile".into()
    } else if text.contains("Cannot assign requested address") {
        "no_ephemeral_port".into()
    } else if text.contains("refused") {
        "connection_refused".into()
    } else if text.contains("within") {
        "timeout".into()
    } else {
        "error".into()
    }
}

/// Opens one connection and, for the Tether protocol, reads the welcome and
/// subscribes to `channel` (when given); for Socket.IO, connects to the
/// default namespace. A refusal is an error here.
pub async fn ready(
    c: &Common,
    target: &Target,
    i: usize,
    channel: Option<&str>,
) -> anyhow::Result<Box<Ws>> {
    let source = c.sources[i % c.sources.len()];
    let mut ws = match conn::open(target, source, HANDSHAKE_LIMIT).await? {
        Opened::Open(ws) => ws,
        Opened::Refused { status, .. } => bail!("refused with HTTP {status}"),
    };
    if c.protocol == Protocol::Tether {
        tokio::time::timeout(HANDSHAKE_LIMIT, async {
            expect_type(&mut ws, "welcome").await?;
            if let Some(channel) = channel.filter(|c| !c.is_empty()) {
                let sub = serde_json::json!({"type":"subscribe","id":1,"channel":channel});
                ws.send(Message::text(sub.to_string())).await?;
                expect_type(&mut ws, "subscribed").await?;
            }
            anyhow::Ok(())
        })
        .await
        .context("no welcome/subscribed within 10s")??;
    }
    if c.protocol == Protocol::Socketio {
        tokio::time::timeout(HANDSHAKE_LIMIT, socketio::handshake(&mut ws))
            .await
            .context("no Socket.IO open/connect within 10s")??;
    }
    Ok(ws)
}

/// Protocol chatter a reader skips: for Socket.IO, Engine.IO pings (which it
/// answers here) and any packet that is not an event. Raw and Tether frames
/// are never chatter (WebSocket pings are answered by the library).
pub async fn chatter(c: &Common, ws: &mut Ws, m: &Message) -> bool {
    match (c.protocol, m.as_text()) {
        // A failed pong shows up as the next read's error.
        (Protocol::Socketio, Some(text)) => socketio::control(ws, text).await.unwrap_or(true),
        _ => false,
    }
}

/// The frame that carries `payload` (JSON) as event `name`: a Socket.IO
/// event packet, or the payload itself for the other protocols.
pub fn frame(c: &Common, name: &str, payload: String) -> String {
    match c.protocol {
        Protocol::Socketio => socketio::event(name, &payload),
        _ => payload,
    }
}

/// Reads until a text message of `kind` arrives (pings are answered by the
/// library); an `error` reply or a close is a failure.
async fn expect_type(ws: &mut Ws, kind: &str) -> anyhow::Result<()> {
    let wanted = format!("\"type\":\"{kind}\"");
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if let Some((code, reason)) = msg.as_close() {
            bail!("closed with {} {reason}", u16::from(code));
        }
        if let Some(text) = msg.as_text() {
            if text.contains(&wanted) {
                return Ok(());
            }
            if text.contains("\"type\":\"error\"") {
                bail!("server error: {text}");
            }
        }
    }
    bail!("connection closed while waiting for {kind}")
}

/// Sends a close frame and waits briefly for the server's, so the server
/// sees a clean end rather than a cut.
pub async fn close(mut ws: Box<Ws>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        ws.close().await?;
        while let Some(m) = ws.next().await {
            m?;
        }
        Ok::<(), tokio_websockets::Error>(())
    })
    .await;
}
