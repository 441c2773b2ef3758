//! The partition layer (issue 15): what Metadata and ListOffsets say about a partition's
//! leader, leader epoch, replicas and ISR comes from the metadata, and every batch the
//! leader appends carries its leader epoch (Kafka stamps `partitionLeaderEpoch`; a
//! producer sends -1), as KIP-101 / KIP-320 truncation detection needs.

mod common;

use bytes::Bytes;
use common::raw::{batch_with_epoch, RawClient};
use common::TestBroker;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_carry_the_leader_epoch_and_metadata_reports_the_partition_state() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    client.auto_create("epochs").await;

    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("epochs"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch_with_epoch(
                    &["a", "b"],
                    1_700_000_000_000,
                    -1,
                )))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 8, &produce).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);

    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("epochs"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = client.call(ApiKey::Fetch, 11, &fetch).await;
    let mut records: Bytes = response.responses[0].partitions[0]
        .records
        .clone()
        .expect("the batch is fetched");
    let decoded = RecordBatchDecoder::decode(&mut records).unwrap();
    assert_eq!(decoded.records.len(), 2);
    assert!(
        decoded
            .records
            .iter()
            .all(|r| r.partition_leader_epoch == 0),
        "the producer's -1 is replaced by the leader's epoch: {:?}",
        decoded
            .records
            .iter()
            .map(|r| r.partition_leader_epoch)
            .collect::<Vec<_>>()
    );

    let metadata: MetadataResponse = client
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("epochs")))
            ])),
        )
        .await;
    let partition = &metadata.topics[0].partitions[0];
    let node = BrokerId(0);
    assert_eq!(
        (
            partition.leader_id,
            partition.leader_epoch,
            partition.replica_nodes.clone(),
            partition.isr_nodes.clone()
        ),
        (node, 0, vec![node], vec![node])
    );

    let list: ListOffsetsResponse = client
        .call(
            ApiKey::ListOffsets,
            7,
            &ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("epochs"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]),
        )
        .await;
    let latest = &list.topics[0].partitions[0];
    assert_eq!((latest.offset, latest.leader_epoch), (2, 0));
    broker.shutdown().await;
}
