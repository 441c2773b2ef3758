//! Every advertised version of the core APIs, driven over raw TCP with requests encoded by
//! the kafka-protocol crate: each version is answered, its response decodes at that
//! version, and it carries the right data. (librdkafka only uses the newest versions.)

mod common;

use common::raw::{batch, RawClient};
use common::TestBroker;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use uuid::Uuid;

const TOPIC: &str = "versions";
const BASE_TS: i64 = 1_700_000_000_000;

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

async fn metadata(client: &mut RawClient, version: i16, topic: Option<&str>) -> MetadataResponse {
    let topics = topic.map(|t| {
        vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))]
    });
    let mut request = MetadataRequest::default().with_topics(topics);
    if version >= 4 {
        request = request.with_allow_auto_topic_creation(true);
    }
    client.call(ApiKey::Metadata, version, &request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_of_the_core_apis() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;

    // The request that auto-creates a topic answers LEADER_NOT_AVAILABLE for it, as
    // Kafka does; the next one finds it.
    let created = metadata(&mut client, 12, Some(TOPIC)).await;
    assert_eq!(created.topics[0].error_code, 5, "LEADER_NOT_AVAILABLE");
    assert!(created.topics[0].partitions.is_empty());

    // Metadata v0..=12: reports this node and the topic, ids from v10.
    let mut topic_id = Uuid::nil();
    for version in 0..=12 {
        let response = metadata(&mut client, version, Some(TOPIC)).await;
        assert_eq!(response.brokers.len(), 1, "v{version}");
        assert_eq!(response.brokers[0].node_id.0, 0);
        assert_eq!(response.brokers[0].port, broker.addr().port() as i32);
        let topic = &response.topics[0];
        assert_eq!(topic.error_code, 0, "v{version}");
        assert_eq!(topic.name.as_ref().unwrap().as_str(), TOPIC);
        assert_eq!(topic.partitions.len(), 1);
        assert_eq!(topic.partitions[0].leader_id.0, 0);
        assert_eq!(topic.partitions[0].isr_nodes.len(), 1);
        if version >= 10 {
            assert_ne!(topic.topic_id, Uuid::nil());
            if topic_id != Uuid::nil() {
                assert_eq!(topic.topic_id, topic_id);
            }
            topic_id = topic.topic_id;
        }
        if version >= 2 {
            assert!(response.cluster_id.is_some());
        }
    }
    // All topics: null list from v1, empty list in v0.
    for version in 0..=12 {
        let response: MetadataResponse = if version == 0 {
            let request = MetadataRequest::default().with_topics(Some(vec![]));
            client.call(ApiKey::Metadata, 0, &request).await
        } else {
            metadata(&mut client, version, None).await
        };
        assert!(response
            .topics
            .iter()
            .any(|t| t.name.as_ref().unwrap().as_str() == TOPIC));
    }

    // A request that does not allow auto-creation gets UNKNOWN_TOPIC_OR_PARTITION, and
    // an illegal name INVALID_TOPIC_EXCEPTION; neither creates anything.
    for (name, allow, expected) in [("nope", false, 3), ("bad name!", true, 17)] {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str(name))))]))
            .with_allow_auto_topic_creation(allow);
        let response: MetadataResponse = client.call(ApiKey::Metadata, 12, &request).await;
        assert_eq!(response.topics[0].error_code, expected, "{name}");
        assert!(broker.running().broker().topic(name).is_none());
    }

    // Produce v3..=9 (acks=-1): one batch each, offsets in order.
    for (i, version) in (3..=9).enumerate() {
        let value = format!("p{version}");
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&[&value], BASE_TS + i as i64 * 1000)))])]);
        let response: ProduceResponse = client.call(ApiKey::Produce, version, &request).await;
        let p = &response.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "v{version}");
        assert_eq!(p.base_offset, i as i64, "v{version}");
        assert_eq!(p.log_append_time_ms, -1);
        if version >= 5 {
            assert_eq!(p.log_start_offset, 0);
        }
    }

    // Fetch v4..=13 (by topic id from v13): every record, high watermark 7.
    for version in 4..=13 {
        let mut topic = FetchTopic::default().with_partitions(vec![FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(0)
            .with_partition_max_bytes(1 << 20)]);
        topic = if version >= 13 {
            topic.with_topic_id(topic_id)
        } else {
            topic.with_topic(topic_name())
        };
        let request = FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![topic]);
        let response: FetchResponse = client.call(ApiKey::Fetch, version, &request).await;
        assert_eq!(response.error_code, 0, "v{version}");
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{version}");
        assert_eq!(p.high_watermark, 7);
        assert_eq!(p.last_stable_offset, 7);
        if version >= 5 {
            assert_eq!(p.log_start_offset, 0);
        }
        let mut records = p.records.clone().unwrap();
        let values: Vec<String> = RecordBatchDecoder::decode_all(&mut records)
            .unwrap()
            .into_iter()
            .flat_map(|set| set.records)
            .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(
            values,
            ["p3", "p4", "p5", "p6", "p7", "p8", "p9"],
            "v{version}"
        );
    }

    // Byte limits: a limit smaller than one batch still returns exactly the first whole
    // batch (so a consumer can always progress), whether the limit is the partition's or
    // the response's.
    for (partition_max, response_max) in [(1, 1 << 20), (1 << 20, 1)] {
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(response_max)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name())
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(2)
                    .with_partition_max_bytes(partition_max)])]);
        let response: FetchResponse = client.call(ApiKey::Fetch, 12, &request).await;
        let mut records = response.responses[0].partitions[0].records.clone().unwrap();
        let sets = RecordBatchDecoder::decode_all(&mut records).unwrap();
        assert_eq!(sets.len(), 1, "limits {partition_max}/{response_max}");
        assert_eq!(sets[0].records[0].offset, 2);
    }

    // Fetch at the high watermark with max_wait 0 answers at once with no records; past
    // the log end is OFFSET_OUT_OF_RANGE.
    for (offset, expected_error) in [(7, 0), (100, 1)] {
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name())
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let response: FetchResponse = client.call(ApiKey::Fetch, 12, &request).await;
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, expected_error, "offset {offset}");
        assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
    }

    // ListOffsets v1..=8: latest, earliest, by time, max timestamp (v7+).
    for version in 1..=8 {
        let mut queries = vec![
            (-1, 7),
            (-2, 0),
            (BASE_TS + 2500, 3),
            (BASE_TS + 60_000, -1),
        ];
        if version >= 7 {
            queries.push((-3, 6));
        }
        for (timestamp, expected) in queries {
            let request = ListOffsetsRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name())
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(timestamp)])]);
            let response: ListOffsetsResponse =
                client.call(ApiKey::ListOffsets, version, &request).await;
            let p = &response.topics[0].partitions[0];
            assert_eq!(p.error_code, 0, "v{version} ts {timestamp}");
            assert_eq!(p.offset, expected, "v{version} ts {timestamp}");
        }
    }
    broker.shutdown().await;
}

