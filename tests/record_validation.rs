//! Record validation on the produce path (issue 14): a batch with a valid CRC whose
//! records lie is refused with Kafka's code (INVALID_RECORD, CORRUPT_MESSAGE,
//! MESSAGE_TOO_LARGE) and nothing of it is appended, so a consumer reading the partition
//! afterwards gets every good record and nothing else; compacted topics refuse records
//! without a key. (Every librdkafka codec still produces: tests/produce_fetch.rs.)

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::raw::RawClient;
use common::{consume, producer, TestBroker, PATIENCE};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use strata_storage::batch::put_varlong;
use strata_storage::records::build::{self, RawRecord};
use strata_storage::records::Codec;

const NONE: i16 = 0;
const CORRUPT_MESSAGE: i16 = 2;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_RECORD: i16 = 87;

/// Produce v`version`, acks=all, `records` to partition 0 of `topic`.
async fn produce_v(
    client: &mut RawClient,
    version: i16,
    topic: &str,
    records: Vec<u8>,
) -> PartitionProduceResponse {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records)))])]);
    let mut response: ProduceResponse = client.call(ApiKey::Produce, version, &request).await;
    response.responses.remove(0).partition_responses.remove(0)
}

async fn produce(
    client: &mut RawClient,
    topic: &str,
    records: Vec<u8>,
) -> PartitionProduceResponse {
    produce_v(client, 9, topic, records).await
}

/// Records "`prefix`-0" .. with keys, as a client would encode them.
fn good(prefix: &str, count: usize, codec: Option<Codec>) -> (Vec<u8>, Vec<String>) {
    let values: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let records: Vec<RawRecord> = values
        .iter()
        .map(|v| RawRecord::new(Some(b"key"), v.as_bytes()))
        .collect();
    (build::batch_of(&records, codec), values)
}

/// A record whose body is `fields` (raw varints after attributes, timestamp and offset
/// deltas), preceded by the given `length`.
fn record_claiming_length(length: i64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varlong(&mut out, length);
    out.extend_from_slice(&[0, 0, 0, 1, 1, 0]);
    out
}

