//! `tether pub URL CHANNEL JSON`: publish once over the WebSocket, wait for
//! the ack, and print it as `{"channel":...,"offset":N}`.

use crate::value_arg;
use anyhow::Context;
use clap::{Arg, ArgMatches, Command};
use std::{process::ExitCode, time::Duration};
use tether_client::Client;

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
        Some(t) => humantime::parse_duration(t).with_context(|| format!("bad --timeout {t:?}"))?,
        None => Duration::from_secs(10),
    };
    let token = m.get_one::<String>("token").cloned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut builder = Client::builder(&url);
        if let Some(token) = token {
            builder = builder.token(token);
        }
        let client = builder.build()?;
        let offset = tokio::time::timeout(limit, client.publish(&channel, data))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no ack within {} ms (is the server at {url} up?)",
                    limit.as_millis()
                )
            })??;
        println!(
            "{}",
            serde_json::json!({"channel": channel, "offset": offset})
        );
        client.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
