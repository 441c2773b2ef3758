//! 10,000 random, truncated and mutated request frames (seeded, so every run sends the same
//! bytes) against a live in-process broker. After each frame the client sends a valid
//! ApiVersions "probe": the broker must answer the frame at most once and then the probe,
//! or close the connection — never hang, never panic. Afterwards an rdkafka client is
//! served normally.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use common::{consume, producer, TestBroker, PATIENCE};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, DescribeConfigsRequest, DescribeGroupsRequest, FetchRequest,
    FindCoordinatorRequest, GroupId, HeartbeatRequest, InitProducerIdRequest, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetFetchRequest, ProduceRequest, RequestHeader,
    TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use rdkafka::producer::FutureRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FRAMES: usize = 10_000;
const WORKERS: usize = 8;
const SEED: u64 = 0x5EED_0008;
/// Correlation id of the probe; mutated frames use ids in 0..1_000_000.
const PROBE_ID: i32 = 0x5EED_F00D;

/// SplitMix64: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Header + body of a valid request (no length prefix).
fn encode<R: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("hostile")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

fn topic(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

/// Valid requests of several APIs, none of which waits long (Fetch waits 50 ms) or
/// creates many partitions, so a mutation cannot legitimately hold a connection for long.
fn templates(correlation_id: i32) -> Vec<(ApiKey, Vec<u8>)> {
    let batch = common::raw::batch(&["hostile-a", "hostile-b"], 1_700_000_000_000);
    vec![
        (
            ApiKey::ApiVersions,
            encode(
                ApiKey::ApiVersions,
                3,
                correlation_id,
                &ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("h"))
                    .with_client_software_version(StrBytes::from_static_str("1")),
            ),
        ),
        (
            ApiKey::Metadata,
            encode(
                ApiKey::Metadata,
                12,
                correlation_id,
                &MetadataRequest::default()
                    .with_topics(Some(vec![
                        MetadataRequestTopic::default().with_name(Some(topic("hostile")))
                    ]))
                    .with_allow_auto_topic_creation(true),
            ),
        ),
        (
            ApiKey::Metadata,
            encode(
                ApiKey::Metadata,
                1,
                correlation_id,
                &MetadataRequest::default(),
            ),
        ),
        (
            ApiKey::Produce,
            encode(
                ApiKey::Produce,
                9,
                correlation_id,
                &ProduceRequest::default()
                    .with_acks(1)
                    .with_timeout_ms(5_000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(topic("hostile"))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch.clone()))])]),
            ),
        ),
        (
            ApiKey::Produce,
            encode(
                ApiKey::Produce,
                3,
                correlation_id,
                &ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(5_000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(topic("hostile"))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch))])]),
            ),
        ),
        (
            ApiKey::Fetch,
            encode(
                ApiKey::Fetch,
                12,
                correlation_id,
                &FetchRequest::default()
                    .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                    .with_max_wait_ms(50)
                    .with_min_bytes(1)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(topic("hostile"))
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20)])]),
            ),
        ),
        (
            ApiKey::ListOffsets,
            encode(
                ApiKey::ListOffsets,
                7,
                correlation_id,
                &ListOffsetsRequest::default()
                    .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(topic("hostile"))
                        .with_partitions(vec![ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1)])]),
            ),
        ),
        (
            ApiKey::DescribeConfigs,
            encode(
                ApiKey::DescribeConfigs,
                4,
                correlation_id,
                &DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("hostile")),
                ]),
            ),
        ),
        (
            ApiKey::FindCoordinator,
            encode(
                ApiKey::FindCoordinator,
                3,
                correlation_id,
                &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
            ),
        ),
        (
            ApiKey::OffsetFetch,
            encode(
                ApiKey::OffsetFetch,
                8,
                correlation_id,
                &OffsetFetchRequest::default()
                    .with_groups(vec![OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("g")))]),
            ),
        ),
        (
            ApiKey::ListGroups,
            encode(
                ApiKey::ListGroups,
                4,
                correlation_id,
                &ListGroupsRequest::default(),
            ),
        ),
        (
            ApiKey::DescribeGroups,
            encode(
                ApiKey::DescribeGroups,
                5,
                correlation_id,
                &DescribeGroupsRequest::default()
                    .with_groups(vec![GroupId(StrBytes::from_static_str("g"))]),
            ),
        ),
        (
            ApiKey::Heartbeat,
            encode(
                ApiKey::Heartbeat,
                4,
                correlation_id,
                &HeartbeatRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("g")))
                    .with_generation_id(1)
                    .with_member_id(StrBytes::from_static_str("nobody")),
            ),
        ),
        (
            ApiKey::InitProducerId,
            encode(
                ApiKey::InitProducerId,
                4,
                correlation_id,
                &InitProducerIdRequest::default()
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(kafka_protocol::messages::ProducerId(-1))
                    .with_producer_epoch(-1),
            ),
        ),
    ]
}