/// Every lying batch here has a valid CRC-32C; each would have been appended before
/// issue 14 and left consumers stuck at its offset.
fn lying_batches(cap: usize) -> Vec<(&'static str, Vec<u8>, i16)> {
    let two = build::encode_records(&[
        RawRecord::new(Some(b"k"), b"a"),
        RawRecord::new(Some(b"k"), b"b"),
    ]);
    let mut repeated_offsets = Vec::new();
    build::encode_record(&mut repeated_offsets, 0, &RawRecord::new(None, b"x"));
    build::encode_record(&mut repeated_offsets, 0, &RawRecord::new(None, b"y"));
    let truncated = |codec: Codec| {
        let mut c = build::compress(codec, &two);
        c.truncate(c.len() - 4);
        build::batch(&c, 2, build::codec_id(Some(codec)))
    };
    let mut flipped_gzip = build::compress(Codec::Gzip, &two);
    let middle = flipped_gzip.len() / 2;
    flipped_gzip[middle] ^= 0x55;
    // A record of zeros four times the inflated-size cap: a few KiB compressed.
    let mut bomb = Vec::new();
    build::encode_record(&mut bomb, 0, &RawRecord::new(None, &vec![0; 4 * cap]));
    vec![
        (
            "record count above the records",
            build::batch(&two, 3, 0),
            INVALID_RECORD,
        ),
        (
            "record count below the records",
            build::batch(&two, 1, 0),
            INVALID_RECORD,
        ),
        (
            "garbage record bytes",
            build::batch(b"\x0cnot records!", 1, 0),
            INVALID_RECORD,
        ),
        (
            "record length 2^31",
            build::batch(&record_claiming_length(1 << 31), 1, 0),
            INVALID_RECORD,
        ),
        (
            "record length i32::MAX",
            build::batch(&record_claiming_length(i32::MAX.into()), 1, 0),
            INVALID_RECORD,
        ),
        (
            "repeated offset deltas",
            build::batch(&repeated_offsets, 2, 0),
            INVALID_RECORD,
        ),
        (
            "corrupt gzip",
            build::batch(&flipped_gzip, 2, 1),
            CORRUPT_MESSAGE,
        ),
        ("truncated gzip", truncated(Codec::Gzip), CORRUPT_MESSAGE),
        (
            "truncated snappy",
            truncated(Codec::Snappy),
            CORRUPT_MESSAGE,
        ),
        ("truncated lz4", truncated(Codec::Lz4), CORRUPT_MESSAGE),
        ("truncated zstd", truncated(Codec::Zstd), CORRUPT_MESSAGE),
        (
            "not zstd at all",
            build::batch(b"plain bytes, not a zstd frame", 2, 4),
            CORRUPT_MESSAGE,
        ),
        (
            "garbage after a gzip member",
            {
                let mut c = build::compress(Codec::Gzip, &two);
                c.extend_from_slice(b"tail");
                build::batch(&c, 2, 1)
            },
            CORRUPT_MESSAGE,
        ),
        ("unknown codec 6", build::batch(&two, 2, 6), CORRUPT_MESSAGE),
        (
            "gzip bomb",
            build::batch(&build::compress(Codec::Gzip, &bomb), 1, 1),
            MESSAGE_TOO_LARGE,
        ),
        (
            "lz4 bomb",
            build::batch(&build::compress(Codec::Lz4, &bomb), 1, 3),
            MESSAGE_TOO_LARGE,
        ),
        (
            "zstd bomb",
            build::batch(&build::compress(Codec::Zstd, &bomb), 1, 4),
            MESSAGE_TOO_LARGE,
        ),
        (
            "snappy bomb (xerial blocks)",
            build::batch(&build::compress_xerial(&bomb, 32 << 10), 1, 2),
            MESSAGE_TOO_LARGE,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_batches_are_refused_and_consumers_read_every_good_record() {
    // socket.request.max.bytes is also the cap on a batch's inflated records.
    const CAP: usize = 4 << 20;
    let broker = TestBroker::start_with(|c| c.socket_request_max_bytes = CAP as u32).await;
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(broker.addr()).await;
    let topic = "lies";
    client.auto_create(topic).await;
    let (first, mut expected) = good("before", 2, None);
    let r = produce(&mut client, topic, first).await;
    assert_eq!((r.error_code, r.base_offset), (NONE, 0));
    let log = broker
        .running()
        .broker()
        .topic(topic)
        .unwrap()
        .partition(0)
        .unwrap()
        .clone();

    for (what, batch, code) in lying_batches(CAP) {
        assert!(batch.len() < CAP, "{what}: {} bytes", batch.len());
        let r = produce(&mut client, topic, batch.clone()).await;
        assert_eq!((r.error_code, r.base_offset), (code, -1), "{what}: {r:?}");
        let message = r.error_message.map(|m| m.to_string()).unwrap_or_default();
        assert!(
            !message.is_empty(),
            "{what}: the reason is in error_message"
        );
        assert_eq!(log.log_end_offset(), 2, "{what}: nothing appended");
        // Produce v7 has no error_message; the same code comes back.
        let r = produce_v(&mut client, 7, topic, batch).await;
        assert_eq!(r.error_code, code, "{what} (v7)");
    }
    let r = produce(&mut client, topic, lying_batches(CAP).remove(0).1).await;
    assert_eq!(r.record_errors.len(), 1, "{r:?}");
    assert_eq!(
        r.record_errors[0].batch_index, 2,
        "the missing third record"
    );

    // Good batches of every codec still go in, after the refused ones.
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let (batch, values) = good(&format!("after-{codec}"), 3, Some(codec));
        let r = produce(&mut client, topic, batch).await;
        assert_eq!(r.error_code, NONE, "{codec}");
        expected.extend(values);
    }
    // snappy-java framing (Java, kafka-python) too.
    let xerial_records: Vec<RawRecord> = (0..3)
        .map(|i| RawRecord::new(Some(b"key"), format!("after-xerial-{i}").as_bytes()))
        .collect();
    let xerial = build::compress_xerial(&build::encode_records(&xerial_records), 16);
    let r = produce(&mut client, topic, build::batch(&xerial, 3, 2)).await;
    assert_eq!(r.error_code, NONE);
    expected.extend((0..3).map(|i| format!("after-xerial-{i}")));
    assert_eq!(log.log_end_offset(), expected.len() as i64);

    // librdkafka reads every good record, in order, and nothing else.
    let count = expected.len();
    let messages = tokio::task::spawn_blocking(move || consume(&bootstrap, topic, 1, count))
        .await
        .unwrap();
    let got: Vec<(i64, String)> = messages
        .iter()
        .map(|m| {
            (
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
            )
        })
        .collect();
    let want: Vec<(i64, String)> = expected
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v))
        .collect();
    assert_eq!(got, want);
    broker.shutdown().await;
}

