//! `tether pub URL CHANNEL JSON`: publish once over the WebSocket, wait for
//! the ack, and print it as `{"channel":...,"offset":N}`. Exit 0 on the ack,
//! 1 when the publish failed (the cause on stderr), 2 for a usage error.

use crate::{human, value_arg};
use anyhow::Context;
use clap::{Arg, ArgMatches, Command};
use std::{process::ExitCode, time::Duration};
use tether_client::{Client, State};
use tokio::sync::watch;

pub fn command() -> Command {
    Command::new("pub")
        .about("Publish one JSON value to a channel and print the acknowledged offset")
        .arg(
            Arg::new("url")
                .required(true)
                .help("gateway URL, e.g. ws://127.0.0.1:8080/ws"),
        )
        .arg(
            Arg::new("channel")
                .required(true)
                .help("channel to publish to"),
        )
        .arg(
            Arg::new("json")
                .required(true)
                .help("the data, as JSON (e.g. '{\"text\":\"hi\"}' or '\"hi\"')"),
        )
        .arg(value_arg("token", "token sent as Authorization: Bearer").env("TETHER_TOKEN"))
        .arg(value_arg(
            "timeout",
            "give up when no ack arrives within this time (default 10s)",
        ))
}

pub fn run(m: &ArgMatches) -> anyhow::Result<ExitCode> {
    let url = m.get_one::<String>("url").cloned().unwrap_or_default();
    let channel = m.get_one::<String>("channel").cloned().unwrap_or_default();
    let text = m.get_one::<String>("json").cloned().unwrap_or_default();
    let data: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("the data is not JSON: {text:?} (quote strings: '\"hi\"')"))?;
    let limit = match m.get_one::<String>("timeout") {
        Some(t) => crate::parse_duration_flag("timeout", t)?,
        None => Duration::from_secs(10),
    };
    let token = m.get_one::<String>("token").cloned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut builder = Client::builder(&url).connect_timeout(limit.min(CONNECT_LIMIT));
        if let Some(token) = token {
            builder = builder.token(token);
        }
        let client = builder.build()?;
        let state = client.state();
        let outcome = tokio::time::timeout(limit, async {
            tokio::select! {
                acked = client.publish(&channel, data) => acked.map_err(|e| match e {
                    tether_client::Error::Disconnected { code, reason } => {
                        format!("the server ended the connection ({code}): {}", human::reason(&reason))
                    }
                    other => other.to_string(),
                }),
                cause = unreachable(client.state()) => Err(format!("cannot reach {url}: {cause}")),
            }
        })
        .await;
        let failed = match outcome {
            Ok(Ok(offset)) => {
                println!(
                    "{}",
                    serde_json::json!({"channel": channel, "offset": offset})
                );
                client.close().await;
                return Ok(ExitCode::SUCCESS);
            }
            Ok(Err(why)) => why,
            Err(_) => {
                let last = match &*state.borrow() {
                    State::Reconnecting { reason, .. } => {
                        format!("; last: {}", human::reason(reason))
                    }
                    _ => String::new(),
                };
                format!(
                    "no ack within {} from {url} (it may or may not have been stored){last}",
                    human::delay(limit)
                )
            }
        };
        eprintln!("tether pub: {failed}");
        Ok(ExitCode::FAILURE)
    })
}

/// Longest wait for one connection attempt (TCP, upgrade, welcome).
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// Resolves when a one-shot publish cannot succeed by waiting: the first
/// connection failed without the server saying anything (1006: refused,
/// unreachable, a TLS or connect timeout). Retrying that for the whole
/// `--timeout` only hides the cause. What the server says (1012/1013,
/// a 503) is retried within `--timeout`, and so is a connection lost after
/// the first one worked (the publish is resent with its idempotency key);
/// 4001, 1008 and refused handshakes (401, 403, 404) already end the client.
async fn unreachable(mut state: watch::Receiver<State>) -> String {
    let mut connected = false;
    loop {
        match &*state.borrow_and_update() {
            State::Connected => connected = true,
            State::Reconnecting {
                code: 1006, reason, ..
            } if !connected => {
                return reason.clone();
            }
            _ => {}
        }
        if state.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