/// One hostile frame: the bytes to send, and whether the client then half-closes instead
/// of sending a probe (for frames whose length prefix promises more than is sent).
struct Hostile {
    bytes: Vec<u8>,
    half_close: bool,
    /// False for a frame that may legitimately wait as long as it asks (see
    /// `may_block`): it is sent, then the connection is dropped without waiting.
    await_answer: bool,
    kind: &'static str,
}

/// Fetch, JoinGroup and SyncGroup wait as long as the request says (max_wait_ms,
/// rebalance_timeout_ms), which a mutation can make days: like Kafka, the broker honours
/// that, so the test cannot wait for their answers.
fn may_block(body: &[u8]) -> bool {
    body.len() >= 2 && matches!(i16::from_be_bytes([body[0], body[1]]), 1 | 11 | 14)
}

fn with_prefix(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn hostile_frame(rng: &mut Rng) -> Hostile {
    let correlation_id = rng.below(1_000_000) as i32;
    let mut all = templates(correlation_id);
    let (api, mut body) = all.swap_remove(rng.below(all.len()));
    let original = body.clone();
    let roll = rng.below(100);
    let (kind, half_close) = match roll {
        0..=29 => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(body.len());
                body[at] ^= (rng.below(255) + 1) as u8;
            }
            ("flipped bytes", false)
        }
        30..=44 => {
            body.truncate(rng.below(body.len()));
            ("truncated body", false)
        }
        45..=54 => {
            let at = rng.below(body.len() + 1);
            let n = 1 + rng.below(16);
            let extra = rng.bytes(n);
            body.splice(at..at, extra);
            ("inserted bytes", false)
        }
        55..=64 => {
            // Extreme values where lengths and counts live.
            let at = rng.below(body.len().saturating_sub(3).max(1));
            let value: [u8; 4] = match rng.below(4) {
                0 => 0x7fff_ffffu32.to_be_bytes(),
                1 => 0xffff_ffffu32.to_be_bytes(),
                2 => 0x8000_0000u32.to_be_bytes(),
                _ => 0x0000_ffffu32.to_be_bytes(),
            };
            for (i, b) in value.iter().enumerate() {
                if let Some(slot) = body.get_mut(at + i) {
                    *slot = *b;
                }
            }
            ("extreme int", false)
        }
        65..=74 => {
            // Another API key and version over this body (never one that may block).
            let key = loop {
                let key = rng.below(90) as i16 - 5;
                if !matches!(key, 1 | 11 | 14) {
                    break key;
                }
            };
            let version = rng.below(24) as i16 - 2;
            body[0..2].copy_from_slice(&key.to_be_bytes());
            body[2..4].copy_from_slice(&version.to_be_bytes());
            ("other key/version", false)
        }
        75..=84 => {
            let n = rng.below(256);
            body = rng.bytes(n);
            ("random bytes", false)
        }
        85..=91 => {
            // The length prefix promises more than arrives before the client half-closes.
            let mut bytes = with_prefix(&body);
            let cut = 4 + rng.below(body.len());
            bytes.truncate(cut);
            if rng.below(2) == 0 {
                let claimed = (rng.next() as i32).max(body.len() as i32 + 1);
                bytes[0..4].copy_from_slice(&claimed.to_be_bytes());
            }
            return Hostile {
                bytes,
                half_close: true,
                await_answer: true,
                kind: "short frame then EOF",
            };
        }
        _ => ("valid", false),
    };
    // A Fetch whose header survived: restore its max_wait_ms (body bytes 4..8: after
    // replica_id), so its answer comes within 50 ms and can be awaited.
    let header_len = header_len(api, 12);
    if api == ApiKey::Fetch
        && body.len() >= header_len + 8
        && body[..header_len] == original[..header_len]
    {
        body[header_len + 4..header_len + 8].copy_from_slice(&50i32.to_be_bytes());
    }
    let await_answer = !may_block(&body)
        || (api == ApiKey::Fetch
            && body.len() >= header_len + 8
            && body[..header_len] == original[..header_len]);
    Hostile {
        bytes: with_prefix(&body),
        half_close,
        await_answer,
        kind,
    }
}

