//! Topic creation under load and at its limits: one Metadata or CreateTopics naming
//! thousands of topics never stalls other clients; the controller mutation quota
//! (KIP-599); partitions capped per topic, per request and per broker; the open-file
//! limit; a failed creation leaves no partition directory behind.
//!
//! Time is never asserted as a performance figure: other clients must be answered within
//! a liveness bound (a second) while creation runs, which a stalled broker misses by far.
//! `creation_figures` (ignored) measures the real latencies with the release binary.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::BrokerProcess;
use common::raw::{batch, RawClient};
use common::{TestBroker, PATIENCE};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;
const INVALID_PARTITIONS: i16 = 37;
const POLICY_VIOLATION: i16 = 44;
const KAFKA_STORAGE_ERROR: i16 = 56;
const THROTTLING_QUOTA_EXCEEDED: i16 = 89;

/// An unrelated client's ApiVersions must come back within this while creation runs.
const LIVENESS: Duration = Duration::from_secs(1);

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn creatable(name: &str, partitions: i32) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(-1)
}

async fn create_topics(
    client: &mut RawClient,
    version: i16,
    validate_only: bool,
    topics: Vec<CreatableTopic>,
) -> CreateTopicsResponse {
    let request = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(60_000)
        .with_validate_only(validate_only);
    client.call(ApiKey::CreateTopics, version, &request).await
}

async fn create_partitions(
    client: &mut RawClient,
    version: i16,
    validate_only: bool,
    topic: &str,
    count: i32,
) -> CreatePartitionsResponse {
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(topic))
            .with_count(count)
            .with_assignments(None)])
        .with_timeout_ms(60_000)
        .with_validate_only(validate_only);
    client
        .call(ApiKey::CreatePartitions, version, &request)
        .await
}

async fn delete_topics(
    client: &mut RawClient,
    version: i16,
    names: &[&str],
) -> DeleteTopicsResponse {
    let request = if version >= 6 {
        DeleteTopicsRequest::default().with_topics(
            names
                .iter()
                .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                .collect(),
        )
    } else {
        DeleteTopicsRequest::default()
            .with_topic_names(names.iter().map(|n| topic_name(n)).collect())
    }
    .with_timeout_ms(60_000);
    client.call(ApiKey::DeleteTopics, version, &request).await
}

/// Metadata v12 for `names` (every topic when None).
async fn metadata(
    client: &mut RawClient,
    names: Option<&[String]>,
    allow_create: bool,
) -> MetadataResponse {
    let topics = names.map(|names| {
        names
            .iter()
            .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
            .collect()
    });
    let request = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(allow_create);
    client.call(ApiKey::Metadata, 12, &request).await
}

/// Produce v9, acks=all, one record to `topic`/`partition`: the error code.
async fn produce(client: &mut RawClient, topic: &str, partition: i32, value: &str) -> i16 {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch(&[value], 1_700_000_000_000)))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request).await;
    response.responses[0].partition_responses[0].error_code
}

/// The log end offset of `topic`/`partition` (ListOffsets v7, latest).
async fn end_offset(client: &mut RawClient, topic: &str, partition: i32) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-1)])]);
    let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 7, &request).await;
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, NONE, "{topic}-{partition}");
    p.offset
}

/// Names of the partition directories (`<topic>-<n>`) of topics starting with `prefix`.
fn partition_dirs(data_dir: &Path, prefix: &str) -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(data_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    dirs.sort();
    dirs
}

/// A client on its own connection that sends ApiVersions back to back until stopped and
/// records each round trip.
struct LivenessProbe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Duration>>,
}

impl LivenessProbe {
    async fn start(addr: std::net::SocketAddr) -> LivenessProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let mut client = RawClient::connect(addr).await;
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut rounds = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let sent = Instant::now();
                    let response: ApiVersionsResponse = client
                        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
                        .await;
                    assert_eq!(response.error_code, NONE);
                    rounds.push(sent.elapsed());
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                rounds
            }
        });
        LivenessProbe { stop, task }
    }

    /// Stops the probe; its round trips, sorted.
    async fn stop(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::SeqCst);
        let mut rounds = self.task.await.unwrap();
        rounds.sort();
        rounds
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:05}")).collect()
}

