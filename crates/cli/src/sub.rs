//! `tether sub URL CHANNEL...`: subscribe and print one JSON line per
//! publication on stdout (`{"channel","offset","data"}`); connection state
//! changes and recovery failures go to stderr, so stdout stays pipeable.

use crate::{human, value_arg};
use anyhow::Context;
use clap::{Arg, ArgAction, ArgMatches, Command};
use futures_util::StreamExt;
use std::{io::Write, process::ExitCode};
use tether_client::{Client, Event, State};

pub fn command() -> Command {
    Command::new("sub")
        .about("Subscribe to channels and print each publication as a JSON line (reconnects and recovers)")
        .arg(Arg::new("url").required(true).help("gateway URL, e.g. ws://127.0.0.1:8080/ws"))
        .arg(
            Arg::new("channel")
                .required(true)
                .num_args(1..)
                .action(ArgAction::Append)
                .help("channels to subscribe to"),
        )
        .arg(value_arg("token", "token sent as Authorization: Bearer").env("TETHER_TOKEN"))
        .arg(value_arg("count", "exit 0 after this many publications").value_parser(clap::value_parser!(u64)))
}

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    let url = m.get_one::<String>("url").cloned().unwrap_or_default();
    let channels: Vec<String> = m
        .get_many::<String>("channel")
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let token = m.get_one::<String>("token").cloned();
    let count = m.get_one::<u64>("count").copied();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(subscribe(url, channels, token, count))
}

async fn subscribe(
    url: String,
    channels: Vec<String>,
    token: Option<String>,
    count: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let mut builder = Client::builder(&url);
    if let Some(token) = token {
        builder = builder.token(token);
    }
    let client = builder.build()?;
    tokio::spawn(report_states(client.state()));
    let mut streams = Vec::new();
    for channel in &channels {
        let sub = client.subscribe(channel).await?;
        let channel = channel.clone();
        streams.push(sub.map(move |event| (channel.clone(), event)).boxed());
    }
    let mut events = futures_util::stream::select_all(streams);
    let mut printed = 0u64;
    let mut stdout = std::io::stdout();
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            _ = tokio::signal::ctrl_c() => {
                client.close().await;
                return Ok(ExitCode::SUCCESS);
            }
        };
        let Some((channel, event)) = next else { break };
        match event {
            Event::Publication(p) => {
                let line =
                    serde_json::json!({"channel": channel, "offset": p.offset, "data": p.data});
                writeln!(stdout, "{line}").context("cannot write to stdout")?;
                printed += 1;
                if count.is_some_and(|n| printed >= n) {
                    client.close().await;
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Event::Subscribed {
                epoch,
                offset,
                recovered,
            } => {
                eprintln!("tether sub: subscribed to {channel} (epoch {epoch}, offset {offset}, recovered {recovered})");
            }
            Event::Unrecovered { epoch, offset } => {
                eprintln!("tether sub: {channel}: missed publications could not be recovered; continuing from epoch {epoch} offset {offset}");
            }
            Event::Refused { code, message } => {
                eprintln!("tether sub: {channel}: subscription refused: {code}: {message}");
            }
            Event::RefusedWillRetry {
                code,
                message,
                next_delay,
                ..
            } => {
                eprintln!(
                    "tether sub: {channel}: refused for now ({code}: {message}); retrying in {}",
                    human::delay(next_delay)
                );
            }
            _ => {}
        }
    }
    // Every subscription ended: the client stopped for good, or all were refused.
    match &*client.state().borrow() {
        State::Disconnected { code, reason } => {
            eprintln!(
                "tether sub: disconnected ({code}): {}",
                human::reason(reason)
            );
        }
        _ => eprintln!("tether sub: no subscription left"),
    }
    Ok(ExitCode::FAILURE)
}

/// Prints every state change on stderr.
async fn report_states(mut state: tokio::sync::watch::Receiver<State>) {
    loop {
        let line = match &*state.borrow_and_update() {
            State::Connecting => "connecting".to_owned(),
            State::Connected => "connected".to_owned(),
            State::Reconnecting {
                attempt,
                next_delay,
                reason,
                ..
            } => format!(
                "reconnecting in {} (attempt {attempt}) after: {}",
                human::delay(*next_delay),
                human::reason(reason)
            ),
            State::Disconnected { code, reason } => {
                format!("disconnected ({code}): {}", human::reason(reason))
            }
        };
        eprintln!("tether sub: {line}");
        if state.changed().await.is_err() {
            return;
        }
    }
}
