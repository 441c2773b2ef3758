//! Torn and corrupt files at the broker level: the broker starts, truncates to the last
//! valid batch, rebuilds indexes, and loses nothing before the damage; a damaged sealed
//! segment is served up to the damage (the rest kept aside); a damaged metadata log
//! stops the start instead of being believed (damaged files of the version before it:
//! tests/upgrade.rs).
//!
//! A crash is simulated by a clean shutdown followed by removing the partition's
//! `.clean-shutdown` marker: the next start then recovers exactly as after a crash.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{producer, TestBroker, PATIENCE};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use strata::broker::broker_config::Scope;

/// Produces each value as its own batch (awaiting each), returns the offsets.
async fn produce_each(bootstrap: &str, topic: &str, partition: i32, values: &[String]) -> Vec<i64> {
    let producer = producer(bootstrap, &[("acks", "all"), ("linger.ms", "0")]);
    let mut offsets = Vec::new();
    for v in values {
        let delivery = producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .payload(v)
                    .partition(partition),
                PATIENCE,
            )
            .await
            .expect("produce acknowledged");
        assert_eq!(delivery.partition, partition);
        offsets.push(delivery.offset);
    }
    offsets
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// The high watermark of `topic`/`partition`.
fn high_watermark(bootstrap: &str, topic: &str, partition: i32) -> i64 {
    let consumer = common::consumer(bootstrap, &[]);
    consumer
        .fetch_watermarks(topic, partition, PATIENCE)
        .expect("watermarks")
        .1
}

/// (offset, value) of every record of `topic`/`partition`, read from the start.
async fn read_partition(broker: &TestBroker, topic: &str, partition: i32) -> Vec<(i64, String)> {
    let bootstrap = broker.bootstrap();
    let count = high_watermark(&bootstrap, topic, partition) as usize;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || consume_exactly(&bootstrap, &topic, partition, count))
        .await
        .unwrap()
}

/// The first `count` records of one partition (the high watermark says how many exist).
fn consume_exactly(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    count: usize,
) -> Vec<(i64, String)> {
    if count == 0 {
        return Vec::new();
    }
    let consumer = common::consumer(bootstrap, &[]);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {count}",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            use rdkafka::Message;
            let m = m.expect("consumer error");
            out.push((
                m.offset(),
                String::from_utf8(m.payload().unwrap().to_vec()).unwrap(),
            ));
        }
    }
    out
}

fn partition_dir(data: &Path, topic: &str, partition: i32) -> PathBuf {
    data.join(format!("{topic}-{partition}"))
}

/// The `.log` files of a partition, oldest first.
fn segment_logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

fn base_offset(log: &Path) -> i64 {
    log.file_name().unwrap().to_str().unwrap()[..20]
        .parse()
        .unwrap()
}

/// Makes the next start recover this partition as after a crash.
fn forget_clean_shutdown(dir: &Path) {
    std::fs::remove_file(dir.join(".clean-shutdown")).expect("clean marker after shutdown");
}

async fn small_segment_topic(broker: &TestBroker, name: &str, partitions: i32) {
    let state = broker.running().broker().clone();
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        state
            .create_topic(
                &name,
                partitions,
                BTreeMap::from([("segment.bytes".to_owned(), "1024".to_owned())]),
            )
            .unwrap();
    })
    .await
    .unwrap();
}

fn expected(prefix: &str, n: usize) -> Vec<(i64, String)> {
    values(prefix, n)
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v))
        .collect()
}

