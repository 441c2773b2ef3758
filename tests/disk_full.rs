//! A real full disk: the data directory lives on a small tmpfs that the test mounts (CI
//! runs as root, as these tests need) and fills with a file until the kernel answers
//! ENOSPC. Unlike the injected faults of `disk_faults.rs`, every write the broker makes
//! meets the full disk: segment data, rolls and their index files, checkpoints, snapshots,
//! the internal logs. Produce is refused with KAFKA_STORAGE_ERROR while the disk is full,
//! acknowledged records stay readable, and writes resume once space returns; a broker
//! started on a full disk comes up and serves reads.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use common::raw::RawClient;
use common::{consume, values_by_partition, TestBroker};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const KAFKA_STORAGE_ERROR: i16 = 56;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;

/// A tmpfs of a fixed size mounted on a fresh temporary directory; unmounted on drop.
struct SmallDisk {
    mount: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> SmallDisk {
        let mount = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(mount.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI has it): {status}"
        );
        SmallDisk { mount }
    }

    fn data_dir(&self) -> PathBuf {
        self.mount.path().join("data")
    }

    fn filler(&self) -> PathBuf {
        self.mount.path().join("filler")
    }

    /// Writes a file until the disk is full, leaving about `leave` bytes free (rounded to
    /// whole 4 KiB pages) for the broker to run into.
    fn fill(&self, leave: u64) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .unwrap();
        let chunk = vec![0x5a_u8; 4096];
        loop {
            if let Err(e) = file.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC: {e}");
                break;
            }
        }
        drop(file);
        if leave > 0 {
            let len = std::fs::metadata(self.filler()).unwrap().len();
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(self.filler())
                .unwrap();
            file.set_len(len.saturating_sub(leave.div_ceil(4096) * 4096))
                .unwrap();
        }
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mount.path())
            .status();
    }
}

/// Produces `value` as a one-record batch with acks=all; returns the error code and offset.
async fn produce(client: &mut RawClient, topic: &str, value: &str) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(common::raw::batch(
                    &[value],
                    1_700_000_000_000,
                )))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request).await;
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Commits `offset` for partitions 0..4 of `topic` in group `g` (a simple, memberless
/// commit), each with 2,000 bytes of metadata so that the record needs a new page of a
/// full disk; returns partition 0's error code.
async fn commit(client: &mut RawClient, topic: &str, offset: i64) -> i16 {
    let metadata = StrBytes::from_string("m".repeat(2000));
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(
                (0..4)
                    .map(|p| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                            .with_committed_metadata(Some(metadata.clone()))
                    })
                    .collect(),
            )]);
    let response: OffsetCommitResponse = client.call(ApiKey::OffsetCommit, 8, &request).await;
    response.topics[0].partitions[0].error_code
}

/// The committed offset of partition 0 of `topic` in group `g`.
async fn committed(client: &mut RawClient, topic: &str) -> i64 {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_indexes(vec![0])]));
    let response: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 7, &request).await;
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.committed_offset
}

