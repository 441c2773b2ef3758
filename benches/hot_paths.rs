//! Broker hot paths without the network: decoding a Produce request frame (header + body
//! within the decode budget, as `api::handle_frame` does before appending) and serving a Fetch request frame end to
//! end through `api::handle_frame` (plan, log read, response assembly, encoding).
//!
//! Run: `cargo bench -p strata --bench hot_paths`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::buf::DecodeBudget;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strata::api::{decode_limit, handle_frame, Reply, RequestContext};
use strata::broker::Broker;
use strata::group::{GroupService, GroupServiceConfig};
use strata::Config;

const RECORD_BYTES: usize = 1024;

/// One RecordBatch v2 of `count` 1 KiB records.
fn batch(count: usize) -> Bytes {
    let value = Bytes::from(vec![b'x'; RECORD_BYTES]);
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(value.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// A request frame without its length prefix (what `handle_frame` takes).
fn frame<R: Encodable + HeaderVersion>(key: ApiKey, version: i16, body: &R) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("bench")))
        .encode(&mut buf, R::header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn produce_frame(records: Bytes, partitions: i32) -> Bytes {
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(
                (0..partitions)
                    .map(|p| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(records.clone()))
                    })
                    .collect(),
            )]);
    frame(ApiKey::Produce, 8, &request)
}

fn fetch_frame(partitions: i32, max_bytes: i32) -> Bytes {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(50 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("bench")))
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_current_leader_epoch(-1)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(max_bytes)
                    })
                    .collect(),
            )]);
    frame(ApiKey::Fetch, 11, &request)
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, records, partitions) in [
        ("produce_1x1MiB", batch(1000), 1),
        ("produce_8x16KiB", batch(16), 8),
    ] {
        let f = produce_frame(records, partitions);
        g.throughput(Throughput::Bytes(f.len() as u64));
        g.bench_function(name, |b| {
            b.iter_batched(
                || f.clone(),
                |mut f| {
                    let header = RequestHeader::decode(&mut f, 1).unwrap();
                    // Within the decode budget, as `api::handle_frame` decodes.
                    let limit = decode_limit(f.len());
                    let request =
                        ProduceRequest::decode(&mut DecodeBudget::new(&mut f, limit), 8).unwrap();
                    (header, request)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// A broker with topic "bench" (8 partitions), each holding 1 MiB (64 batches of 16 KiB)
/// made durable.
fn broker(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> RequestContext {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let broker = Broker::open(Config::with_defaults(addr, dir), addr).unwrap();
    let topic = broker.create_topic("bench", 8, BTreeMap::new()).unwrap();
    let b = batch(16);
    for p in 0..8 {
        let log = topic.partition(p).unwrap();
        for _ in 0..64 {
            log.append(&b, 1_700_000_000_000).unwrap();
        }
        log.flush().unwrap();
    }
    let (_tx, shutdown) = tokio::sync::watch::channel(false);
    std::mem::forget(_tx); // keep the broker "running" for the whole bench
    let groups = rt
        .block_on(GroupService::start(
            GroupServiceConfig::default(),
            broker.state_dir(),
            shutdown.clone(),
        ))
        .unwrap();
    let txns = rt
        .block_on(strata::txn::TxnCoordinator::start(
            strata::txn::TxnConfig::default(),
            Arc::clone(&broker),
            groups.clone(),
            shutdown.clone(),
        ))
        .unwrap();
    RequestContext {
        broker: Arc::clone(&broker),
        shutdown,
        groups,
        txns,
        peer: None,
    }
}

fn fetch(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = broker(&rt, dir.path());
    let _guard = rt.enter();
    let mut g = c.benchmark_group("fetch_assembly");
    for (name, partitions, max_bytes) in [
        ("1_partition_1MiB", 1, 1 << 20),
        ("8_partitions_1MiB_each", 8, 1 << 20),
        ("8_partitions_16KiB_each", 8, 16 << 10),
    ] {
        let f = fetch_frame(partitions, max_bytes);
        let bytes = match handle_frame(f.clone(), &ctx).unwrap() {
            Reply::Now(Some(response)) => response.len(),
            _ => panic!("fetch with min_bytes 0 is answered at once"),
        };
        assert!(bytes >= (partitions as usize) * (max_bytes as usize).min(1 << 20) / 2);
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function(name, |b| {
            b.iter(|| match handle_frame(f.clone(), &ctx) {
                Ok(Reply::Now(Some(response))) => Some(response),
                _ => None,
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode, fetch);
criterion_main!(benches);
