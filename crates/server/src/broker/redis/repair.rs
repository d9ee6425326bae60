//! Keeping a node's channels whole: the pub/sub connections (reconnected
//! with backoff, resubscribed, pinged), history reads that fill what pub/sub
//! lost, and the periodic check of quiet channels.

use super::{
    backoff::Backoff,
    fanout::{on_message, ring},
    link::bounded,
    scripts::Keys,
    Inner,
};
use futures_util::StreamExt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Reads what `channel` is missing from history and delivers it in order
/// (the caller has marked the channel `repairing`); resets the channel when
/// history cannot cover the gap or the epoch changed.
pub(super) fn start(inner: &Arc<Inner>, channel: Arc<str>, cause: &'static str) {
    inner.fanout.metrics.redis_repair(cause);
    tokio::spawn(repair(inner.clone(), channel));
}

async fn repair(inner: Arc<Inner>, channel: Arc<str>) {
    let me = &inner.fanout;
    loop {
        let since = {
            let map = me.channels.lock();
            match map.get(&channel) {
                Some(t) => t.epoch.clone().map(|e| (e, t.last)),
                None => return,
            }
        };
        let Some((epoch, last)) = since else {
            // Not primed yet: the seam delivers what is pending.
            me.set_repairing(&channel, false);
            return;
        };
        // The whole gap at once: the hub needs every offset, in order.
        let raw = match inner
            .recover_raw(&channel, Some((&epoch, last)), usize::MAX)
            .await
        {
            Ok(raw) => raw,
            Err(e) => {
                // Redis is unreachable: the reconnect repairs every channel.
                warn!(%channel, error = %e, "history read for a repair failed");
                me.set_repairing(&channel, false);
                return;
            }
        };
        let mut wakeups = Vec::new();
        let done = {
            let mut map = me.channels.lock();
            let Some(t) = map.get_mut(&channel) else {
                return;
            };
            if t.epoch.as_ref() != Some(&epoch) || t.last > last {
                // Moved on meanwhile (a message showed the new epoch, or the
                // gap filled): look again from where it is now.
                false
            } else if raw.epoch != *epoch || !raw.recovered {
                info!(%channel, epoch = %raw.epoch, "history cannot bridge the gap; resetting the channel's subscribers");
                me.reset(t, raw.epoch.as_str().into(), raw.top, &mut wakeups);
                me.finish_repair(t, &mut wakeups)
            } else {
                for p in super::publications(&t.name, last + 1, raw.data) {
                    if p.offset == t.last + 1 {
                        t.last = p.offset;
                        wakeups.push(me.delivery.deliver(p));
                    }
                }
                me.finish_repair(t, &mut wakeups)
            }
        };
        ring(wakeups);
        if done {
            return;
        }
    }
}

/// Keeps pub/sub connection `i` up until `stop`: connects, resubscribes its
/// channels, repairs them (messages may have been lost while it was down),
/// reads messages, and pings it every check interval (a cut network is
/// silence, not an error).
pub(super) async fn run_shard(inner: Arc<Inner>, i: usize, stop: CancellationToken) {
    let me = &inner.fanout;
    let mut backoff = Backoff::new();
    let mut ever_up = false;
    loop {
        match connect_shard(&inner, i).await {
            Ok(mut stream) => {
                if ever_up {
                    me.metrics.redis_reconnect("pubsub");
                }
                ever_up = true;
                backoff.reset();
                me.health.shard(true);
                for channel in me.channels_of_shard(i) {
                    if me.mark_repairing(&channel) {
                        start(&inner, channel, "reconnect");
                    }
                }
                let mut ping = tokio::time::interval(me.check_interval);
                ping.tick().await;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        msg = stream.next() => match msg {
                            Some(msg) => {
                                let topic = msg.get_channel_name().to_owned();
                                match msg.get_payload::<String>() {
                                    Ok(payload) => on_message(&inner, &topic, &payload),
                                    Err(e) => warn!(%topic, error = %e, "unreadable pub/sub message"),
                                }
                            }
                            None => break,
                        },
                        _ = ping.tick() => {
                            let sink = me.shards[i].sink.lock().clone();
                            let alive = match sink {
                                Some(mut sink) => bounded("PING", sink.ping::<redis::Value>()).await.is_ok(),
                                None => false,
                            };
                            if !alive {
                                break;
                            }
                        }
                    }
                }
                *me.shards[i].sink.lock() = None;
                me.health.shard(false);
                // Redis may have restarted under the command connection too.
                inner.link.suspect();
                warn!(
                    connection = i,
                    "Redis pub/sub connection lost; reconnecting"
                );
            }
            Err(e) => {
                if !ever_up || backoff.attempts().is_multiple_of(10) {
                    warn!(connection = i, error = %e, "cannot open a Redis pub/sub connection; retrying with backoff");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff.next()) => {}
        }
    }
}