/// Waits until every topic of `names` exists (Metadata without auto-creation).
async fn wait_until_created(client: &mut RawClient, names: &[String]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let response = metadata(client, Some(names), false).await;
        let missing = response
            .topics
            .iter()
            .filter(|t| t.error_code != NONE)
            .count();
        if missing == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{missing} topics never created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One Metadata request auto-creates 2,000 topics while another client's ApiVersions
/// keep being answered; the creating request answers LEADER_NOT_AVAILABLE for each, the
/// topics exist once it is answered, and a Produce right after finds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_auto_creation_never_stalls_other_clients() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::spawn(dir.path());
    let probe = LivenessProbe::start(broker.addr()).await;
    let topics = names("auto-", 2_000);
    let mut client = RawClient::connect(broker.addr()).await;
    let created = metadata(&mut client, Some(&topics), true).await;
    assert_eq!(created.topics.len(), topics.len());
    assert!(created
        .topics
        .iter()
        .all(|t| t.error_code == LEADER_NOT_AVAILABLE && t.partitions.is_empty()));
    let rounds = probe.stop().await;
    // Answered: the topics are there, whole.
    let after = metadata(&mut client, Some(&topics), false).await;
    assert!(after
        .topics
        .iter()
        .all(|t| t.error_code == NONE && t.partitions.len() == 1));
    assert_eq!(produce(&mut client, "auto-01999", 0, "first").await, NONE);
    eprintln!(
        "ApiVersions during auto-creation of 2,000 topics: {} round trips, p50 {:?}, p99 {:?}, max {:?}",
        rounds.len(),
        percentile(&rounds, 0.5),
        percentile(&rounds, 0.99),
        rounds.last()
    );
    assert!(
        rounds.len() > 1,
        "the probe was answered while topics were created"
    );
    assert!(
        rounds.last().is_some_and(|max| *max < LIVENESS),
        "an unrelated ApiVersions waited {:?}",
        rounds.last()
    );
}

/// One CreateTopics naming 2,000 topics, the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_create_topics_never_stalls_other_clients() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::spawn(dir.path());
    let probe = LivenessProbe::start(broker.addr()).await;
    let topics = names("bulk-", 2_000);
    let mut client = RawClient::connect(broker.addr()).await;
    let response = create_topics(
        &mut client,
        7,
        false,
        topics.iter().map(|t| creatable(t, 1)).collect(),
    )
    .await;
    let rounds = probe.stop().await;
    assert!(response.topics.iter().all(|t| t.error_code == NONE));
    let after = metadata(&mut client, Some(&topics), false).await;
    assert!(after.topics.iter().all(|t| t.error_code == NONE));
    assert_eq!(produce(&mut client, "bulk-00000", 0, "first").await, NONE);
    eprintln!(
        "ApiVersions during CreateTopics of 2,000 topics: {} round trips, p50 {:?}, p99 {:?}, max {:?}",
        rounds.len(),
        percentile(&rounds, 0.5),
        percentile(&rounds, 0.99),
        rounds.last()
    );
    assert!(
        rounds.len() > 1,
        "the probe was answered while topics were created"
    );
    assert!(
        rounds.last().is_some_and(|max| *max < LIVENESS),
        "an unrelated ApiVersions waited {:?}",
        rounds.last()
    );
}

