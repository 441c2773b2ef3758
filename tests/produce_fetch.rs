//! Produce and fetch through librdkafka (rdkafka): every compression codec, per-key order
//! over many partitions, headers, acks levels, long polling, and ListOffsets.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{consume, consumer, producer, values_by_partition, TestBroker, PATIENCE};
use futures::future::join_all;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_compression_codec_round_trips() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        let producer = producer(
            &bootstrap,
            &[("compression.type", codec), ("linger.ms", "20")],
        );
        let sends = (0..500).map(|i| {
            let value = format!("{codec} record {i} {}", "x".repeat(i % 50));
            let producer = &producer;
            let topic = &topic;
            async move {
                producer
                    .send(FutureRecord::to(topic).key("k").payload(&value), PATIENCE)
                    .await
                    .map(|d| (d.offset, value))
                    .map_err(|(e, _)| e)
            }
        });
        let acked: Vec<(i64, String)> = join_all(sends)
            .await
            .into_iter()
            .map(|r| r.expect("delivered"))
            .collect();
        let got = tokio::task::spawn_blocking({
            let bootstrap = bootstrap.clone();
            let topic = topic.clone();
            move || consume(&bootstrap, &topic, 1, 500)
        })
        .await
        .unwrap();
        let got: HashMap<i64, String> = values_by_partition(&got)
            .remove(&0)
            .unwrap()
            .into_iter()
            .collect();
        for (offset, value) in acked {
            assert_eq!(got.get(&offset), Some(&value), "{codec}: offset {offset}");
        }
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_records_keep_per_key_order_over_eight_partitions() {
    const RECORDS: usize = 100_000;
    const KEYS: usize = 1_000;
    let broker = TestBroker::start_with(|c| c.num_partitions = 8).await;
    let bootstrap = broker.bootstrap();
    let producer = producer(
        &bootstrap,
        &[
            ("linger.ms", "20"),
            ("batch.num.messages", "5000"),
            ("queue.buffering.max.messages", "200000"),
        ],
    );
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let key = format!("key-{}", i % KEYS);
        let value = format!("{}:{}", i % KEYS, i / KEYS);
        let record = FutureRecord::to("keyed").key(&key).payload(&value);
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((e, _)) => panic!("enqueue failed: {e}"),
        }
    }
    for delivery in join_all(deliveries).await {
        delivery.expect("delivery").expect("acked");
    }
    let messages = tokio::task::spawn_blocking(move || consume(&bootstrap, "keyed", 8, RECORDS))
        .await
        .unwrap();
    assert_eq!(messages.len(), RECORDS);
    let mut next_seq: HashMap<usize, usize> = HashMap::new();
    let mut key_partition: HashMap<usize, i32> = HashMap::new();
    let mut partitions_used = std::collections::HashSet::new();
    for (partition, values) in values_by_partition(&messages) {
        partitions_used.insert(partition);
        let mut last_offset = -1;
        for (offset, value) in values {
            assert!(
                offset > last_offset,
                "offsets increase within partition {partition}"
            );
            last_offset = offset;
            let (key, seq) = value.split_once(':').unwrap();
            let (key, seq): (usize, usize) = (key.parse().unwrap(), seq.parse().unwrap());
            assert_eq!(
                *key_partition.entry(key).or_insert(partition),
                partition,
                "key {key} stays on one partition"
            );
            let expected = next_seq.entry(key).or_insert(0);
            assert_eq!(
                seq, *expected,
                "key {key} out of order in partition {partition}"
            );
            *expected += 1;
        }
    }
    assert_eq!(next_seq.len(), KEYS);
    assert!(next_seq.values().all(|n| *n == RECORDS / KEYS));
    assert_eq!(partitions_used.len(), 8, "keys spread over all partitions");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn headers_round_trip() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let producer = producer(&bootstrap, &[]);
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "trace-id",
            value: Some("abc-123"),
        })
        .insert(Header {
            key: "empty",
            value: Some(""),
        })
        .insert(Header {
            key: "null",
            value: None::<&[u8]>,
        })
        .insert(Header {
            key: "trace-id",
            value: Some("second"),
        });
    producer
        .send(
            FutureRecord::to("headers")
                .key("k")
                .payload("v")
                .headers(headers),
            PATIENCE,
        )
        .await
        .expect("delivered");
    let got = tokio::task::spawn_blocking(move || consume(&bootstrap, "headers", 1, 1))
        .await
        .unwrap();
    let h = got[0].headers().expect("headers present");
    let pairs: Vec<(String, Option<Vec<u8>>)> = h
        .iter()
        .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("trace-id".to_string(), Some(b"abc-123".to_vec())),
            ("empty".to_string(), Some(Vec::new())),
            ("null".to_string(), None),
            ("trace-id".to_string(), Some(b"second".to_vec())),
        ]
    );
    assert_eq!(got[0].key(), Some(&b"k"[..]));
    assert_eq!(got[0].payload(), Some(&b"v"[..]));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acks_level_delivers_in_order() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    for acks in ["0", "1", "all"] {
        let topic = format!("acks-{acks}");
        let producer = producer(&bootstrap, &[("acks", acks), ("max.in.flight", "1")]);
        for i in 0..50 {
            producer
                .send(
                    FutureRecord::to(&topic).key("k").payload(&format!("{i}")),
                    PATIENCE,
                )
                .await
                .expect("delivered");
        }
        let got = tokio::task::spawn_blocking({
            let bootstrap = bootstrap.clone();
            move || consume(&bootstrap, &topic, 1, 50)
        })
        .await
        .unwrap();
        let values: Vec<String> = got
            .iter()
            .map(|m| String::from_utf8(m.payload().unwrap().to_vec()).unwrap())
            .collect();
        let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        assert_eq!(values, expected, "acks={acks}");
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_poll_wakes_on_new_records() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let producer = producer(&bootstrap, &[]);
    producer
        .send(FutureRecord::to("poll").key("k").payload("first"), PATIENCE)
        .await
        .unwrap();
    // The consumer long-polls (fetch.wait.max.ms far above the test's patience would be
    // a hang, not a failure; 10 s is only an upper bound) while the next record arrives.
    let consumer_task = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || {
            let consumer = consumer(&bootstrap, &[("fetch.wait.max.ms", "10000")]);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("poll", 0, Offset::Offset(1))
                .unwrap();
            consumer.assign(&tpl).unwrap();
            loop {
                if let Some(m) = consumer.poll(PATIENCE) {
                    let m = m.expect("message");
                    return String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    producer
        .send(
            FutureRecord::to("poll").key("k").payload("second"),
            PATIENCE,
        )
        .await
        .unwrap();
    let value = tokio::time::timeout(PATIENCE, consumer_task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value, "second");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_offsets_by_time_earliest_and_latest() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let producer = producer(&bootstrap, &[("max.in.flight", "1")]);
    let base: i64 = 1_700_000_000_000;
    // Ten records one second apart, each in its own batch (sent one after another).
    for i in 0..10i64 {
        producer
            .send(
                FutureRecord::to("times")
                    .key("k")
                    .payload(&format!("{i}"))
                    .timestamp(base + i * 1000),
                PATIENCE,
            )
            .await
            .unwrap();
    }
    let answers = tokio::task::spawn_blocking(move || {
        let consumer = consumer(&bootstrap, &[]);
        let (low, high) = consumer.fetch_watermarks("times", 0, PATIENCE).unwrap();
        let mut answers = vec![low, high];
        for ts in [base - 5, base + 2500, base + 9000, base + 9001] {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("times", 0, Offset::Offset(ts))
                .unwrap();
            let found = consumer.offsets_for_times(tpl, PATIENCE).unwrap();
            let offset = found.find_partition("times", 0).unwrap().offset();
            answers.push(match offset {
                Offset::Offset(o) => o,
                Offset::End => -1,
                other => panic!("unexpected {other:?}"),
            });
        }
        answers
    })
    .await
    .unwrap();
    // earliest, latest, then: before everything -> 0; between 2 and 3 -> 3; exactly the
    // last -> 9; after everything -> none (-1, librdkafka's End).
    assert_eq!(answers, vec![0, 10, 0, 3, 9, -1]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_topic_without_auto_create_is_an_error() {
    let broker = TestBroker::start_with(|c| c.auto_create_topics = false).await;
    let bootstrap = broker.bootstrap();
    let producer = producer(&bootstrap, &[("message.timeout.ms", "3000")]);
    let result = producer
        .send(FutureRecord::to("nowhere").key("k").payload("v"), PATIENCE)
        .await;
    assert!(result.is_err(), "produce to an unknown topic must fail");
    assert!(broker.running().broker().topic("nowhere").is_none());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn background_retention_moves_the_log_start_offset() {
    let broker = TestBroker::start_with(|c| c.log_retention_check_interval_ms = 100).await;
    let bootstrap = broker.bootstrap();
    let configs = [
        ("segment.bytes".to_string(), "1024".to_string()),
        ("retention.bytes".to_string(), "2048".to_string()),
    ]
    .into();
    broker
        .running()
        .broker()
        .create_topic("retained", 1, configs)
        .unwrap();
    let producer = producer(&bootstrap, &[("linger.ms", "0"), ("max.in.flight", "1")]);
    for i in 0..100 {
        let value = format!("{i:03}-{}", "r".repeat(100));
        producer
            .send(
                FutureRecord::to("retained").key("k").payload(&value),
                PATIENCE,
            )
            .await
            .unwrap();
    }
    // Wait (bounded by PATIENCE, not asserted as a duration) for the retention task.
    let state = broker.running().broker().clone();
    let low = tokio::task::spawn_blocking(move || {
        let consumer = consumer(&bootstrap, &[]);
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let (low, high) = consumer.fetch_watermarks("retained", 0, PATIENCE).unwrap();
            assert_eq!(high, 100);
            if low > 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "retention never ran");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The task may have run while records were still arriving; one more pass reaches
        // the fixed point, after which nothing else is deleted (no new data).
        strata::broker::retention::run_once(&state);
        let (low, high) = consumer.fetch_watermarks("retained", 0, PATIENCE).unwrap();
        // Reading from the beginning starts at the new log start offset.
        let messages = consume(&bootstrap, "retained", 1, (high - low) as usize);
        assert_eq!(messages[0].offset(), low);
        let first = String::from_utf8(messages[0].payload().unwrap().to_vec()).unwrap();
        assert!(first.starts_with(&format!("{low:03}-")));
        low
    })
    .await
    .unwrap();
    let log = broker
        .running()
        .broker()
        .topic("retained")
        .unwrap()
        .partitions[0]
        .clone();
    assert_eq!(log.log_start_offset(), low);
    assert!(
        log.size_bytes() <= 2048 + 1024 + 200,
        "kept about retention.bytes"
    );
    broker.shutdown().await;
}

/// Issue 15: a long poll reads its partitions when it starts and when it answers, not on
/// every wake-up. A fetch of 16 partitions waits for more bytes than the test produces
/// while 32 acks=all batches (each a new durable offset, each a wake-up) land across them:
/// each wake-up decides from offsets and index positions that `min_bytes` is still out of
/// reach, so the logs are read 2 × 16 times in all, not 16 per wake-up (quadratic in
/// partitions before). Counted with the logs' read counters (debug builds).
#[cfg(debug_assertions)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fetch_reads_its_partitions_once_not_on_every_wake_up() {
    use common::raw::{batch, RawClient};
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        ApiKey, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::RecordBatchDecoder;

    const PARTITIONS: i32 = 16;
    const BATCHES: i32 = 32;
    let topic = || TopicName(StrBytes::from_static_str("long-poll-reads"));
    let broker = TestBroker::start_with(|c| c.num_partitions = PARTITIONS).await;
    let mut producer = RawClient::connect(broker.addr()).await;
    producer.auto_create("long-poll-reads").await;
    let logs: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            broker
                .running()
                .broker()
                .topic("long-poll-reads")
                .unwrap()
                .partition(p)
                .unwrap()
                .clone()
        })
        .collect();
    let reads = || logs.iter().map(|l| l.reads_started()).sum::<u64>();
    let before = reads();

    let request = FetchRequest::default()
        .with_max_wait_ms(3_000)
        .with_min_bytes(1 << 20)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic())
            .with_partitions(
                (0..PARTITIONS)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )]);
    let mut fetcher = RawClient::connect(broker.addr()).await;
    let waiting = tokio::spawn(async move {
        let response: FetchResponse = fetcher.call(ApiKey::Fetch, 12, &request).await;
        response
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..BATCHES {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(i % PARTITIONS)
                    .with_records(Some(batch(&["a record"], 1_700_000_000_000)))])]);
        let response: ProduceResponse = producer.call(ApiKey::Produce, 9, &request).await;
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    let response = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    let returned: usize = response.responses[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0);
            let mut records = p.records.clone().unwrap_or_default();
            RecordBatchDecoder::decode_all(&mut records).unwrap().len()
        })
        .sum();
    // Answered at its deadline with what was there (all of it, unless the produces were
    // slower than the wait).
    assert!(
        returned > 0 && returned <= BATCHES as usize,
        "{returned} batches"
    );
    let per_fetch = reads() - before;
    assert!(
        per_fetch <= 2 * PARTITIONS as u64,
        "{per_fetch} log reads for one fetch of {PARTITIONS} partitions"
    );
    broker.shutdown().await;
}
