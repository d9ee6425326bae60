//! `tether serve`: flags are generated from the server's configuration table,
//! so every key has exactly one flag, one environment variable and one TOML name.

use anyhow::Context;
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::{path::PathBuf, process::ExitCode};
use tether_server::{
    config::{self, LogFormat, KEYS},
    Server,
};

pub fn command() -> Command {
    let mut cmd = Command::new("serve")
        .about("Run the gateway (loopback, memory broker and anonymous access by default)")
        .after_help("Every flag is also a TOML key ([section] key) and a TETHER_SECTION_KEY environment variable; flags beat environment beat file beat defaults. A TETHER_ variable that looks like a setting but is none is refused (TETHER_TOKEN and TETHER_BIN are not settings and are left alone).")
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help("TOML configuration file")
                .action(ArgAction::Set),
        )
        .arg(
            Arg::new("print-config")
                .long("print-config")
                .help("print the effective configuration as TOML and exit")
                .action(ArgAction::SetTrue),
        );
    for key in KEYS {
        let arg = Arg::new(key.flag).long(key.flag).help(key.help);
        let arg = if key.switch {
            arg.action(ArgAction::SetTrue)
        } else {
            arg.action(ArgAction::Set).value_name("VALUE")
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// The flags given on the command line, as `(flag, value)` pairs.
fn given_flags(m: &ArgMatches) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for key in KEYS {
        if key.switch {
            if m.get_flag(key.flag) {
                out.push((key.flag.to_owned(), String::new()));
            }
        } else if let Some(v) = m.get_one::<String>(key.flag) {
            out.push((key.flag.to_owned(), v.clone()));
        }
    }
    out
}

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    let file = m.get_one::<String>("config").map(PathBuf::from);
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .collect();
    config::check_env_names(names.iter().map(String::as_str))?;
    let config = config::load(file.as_deref(), |k| std::env::var(k).ok(), &given_flags(m))?;
    if m.get_flag("print-config") {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(config.log.format, &config.log.level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // StartError already says what failed (and for a bind, the address);
        // more context here would repeat it.
        let server = Server::bind(config).await?;
        let addr = server.local_addr()?;
        tracing::info!(%addr, node = %server.node().id, "tether listening");
        println!("tether listening on {addr}");
        server.run(shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutdown signal received");
}

fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("invalid --log-level {level:?}"))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}