/// A 50-byte request asking for 500,000,000 partitions is refused with Kafka's
/// POLICY_VIOLATION before anything is allocated or created, through every version of
/// CreateTopics and CreatePartitions; the broker keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_billion_partitions_are_refused_not_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::spawn(dir.path());
    let mut client = RawClient::connect(broker.addr()).await;
    for version in 2..=7 {
        let response = create_topics(
            &mut client,
            version,
            false,
            vec![creatable(&format!("huge{version}"), 500_000_000)],
        )
        .await;
        assert_eq!(
            response.topics[0].error_code, POLICY_VIOLATION,
            "v{version}"
        );
    }
    let response = create_topics(&mut client, 7, false, vec![creatable("small", 1)]).await;
    assert_eq!(response.topics[0].error_code, NONE);
    for version in 0..=3 {
        let response = create_partitions(&mut client, version, false, "small", 500_000_000).await;
        assert_eq!(
            response.results[0].error_code, POLICY_VIOLATION,
            "v{version}"
        );
    }
    assert!(broker.is_running(), "the broker survived");
    let response: ApiVersionsResponse = client
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(response.error_code, NONE);
    assert!(partition_dirs(dir.path(), "huge").is_empty());
    assert_eq!(partition_dirs(dir.path(), "small"), vec!["small-0"]);
}

/// The caps at their boundaries (validate_only runs every check without creating): 10,000
/// partitions per request (Kafka's POLICY_VIOLATION for every topic of a larger request),
/// 10,000 per topic (INVALID_PARTITIONS), and `max.broker.partitions`
/// (POLICY_VIOLATION naming the setting), for CreateTopics, CreatePartitions and
/// auto-creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_caps_per_request_per_topic_and_per_broker() {
    let broker = TestBroker::start_with(|c| c.max_broker_partitions = 12).await;
    let mut client = RawClient::connect(broker.addr()).await;

    // Per request: 10,000 in total passes validation, 10,001 fails every topic.
    let at_cap = create_topics(
        &mut client,
        7,
        true,
        vec![creatable("half", 5_000), creatable("other-half", 5_000)],
    )
    .await;
    // Valid as a request; refused by the broker-wide cap of 12.
    assert!(at_cap
        .topics
        .iter()
        .all(|t| t.error_code == POLICY_VIOLATION));
    assert!(at_cap.topics.iter().all(|t| t
        .error_message
        .as_deref()
        .unwrap_or_default()
        .contains("max.broker.partitions")));
    let over = create_topics(
        &mut client,
        7,
        true,
        vec![
            creatable("half", 5_000),
            creatable("more", 5_001),
            creatable("bad name", 1),
        ],
    )
    .await;
    for t in &over.topics {
        assert_eq!(t.error_code, POLICY_VIOLATION);
        assert!(t
            .error_message
            .as_deref()
            .unwrap_or_default()
            .contains("Excessively large number of partitions per request"));
    }

    // Per broker: 12 partitions in all.
    let first = create_topics(&mut client, 7, false, vec![creatable("a", 8)]).await;
    assert_eq!(first.topics[0].error_code, NONE);
    let too_many = create_topics(&mut client, 7, false, vec![creatable("b", 5)]).await;
    assert_eq!(too_many.topics[0].error_code, POLICY_VIOLATION);
    let message = too_many.topics[0].error_message.clone().unwrap_or_default();
    assert!(
        message.contains("max.broker.partitions") && message.contains("12"),
        "{message}"
    );
    let fits = create_topics(&mut client, 7, false, vec![creatable("c", 4)]).await;
    assert_eq!(fits.topics[0].error_code, NONE);
    let grow = create_partitions(&mut client, 3, false, "a", 9).await;
    assert_eq!(grow.results[0].error_code, POLICY_VIOLATION);
    let auto = metadata(&mut client, Some(&["auto".to_owned()]), true).await;
    assert_eq!(auto.topics[0].error_code, POLICY_VIOLATION);
    assert_eq!(produce(&mut client, "auto", 0, "x").await, POLICY_VIOLATION);
    assert!(broker.running().broker().topic("auto").is_none());
    assert!(partition_dirs(broker.data_dir(), "b-").is_empty());

    // Per topic: growing to 10,000 passes the topic's cap (and fails the broker's), to
    // 10,001 fails the topic's.
    let to_cap = create_partitions(&mut client, 3, true, "a", 10_000).await;
    assert_eq!(to_cap.results[0].error_code, POLICY_VIOLATION);
    let over_topic = create_partitions(&mut client, 3, true, "c", 10_001).await;
    assert_eq!(over_topic.results[0].error_code, INVALID_PARTITIONS);
    assert_eq!(
        broker
            .running()
            .broker()
            .topic("a")
            .unwrap()
            .partitions
            .len(),
        8
    );
    broker.shutdown().await;
}

