//! One client's storage work never stalls another client (issue 15): appends, segment
//! reads and topic creation run off the async workers (the broker's I/O pool and admin
//! thread), so a disk that takes a second per operation delays only the requests that
//! touch it. The disk is made slow by the storage crate's fault seam (each operation on a
//! chosen directory sleeps), and each test asserts an order, not a duration: an unrelated
//! connection's ApiVersions is answered while the slow requests are still pending. On a
//! broker that does this work on its two async workers, two slow requests occupy both and
//! the ApiVersions answer comes after one of them.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use common::raw::{batch, RawClient};
use common::TestBroker;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strata_storage::fault::{self, FileOp};

/// How long each slowed operation takes.
const SLOW: Duration = Duration::from_millis(700);

/// (directory, operations): those operations on files under the directory sleep [`SLOW`].
static SLOW_DIRS: Mutex<Vec<(PathBuf, Vec<FileOp>)>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// Makes `ops` on files under `dir` slow (process-wide injector; rules are per directory
/// so tests running in parallel do not disturb each other).
fn slow_down(dir: &Path, ops: &[FileOp]) {
    INSTALL.call_once(|| {
        fault::set_injector(Some(Arc::new(|op: FileOp, path: &Path| {
            let slow = SLOW_DIRS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|(dir, ops)| ops.contains(&op) && path.starts_with(dir));
            if slow {
                std::thread::sleep(SLOW);
            }
            None
        })));
    });
    SLOW_DIRS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((dir.to_path_buf(), ops.to_vec()));
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn produce_request(topic: &str, acks: i16, values: &[&str]) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(values, 1_700_000_000_000)))])])
}

fn fetch_request(topic: &str) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])])
}

/// When an ApiVersions round trip on a new connection, started now, completes.
async fn api_versions_done(broker: &TestBroker) -> Instant {
    let mut client = RawClient::connect(broker.addr()).await;
    let response: ApiVersionsResponse = client
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(response.error_code, 0);
    Instant::now()
}

/// Runs two slow requests on two connections, then an ApiVersions on a third once they
/// are in flight, and checks that the ApiVersions answer came first.
async fn assert_unrelated_client_is_not_stalled<F>(broker: &TestBroker, slow_request: F)
where
    F: Fn(std::net::SocketAddr) -> tokio::task::JoinHandle<Instant>,
{
    let slow: Vec<_> = (0..2).map(|_| slow_request(broker.addr())).collect();
    // Both slow requests reach the broker and start their storage work.
    tokio::time::sleep(SLOW / 4).await;
    let answered = api_versions_done(broker).await;
    for task in slow {
        let slow_done = task.await.unwrap();
        assert!(
            answered < slow_done,
            "ApiVersions on an unrelated connection waited for another client's slow storage \
             work ({:?} after it)",
            answered - slow_done
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_appends_do_not_stall_other_connections() {
    let broker = TestBroker::start().await;
    let mut setup = RawClient::connect(broker.addr()).await;
    setup.auto_create("slow-writes").await;
    slow_down(&broker.data_dir().join("slow-writes-0"), &[FileOp::Write]);

    assert_unrelated_client_is_not_stalled(&broker, |addr| {
        tokio::spawn(async move {
            let mut client = RawClient::connect(addr).await;
            let response: ProduceResponse = client
                .call(
                    ApiKey::Produce,
                    8,
                    &produce_request("slow-writes", 1, &["a", "b"]),
                )
                .await;
            let code = response.responses[0].partition_responses[0].error_code;
            assert_eq!(code, 0, "the slow append still succeeds");
            Instant::now()
        })
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reads_do_not_stall_other_connections() {
    let broker = TestBroker::start().await;
    let mut setup = RawClient::connect(broker.addr()).await;
    setup.auto_create("slow-reads").await;
    let response: ProduceResponse = setup
        .call(
            ApiKey::Produce,
            8,
            &produce_request("slow-reads", -1, &["x", "y", "z"]),
        )
        .await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    slow_down(&broker.data_dir().join("slow-reads-0"), &[FileOp::Read]);

    assert_unrelated_client_is_not_stalled(&broker, |addr| {
        tokio::spawn(async move {
            let mut client = RawClient::connect(addr).await;
            let response: FetchResponse = client
                .call(ApiKey::Fetch, 11, &fetch_request("slow-reads"))
                .await;
            let partition = &response.responses[0].partitions[0];
            assert_eq!(partition.error_code, 0);
            assert!(
                partition.records.as_ref().is_some_and(|r| !r.is_empty()),
                "the slow read still returns the records"
            );
            Instant::now()
        })
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_topic_creation_does_not_stall_other_connections() {
    let broker = TestBroker::start().await;
    // Every fsync of the new topics' files (and the metadata's) is slow.
    slow_down(broker.data_dir(), &[FileOp::Sync, FileOp::SyncDir]);

    let created = Arc::new(Mutex::new(0));
    assert_unrelated_client_is_not_stalled(&broker, |addr| {
        let created = created.clone();
        tokio::spawn(async move {
            let topic = {
                let mut n = created.lock().unwrap();
                *n += 1;
                format!("slow-create-{n}")
            };
            let mut client = RawClient::connect(addr).await;
            let request = CreateTopicsRequest::default()
                .with_timeout_ms(60_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(name(&topic))
                    .with_num_partitions(2)
                    .with_replication_factor(1)]);
            let response: CreateTopicsResponse =
                client.call(ApiKey::CreateTopics, 5, &request).await;
            assert_eq!(response.topics[0].error_code, 0, "{topic} is created");
            Instant::now()
        })
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reads_after_a_long_poll_do_not_stall_other_connections() {
    let broker = TestBroker::start().await;
    let mut setup = RawClient::connect(broker.addr()).await;
    setup.auto_create("slow-poll").await;
    slow_down(&broker.data_dir().join("slow-poll-0"), &[FileOp::Read]);

    // Two consumers wait on the empty partition (nothing read yet)...
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let addr = broker.addr();
            tokio::spawn(async move {
                let mut client = RawClient::connect(addr).await;
                let request = fetch_request("slow-poll").with_max_wait_ms(30_000);
                let response: FetchResponse = client.call(ApiKey::Fetch, 11, &request).await;
                let partition = &response.responses[0].partitions[0];
                assert_eq!(partition.error_code, 0);
                assert!(partition.records.as_ref().is_some_and(|r| !r.is_empty()));
                Instant::now()
            })
        })
        .collect();
    tokio::time::sleep(SLOW / 4).await;
    // ...until a record arrives: both wake and read it, slowly.
    let response: ProduceResponse = setup
        .call(
            ApiKey::Produce,
            8,
            &produce_request("slow-poll", -1, &["x"]),
        )
        .await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    tokio::time::sleep(SLOW / 4).await;
    let answered = api_versions_done(&broker).await;
    for task in waiting {
        let read_done = task.await.unwrap();
        assert!(
            answered < read_done,
            "ApiVersions waited for a long poll's slow read ({:?} after it)",
            answered - read_done
        );
    }
    broker.shutdown().await;
}
