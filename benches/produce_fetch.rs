//! End-to-end throughput through a real client: librdkafka (rdkafka) producing to and
//! fetching from a broker started in-process on 127.0.0.1:0 with a temporary data dir.
//!
//! Run: `cargo bench -p strata --bench produce_fetch`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use strata::Config;

const RECORDS: usize = 20_000;
const RECORD_BYTES: usize = 1024;

fn producer(bootstrap: &str, acks: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("compression.type", "none")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

async fn produce(producer: &FutureProducer, topic: &str, payload: &[u8]) {
    let deliveries: Vec<_> = (0..RECORDS)
        .map(|i| {
            let key = format!("k{}", i % 64);
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(payload))
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    for delivery in join_all(deliveries).await {
        delivery.expect("delivery").expect("acked");
    }
}

fn consume_all(bootstrap: &str, topic: &str, count: usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    // An explicit offset: with Offset::Beginning librdkafka spends ~0.5 s on its own
    // offset-query timer before the first ListOffsets, which would swamp the fetch time.
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut seen = 0;
    while seen < count {
        if let Some(message) = consumer.poll(Duration::from_secs(10)) {
            message.expect("message");
            seen += 1;
        }
    }
}

fn end_to_end(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = runtime
        .block_on(strata::start(Config::with_defaults(
            "127.0.0.1:0".parse().unwrap(),
            dir.path(),
        )))
        .expect("broker");
    let bootstrap = broker.local_addr().to_string();
    let payload = vec![b'x'; RECORD_BYTES];

    let mut group = c.benchmark_group("end_to_end");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes((RECORDS * RECORD_BYTES) as u64));
    for acks in ["1", "all"] {
        let producer = producer(&bootstrap, acks);
        let topic = format!("bench-acks-{acks}");
        group.bench_function(format!("produce_20k_1KiB_acks_{acks}"), |b| {
            b.iter(|| runtime.block_on(produce(&producer, &topic, &payload)))
        });
    }
    // Fetch: 20k records written once, then read from the beginning per iteration.
    let producer = producer(&bootstrap, "1");
    runtime.block_on(produce(&producer, "bench-fetch", &payload));
    group.bench_function("fetch_20k_1KiB", |b| {
        b.iter(|| consume_all(&bootstrap, "bench-fetch", RECORDS))
    });
    group.finish();
    runtime.block_on(broker.shutdown());
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