/// Bytes of the request header `encode` writes for `api` v`version`.
fn header_len(api: ApiKey, version: i16) -> usize {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(0)
        .with_client_id(Some(StrBytes::from_static_str("hostile")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    buf.len()
}

fn probe() -> Vec<u8> {
    with_prefix(&encode(
        ApiKey::ApiVersions,
        0,
        PROBE_ID,
        &ApiVersionsRequest::default(),
    ))
}

/// Reads one response frame's correlation id: Some(None) when the connection closed, None
/// when nothing happened within PATIENCE.
async fn next_response(stream: &mut TcpStream) -> Option<Option<i32>> {
    let read = async {
        let len = stream.read_i32().await.ok()?;
        assert!(
            (4..=100 << 20).contains(&len),
            "response length {len} from the broker"
        );
        let mut body = vec![0u8; len as usize];
        stream.read_exact(&mut body).await.ok()?;
        Some(i32::from_be_bytes(body[0..4].try_into().unwrap()))
    };
    tokio::time::timeout(PATIENCE, read).await.ok()
}

#[derive(Default)]
struct Tally {
    answered: AtomicUsize,
    unanswered_then_probe: AtomicUsize,
    closed: AtomicUsize,
    not_awaited: AtomicUsize,
}

async fn worker(addr: std::net::SocketAddr, seed: u64, frames: usize, tally: Arc<Tally>) {
    let mut rng = Rng(seed);
    let mut conn: Option<TcpStream> = None;
    for n in 0..frames {
        let frame = hostile_frame(&mut rng);
        let mut stream = match conn.take() {
            Some(s) => s,
            None => TcpStream::connect(addr).await.unwrap(),
        };
        let mut bytes = frame.bytes.clone();
        if !frame.half_close && frame.await_answer {
            bytes.extend_from_slice(&probe());
        }
        if stream.write_all(&bytes).await.is_err() {
            // Closed by the broker while we wrote: counts as closed.
            tally.closed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if !frame.await_answer {
            // Dropped unanswered: the broker must cope with a client that leaves mid-wait.
            tally.not_awaited.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if frame.half_close {
            let _ = stream.shutdown().await;
            // Nothing complete was sent: no response, then EOF.
            let got = next_response(&mut stream)
                .await
                .unwrap_or_else(|| panic!("frame {n} ({}) hung: {:02x?}", frame.kind, frame.bytes));
            assert_eq!(
                got, None,
                "frame {n} ({}) answered without a whole frame",
                frame.kind
            );
            tally.closed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut before_probe = 0;
        loop {
            let got = next_response(&mut stream)
                .await
                .unwrap_or_else(|| panic!("frame {n} ({}) hung: {:02x?}", frame.kind, frame.bytes));
            match got {
                Some(PROBE_ID) => {
                    if before_probe == 1 {
                        tally.answered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tally.unanswered_then_probe.fetch_add(1, Ordering::Relaxed);
                    }
                    conn = Some(stream);
                    break;
                }
                Some(_) => {
                    before_probe += 1;
                    assert!(
                        before_probe <= 1,
                        "frame {n} ({}) answered more than once: {:02x?}",
                        frame.kind,
                        frame.bytes
                    );
                }
                None => {
                    tally.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_hostile_frames_leave_the_broker_serving() {
    // Any panic in the broker's tasks (which would only drop that connection) fails the test.
    let panics = Arc::new(AtomicUsize::new(0));
    let seen = panics.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.fetch_add(1, Ordering::Relaxed);
        default_hook(info);
    }));

    let broker = TestBroker::start().await;
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        tasks.push(tokio::spawn(worker(
            broker.addr(),
            SEED.wrapping_add(w as u64),
            FRAMES / WORKERS,
            tally.clone(),
        )));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let answered = tally.answered.load(Ordering::Relaxed);
    let silent = tally.unanswered_then_probe.load(Ordering::Relaxed);
    let closed = tally.closed.load(Ordering::Relaxed);
    let not_awaited = tally.not_awaited.load(Ordering::Relaxed);
    eprintln!("{FRAMES} hostile frames: {answered} answered, {silent} not answered but the connection served the next request (acks=0), {closed} closed the connection, {not_awaited} possibly long waits not awaited");
    assert_eq!(answered + silent + closed + not_awaited, FRAMES);
    assert!(answered > 0 && closed > 0);
    assert_eq!(panics.load(Ordering::Relaxed), 0, "the broker panicked");

    // A normal client is served.
    let producer = producer(&broker.bootstrap(), &[("acks", "all")]);
    for i in 0..10 {
        let value = format!("after-{i}");
        producer
            .send(
                FutureRecord::<(), _>::to("after-hostile")
                    .payload(&value)
                    .partition(0),
                PATIENCE,
            )
            .await
            .expect("produce acknowledged");
    }
    let bootstrap = broker.bootstrap();
    let got = tokio::task::spawn_blocking(move || consume(&bootstrap, "after-hostile", 1, 10))
        .await
        .unwrap();
    let values: Vec<String> = got
        .iter()
        .map(|m| {
            use rdkafka::Message;
            String::from_utf8(m.payload().unwrap().to_vec()).unwrap()
        })
        .collect();
    assert_eq!(
        values,
        (0..10).map(|i| format!("after-{i}")).collect::<Vec<_>>()
    );
    broker.shutdown().await;
}

/// Property over request framing and decoding (cargo-fuzz needs a nightly toolchain this
/// project does not use): a well-framed request with a valid header prefix of any
/// supported or unsupported API key and version, followed by arbitrary body bytes, is
/// answered at most once and the connection then answers a probe, or it is closed. On a
/// failure proptest shrinks the body to a minimal frame.
#[test]
fn arbitrary_bodies_of_every_api_are_answered_or_closed() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = runtime.block_on(TestBroker::start());
    let addr = broker.addr();
    let keys: Vec<i16> = (-1..=70).filter(|k| !matches!(k, 1 | 11 | 14)).collect();
    let strategy = (
        prop::sample::select(keys),
        -1i16..16,
        prop::collection::vec(any::<u8>(), 0..200),
    );
    let answered = std::cell::Cell::new(0usize);
    let closed = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(Config {
        cases: 2_000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(key, version, tail)| {
            // Header v1 (key, version, correlation id, client id): every API reads at least
            // these fields the same way.
            let header = RequestHeader::default()
                .with_request_api_key(key)
                .with_request_api_version(version)
                .with_correlation_id(7)
                .with_client_id(Some(StrBytes::from_static_str("prop")));
            let mut buf = BytesMut::new();
            header.encode(&mut buf, 1).unwrap();
            buf.extend_from_slice(&tail);
            let mut bytes = with_prefix(&buf);
            bytes.extend_from_slice(&probe());
            let outcome = runtime.block_on(async {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.write_all(&bytes).await.unwrap();
                let mut before = 0;
                loop {
                    match next_response(&mut stream).await {
                        None => return Err("hung".to_owned()),
                        Some(None) => return Ok("closed"),
                        Some(Some(PROBE_ID)) => return Ok("answered"),
                        Some(Some(_)) => {
                            before += 1;
                            if before > 1 {
                                return Err("answered twice".to_owned());
                            }
                        }
                    }
                }
            });
            match outcome {
                Ok("answered") => answered.set(answered.get() + 1),
                Ok(_) => closed.set(closed.get() + 1),
                Err(e) => prop_assert!(false, "{}", e),
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "arbitrary bodies: {} then served the probe, {} closed",
        answered.get(),
        closed.get()
    );
    assert!(answered.get() > 0 && closed.get() > 0);
    runtime.block_on(broker.shutdown());
}

/// A CreateTopics naming a topic of 32,767 characters (the longest a non-flexible string
/// can hold) is answered with INVALID_TOPIC_EXCEPTION on the same connection. The error
/// message once quoted the whole name, which no longer fit the response's error string,
/// and the broker closed the connection instead of answering. Likewise for an illegal
/// character in such a name, and for such a name given twice (INVALID_REQUEST).
#[tokio::test]
async fn a_topic_name_of_32767_characters_is_answered_not_closed() {
    use common::raw::RawClient;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let long = "a".repeat(32_767);
    let illegal = format!("{}!", "b".repeat(32_766));
    let creatable = |name: &str| {
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_owned())))
            .with_num_partitions(1)
            .with_replication_factor(1)
    };
    for version in [2, 4, 5, 7] {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![
                creatable(&long),
                creatable(&illegal),
                creatable(&illegal),
            ]);
        let response: CreateTopicsResponse =
            client.call(ApiKey::CreateTopics, version, &request).await;
        let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
        // INVALID_TOPIC_EXCEPTION (17); the name given twice: INVALID_REQUEST (42).
        assert_eq!(codes, [17, 42, 42], "v{version}");
        for topic in &response.topics {
            let message = topic.error_message.as_deref().unwrap_or_default();
            assert!(
                message.len() < 1000,
                "v{version}: message of {}",
                message.len()
            );
        }
    }
    assert!(broker.running().broker().topic(&long).is_none());
    broker.shutdown().await;
}

/// The same class as the 32,767-character topic name, in every API that quotes what a
/// client sent in its error message: a broker resource name or a config key near the
/// protocol's 32,767-byte limit is answered (the message is cut), not a closed connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_messages_quoting_long_client_strings_are_cut_not_closed() {
    use common::raw::RawClient;
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{
        AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    };
    const BROKER: i8 = 4;
    const TOPIC: i8 = 2;

    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let long = "7".repeat(32_767);
    for version in [1, 2, 3] {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(BROKER)
                .with_resource_name(StrBytes::from_string(long.clone())),
        ]);
        let response: DescribeConfigsResponse = client
            .call(ApiKey::DescribeConfigs, version, &request)
            .await;
        let result = &response.results[0];
        assert_eq!(result.error_code, 42, "v{version}: INVALID_REQUEST");
        let message = result.error_message.as_deref().unwrap_or_default();
        assert!(message.len() <= 1024, "v{version}: {}", message.len());
    }
    let key = "k".repeat(32_760);
    let config = || {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(key.clone()))
            .with_value(Some(StrBytes::from_static_str("1")))
    };
    for version in [0, 1] {
        let request =
            AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![config(), config()])]);
        let response: AlterConfigsResponse =
            client.call(ApiKey::AlterConfigs, version, &request).await;
        let result = &response.responses[0];
        assert_ne!(result.error_code, 0, "v{version}");
        let message = result.error_message.as_deref().unwrap_or_default();
        assert!(message.len() <= 1024, "v{version}: {}", message.len());
    }
    broker.shutdown().await;
}