/// Opens pub/sub connection `i` and subscribes every channel it carries.
async fn connect_shard(
    inner: &Arc<Inner>,
    i: usize,
) -> Result<redis::aio::PubSubStream, redis::RedisError> {
    let me = &inner.fanout;
    let pubsub = bounded("connecting", me.client.get_async_pubsub()).await?;
    let (mut sink, stream) = pubsub.split();
    let _ops = me.shards[i].ops.lock().await;
    let topics: Vec<String> = me
        .channels_of_shard(i)
        .iter()
        .map(|c| Keys::new(&me.prefix, c).topic)
        .collect();
    for chunk in topics.chunks(1000) {
        bounded("SUBSCRIBE", sink.subscribe(chunk)).await?;
    }
    *me.shards[i].sink.lock() = Some(sink);
    Ok(stream)
}

/// Every check interval: the position of every channel this node tracks,
/// compared with what it delivered. A quiet channel whose last message was
/// lost, or whose epoch or Redis server changed, is repaired.
pub(super) async fn run_checks(inner: Arc<Inner>, stop: CancellationToken) {
    let me = &inner.fanout;
    let mut every = tokio::time::interval(me.check_interval);
    every.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let Ok(conn) = inner.link.get() else {
            continue;
        };
        let tracked = me.primed_positions();
        for batch in tracked.chunks(CHECK_BATCH) {
            let mut pipe = redis::pipe();
            for (channel, _, last, _) in batch {
                let meta = Keys::new(&me.prefix, channel).meta;
                if *last == 0 {
                    // Never published: the hash holds only the epoch the
                    // subscribers were given; it lives while they do.
                    pipe.cmd("PEXPIRE")
                        .arg(&meta)
                        .arg(super::millis(inner.empty_ttl()))
                        .arg("GT")
                        .ignore();
                }
                pipe.cmd("HMGET").arg(meta).arg("e").arg("o").arg("r");
            }
            let mut c = conn.conn.clone();
            let found: Vec<(Option<String>, Option<u64>, Option<String>)> =
                match pipe.query_async(&mut c).await {
                    Ok(found) => found,
                    Err(e) => {
                        inner.link.failed(&conn, e);
                        break;
                    }
                };
            for ((channel, epoch, _last, lagging), (e, o, r)) in batch.iter().zip(found) {
                // Another epoch or Redis server: repair (which resets) now.
                // A top not delivered since the previous check: pub/sub lost
                // it (one in flight right now is not yet a loss).
                let moved = e.as_deref() != Some(&**epoch) || r.as_deref() != Some(&*conn.run_id);
                if (moved || *lagging) && me.mark_repairing(channel) {
                    start(&inner, channel.clone(), "check");
                }
                me.saw_top(channel, o.unwrap_or(0));
            }
        }
    }
}

/// Channels one check reads in one pipeline.
const CHECK_BATCH: usize = 500;