/// After a crash: a torn partial batch at the end of the active segment, a zeroed offset
/// index and a truncated time index of a sealed segment, and a garbage checkpoint. Every
/// acknowledged record comes back, offsets dense, and appends continue at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_active_tail_damaged_indexes_and_checkpoint_lose_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(temp.path(), |_| {}).await;
    small_segment_topic(&broker, "torn", 1).await;
    let sent = values("torn", 60);
    let offsets = produce_each(&broker.bootstrap(), "torn", 0, &sent).await;
    assert_eq!(offsets, (0..60).collect::<Vec<i64>>());
    let data = broker.data_dir().to_path_buf();
    broker.shutdown().await;

    let dir = partition_dir(&data, "torn", 0);
    let logs = segment_logs(&dir);
    assert!(logs.len() >= 3, "small segments roll: {logs:?}");
    forget_clean_shutdown(&dir);
    // A torn write: the first 40 bytes of a batch at the end of the active segment.
    let active = logs.last().unwrap();
    let first_batch = std::fs::read(&logs[0]).unwrap();
    let mut bytes = std::fs::read(active).unwrap();
    bytes.extend_from_slice(&first_batch[..40]);
    std::fs::write(active, &bytes).unwrap();
    // Damaged indexes of the first (sealed) segment.
    let index = logs[0].with_extension("index");
    let len = std::fs::metadata(&index).unwrap().len() as usize;
    std::fs::write(&index, vec![0u8; len.max(8)]).unwrap();
    let time_index = logs[0].with_extension("timeindex");
    let t = std::fs::read(&time_index).unwrap();
    std::fs::write(&time_index, &t[..t.len().min(5)]).unwrap();
    std::fs::write(dir.join("partition.checkpoint"), b"garbage\n").unwrap();

    let broker = TestBroker::start_in(&data, |_| {}).await;
    assert_eq!(
        read_partition(&broker, "torn", 0).await,
        expected("torn", 60)
    );
    // Appends continue right after the last acknowledged record.
    let more = produce_each(&broker.bootstrap(), "torn", 0, &["after".to_owned()]).await;
    assert_eq!(more, vec![60]);
    // Offset lookups go through the rebuilt index: ListOffsets by time finds offset 0.
    let consumer = common::consumer(&broker.bootstrap(), &[]);
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset("torn", 0, Offset::Offset(0))
        .unwrap();
    let found = consumer.offsets_for_times(query, PATIENCE).unwrap();
    assert_eq!(
        found.find_partition("torn", 0).unwrap().offset(),
        Offset::Offset(0)
    );
    broker.shutdown().await;
}

/// After a crash, a flipped byte in the last batch: only that batch is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_last_batch_after_a_crash_cuts_only_that_batch() {
    let temp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(temp.path(), |_| {}).await;
    small_segment_topic(&broker, "flip", 1).await;
    let sent = values("flip", 20);
    produce_each(&broker.bootstrap(), "flip", 0, &sent).await;
    let data = broker.data_dir().to_path_buf();
    broker.shutdown().await;

    let dir = partition_dir(&data, "flip", 0);
    forget_clean_shutdown(&dir);
    let active = segment_logs(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&active).unwrap();
    let at = bytes.len() - 3; // inside the last record's value, covered by the CRC
    bytes[at] ^= 0x40;
    std::fs::write(&active, &bytes).unwrap();

    let broker = TestBroker::start_in(&data, |_| {}).await;
    assert_eq!(
        read_partition(&broker, "flip", 0).await,
        expected("flip", 19)
    );
    let more = produce_each(&broker.bootstrap(), "flip", 0, &["again".to_owned()]).await;
    assert_eq!(more, vec![19]);
    broker.shutdown().await;
}

/// A damaged sealed segment (with a damaged checkpoint, so it is not trusted): the broker
/// starts, the partition is served up to the damage, the cut bytes and later segments are
/// kept aside as `.quarantined` files, other partitions are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_sealed_segment_is_served_up_to_the_damage() {
    let temp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(temp.path(), |_| {}).await;
    small_segment_topic(&broker, "sealed", 2).await;
    let sent = values("sealed", 60);
    produce_each(&broker.bootstrap(), "sealed", 0, &sent).await;
    produce_each(&broker.bootstrap(), "sealed", 1, &sent).await;
    let data = broker.data_dir().to_path_buf();
    broker.shutdown().await;

    let dir = partition_dir(&data, "sealed", 0);
    let logs = segment_logs(&dir);
    assert!(logs.len() >= 3);
    let damaged_base = base_offset(&logs[1]);
    let mut bytes = std::fs::read(&logs[1]).unwrap();
    bytes[30] ^= 0x01; // inside the first batch's CRC-covered bytes
    std::fs::write(&logs[1], &bytes).unwrap();
    std::fs::write(dir.join("partition.checkpoint"), b"\0\0\0").unwrap();

    let broker = TestBroker::start_in(&data, |_| {}).await;
    assert_eq!(
        read_partition(&broker, "sealed", 0).await,
        expected("sealed", damaged_base as usize)
    );
    assert_eq!(
        read_partition(&broker, "sealed", 1).await,
        expected("sealed", 60)
    );
    let quarantined: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".quarantined"))
        .collect();
    assert_eq!(
        quarantined.len(),
        logs.len() - 1,
        "the damaged tail and every later segment kept: {quarantined:?}"
    );
    let more = produce_each(&broker.bootstrap(), "sealed", 0, &["next".to_owned()]).await;
    assert_eq!(more, vec![damaged_base]);
    broker.shutdown().await;
}

