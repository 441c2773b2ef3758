//! Disk faults injected at the storage crate's file seam (`strata_storage::fault`): ENOSPC
//! and EIO on write and on fsync. Produce answers KAFKA_STORAGE_ERROR, never a false
//! success; reads keep working; after a failed write the partition takes writes again once
//! the fault clears; after a failed fsync the partition stays offline (by design: the
//! kernel may have dropped the dirty pages) while every other partition is served, and a
//! restart brings it back with every acknowledged record.

mod common;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};

use common::raw::{batch, RawClient};
use common::{consume, values_by_partition, TestBroker};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_storage::fault::{self, FileOp};

const KAFKA_STORAGE_ERROR: i16 = 56;

/// (directory, operation, errno): operations on files under the directory fail.
static RULES: Mutex<Vec<(PathBuf, FileOp, i32)>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// Installs the one process-wide injector; tests add and remove rules for their own
/// directories only, so tests running in parallel do not disturb each other.
fn install() {
    INSTALL.call_once(|| {
        fault::set_injector(Some(Arc::new(|op: FileOp, path: &Path| {
            let rules = RULES.lock().unwrap_or_else(|e| e.into_inner());
            rules
                .iter()
                .find(|(dir, o, _)| *o == op && path.starts_with(dir))
                .map(|(_, _, errno)| io::Error::from_raw_os_error(*errno))
        })));
    });
}

/// Fails `op` with `errno` under `dir` until the guard is dropped.
struct Fault {
    dir: PathBuf,
}

fn inject(dir: &Path, op: FileOp, errno: i32) -> Fault {
    install();
    RULES.lock().unwrap().push((dir.to_path_buf(), op, errno));
    Fault {
        dir: dir.to_path_buf(),
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        RULES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(d, _, _)| *d != self.dir);
    }
}

/// Produces `values` as one batch; returns (error code, base offset).
async fn produce(
    client: &mut RawClient,
    topic: &str,
    partition: i32,
    acks: i16,
    values: &[&str],
) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch(values, 1_700_000_000_000)))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request).await;
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn create(broker: &TestBroker, topic: &str, partitions: i32) {
    let state = broker.running().broker().clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        state
            .create_topic(&topic, partitions, Default::default())
            .unwrap()
    })
    .await
    .unwrap();
}

/// Values of partition `partition` of `topic`, read from the start, `count` of them.
async fn read(broker: &TestBroker, topic: &str, partitions: i32, count: usize) -> Vec<Vec<String>> {
    let bootstrap = broker.bootstrap();
    let topic = topic.to_owned();
    let messages =
        tokio::task::spawn_blocking(move || consume(&bootstrap, &topic, partitions, count))
            .await
            .unwrap();
    let by = values_by_partition(&messages);
    (0..partitions)
        .map(|p| {
            by.get(&p)
                .map(|v| v.iter().map(|(_, s)| s.clone()).collect())
                .unwrap_or_default()
        })
        .collect()
}

/// ENOSPC and EIO on write: KAFKA_STORAGE_ERROR for acks=1 and acks=all, reads keep
/// working, and once the fault clears appends continue at the same offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_are_errors_and_writes_resume_when_the_fault_clears() {
    let broker = TestBroker::start().await;
    create(&broker, "full", 1).await;
    let dir = broker.data_dir().join("full-0");
    let mut client = RawClient::connect(broker.addr()).await;
    assert_eq!(
        produce(&mut client, "full", 0, -1, &["a", "b"]).await,
        (0, 0)
    );

    for errno in [28 /* ENOSPC */, 5 /* EIO */] {
        let fault = inject(&dir, FileOp::Write, errno);
        for acks in [1, -1] {
            let (code, _) = produce(&mut client, "full", 0, acks, &["lost"]).await;
            assert_eq!(
                code, KAFKA_STORAGE_ERROR,
                "errno {errno}, acks={acks}: a failed write is never a success"
            );
        }
        // Reads are served meanwhile.
        assert_eq!(read(&broker, "full", 1, 2).await, vec![vec!["a", "b"]]);
        drop(fault);
    }
    // The failed writes were cut back: the next append continues at offset 2.
    assert_eq!(produce(&mut client, "full", 0, -1, &["c"]).await, (0, 2));
    assert_eq!(read(&broker, "full", 1, 3).await, vec![vec!["a", "b", "c"]]);
    broker.shutdown().await;
}

/// EIO and ENOSPC on fsync: acks=all gets KAFKA_STORAGE_ERROR, the partition stays offline
/// even after the fault clears (a failed fsync is never retried as a success), its
/// acknowledged records are still readable, other partitions are served, and a restart
/// brings the partition back with everything acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_takes_only_that_partition_offline_until_restart() {
    for errno in [5 /* EIO */, 28 /* ENOSPC */] {
        let temp = tempfile::tempdir().unwrap();
        let broker = TestBroker::start_in(temp.path(), |_| {}).await;
        create(&broker, "sick", 2).await;
        let dir = broker.data_dir().join("sick-0");
        let mut client = RawClient::connect(broker.addr()).await;
        assert_eq!(produce(&mut client, "sick", 0, -1, &["a"]).await, (0, 0));
        assert_eq!(produce(&mut client, "sick", 1, -1, &["x"]).await, (0, 0));

        let fault = inject(&dir, FileOp::Sync, errno);
        let (code, _) = produce(&mut client, "sick", 0, -1, &["unsynced"]).await;
        assert_eq!(code, KAFKA_STORAGE_ERROR, "errno {errno}: fsync failed");
        drop(fault);
        // Offline until restart: the fault is gone but nothing is retried as a success.
        let (code, _) = produce(&mut client, "sick", 0, -1, &["later"]).await;
        assert_eq!(code, KAFKA_STORAGE_ERROR);
        // The other partition is served, and the acknowledged record is still readable.
        assert_eq!(produce(&mut client, "sick", 1, -1, &["y"]).await, (0, 1));
        let got = read(&broker, "sick", 2, 3).await;
        assert_eq!(got[0], vec!["a"]);
        assert_eq!(got[1], vec!["x", "y"]);
        drop(client);

        let broker = broker.restart(|_| {}).await;
        let mut client = RawClient::connect(broker.addr()).await;
        let (code, offset) = produce(&mut client, "sick", 0, -1, &["back"]).await;
        assert_eq!(code, 0, "writable again after a restart");
        // The unacknowledged "unsynced" record may or may not have reached the disk.
        assert!(offset == 1 || offset == 2, "offset {offset}");
        let got = read(&broker, "sick", 2, offset as usize + 1 + 2).await;
        assert_eq!(got[0][0], "a");
        assert_eq!(got[0].last().unwrap(), "back");
        assert_eq!(got[1], vec!["x", "y"]);
        broker.shutdown().await;
    }
}