/// KIP-599 with `controller.mutation.rate` = 1 partition/s (a burst of 11): CreateTopics
/// v6+, CreatePartitions v3+ and DeleteTopics v5+ answer THROTTLING_QUOTA_EXCEEDED for
/// the topics asked for while the bucket is empty, with the time to wait; older versions
/// are served and answered only after that time, by which the bucket has refilled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_mutation_quota_throttles_creations_and_deletions() {
    let broker = TestBroker::start_with(|c| c.controller_mutation_rate = 1.0).await;
    let mut client = RawClient::connect(broker.addr()).await;
    // 10 of 11 tokens, then 4 more (admitted: the bucket was not empty; 3 s of debt),
    // then none.
    let response = create_topics(
        &mut client,
        7,
        false,
        vec![creatable("q1", 10), creatable("q2", 4), creatable("q3", 1)],
    )
    .await;
    let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![NONE, NONE, THROTTLING_QUOTA_EXCEEDED]);
    assert!(response.throttle_time_ms > 0, "the time to wait is given");
    assert!(broker.running().broker().topic("q3").is_none());
    let grow = create_partitions(&mut client, 3, false, "q2", 5).await;
    assert_eq!(grow.results[0].error_code, THROTTLING_QUOTA_EXCEEDED);
    assert!(grow.throttle_time_ms > 0);
    let delete = delete_topics(&mut client, 5, &["q2"]).await;
    assert_eq!(delete.responses[0].error_code, THROTTLING_QUOTA_EXCEEDED);
    assert!(broker.running().broker().topic("q2").is_some());

    // An older version is served, and answered after the throttle time.
    let old = create_topics(&mut client, 4, false, vec![creatable("q4", 1)]).await;
    assert_eq!(old.topics[0].error_code, NONE);
    assert!(old.throttle_time_ms > 0);
    assert!(broker.running().broker().topic("q4").is_some());
    // By then the bucket has refilled: a strict request is served.
    let later = create_topics(&mut client, 7, false, vec![creatable("q3", 1)]).await;
    assert_eq!(later.topics[0].error_code, NONE);
    let delete = delete_topics(&mut client, 4, &["q4"]).await;
    assert_eq!(delete.responses[0].error_code, NONE);
    assert!(broker.running().broker().topic("q4").is_none());
    broker.shutdown().await;
}