/// The newest file of the metadata log (`_strata/metadata/metadata-<generation>.log`).
fn metadata_log_file(data: &Path) -> PathBuf {
    let dir = data.join("_strata").join("metadata");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files.pop().expect("a metadata log file")
}

/// A metadata log with a byte flipped in an earlier record (the topic's name, or a
/// dynamic broker config's value) stops the start with an error naming the file: a
/// record that is not what was written is never believed, since a lost or renamed topic
/// would make the start-up delete its partitions as orphans. The file and the partition
/// data are left as they were; with the file restored the broker starts with everything,
/// and producer ids keep growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_metadata_log_refuses_to_start_and_deletes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(temp.path(), |_| {}).await;
    produce_each(&broker.bootstrap(), "orders", 0, &values("orders", 10)).await;
    let state = broker.running().broker().clone();
    let first_id = tokio::task::spawn_blocking(move || {
        let retention = BTreeMap::from([("log.retention.ms".to_owned(), "5000".to_owned())]);
        state
            .update_broker_configs(Scope::Node, false, |_| Ok(retention))
            .unwrap();
        state
            .producer_ids()
            .init_blocking(None, 0)
            .unwrap()
            .producer_id
    })
    .await
    .unwrap();
    let data = broker.data_dir().to_path_buf();
    broker.shutdown().await;

    let path = metadata_log_file(&data);
    let good_bytes = std::fs::read(&path).unwrap();
    // (bytes in the log, damaged bytes that still decode)
    let cases: [(&[u8], &[u8]); 2] = [(b"orders", b"orsers"), (b"5000", b"1000")];
    for (from, to) in cases {
        let at = good_bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("value in the metadata log");
        let mut bad = good_bytes.clone();
        bad[at..at + to.len()].copy_from_slice(to);
        std::fs::write(&path, &bad).unwrap();
        let config = strata::Config::with_defaults("127.0.0.1:0".parse().unwrap(), &data);
        let err = match strata::start(config).await {
            Ok(_) => panic!("a broker started on a damaged metadata log"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("metadata-"), "error names the file: {err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bad,
            "file left for the operator"
        );
        assert!(
            partition_dir(&data, "orders", 0).is_dir(),
            "partition data kept"
        );
    }

    std::fs::write(&path, &good_bytes).unwrap();
    let broker = TestBroker::start_in(&data, |_| {}).await;
    assert_eq!(
        read_partition(&broker, "orders", 0).await,
        expected("orders", 10)
    );
    let state = broker.running().broker().clone();
    assert_eq!(state.default_log_config().retention_ms, Some(5000));
    let next_id = tokio::task::spawn_blocking(move || state.producer_ids().init_blocking(None, 0))
        .await
        .unwrap()
        .unwrap()
        .producer_id;
    assert!(
        next_id > first_id,
        "{next_id} reuses an id up to {first_id}"
    );
    broker.shutdown().await;
}

/// A partition that cannot be opened at all (its directory replaced by a file) stops the
/// start with an error naming it; partitions are opened on several threads, and the
/// failure of one is still reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unopenable_partition_stops_the_start_naming_it() {
    let temp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(temp.path(), |_| {}).await;
    let state = broker.running().broker().clone();
    tokio::task::spawn_blocking(move || {
        state.create_topic("wide", 40, BTreeMap::new()).unwrap();
    })
    .await
    .unwrap();
    let data = broker.data_dir().to_path_buf();
    broker.shutdown().await;
    let dir = partition_dir(&data, "wide", 27);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let config = strata::Config::with_defaults("127.0.0.1:0".parse().unwrap(), &data);
    let err = match strata::start(config).await {
        Ok(_) => panic!("started with an unopenable partition"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("wide") && err.contains("27"), "{err}");
    std::fs::remove_file(&dir).unwrap();
    // With the directory gone the partition starts empty; the others are intact.
    let broker = TestBroker::start_in(&data, |_| {}).await;
    assert_eq!(
        broker
            .running()
            .broker()
            .topic("wide")
            .unwrap()
            .partitions
            .len(),
        40
    );
    broker.shutdown().await;
}

