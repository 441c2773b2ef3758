//! Fetch byte limits as Kafka applies them (KIP-74): only the first batch of the first
//! partition that returns data may exceed the response's `max_bytes` or its partition's
//! `partition_max_bytes`; a later partition whose next batch does not fit gets no records,
//! so the response stays within the limit the client sized its receive buffer for.
//! (librdkafka's 0082_fetch_max_bytes test: fetch.max.bytes=1000000 with
//! receive.message.max.bytes=1000512 and ~900 KiB batches in three partitions.)

mod common;

use bytes::Bytes;
use common::raw::{batch, RawClient};
use common::TestBroker;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

const TOPIC: &str = "fetch-limits";
/// Bytes of value in each produced batch: a batch is a little larger than this.
const VALUE_LEN: usize = 4000;

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// Produces one batch holding one `VALUE_LEN`-byte record to each of `partitions`.
async fn produce_one_batch_each(client: &mut RawClient, partitions: &[i32]) {
    let value = "v".repeat(VALUE_LEN);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name())
            .with_partition_data(
                partitions
                    .iter()
                    .map(|&p| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(batch(&[&value], 1_700_000_000_000)))
                    })
                    .collect(),
            )]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request).await;
    for p in &response.responses[0].partition_responses {
        assert_eq!(p.error_code, 0, "partition {}", p.index);
    }
}

/// Fetches partitions 0..3 from `offsets[p]` with the given limits; returns the number of
/// batches and the record bytes each partition got.
async fn fetch(
    client: &mut RawClient,
    offsets: [i64; 3],
    max_bytes: i32,
    partition_max_bytes: i32,
) -> Vec<(usize, usize)> {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name())
            .with_partitions(
                (0..3)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(offsets[p as usize])
                            .with_partition_max_bytes(partition_max_bytes)
                    })
                    .collect(),
            )]);
    let response: FetchResponse = client.call(ApiKey::Fetch, 12, &request).await;
    response.responses[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0, "partition {}", p.partition_index);
            let records = p.records.clone().unwrap_or_else(Bytes::new);
            let len = records.len();
            let mut buf = records;
            let batches = RecordBatchDecoder::decode_all(&mut buf).unwrap().len();
            (batches, len)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_first_batch_of_the_first_partition_may_exceed_a_fetch_limit() {
    let broker = TestBroker::start_with(|c| c.num_partitions = 3).await;
    let mut client = RawClient::connect(broker.addr()).await;
    // Auto-creates the topic (3 partitions), then one batch in each partition.
    client.auto_create(TOPIC).await;
    produce_one_batch_each(&mut client, &[0, 1, 2]).await;

    // Response limit smaller than one batch: partition 0's batch is returned (the
    // consumer must progress); partitions 1 and 2 get nothing, not a second and third
    // batch over the limit.
    let got = fetch(&mut client, [0, 0, 0], 1000, 1 << 20).await;
    assert_eq!(got[0].0, 1, "first partition: its first batch");
    assert!(got[0].1 > VALUE_LEN);
    assert_eq!(got[1], (0, 0), "second partition: the batch does not fit");
    assert_eq!(got[2], (0, 0), "third partition: the batch does not fit");

    // Room for one batch and a half: the second batch does not fit either.
    let one = got[0].1 as i32;
    let got = fetch(&mut client, [0, 0, 0], one + one / 2, 1 << 20).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [1, 0, 0]);

    // Room for two batches: two partitions answer, the third gets nothing.
    let got = fetch(&mut client, [0, 0, 0], 2 * one + one / 2, 1 << 20).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [1, 1, 0]);

    // The partition limit alone: every partition's limit is smaller than its batch, so
    // only the first partition's batch is returned.
    let got = fetch(&mut client, [0, 0, 0], 1 << 20, 1000).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [1, 0, 0]);

    // "First" means the first partition that has data: with partition 0 read to its end,
    // partition 1's oversized batch is the one returned, and partition 2 gets nothing.
    let got = fetch(&mut client, [1, 0, 0], 1000, 1000).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [0, 1, 0]);

    broker.shutdown().await;
}

/// The broker's fetch.max.bytes caps a Fetch response whatever max_bytes the client asks
/// for (Kafka's broker setting of the same name): with room for two batches and a half,
/// a client asking for 1 MiB gets two partitions' batches, not three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_fetch_max_bytes_caps_what_a_client_asks_for() {
    // One batch is a little over VALUE_LEN bytes.
    let cap = (VALUE_LEN * 5 / 2) as i32;
    let broker = TestBroker::start_with(|c| {
        c.num_partitions = 3;
        c.fetch_max_bytes = cap;
    })
    .await;
    let mut client = RawClient::connect(broker.addr()).await;
    client.auto_create(TOPIC).await;
    produce_one_batch_each(&mut client, &[0, 1, 2]).await;
    let got = fetch(&mut client, [0, 0, 0], 1 << 20, 1 << 20).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [1, 1, 0]);
    assert!(got.iter().map(|g| g.1).sum::<usize>() <= cap as usize);
    // The first batch still comes whatever the cap (KIP-74): the consumer progresses.
    let tiny = TestBroker::start_with(|c| c.fetch_max_bytes = 1024).await;
    let mut client = RawClient::connect(tiny.addr()).await;
    client.auto_create(TOPIC).await;
    produce_one_batch_each(&mut client, &[0]).await;
    let request_one = fetch_one(&mut client).await;
    assert_eq!(request_one, 1);
    tiny.shutdown().await;
    broker.shutdown().await;
}

/// Batches returned for partition 0 of `TOPIC` from offset 0 with generous limits.
async fn fetch_one(client: &mut RawClient) -> usize {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = client.call(ApiKey::Fetch, 12, &request).await;
    let mut records = response.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    RecordBatchDecoder::decode_all(&mut records).unwrap().len()
}
