//! Decoding cannot multiply a request's memory (issue 14, item 9). A request body may
//! decode to at most `api::decode_limit` bytes of arrays and tagged fields (8x its size
//! plus 1 MiB, 64 MiB in all: kafka-protocol's `DecodeBudget`); a body that would decode
//! to more closes its connection, like any frame that cannot be parsed, and allocates
//! nothing past the limit. Real requests are far below it and are answered.

mod common;

use bytes::{BufMut, BytesMut};
use common::raw::RawClient;
use common::{TestBroker, PATIENCE};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Peak resident memory of this process (the broker runs in it), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The reproduction: a ~20 MB Metadata v1 request naming 10 million empty
/// topics (2 bytes each on the wire, a 72-byte `MetadataRequestTopic` each decoded) took
/// the broker from 33 MB to 1.77 GB. Now its connection is closed after at most
/// `decode_limit` bytes of decoding, and other clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_million_empty_topic_names_do_not_decode_to_gigabytes() {
    let broker = TestBroker::start().await;
    let names = 10_000_000usize;
    let mut frame = BytesMut::with_capacity(names * 2 + 64);
    frame.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(1)
        .with_correlation_id(1)
        .encode(&mut frame, ApiKey::Metadata.request_header_version(1))
        .unwrap();
    frame.put_i32(names as i32);
    for _ in 0..names {
        frame.put_i16(0); // an empty name
    }
    let len = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    let frame = frame.freeze();

    let before = peak_rss_kib();
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    // The broker may close before reading everything: a failed write is fine.
    let _ = stream.write_all(&frame).await;
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    closed
        .await
        .expect("the connection is closed, not answered");
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    eprintln!("peak RSS grew by {grown_mib} MiB while refusing the request");
    // The frame itself is held twice (here and in the broker): ~40 MiB. Decoding it
    // whole took 720 MiB more.
    assert!(
        grown_mib < 300,
        "decoding grew the peak RSS by {grown_mib} MiB"
    );

    let mut client = RawClient::connect(broker.addr()).await;
    let versions: ApiVersionsResponse = client
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(versions.error_code, 0);
    broker.shutdown().await;
}

/// A real client's large request decodes well within the limit: Metadata naming 50,000
/// topics (none exists) is answered, topic by topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_request_for_fifty_thousand_topics_is_answered() {
    let broker = TestBroker::start_with(|c| c.auto_create_topics = false).await;
    let mut client = RawClient::connect(broker.addr()).await;
    for version in [4, 12] {
        let topics = (0..50_000)
            .map(|i| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(format!("t{i}")))))
            })
            .collect();
        let response: MetadataResponse = client
            .call(
                ApiKey::Metadata,
                version,
                &MetadataRequest::default()
                    .with_topics(Some(topics))
                    .with_allow_auto_topic_creation(false),
            )
            .await;
        assert_eq!(response.topics.len(), 50_000, "v{version}");
        // UNKNOWN_TOPIC_OR_PARTITION
        assert!(response.topics.iter().all(|t| t.error_code == 3));
    }
    broker.shutdown().await;
}

/// Unit of the limit, through the public function.
#[test]
fn the_decode_limit_grows_with_the_frame_up_to_a_ceiling() {
    use strata::api::{decode_limit, DECODE_FLOOR, DECODE_MAX, DECODE_RATIO};
    assert_eq!(decode_limit(0), DECODE_FLOOR);
    assert_eq!(decode_limit(1000), DECODE_FLOOR + 1000 * DECODE_RATIO);
    assert_eq!(decode_limit(100 << 20), DECODE_MAX);
    assert_eq!(decode_limit(usize::MAX), DECODE_MAX);
}

/// A describe request naming one thing many times cannot make a response that many times
/// larger than itself: a Metadata naming a topic of 1,000 partitions 20,000 times (a
/// 140 KB request, a ~500 MB answer if each mention were answered), a DescribeConfigs
/// naming a topic's every config 20,000 times, a DescribeGroups naming one group 20,000
/// times. Each thing is answered once, as Kafka's Metadata does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thing_named_many_times_is_described_once() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{
        DescribeConfigsRequest, DescribeConfigsResponse, DescribeGroupsRequest,
        DescribeGroupsResponse, GroupId,
    };
    const MENTIONS: usize = 20_000;
    let broker = TestBroker::start_with(|c| c.num_partitions = 1000).await;
    let mut client = RawClient::connect(broker.addr()).await;
    client.auto_create("wide").await;
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default()
            .with_name(Some(
                TopicName(StrBytes::from_static_str("wide"))
            ));
        MENTIONS
    ]));
    let response: MetadataResponse = client.call(ApiKey::Metadata, 12, &request).await;
    assert_eq!(response.topics.len(), 1);
    assert_eq!(response.topics[0].partitions.len(), 1000);

    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("wide"));
        MENTIONS
    ]);
    let response: DescribeConfigsResponse = client.call(ApiKey::DescribeConfigs, 4, &request).await;
    assert_eq!(response.results.len(), 1);
    assert!(response.results[0].configs.len() > 10);

    let request =
        DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_static_str("g")); MENTIONS]);
    let response: DescribeGroupsResponse = client.call(ApiKey::DescribeGroups, 5, &request).await;
    assert_eq!(response.groups.len(), 1);
    broker.shutdown().await;
}