/// Every value of partition 0 of `topic`, read from the start by librdkafka.
async fn read_all(broker: &TestBroker, topic: &str, count: usize) -> Vec<String> {
    let bootstrap = broker.bootstrap();
    let topic = topic.to_owned();
    let messages = tokio::task::spawn_blocking(move || consume(&bootstrap, &topic, 1, count))
        .await
        .unwrap();
    values_by_partition(&messages)
        .remove(&0)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

fn value(i: usize) -> String {
    format!("{i:05}-{}", "v".repeat(1500))
}

/// A broker on `disk` (small segments: the disk fills during rolls, index writes and
/// checkpoints) with topic `t` of `partitions` partitions.
async fn start_with_topic(disk: &SmallDisk, partitions: i32) -> TestBroker {
    let broker = TestBroker::start_in(&disk.data_dir(), small_segments).await;
    let state = broker.running().broker().clone();
    tokio::task::spawn_blocking(move || {
        state
            .create_topic("t", partitions, Default::default())
            .unwrap()
    })
    .await
    .unwrap();
    broker
}

fn small_segments(config: &mut strata::Config) {
    config.default_segment_bytes = 16 * 1024;
}

/// The disk fills while acks=all records flow and segments roll: the producer gets
/// KAFKA_STORAGE_ERROR (never a false success), every acknowledged record stays readable,
/// and once space returns the same partition takes writes again, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_when_space_returns_after_the_disk_filled_during_rolls() {
    let disk = SmallDisk::mount(8 << 20);
    let broker = start_with_topic(&disk, 1).await;
    disk.fill(256 * 1024);
    let mut client = RawClient::connect(broker.addr()).await;
    let mut acked = Vec::new();
    let mut refused_in_a_row = 0;
    let mut i = 0;
    while refused_in_a_row < 10 {
        let v = value(i);
        i += 1;
        match produce(&mut client, "t", &v).await {
            (0, offset) => {
                assert_eq!(offset, acked.len() as i64, "dense offsets");
                acked.push(v);
                refused_in_a_row = 0;
            }
            (KAFKA_STORAGE_ERROR, _) => refused_in_a_row += 1,
            other => panic!("unexpected produce outcome {other:?}"),
        }
        assert!(i < 10_000, "the disk never filled");
    }
    assert!(acked.len() > 20, "only {} records fit", acked.len());
    assert_eq!(read_all(&broker, "t", acked.len()).await, acked);

    disk.free();
    for j in 0..20 {
        let v = value(100_000 + j);
        let (code, offset) = produce(&mut client, "t", &v).await;
        assert_eq!(code, 0, "writes resume once space returns (record {j})");
        assert_eq!(offset, acked.len() as i64);
        acked.push(v);
    }
    assert_eq!(read_all(&broker, "t", acked.len()).await, acked);
    drop(client);
    let broker = broker
        .restart(|c| c.default_segment_bytes = 16 * 1024)
        .await;
    assert_eq!(read_all(&broker, "t", acked.len()).await, acked);
    broker.shutdown().await;
}

/// A broker (re)started on a full disk comes up, serves every acknowledged record and
/// committed offset, and refuses produce with KAFKA_STORAGE_ERROR and offset commits with
/// COORDINATOR_NOT_AVAILABLE (retriable); when space returns it takes both again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_started_on_a_full_disk_serves_reads_and_writes_once_space_returns() {
    let disk = SmallDisk::mount(8 << 20);
    let broker = start_with_topic(&disk, 4).await;
    let mut client = RawClient::connect(broker.addr()).await;
    let mut acked = Vec::new();
    for i in 0..40 {
        let v = value(i);
        assert_eq!(produce(&mut client, "t", &v).await, (0, i as i64));
        acked.push(v);
    }
    assert_eq!(commit(&mut client, "t", 7).await, 0);
    drop(client);
    disk.fill(0);
    // A graceful shutdown on the full disk (its checkpoints may not fit), then a start.
    let broker = broker
        .restart(|c| c.default_segment_bytes = 16 * 1024)
        .await;
    assert_eq!(read_all(&broker, "t", acked.len()).await, acked);
    let mut client = RawClient::connect(broker.addr()).await;
    assert_eq!(
        // Larger than a page: it cannot fit in the slack of the segment's last page.
        produce(&mut client, "t", &"refused".repeat(1000)).await.0,
        KAFKA_STORAGE_ERROR
    );
    assert_eq!(committed(&mut client, "t").await, 7);
    assert_eq!(
        commit(&mut client, "t", 20).await,
        COORDINATOR_NOT_AVAILABLE
    );
    assert_eq!(
        committed(&mut client, "t").await,
        7,
        "a refused commit changes nothing"
    );

    disk.free();
    let v = value(1000);
    assert_eq!(produce(&mut client, "t", &v).await, (0, acked.len() as i64));
    acked.push(v);
    assert_eq!(commit(&mut client, "t", 30).await, 0);
    assert_eq!(read_all(&broker, "t", acked.len()).await, acked);
    drop(client);
    let broker = broker
        .restart(|c| c.default_segment_bytes = 16 * 1024)
        .await;
    assert_eq!(read_all(&broker, "t", acked.len()).await, acked);
    let mut client = RawClient::connect(broker.addr()).await;
    assert_eq!(committed(&mut client, "t").await, 30);
    broker.shutdown().await;
}