/// Concurrent auto-creations of one new topic (Metadata on several connections, and
/// Produce) create it once; Produce answers the retriable UNKNOWN_TOPIC_OR_PARTITION while
/// the topic is being created, and every request after its creation finds it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_auto_creations_create_a_topic_once() {
    let broker = TestBroker::start_with(|c| c.num_partitions = 3).await;
    let addr = broker.addr();
    let mut tasks = Vec::new();
    for i in 0..8 {
        tasks.push(tokio::spawn(async move {
            let mut client = RawClient::connect(addr).await;
            if i % 2 == 0 {
                let response = metadata(&mut client, Some(&["shared".to_owned()]), true).await;
                let t = &response.topics[0];
                assert!(
                    t.error_code == LEADER_NOT_AVAILABLE
                        || (t.error_code == NONE && t.partitions.len() == 3),
                    "{t:?}"
                );
            } else {
                let code = produce(&mut client, "shared", 2, "early").await;
                assert!(code == UNKNOWN_TOPIC_OR_PARTITION || code == NONE, "{code}");
            }
            // Once a creating request is answered, the topic is there.
            let response = metadata(&mut client, Some(&["shared".to_owned()]), true).await;
            let t = &response.topics[0];
            if t.error_code == NONE {
                assert_eq!(t.partitions.len(), 3);
                return t.topic_id;
            }
            assert_eq!(t.error_code, LEADER_NOT_AVAILABLE);
            let response = metadata(&mut client, Some(&["shared".to_owned()]), false).await;
            assert_eq!(response.topics[0].error_code, NONE);
            response.topics[0].topic_id
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one topic id: created once");
    let mut client = RawClient::connect(addr).await;
    assert_eq!(produce(&mut client, "shared", 2, "after").await, NONE);
    assert_eq!(partition_dirs(broker.data_dir(), "shared-").len(), 3);
    broker.shutdown().await;
}

/// A creation that fails half-way (here: the 10th partition cannot open a file, as when
/// the process runs out of descriptors) is answered with the storage error and leaves no
/// partition directory behind, for CreateTopics and CreatePartitions; the topics are as
/// before, also after a restart, whose start-up sweep still removes a partition
/// directory the metadata does not list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_creation_leaves_no_partition_directory() {
    let broker = TestBroker::start().await;
    let data = broker.data_dir().to_path_buf();
    let failing = [data.join("leaky-9"), data.join("grown-13")];
    strata_storage::fault::set_injector(Some(Arc::new(move |op, path: &Path| {
        let hit = op == strata_storage::fault::FileOp::Open
            && failing.iter().any(|dir| path.starts_with(dir));
        // EMFILE: too many open files.
        hit.then(|| std::io::Error::from_raw_os_error(24))
    })));
    let mut client = RawClient::connect(broker.addr()).await;
    let response = create_topics(&mut client, 7, false, vec![creatable("leaky", 16)]).await;
    assert_eq!(response.topics[0].error_code, KAFKA_STORAGE_ERROR);
    assert!(
        partition_dirs(&data, "leaky").is_empty(),
        "{:?}",
        partition_dirs(&data, "leaky")
    );
    assert!(broker.running().broker().topic("leaky").is_none());

    let response = create_topics(&mut client, 7, false, vec![creatable("grown", 4)]).await;
    assert_eq!(response.topics[0].error_code, NONE);
    let response = create_partitions(&mut client, 3, false, "grown", 20).await;
    assert_eq!(response.results[0].error_code, KAFKA_STORAGE_ERROR);
    assert_eq!(
        partition_dirs(&data, "grown"),
        vec!["grown-0", "grown-1", "grown-2", "grown-3"]
    );
    assert_eq!(
        broker
            .running()
            .broker()
            .topic("grown")
            .unwrap()
            .partitions
            .len(),
        4
    );
    strata_storage::fault::set_injector(None);

    // What a crash in the middle of a creation leaves is removed at the next start.
    std::fs::create_dir(data.join("ghost-0")).unwrap();
    std::fs::write(data.join("ghost-0").join("00000000000000000000.log"), b"x").unwrap();
    let broker = broker.restart(|_| {}).await;
    assert!(partition_dirs(&data, "ghost").is_empty());
    let mut client = RawClient::connect(broker.addr()).await;
    assert_eq!(produce(&mut client, "grown", 3, "kept").await, NONE);
    assert_eq!(
        produce(&mut client, "grown", 4, "never").await,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    broker.shutdown().await;
}

/// Reads the soft and hard "Max open files" of a process from /proc.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// Under a low open-file limit (soft = hard = 256), creations beyond what the broker could
/// reopen are refused with POLICY_VIOLATION naming the limit, the broker stays up, shuts
/// down cleanly, restarts under the same limit and serves every topic it acknowledged.
/// A soft limit below the hard one is raised to it at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creations_stop_at_what_the_open_file_limit_can_reopen() {
    let raised = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::spawn_with(raised.path(), &[], Some((200, 256)));
    assert_eq!(
        open_file_limits(broker.pid()),
        (256, 256),
        "soft raised to hard"
    );
    drop(broker);

    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::spawn_with(dir.path(), &[], Some((256, 256)));
    let mut client = RawClient::connect(broker.addr()).await;
    let mut acknowledged = Vec::new();
    let refusal = loop {
        let name = format!("fd{:02}", acknowledged.len());
        let response = create_topics(&mut client, 7, false, vec![creatable(&name, 8)]).await;
        let result = &response.topics[0];
        if result.error_code != NONE {
            break result.clone();
        }
        assert_eq!(produce(&mut client, &name, 7, "kept").await, NONE);
        acknowledged.push(name);
        assert!(
            acknowledged.len() < 64,
            "512 partitions cannot fit 256 descriptors"
        );
    };
    assert_eq!(refusal.error_code, POLICY_VIOLATION);
    let message = refusal.error_message.unwrap_or_default().to_string();
    assert!(
        message.contains("open-file limit") && message.contains("256"),
        "{message}"
    );
    assert!(!acknowledged.is_empty());
    assert!(broker.is_running());
    // Measured, not asserted: what the broker holds at its cap.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", broker.pid())).map_or(0, |d| d.count());
    eprintln!(
        "open-file limit 256: {} topics x 8 partitions acknowledged, {fds} descriptors open; \
         refusal: {message}",
        acknowledged.len()
    );
    let response: ApiVersionsResponse = client
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(response.error_code, NONE);
    drop(client);
    assert!(broker.sigterm(), "clean shutdown");

    let broker = BrokerProcess::spawn_with(dir.path(), &[], Some((256, 256)));
    let mut client = RawClient::connect(broker.addr()).await;
    let all = metadata(&mut client, None, false).await;
    assert_eq!(all.topics.len(), acknowledged.len());
    for name in &acknowledged {
        assert_eq!(end_offset(&mut client, name, 7).await, 1, "{name}");
    }
    let refused_dir = format!("{}-", refusal.name.0.as_str());
    assert!(partition_dirs(dir.path(), &refused_dir).is_empty());
}

/// The real figures: an unrelated client's ApiVersions round trips (p50 / p99 / max) idle
/// and while one request creates 1,000, 2,000 and 3,000 topics (`FIGURE_COUNTS=1000,2000`
/// picks others), by Metadata auto-creation and by CreateTopics, and the time each
/// creation took. With the release broker:
///
/// ```text
/// cargo build --release --bin strata
/// STRATA_BIN=$PWD/target/release/strata cargo test --test topic_creation -- \
///     --ignored --nocapture creation_figures
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn creation_figures() {
    let counts: Vec<usize> = std::env::var("FIGURE_COUNTS")
        .unwrap_or_else(|_| "1000,2000,3000".to_owned())
        .split(',')
        .map(|c| c.trim().parse().expect("FIGURE_COUNTS: numbers"))
        .collect();
    let runs = ["metadata", "create_topics"]
        .into_iter()
        .flat_map(|how| counts.iter().map(move |&count| (how, count)));
    for (how, count) in runs {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerProcess::spawn(dir.path());
        let idle = LivenessProbe::start(broker.addr()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = idle.stop().await;
        let probe = LivenessProbe::start(broker.addr()).await;
        let topics = names("t", count);
        let mut client = RawClient::connect(broker.addr()).await;
        let started = Instant::now();
        if how == "metadata" {
            metadata(&mut client, Some(&topics), true).await;
        } else {
            let response = create_topics(
                &mut client,
                7,
                false,
                topics.iter().map(|t| creatable(t, 1)).collect(),
            )
            .await;
            assert!(response.topics.iter().all(|t| t.error_code == NONE));
        }
        wait_until_created(&mut client, &topics).await;
        let took = started.elapsed();
        let busy = probe.stop().await;
        eprintln!(
            "{how} {count} topics: created in {took:?}; ApiVersions idle p50 {:?} p99 {:?}; \
             during creation p50 {:?} p99 {:?} max {:?} ({} round trips)",
            percentile(&idle, 0.5),
            percentile(&idle, 0.99),
            percentile(&busy, 0.5),
            percentile(&busy, 0.99),
            busy.last().copied().unwrap_or_default(),
            busy.len()
        );
    }
}