fn admin(broker: &TestBroker) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("admin client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topics_refuse_records_without_a_key() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let admin = admin(&broker);
    let opts = AdminOptions::new().operation_timeout(Some(PATIENCE));
    let topic = NewTopic::new("compacted", 1, rdkafka::admin::TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact,delete");
    let created = admin.create_topics([&topic], &opts).await.unwrap();
    assert!(created[0].is_ok(), "{created:?}");

    // librdkafka: a keyed record is delivered, a keyless one fails with INVALID_RECORD.
    let producer = producer(&bootstrap, &[("acks", "all"), ("linger.ms", "0")]);
    let send = |key: Option<&'static str>, value: &'static str| {
        let producer = producer.clone();
        async move {
            let mut record = FutureRecord::<str, str>::to("compacted")
                .partition(0)
                .payload(value);
            if let Some(k) = key {
                record = record.key(k);
            }
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
        }
    };
    send(Some("k1"), "keyed")
        .await
        .expect("a keyed record is accepted");
    match send(None, "keyless").await {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)) => {}
        other => panic!("keyless record: {other:?}"),
    }

    // On the wire: the keyless record's index, and Kafka's reason.
    let mut client = RawClient::connect(broker.addr()).await;
    let mixed = build::batch_of(
        &[RawRecord::new(Some(b"k"), b"a"), RawRecord::new(None, b"b")],
        Some(Codec::Lz4),
    );
    let r = produce(&mut client, "compacted", mixed.clone()).await;
    assert_eq!(r.error_code, INVALID_RECORD);
    assert_eq!(r.record_errors.len(), 1);
    assert_eq!(r.record_errors[0].batch_index, 1);
    let message = r.error_message.unwrap().to_string();
    assert!(message.contains("without a key"), "{message}");
    // Every keyless record is listed (librdkafka fails exactly those with INVALID_RECORD
    // and the batch's other records with a "different record" error).
    let two_keyless = build::batch_of(
        &[
            RawRecord::new(None, b"x"),
            RawRecord::new(Some(b"k"), b"y"),
            RawRecord::new(None, b"z"),
        ],
        None,
    );
    let r = produce(&mut client, "compacted", two_keyless).await;
    let indexes: Vec<i32> = r.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!((r.error_code, indexes), (INVALID_RECORD, vec![0, 2]));
    // An empty key is a key.
    let empty_key = build::batch_of(&[RawRecord::new(Some(b""), b"empty key")], None);
    assert_eq!(
        produce(&mut client, "compacted", empty_key)
            .await
            .error_code,
        NONE
    );

    // Live: once the topic is no longer compacted, keyless records are accepted.
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic("compacted")).set("cleanup.policy", "delete");
    let altered = admin.alter_configs([&alter], &opts).await.unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    assert_eq!(
        produce(&mut client, "compacted", mixed).await.error_code,
        NONE
    );

    let messages = tokio::task::spawn_blocking(move || consume(&bootstrap, "compacted", 1, 4))
        .await
        .unwrap();
    let values: Vec<&[u8]> = messages.iter().map(|m| m.payload().unwrap()).collect();
    assert_eq!(values, [&b"keyed"[..], b"empty key", b"a", b"b"]);
    broker.shutdown().await;
}
