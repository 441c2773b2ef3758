//! Silent, slow and trickling clients cannot starve the others (issue 14, item 1). The
//! request budget (`queued.max.request.bytes`) is charged as a frame's bytes arrive, never
//! from its declared length; small requests have a part of the budget large frames cannot
//! take; an incomplete frame must arrive within `request.read.timeout.ms`; and large
//! frames that together exceed the budget all complete.
//!
//! Each test keeps a well-behaved client (an rdkafka producer already producing, and new
//! raw connections sending ApiVersions and Produce) that must be answered within
//! `LIVENESS` while the hostile connections hold what they can. That bound is a liveness
//! check (on main these clients waited for `connections.max.idle.ms`, 600 s), not a
//! performance assertion.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::raw::{batch, RawClient};
use common::{producer, TestBroker, PATIENCE};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a well-behaved client may wait for an answer while others misbehave.
const LIVENESS: Duration = Duration::from_secs(10);

const TOPIC: &str = "slow-clients";

/// Roughly what the reproduction declared: 99 MiB.
const DECLARED: i32 = 99 * 1024 * 1024;

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// Creates `TOPIC` (auto-creation through Metadata).
async fn create_topic(broker: &TestBroker) {
    let mut client = RawClient::connect(broker.addr()).await;
    let response: MetadataResponse = client
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(topic_name()))
                ]))
                .with_allow_auto_topic_creation(true),
        )
        .await;
    // LEADER_NOT_AVAILABLE (5): created by this request, as Kafka answers.
    assert!(matches!(response.topics[0].error_code, 0 | 5));
}

/// A Produce request of one small batch, acks=all.
fn small_produce(value: &str) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(&[value], 1_700_000_000_000)))])])
}

/// A new connection sends ApiVersions, then a small Produce: both answered in time.
async fn new_client_is_served(broker: &TestBroker, what: &str) {
    let served = async {
        let mut client = RawClient::connect(broker.addr()).await;
        let versions: ApiVersionsResponse = client
            .call(
                ApiKey::ApiVersions,
                3,
                &ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("slow-clients"))
                    .with_client_software_version(StrBytes::from_static_str("1")),
            )
            .await;
        assert_eq!(versions.error_code, 0);
        let produced: ProduceResponse = client
            .call(ApiKey::Produce, 9, &small_produce("fresh"))
            .await;
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    };
    tokio::time::timeout(LIVENESS, served)
        .await
        .unwrap_or_else(|_| panic!("{what}: a new client was not answered within {LIVENESS:?}"));
}

/// A producer that was already producing before the attack keeps being acknowledged.
async fn producing_client_is_served(producer: &FutureProducer, what: &str) {
    let send = producer.send(
        FutureRecord::<(), _>::to(TOPIC)
            .payload("during")
            .partition(0),
        PATIENCE,
    );
    let Ok(delivered) = tokio::time::timeout(LIVENESS, send).await else {
        panic!("{what}: the producer was not acknowledged within {LIVENESS:?}");
    };
    if let Err((e, _)) = delivered {
        panic!("{what}: produce failed: {e}");
    }
}

/// An rdkafka producer with one record acknowledged, so its connection is established.
async fn established_producer(broker: &TestBroker) -> FutureProducer {
    let producer = producer(&broker.bootstrap(), &[("acks", "all")]);
    producer
        .send(
            FutureRecord::<(), _>::to(TOPIC)
                .payload("before")
                .partition(0),
            PATIENCE,
        )
        .await
        .expect("first record acknowledged");
    producer
}

/// A connection that sends a length prefix declaring `declared` bytes, then `sent` bytes of
/// the body, then nothing.
async fn stalled_frame(broker: &TestBroker, declared: i32, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    stream.write_all(&declared.to_be_bytes()).await.unwrap();
    if sent > 0 {
        // A broker that stopped reading (its budget spent) leaves the rest unsent.
        let _ = tokio::time::timeout(LIVENESS, stream.write_all(&vec![0u8; sent])).await;
    }
    stream
}