fn produce_request(value: &str) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(&[value], BASE_TS)))])])
}

/// A long-poll fetch is answered when a record arrives (its max wait is far beyond the
/// test's patience, so only the append can end it), and a request pipelined behind it
/// on the same connection is answered after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_is_woken_by_an_append_and_keeps_response_order() {
    let broker = TestBroker::start().await;
    let mut consumer = RawClient::connect(broker.addr()).await;
    let mut producer = RawClient::connect(broker.addr()).await;
    producer.auto_create(TOPIC).await;
    let first: ProduceResponse = producer
        .call(ApiKey::Produce, 9, &produce_request("a"))
        .await;
    assert_eq!(first.responses[0].partition_responses[0].error_code, 0);

    let fetch = FetchRequest::default()
        .with_max_wait_ms(600_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(1)
                .with_partition_max_bytes(1 << 20)])]);
    let fetch_id = consumer.send(ApiKey::Fetch, 12, &fetch).await;
    let metadata_id = consumer
        .send(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await;
    // Give the broker a moment to park the fetch (correctness does not depend on it).
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let second: ProduceResponse = producer
        .call(ApiKey::Produce, 9, &produce_request("b"))
        .await;
    assert_eq!(second.responses[0].partition_responses[0].base_offset, 1);

    let response: FetchResponse = consumer.receive(ApiKey::Fetch, 12, fetch_id).await;
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 2);
    let mut records = p.records.clone().unwrap();
    let sets = RecordBatchDecoder::decode_all(&mut records).unwrap();
    let values: Vec<_> = sets
        .into_iter()
        .flat_map(|s| s.records)
        .map(|r| r.value.unwrap())
        .collect();
    assert_eq!(values, vec![bytes::Bytes::from_static(b"b")]);
    let metadata: MetadataResponse = consumer.receive(ApiKey::Metadata, 12, metadata_id).await;
    assert_eq!(metadata.brokers.len(), 1);
    broker.shutdown().await;
}

/// Shutdown ends a parked long poll instead of waiting for its max wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_a_parked_long_poll() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let _: MetadataResponse = metadata(&mut client, 12, Some(TOPIC)).await;
    let fetch = FetchRequest::default()
        .with_max_wait_ms(600_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let fetch_id = client.send(ApiKey::Fetch, 12, &fetch).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let shutdown = tokio::spawn(broker.shutdown());
    let response: FetchResponse = client.receive(ApiKey::Fetch, 12, fetch_id).await;
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
    tokio::time::timeout(common::PATIENCE, shutdown)
        .await
        .unwrap()
        .unwrap();
}
