//! Micro-benchmarks of the delivery path: encoding a publication, appending
//! to and reading from a channel log, waking N subscribers, and a publish
//! on a small channel while a large channel fans out beside it.
//!
//! Run with `cargo bench -p tether-server --bench delivery`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::value::RawValue;
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};
use tether_server::{
    broker::{memory::MemoryBroker, Broker, Publication},
    channel_log::{ChannelLog, Cursor, Window},
    config::HistoryConfig,
    doorbell::Doorbell,
    hub::Hub,
    metrics::Metrics,
};

fn data() -> Box<RawValue> {
    RawValue::from_string(format!("{{\"text\":\"{}\"}}", "x".repeat(90))).unwrap()
}

const WINDOW: Window = Window {
    publications: 4096,
    bytes: 1 << 20,
};

fn encode(c: &mut Criterion) {
    let data = data();
    let channel: Arc<str> = Arc::from("news");
    c.bench_function("encode a 100-byte publication", |b| {
        let mut offset = 0;
        b.iter(|| {
            offset += 1;
            Publication::new(channel.clone(), offset, &data)
        })
    });
}

fn append_and_read(c: &mut Criterion) {
    let data = data();
    let log = ChannelLog::new(Arc::from("news"), WINDOW);
    let bell = Arc::new(Doorbell::new());
    let cursor = log.join(1, bell.clone());
    let mut offset = 0;
    let mut out = Vec::with_capacity(1);
    let mut rung = Vec::new();
    c.bench_function("append one publication and read it back", |b| {
        b.iter(|| {
            offset += 1;
            log.append(Arc::new(Publication::new(log.name.clone(), offset, &data)))
                .ring();
            out.clear();
            log.read_after(cursor.position(), 256, &mut out).unwrap();
            cursor.advance_to(offset);
            cursor.clear_pending();
            rung.clear();
            let _ = bell.take(&mut rung);
        })
    });
}

fn wake(c: &mut Criterion) {
    let data = data();
    let mut group = c.benchmark_group("wake N subscribers");
    for n in [10usize, 1_000, 10_000] {
        let log = ChannelLog::new(Arc::from("news"), WINDOW);
        let subs: Vec<(Arc<Doorbell>, Arc<Cursor>)> = (0..n as u64)
            .map(|i| {
                let bell = Arc::new(Doorbell::new());
                let cursor = log.join(i, bell.clone());
                (bell, cursor)
            })
            .collect();
        let mut offset = 0;
        let mut rung = Vec::new();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                offset += 1;
                log.append(Arc::new(Publication::new(log.name.clone(), offset, &data)))
                    .ring();
                // Every subscriber reads, so the next append rings them all again.
                for (bell, cursor) in &subs {
                    cursor.advance_to(offset);
                    cursor.clear_pending();
                    rung.clear();
                    let _ = bell.take(&mut rung);
                }
            })
        });
    }
    group.finish();
}

/// A publish on one of 128 small channels while a channel with 5,000
/// subscribers is published to continuously from another thread: the fan-out
/// runs outside the broker's locks, so the small publish is not held up by it.
fn publish_beside_a_big_channel(c: &mut Criterion) {
    let metrics = Arc::new(Metrics::new());
    let hub = Arc::new(Hub::new(WINDOW, 100_000));
    let broker = Arc::new(MemoryBroker::new(
        HistoryConfig::default(),
        100_000,
        hub.clone(),
        metrics,
    ));
    let bells: Vec<Arc<Doorbell>> = (0..5_000u64)
        .map(|i| {
            let bell = Arc::new(Doorbell::new());
            let (cursor, _) = hub.add("big", i, bell.clone()).expect("room");
            cursor.advance_to(u64::MAX / 2);
            bell
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let background = {
        let (broker, stop, bells) = (broker.clone(), stop.clone(), bells.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let data = data();
            let mut rung = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                rt.block_on(broker.publish("big", &data, None, true))
                    .unwrap();
                for bell in &bells {
                    rung.clear();
                    let _ = bell.take(&mut rung);
                    for c in &rung {
                        c.clear_pending();
                    }
                }
            }
        })
    };
    let data = data();
    let mut i = 0usize;
    c.bench_function(
        "publish on a small channel beside a 5,000-subscriber channel",
        |b| {
            b.iter(|| {
                i += 1;
                let channel = format!("small-{}", i % 128);
                runtime
                    .block_on(broker.publish(&channel, &data, None, true))
                    .unwrap()
            })
        },
    );
    stop.store(true, Ordering::Relaxed);
    background.join().unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = encode, append_and_read, wake, publish_beside_a_big_channel
}
criterion_main!(benches);
