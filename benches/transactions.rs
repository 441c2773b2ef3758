//! Transactional produce against idempotent produce of the same records, through librdkafka
//! (rdkafka) to a broker started in-process on 127.0.0.1:0 with a temporary data dir.
//!
//! One unit of work is 1,000 records of 100 bytes spread round-robin over a 3-partition
//! topic:
//! - `idempotent`: `enable.idempotence=true`, enqueue the 1,000 records, wait until every
//!   one is acknowledged (the flush);
//! - `transactional`: `begin_transaction`, enqueue the 1,000 records, wait until every one
//!   is acknowledged (the same flush), `commit_transaction` (EndTxn: the coordinator writes
//!   the commit markers into the 3 partitions before it answers). AddPartitionsToTxn goes
//!   out with the first record of each partition.
//!
//! Why the flush is "await every delivery" and not `Producer::flush`: in rdkafka 0.39,
//! `flush` (also called by `commit_transaction` first) polls the event queue with
//! `BaseProducer::poll(100 ms)`, which runs until its deadline even after events arrived,
//! so any flush with records in flight costs at least 100 ms of client-side waiting and the
//! figure would measure that timer. With every record already acknowledged, the flush
//! inside `commit_transaction` returns at once.
//!
//! The figure is the ratio of the two times (transactional / idempotent).
//!
//! Run: `cargo bench --bench transactions -- --warm-up-time 1 --measurement-time 5`
//!
//! Measured 2026-11-21 (commits ec43143/e312b64, 2-core VM shared with other builds, load
//! average 2-4.6), criterion's slope estimate per unit of 1,000 records, two sessions of 3
//! runs each:
//! - idempotent 6.97 / 8.33 / 7.40 ms, transactional 10.76 / 9.40 / 12.66 ms: ratio
//!   1.54 / 1.13 / 1.71;
//! - idempotent 6.81 / 7.08 / 7.32 ms, transactional 11.73 / 10.58 / 13.63 ms: ratio
//!   1.72 / 1.50 / 1.86.
//!
//! Transactional produce takes about 1.6x the time of idempotent produce (median of the 6
//! ratios 1.63, range 1.13-1.86), i.e. about 0.6x its throughput (~85k against ~140k
//! records/s). The transactional times vary much more (wide confidence intervals): each
//! transaction adds fsync'd writes (AddPartitionsToTxn and the Prepare/Complete states in
//! the transaction log, a marker in each of the 3 partitions), so it feels the shared
//! disk's fsync latency.

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

/// Waits until every record of the unit is acknowledged and checks that none failed.
fn wait_delivered(deliveries: Vec<DeliveryFuture>) {
    for d in futures::executor::block_on(futures::future::join_all(deliveries)) {
        d.expect("delivery not cancelled")
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
            wait_delivered(enqueue(&idempotent, "bench-idempotent", &value));
        })
    });
    group.bench_function("transactional_1000x100B_3p", |b| {
        b.iter(|| {
            transactional
                .begin_transaction()
                .expect("begin_transaction");
            wait_delivered(enqueue(&transactional, "bench-transactional", &value));
            transactional
                .commit_transaction(PATIENCE)
                .expect("commit_transaction");
        })
    });
    group.finish();
    drop(transactional);
    drop(idempotent);
    runtime.block_on(broker.shutdown());
}

criterion_group!(benches, transactional_vs_idempotent);
criterion_main!(benches);
