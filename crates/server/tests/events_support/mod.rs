//! Shared by the lifecycle events tests: what the backend received, read as
//! events; de-duplication by id (a duplicate must be the same event); and
//! clients that connect, subscribe and leave.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tether_test_util::{
    backend::{Backend, Received},
    ws::WsClient,
};
use tokio_websockets::{CloseCode, Message};

pub const SECRET: &str = "events-test-secret";
pub const PATH: &str = "/events";

/// Every event the backend received at [`PATH`], in arrival order
/// (duplicates included).
pub fn received(backend: &Backend) -> Vec<Value> {
    events_in(&backend.received())
}

/// The events in `requests` (those at [`PATH`]); for `Backend::wait_for`'s
/// condition, which must not call the backend again.
pub fn events_in(requests: &[Received]) -> Vec<Value> {
    requests
        .iter()
        .filter(|r| r.path == PATH)
        .flat_map(|r| {
            let body = r.json();
            body["events"]
                .as_array()
                .unwrap_or_else(|| panic!("a batch is {{\"events\":[...]}}: {}", r.body))
                .clone()
        })
        .collect()
}

/// The events with duplicates removed by id; panics if two events with
/// one id differ (a backend de-duplicating by id would lose one).
pub fn unique(events: &[Value]) -> Vec<Value> {
    let mut seen: HashMap<String, Value> = HashMap::new();
    let mut out = Vec::new();
    for e in events {
        let id = e["id"].as_str().expect("every event has an id").to_owned();
        match seen.get(&id) {
            Some(first) => assert_eq!(first, e, "two different events with id {id}"),
            None => {
                seen.insert(id, e.clone());
                out.push(e.clone());
            }
        }
    }
    out
}

/// Each client's unique events' types, in the order received.
pub fn by_client(events: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events {
        if let Some(client) = e["client"].as_str() {
            out.entry(client.to_owned())
                .or_default()
                .push(e["type"].as_str().unwrap_or("?").to_owned());
        }
    }
    out
}

/// Server flags that send events to `backend`.
pub fn flags(backend: &Backend) -> Vec<(String, String)> {
    vec![
        ("events-url".into(), backend.url(PATH)),
        ("hook-secret".into(), SECRET.into()),
    ]
}

/// Connects to `url`, subscribes to `channel` and leaves with a close
/// frame (1000); returns the client id from its welcome.
pub async fn visit(url: &str, channel: &str) -> String {
    let (mut ws, welcome) = WsClient::tether(url).await;
    let reply = ws.subscribe(1, channel, None).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    close(&mut ws).await;
    welcome["client"].as_str().unwrap().to_owned()
}

/// Closes with 1000 "bye" and waits for the server's answer.
pub async fn close(ws: &mut WsClient) {
    ws.ws
        .send(Message::close(Some(CloseCode::NORMAL_CLOSURE), "bye"))
        .await
        .unwrap();
    while let Some(Ok(_)) = ws.ws.next().await {}
}

/// `n` clients of the node at `url`, each subscribed to `channel`, held
/// open; with their client ids.
pub async fn held_clients(url: &str, channel: &str, n: usize) -> (Vec<WsClient>, BTreeSet<String>) {
    let mut held = Vec::new();
    let mut ids = BTreeSet::new();
    for _ in 0..n {
        let (mut ws, welcome) = WsClient::tether(url).await;
        assert_eq!(ws.subscribe(1, channel, None).await["type"], "subscribed");
        ids.insert(welcome["client"].as_str().unwrap().to_owned());
        held.push(ws);
    }
    (held, ids)
}