/// A torn tail in the committed-offsets log: commits before it survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_offsets_log_tail_keeps_earlier_commits() {
    let temp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(temp.path(), |_| {}).await;
    produce_each(&broker.bootstrap(), "committed", 0, &values("c", 5)).await;
    let bootstrap = broker.bootstrap();
    tokio::task::spawn_blocking(move || {
        let consumer = common::consumer(&bootstrap, &[("group.id", "torn-group")]);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("committed", 0, Offset::Offset(4))
            .unwrap();
        consumer.commit(&tpl, CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();
    let data = broker.data_dir().to_path_buf();
    broker.shutdown().await;

    let offsets_dir = data.join("_strata").join("offsets");
    let log = std::fs::read_dir(&offsets_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("offsets log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&[0x00, 0x00, 0x01, 0x00, 0xde, 0xad]); // a torn frame
    std::fs::write(&log, &bytes).unwrap();

    let broker = TestBroker::start_in(&data, |_| {}).await;
    let bootstrap = broker.bootstrap();
    let committed = tokio::task::spawn_blocking(move || {
        let consumer = common::consumer(&bootstrap, &[("group.id", "torn-group")]);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("committed", 0);
        consumer.committed_offsets(tpl, PATIENCE).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        committed.find_partition("committed", 0).unwrap().offset(),
        Offset::Offset(4)
    );
    broker.shutdown().await;
}

/// The frame of one committed offset exactly as the previous release wrote it into
/// `offsets-<N>.log` (written here byte by byte, independently of the broker's types):
/// length u32 LE, CRC-32C u32 LE, then bincode 1.x of `OffsetRecord::Commit` — variant
/// 0 as u32 LE, strings as u64 LE length and bytes, fixed-width little-endian integers,
/// `Option` as a 0/1 byte.
fn prev_release_commit_frame(
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    metadata: &str,
) -> Vec<u8> {
    let mut payload = 0u32.to_le_bytes().to_vec();
    for s in [group, topic] {
        payload.extend_from_slice(&(s.len() as u64).to_le_bytes());
        payload.extend_from_slice(s.as_bytes());
    }
    payload.extend_from_slice(&partition.to_le_bytes());
    payload.extend_from_slice(&offset.to_le_bytes());
    payload.extend_from_slice(&(-1i32).to_le_bytes()); // leader epoch
    payload.push(1);
    payload.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    payload.extend_from_slice(metadata.as_bytes());
    payload.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// An offsets log written by the previous release (unversioned bincode records) opens
/// with every commit, is rewritten once in versioned records, and keeps them across
/// further restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offsets_log_of_the_previous_release_keeps_every_commit() {
    let temp = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(temp.path(), |_| {}).await;
    produce_each(&broker.bootstrap(), "upgraded", 0, &values("u", 5)).await;
    let data = broker.data_dir().to_path_buf();
    broker.shutdown().await;

    let offsets_dir = data.join("_strata").join("offsets");
    for entry in std::fs::read_dir(&offsets_dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let mut old = prev_release_commit_frame("old-group", "upgraded", 0, 2, "first");
    old.extend(prev_release_commit_frame(
        "old-group",
        "upgraded",
        0,
        3,
        "second",
    ));
    old.extend(prev_release_commit_frame(
        "other-group",
        "upgraded",
        0,
        5,
        "",
    ));
    std::fs::write(offsets_dir.join("offsets-00000000000000000000.log"), &old).unwrap();

    for _restart in 0..2 {
        let broker = TestBroker::start_in(&data, |_| {}).await;
        for (group, expected) in [("old-group", 3), ("other-group", 5)] {
            let bootstrap = broker.bootstrap();
            let committed = tokio::task::spawn_blocking(move || {
                let consumer = common::consumer(&bootstrap, &[("group.id", group)]);
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition("upgraded", 0);
                consumer.committed_offsets(tpl, PATIENCE).unwrap()
            })
            .await
            .unwrap();
            let p = committed.find_partition("upgraded", 0).unwrap();
            assert_eq!((group, p.offset()), (group, Offset::Offset(expected)));
        }
        broker.shutdown().await;
        // Rewritten as generation 1 at the first start, not again at the second.
        let mut files: Vec<String> = std::fs::read_dir(&offsets_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, vec!["offsets-00000000000000000001.log".to_string()]);
    }
}

/// Recovery "fuzzing" (cargo-fuzz needs a nightly toolchain this project does not use):
/// a valid log of random batches, then a random truncation, overwrite, bit flip or
/// appended garbage, with no checkpoint (so every batch is validated). `Log::open` never
/// panics or fails, serves only whole batches that pass their CRC with dense offsets, serves
/// exactly the file's bytes, and keeps every batch that ends before the first damaged byte.
mod recovery_properties {
    use proptest::prelude::*;
    use strata_storage::{batch::check_batch, Flusher, Log, LogConfig};

    /// Batches of `counts[i]` records each with dense base offsets; returns the log bytes
    /// and each batch's end position.
    fn valid_log(counts: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let mut next = 0i64;
        for (i, &n) in counts.iter().enumerate() {
            let values: Vec<String> = (0..n).map(|j| format!("batch{i}-record{j}")).collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let mut batch = super::common::raw::batch(&refs, 1_700_000_000_000 + i as i64).to_vec();
            batch[0..8].copy_from_slice(&next.to_be_bytes());
            next += n as i64;
            bytes.extend_from_slice(&batch);
            ends.push(bytes.len());
        }
        (bytes, ends)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn damaged_logs_open_and_serve_only_valid_batches(
            counts in prop::collection::vec(1usize..6, 1..8),
            kind in 0u8..4,
            at in any::<prop::sample::Index>(),
            garbage in prop::collection::vec(any::<u8>(), 1..64),
        ) {
            let (original, ends) = valid_log(&counts);
            let mut damaged = original.clone();
            let pos = at.index(original.len());
            match kind {
                0 => damaged.truncate(pos),
                1 => {
                    for (i, b) in garbage.iter().enumerate() {
                        if let Some(slot) = damaged.get_mut(pos + i) {
                            *slot = *b;
                        }
                    }
                }
                2 => damaged[pos] ^= garbage[0] | 1,
                _ => damaged.extend_from_slice(&garbage),
            }
            let first_damage = original
                .iter()
                .zip(&damaged)
                .position(|(a, b)| a != b)
                .unwrap_or(original.len().min(damaged.len()));
            let intact = ends.iter().filter(|&&e| e <= first_damage).count();

            let dir = tempfile::tempdir().unwrap();
            let part = dir.path().join("p-0");
            std::fs::create_dir_all(&part).unwrap();
            std::fs::write(part.join("00000000000000000000.log"), &damaged).unwrap();
            let flusher = Flusher::start();
            let log = Log::open(&part, LogConfig::default(), &flusher).expect("open recovers");
            let end = log.log_end_offset();
            let mut served = Vec::new();
            let mut offset = 0i64;
            let mut batches = 0usize;
            while offset < end {
                let read = log.read(offset, 1 << 20, end).expect("read");
                let mut rest = &read.records[..];
                prop_assert!(!rest.is_empty());
                while !rest.is_empty() {
                    let h = check_batch(rest).expect("every served batch is valid");
                    prop_assert_eq!(h.base_offset, offset, "dense offsets");
                    served.extend_from_slice(&rest[..h.size()]);
                    offset = h.last_offset() + 1;
                    rest = &rest[h.size()..];
                    batches += 1;
                }
            }
            prop_assert_eq!(offset, end);
            prop_assert!(batches >= intact, "{} batches served, {} intact", batches, intact);
            prop_assert_eq!(&served[..], &damaged[..served.len()]);
            drop(log);
        }
    }
}
