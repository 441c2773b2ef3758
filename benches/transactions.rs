//! Transactional produce against idempotent produce of the same records, through librdkafka
//! (rdkafka) to a broker started in-process on 127.0.0.1:0 with a temporary data dir.
//!
//! One unit of work is 1,000 records of 100 bytes spread round-robin over a 3-partition
//! topic:
//! - `idempotent`: `enable.idempotence=true`, enqueue the 1,000 records, `flush`;
//! - `transactional`: `begin_transaction`, enqueue the 1,000 records, `commit_transaction`
//!   (which flushes, adds the partitions, ends the transaction and waits for the markers).
//!
//! The figure is the ratio of the two times (transactional / idempotent).
//!
//! Run: `cargo bench --bench transactions -- --warm-up-time 1 --measurement-time 5`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use strata::Config;

/// Records per unit of work (one transaction).
const RECORDS: usize = 1_000;
/// Value size of each record (bytes).
const VALUE_BYTES: usize = 100;
/// Partitions of each benchmark topic.
const PARTITIONS: i32 = 3;
/// Bound on every client call that waits for the broker.
const PATIENCE: Duration = Duration::from_secs(60);

fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("compression.type", "none")
        .set("queue.buffering.max.messages", "1000000");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

async fn create_topic(bootstrap: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("CreateTopics");
    for r in results {
        r.expect("topic created");
    }
}

/// Enqueues the unit's records: record `i` goes to partition `i % PARTITIONS`.
fn enqueue(producer: &FutureProducer, topic: &str, value: &[u8]) -> Vec<DeliveryFuture> {
    (0..RECORDS)
        .map(|i| {
            let key = i.to_string();
            producer
                .send_result(
                    FutureRecord::to(topic)
                        .partition(i as i32 % PARTITIONS)
                        .key(&key)
                        .payload(value),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect()
}

/// Every record of the unit was acknowledged (the futures are complete after a flush or a
/// commit; this only reads their results).
fn check_delivered(deliveries: Vec<DeliveryFuture>) {
    for d in deliveries {
        futures::executor::block_on(d)
            .expect("delivery not cancelled")
            .map_err(|(e, _)| e)
            .expect("record acknowledged");
    }
}

fn transactional_vs_idempotent(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = runtime
        .block_on(strata::start(Config::with_defaults(
            "127.0.0.1:0".parse().expect("address"),
            dir.path(),
        )))
        .expect("broker");
    let bootstrap = broker.local_addr().to_string();
    runtime.block_on(create_topic(&bootstrap, "bench-idempotent"));
    runtime.block_on(create_topic(&bootstrap, "bench-transactional"));
    let value = vec![b'x'; VALUE_BYTES];

    let idempotent = producer(&bootstrap, &[]);
    let transactional = producer(&bootstrap, &[("transactional.id", "bench-txn")]);
    transactional
        .init_transactions(PATIENCE)
        .expect("init_transactions");

    let mut group = c.benchmark_group("transactions");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("idempotent_1000x100B_3p", |b| {
        b.iter(|| {
            let deliveries = enqueue(&idempotent, "bench-idempotent", &value);
            idempotent.flush(PATIENCE).expect("flush");
            check_delivered(deliveries);
        })
    });
    group.bench_function("transactional_1000x100B_3p", |b| {
        b.iter(|| {
            transactional
                .begin_transaction()
                .expect("begin_transaction");
            let deliveries = enqueue(&transactional, "bench-transactional", &value);
            transactional
                .commit_transaction(PATIENCE)
                .expect("commit_transaction");
            check_delivered(deliveries);
        })
    });
    group.finish();
    drop(transactional);
    drop(idempotent);
    runtime.block_on(broker.shutdown());
}

criterion_group!(benches, transactional_vs_idempotent);
criterion_main!(benches);