/// The reproduction: six connections each declare ~99 MiB (594 MiB in all, more
/// than the default 512 MiB budget) and send nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_silent_length_prefixes_do_not_stall_other_clients() {
    let broker = TestBroker::start().await;
    create_topic(&broker).await;
    let producer = established_producer(&broker).await;
    let mut silent = Vec::new();
    for _ in 0..6 {
        silent.push(stalled_frame(&broker, DECLARED, 0).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    producing_client_is_served(&producer, "six silent prefixes").await;
    new_client_is_served(&broker, "six silent prefixes").await;
    drop(silent);
    broker.shutdown().await;
}

/// With a budget smaller than one frame, a single silent connection is enough on a broker
/// that charges declared lengths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_silent_prefix_larger_than_the_budget_does_not_stall_other_clients() {
    let broker = TestBroker::start_with(|c| c.queued_max_request_bytes = 1 << 20).await;
    create_topic(&broker).await;
    let producer = established_producer(&broker).await;
    let silent = stalled_frame(&broker, DECLARED, 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    producing_client_is_served(&producer, "one silent prefix").await;
    new_client_is_served(&broker, "one silent prefix").await;
    drop(silent);
    broker.shutdown().await;
}

/// Connections that sent most of a large frame and stopped hold the whole shared budget;
/// small requests still have their part of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_holding_the_budget_leave_room_for_small_requests() {
    let budget = 8 << 20;
    let broker = TestBroker::start_with(|c| c.queued_max_request_bytes = budget).await;
    create_topic(&broker).await;
    let producer = established_producer(&broker).await;
    // Three frames of 4 MiB, 3 MiB of each sent: 9 MiB, more than the whole budget.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(stalled_frame(&broker, 4 << 20, 3 << 20).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    producing_client_is_served(&producer, "budget held by stalled frames").await;
    new_client_is_served(&broker, "budget held by stalled frames").await;
    drop(stalled);
    broker.shutdown().await;
}

/// A client trickling a frame (a few bytes at a time) is closed once the frame has taken
/// longer than request.read.timeout.ms, while others are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_frame_is_closed_by_the_read_timeout() {
    let broker = TestBroker::start_with(|c| {
        c.queued_max_request_bytes = 1 << 20;
        c.request_read_timeout_ms = 2_000;
    })
    .await;
    create_topic(&broker).await;
    let producer = established_producer(&broker).await;
    let mut trickler = stalled_frame(&broker, DECLARED, 1000).await;
    let (mut read_half, mut write_half) = trickler.split();
    let trickle = async {
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if write_half.write_all(&[0u8; 10]).await.is_err() {
                return;
            }
        }
    };
    let others = async {
        producing_client_is_served(&producer, "trickler").await;
        new_client_is_served(&broker, "trickler").await;
        // Closed by the read timeout, not by connections.max.idle.ms (600 s).
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(PATIENCE, async {
            loop {
                match read_half.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        closed.await.expect("the trickling connection is closed");
    };
    tokio::select! {
        _ = others => {}
        _ = trickle => panic!("still trickling after a minute: never closed"),
    }
    drop(trickler);
    // Silence between frames is not timed: a connection idle longer than the read
    // timeout after a complete request is still served.
    let mut idle = RawClient::connect(broker.addr()).await;
    let _: ApiVersionsResponse = idle
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let _: ApiVersionsResponse = idle
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    broker.shutdown().await;
}

/// Large frames that each hold part of the budget and all wait for more cannot wait for
/// each other forever: four 3 MiB Produce requests sent at once, in pieces, against a
/// 4 MiB budget, are all answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_frames_exceeding_the_budget_all_complete() {
    let broker = TestBroker::start_with(|c| c.queued_max_request_bytes = 4 << 20).await;
    create_topic(&broker).await;
    let value = "x".repeat(900_000);
    // Three partitions' worth of ~900 kB batches in one request: ~2.7 MB.
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name())
            .with_partition_data(
                (0..3)
                    .map(|_| {
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch(&[&value], 1_700_000_000_000)))
                    })
                    .collect(),
            )]);
    let frame = raw_frame(ApiKey::Produce, 9, 7, &request);
    assert!(frame.len() > 2 << 20);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let frame = frame.clone();
        let addr = broker.addr();
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            // In pieces, so that every frame is partly read when the budget runs out.
            for piece in frame.chunks(256 * 1024) {
                stream.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let len = stream.read_i32().await.unwrap();
            let mut body = vec![0u8; len as usize];
            stream.read_exact(&mut body).await.unwrap();
            i32::from_be_bytes([body[0], body[1], body[2], body[3]])
        }));
    }
    for client in clients {
        let correlation_id = tokio::time::timeout(PATIENCE, client)
            .await
            .expect("every large frame is answered")
            .unwrap();
        assert_eq!(correlation_id, 7);
    }
    new_client_is_served(&broker, "after the large frames").await;
    broker.shutdown().await;
}

/// `[length][header v1][body]` for `api` v`version`.
fn raw_frame<R: kafka_protocol::protocol::Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &R,
) -> Bytes {
    use bytes::BufMut;
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::protocol::Encodable;
    let mut buf = bytes::BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    request.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}
