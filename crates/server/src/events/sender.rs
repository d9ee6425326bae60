//! The sender: one task that takes batches from the queue and POSTs each
//! until the backend acknowledges it (any 2xx).

use super::{
    queue::{Entry, Queued},
    Shared, BATCH_MAX, LINGER, RETRY_MIN,
};
use crate::hooks::{CallError, HookClient};
use bytes::Bytes;
use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Failures of one batch between two warnings in the log.
const WARN_EVERY: u32 = 10;

pub(super) async fn run(
    shared: Arc<Shared>,
    client: HookClient,
    url: http::Uri,
    retry_max: Duration,
    stop: CancellationToken,
) {
    let schedule = tether_protocol::Backoff {
        min_delay: RETRY_MIN,
        max_delay: retry_max.max(RETRY_MIN),
    };
    loop {
        let Some(batch) = next_batch(&shared, &stop).await else {
            return;
        };
        let body = encode(&batch, &shared.node);
        if let Some(ledger) = shared.ledger.get() {
            // The sessions these events announce are in the registry first,
            // so a crash after the backend heard `connect` still ends them.
            tokio::select! {
                () = stop.cancelled() => return,
                () = ledger.written() => {}
            }
        }
        let mut failures: u32 = 0;
        let mut since = None;
        loop {
            let sent = tokio::select! {
                () = stop.cancelled() => return,
                sent = client.post(&url, body.clone()) => sent,
            };
            match sent {
                Ok(_) => break,
                Err(e) => {
                    shared.metrics.events_failures.inc();
                    let started = *since.get_or_insert_with(Instant::now);
                    if failures.is_multiple_of(WARN_EVERY) {
                        warn!(
                            url = %url,
                            error = %describe(&e),
                            waiting = shared.metrics.events_queued.get(),
                            failing_for_s = started.elapsed().as_secs(),
                            "the events backend did not acknowledge a batch; retrying with backoff"
                        );
                    }
                    let delay = schedule.delay(failures, 0.5 + fastrand::f64() * 0.5, None);
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = sleep(delay) => {}
                    }
                }
            }
        }
        if let Some(started) = since {
            info!(
                after_s = started.elapsed().as_secs(),
                tries = failures + 1,
                "the events backend acknowledged again"
            );
        }
        acknowledged(&shared, batch);
    }
}

/// Waits for events and takes the next batch: at once when a batch is full
/// (or the queue, when it is smaller) or a flush hurries, else after
/// [`LINGER`] for more to arrive. `None` when stopped.
async fn next_batch(shared: &Shared, stop: &CancellationToken) -> Option<Vec<Entry>> {
    loop {
        let pushed = shared.pushed.notified();
        if !shared.queue.lock().is_empty() {
            break;
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = pushed => {}
        }
    }
    let deadline = Instant::now() + LINGER;
    loop {
        let pushed = shared.pushed.notified();
        if shared.hurry.load(Ordering::Acquire) || shared.queue.lock().is_ready(BATCH_MAX) {
            break;
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep_until(deadline) => break,
            () = pushed => {}
        }
    }
    Some(shared.queue.lock().take(BATCH_MAX))
}

/// `{"events":[...]}`; a gap is encoded here, when it can no longer grow.
fn encode(batch: &[Entry], node: &str) -> Bytes {
    let mut body = String::with_capacity(16 + batch.len() * 200);
    body.push_str("{\"events\":[");
    for (i, entry) in batch.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        match entry {
            Entry::Event(Queued { json, .. }) => body.push_str(json),
            Entry::Gap {
                first,
                last,
                dropped,
                at_ms,
            } => {
                let gap = serde_json::json!({
                    "id": format!("{node}-{first}"),
                    "type": "gap",
                    "node": node,
                    "dropped": dropped,
                    "first_id": format!("{node}-{first}"),
                    "last_id": format!("{node}-{last}"),
                    "at_ms": at_ms,
                });
                body.push_str(&gap.to_string());
            }
        }
    }
    body.push_str("]}");
    Bytes::from(body)
}

/// The batch is the backend's: counted, settled for `flush`, and the
/// sessions whose disconnect it carried forgotten by the ledger.
fn acknowledged(shared: &Shared, batch: Vec<Entry>) {
    let events = batch.iter().filter(|e| e.is_event()).count() as u64;
    let last = batch.last().map_or(0, Entry::last_seq);
    let ended: Vec<(Box<str>, u64)> = batch
        .into_iter()
        .filter_map(|e| match e {
            Entry::Event(q) => q.ends,
            Entry::Gap { .. } => None,
        })
        .collect();
    shared.metrics.events_sent.inc_by(events);
    shared.metrics.events_queued.dec_by(events as i64);
    shared.settled.send_if_modified(|s| {
        let moved = last > *s;
        *s = (*s).max(last);
        moved
    });
    if let (false, Some(ledger)) = (ended.is_empty(), shared.ledger.get()) {
        ledger.forget(&ended);
    }
}

/// A failure in a log line's words (a non-2xx with the start of its body).
fn describe(e: &CallError) -> String {
    match e {
        CallError::Status(status, body) => {
            let body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            format!("HTTP {status}: {body}")
        }
        other => other.to_string(),
    }
}
