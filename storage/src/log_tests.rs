//! Tests of the public `Log` API: round trips, reads, timestamps, rolls, retention,
//! checkpoints, durability waits, validation errors.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::batch;
use crate::error::AppendError;
use crate::testing::{batch_of, decode_records, headers, simple_batch, DecodedRecord, TestRecord};
use crate::TimestampType;

pub(crate) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_ms: None,
        index_interval_bytes: 256,
        retention_ms: None,
        ..LogConfig::default()
    }
}

pub(crate) fn open(dir: &Path, config: LogConfig) -> Arc<Log> {
    Log::open(dir.join("topic-0"), config, &Flusher::start()).unwrap()
}

/// Simulates a crash: stops the log's flusher (so nothing touches the files afterwards)
/// and drops the log without closing it.
pub(crate) fn crash(log: Arc<Log>) {
    log.flusher.stop();
    drop(log);
}

/// Appends batches of the given record counts (value length `value_len`), record i of the
/// whole log carrying timestamp 1000 + i. Returns every record appended, in offset order.
pub(crate) fn fill(log: &Log, counts: &[usize], value_len: usize) -> Vec<DecodedRecord> {
    let mut all = Vec::new();
    for &count in counts {
        let first = log.log_end_offset();
        let records: Vec<TestRecord> = (0..count)
            .map(|i| {
                let offset = first + i as i64;
                TestRecord::new(
                    1000 + offset,
                    format!("key{offset}").as_bytes(),
                    &vec![offset as u8; value_len],
                )
            })
            .collect();
        let info = log.append(&batch_of(&records), 0).unwrap();
        assert_eq!(info.base_offset, first);
        assert_eq!(info.last_offset, first + count as i64 - 1);
        for (i, record) in records.into_iter().enumerate() {
            all.push(DecodedRecord {
                offset: first + i as i64,
                record,
            });
        }
    }
    all
}

/// Reads the whole log front to back the way a consumer does, from the log start.
pub(crate) fn read_all(log: &Log) -> Vec<DecodedRecord> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let r = log.read(offset, 1000, i64::MAX).unwrap();
        assert!(
            !r.records.is_empty(),
            "empty read at {offset} below end {end}"
        );
        let records = decode_records(&r.records);
        out.extend(records.into_iter().filter(|r| r.offset >= offset));
        offset = out.last().map_or(offset, |r| r.offset + 1);
    }
    out
}

fn segment_files(log: &Log) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(log.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn append_read_round_trip(
        counts in prop::collection::vec(1usize..12, 1..40),
        value_len in 0usize..200,
        max_bytes in 1usize..3000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        let expected = fill(&log, &counts, value_len);
        prop_assert_eq!(log.log_end_offset(), expected.len() as i64);
        prop_assert_eq!(read_all(&log), expected.clone());

        // Every offset: the first batch returned holds it, batches are whole and within
        // max_bytes unless the first alone is larger.
        for offset in 0..log.log_end_offset() {
            let r = log.read(offset, max_bytes, i64::MAX).unwrap();
            let hs = headers(&r.records);
            prop_assert!(!hs.is_empty());
            prop_assert!(hs[0].base_offset <= offset && offset <= hs[0].last_offset());
            prop_assert!(r.records.len() <= max_bytes || hs.len() == 1);
            for pair in hs.windows(2) {
                prop_assert_eq!(pair[0].next_offset(), pair[1].base_offset);
            }
            // With an upper bound: only batches starting below it, still the one holding offset.
            let upper = offset + 1 + offset % 7;
            let bounded = headers(&log.read(offset, max_bytes, upper).unwrap().records);
            prop_assert_eq!(bounded[0], hs[0]);
            prop_assert!(bounded.iter().all(|h| h.base_offset < upper));
            prop_assert!(bounded.len() >= hs.iter().take_while(|h| h.base_offset < upper).count());
            let decoded = decode_records(&r.records);
            let want: Vec<_> = expected.iter().filter(|e| e.offset >= hs[0].base_offset).take(decoded.len()).cloned().collect();
            prop_assert_eq!(decoded, want);
        }

        // The same after a clean reopen and after an unclean one.
        log.close().unwrap();
        crash(log);
        let log = open(dir.path(), small_config());
        prop_assert_eq!(read_all(&log), expected.clone());
        crash(log);
        let log = open(dir.path(), small_config());
        prop_assert_eq!(read_all(&log), expected);
    }

    #[test]
    fn timestamp_lookup_matches_brute_force(
        counts in prop::collection::vec(1usize..8, 1..30),
        probes in prop::collection::vec(900i64..1300, 1..20),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        let all = fill(&log, &counts, 50);
        for ts in probes {
            let want = all.iter().find(|r| r.record.timestamp >= ts).map(|r| TimestampOffset { offset: r.offset, timestamp: r.record.timestamp });
            prop_assert_eq!(log.offset_for_timestamp(ts).unwrap(), want);
        }
    }
}

#[test]
fn read_every_offset_inside_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    fill(&log, &[1, 50, 3], 10);
    for offset in 1..51 {
        let r = log.read(offset, 1, i64::MAX).unwrap();
        let hs = headers(&r.records);
        assert_eq!(hs.len(), 1, "at least (and here exactly) one batch");
        assert_eq!((hs[0].base_offset, hs[0].record_count), (1, 50));
    }
}

#[test]
fn read_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    fill(&log, &[5, 5, 5], 10);
    // Upper bound: only batches starting below it.
    let hs = headers(&log.read(0, 1 << 20, 10).unwrap().records);
    assert_eq!(
        hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![0, 5]
    );
    assert!(log.read(10, 1 << 20, 10).unwrap().records.is_empty());
    // At the end: empty; past it: out of range.
    assert!(log.read(15, 100, i64::MAX).unwrap().records.is_empty());
    let err = log.read(16, 100, i64::MAX).unwrap_err();
    assert_eq!(err.error_code(), 1);
    assert_eq!(log.read(-1, 100, i64::MAX).unwrap_err().error_code(), 1);
}

/// Issue 15: what a waiting fetch checks on each wake-up instead of reading. For every
/// offset and upper bound, across segment rolls: at least what `read` returns (all of it,
/// with no byte limit) and at most about an index interval more at each end; 0 at or above the
/// upper bound; `None` out of range (where `read` fails).
#[test]
fn bytes_available_bounds_what_a_read_returns_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let interval = config.index_interval_bytes;
    let log = open(dir.path(), config);
    fill(&log, &[3; 30], 100);
    let end = log.log_end_offset();
    assert!(
        segment_files(&log).len() > 2,
        "the bounds are checked across segments"
    );
    let read_all_from = |offset: i64, upper: i64| -> u64 {
        let mut total = 0u64;
        let mut next = offset;
        loop {
            let records = log.read(next, usize::MAX, upper).unwrap().records;
            let Some(last) = headers(&records).last().map(|h| h.next_offset()) else {
                return total;
            };
            total += records.len() as u64;
            next = last;
        }
    };
    for upper in [0, 1, 3, 4, 17, 45, end - 1, end, end + 5] {
        for offset in 0..=end {
            let available = log.bytes_available(offset, upper, u64::MAX).unwrap();
            let read = read_all_from(offset, upper);
            assert!(
                available >= read,
                "offset {offset} upper {upper}: {available} < {read}"
            );
            // The first segment counts from the index entry at or below `offset`, the last
            // up to the entry after `upper`; segments between are counted exactly.
            assert!(
                available <= read + 4 * interval + 1024,
                "offset {offset} upper {upper}: {available} vs {read}"
            );
            if offset >= upper {
                assert_eq!(available, 0);
            }
        }
    }
    assert_eq!(log.bytes_available(end + 1, end, u64::MAX), None);
    assert_eq!(log.bytes_available(-1, end, u64::MAX), None);
    // Counting stops once enough is found.
    assert!(log.bytes_available(0, end, 1).unwrap() < read_all_from(0, end));
}

#[test]
fn rolls_on_segment_bytes_and_index_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    fill(&log, &[10; 20], 100);
    let files = segment_files(&log);
    assert!(files.len() > 3, "{files:?}");
    assert_eq!(files[0], "00000000000000000000.log");
    // Every sealed segment is within segment.bytes.
    for f in &files[..files.len() - 1] {
        assert!(std::fs::metadata(log.dir().join(f)).unwrap().len() <= 4096);
    }

    // Full index: 2 entries of 8 bytes max; entries every 256 bytes.
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_index_bytes: 24,
        index_interval_bytes: 100,
        segment_ms: None,
        ..LogConfig::default()
    };
    let log = open(dir.path(), cfg);
    fill(&log, &[1; 12], 150);
    assert!(segment_files(&log).len() >= 3);
    assert_eq!(read_all(&log).len(), 12);

    // segment.ms: the clock is the now_ms given to append.
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: Some(1000),
        ..LogConfig::default()
    };
    let log = open(dir.path(), cfg);
    log.append(&simple_batch(1, 10, 0), 0).unwrap();
    log.append(&simple_batch(1, 10, 0), 999).unwrap();
    assert_eq!(segment_files(&log).len(), 1);
    log.append(&simple_batch(1, 10, 0), 1000).unwrap();
    assert_eq!(
        segment_files(&log),
        vec!["00000000000000000000.log", "00000000000000000002.log"]
    );
}

#[test]
fn retention_by_size_and_time_keeps_active_and_persists_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let all = fill(&log, &[10; 20], 100);
    let segments = segment_files(&log).len();
    let total = log.size_bytes();

    // Nothing configured: nothing deleted.
    assert_eq!(log.apply_retention(i64::MAX).unwrap().segments_deleted, 0);

    log.set_config(LogConfig {
        retention_bytes: Some(total / 2),
        ..small_config()
    });
    let out = log.apply_retention(0).unwrap();
    assert!(out.segments_deleted > 0);
    assert!(log.size_bytes() <= total / 2 + 4096 && log.size_bytes() >= total / 2);
    assert_eq!(out.log_start_offset, log.log_start_offset());
    assert_eq!(segment_files(&log).len(), segments - out.segments_deleted);
    let remaining = read_all(&log);
    assert_eq!(remaining[..], all[all.len() - remaining.len()..]);
    assert_eq!(log.read(0, 100, i64::MAX).unwrap_err().error_code(), 1);

    // Time: timestamps are 1000 + offset; everything is older than now - 1 ms.
    log.set_config(LogConfig {
        retention_ms: Some(1),
        ..small_config()
    });
    let out = log.apply_retention(1_000_000).unwrap();
    assert_eq!(segment_files(&log).len(), 1, "active segment stays");
    assert!(out.segments_deleted > 0);
    let start = log.log_start_offset();
    assert_eq!(start, out.log_start_offset);

    crash(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.log_end_offset(), all.len() as i64);
}

#[test]
fn retention_by_time_spares_young_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            retention_ms: Some(500),
            ..small_config()
        },
    );
    fill(&log, &[10; 20], 100);
    // Timestamps run 1000..1200: at now = 1400 only segments ending before 900 go.
    let out = log.apply_retention(1400).unwrap();
    assert_eq!(out.segments_deleted, 0);
    let out = log.apply_retention(1650).unwrap();
    assert!(out.segments_deleted > 0);
    assert!(log.max_timestamp().unwrap().timestamp == 1199);
    // Every remaining record is newer than what was deleted.
    assert!(read_all(&log)
        .iter()
        .all(|r| r.record.timestamp >= 1000 + out.log_start_offset));
}

#[test]
fn delete_records_before_moves_start_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let all = fill(&log, &[10; 20], 100);
    log.flush().unwrap();
    assert_eq!(log.delete_records_before(5).unwrap(), 5);
    assert_eq!(log.delete_records_before(3).unwrap(), 5, "never moves back");
    assert_eq!(log.read(4, 10, i64::MAX).unwrap_err().error_code(), 1);
    // A read at the start returns the batch holding it.
    let hs = headers(&log.read(5, 10, i64::MAX).unwrap().records);
    assert_eq!(hs[0].base_offset, 0);
    let before = segment_files(&log).len();
    assert_eq!(log.delete_records_before(150).unwrap(), 150);
    assert!(segment_files(&log).len() < before);
    assert_eq!(read_all(&log)[0].offset, 150);
    assert!(log.delete_records_before(all.len() as i64 + 1).is_err());
    assert_eq!(log.offset_for_timestamp(0).unwrap().unwrap().offset, 150);
    crash(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), 150);
    assert_eq!(read_all(&log)[..], all[150..]);
}

#[test]
fn timestamps_and_max_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.max_timestamp(), None);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    let all = fill(&log, &[3; 50], 80);
    assert_eq!(
        log.max_timestamp(),
        Some(TimestampOffset {
            offset: all.len() as i64 - 1,
            timestamp: 1000 + all.len() as i64 - 1
        })
    );
    for r in &all {
        assert_eq!(
            log.offset_for_timestamp(r.record.timestamp).unwrap(),
            Some(TimestampOffset {
                offset: r.offset,
                timestamp: r.record.timestamp
            })
        );
    }
    assert_eq!(
        log.offset_for_timestamp(1000 + all.len() as i64).unwrap(),
        None
    );
    // Survives reopen (time indexes rebuilt / reloaded).
    log.close().unwrap();
    crash(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.offset_for_timestamp(1077).unwrap().unwrap().offset, 77);
}

#[test]
fn log_append_time_stamps_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        },
    );
    let info = log.append(&simple_batch(3, 10, 5), 777).unwrap();
    assert_eq!(info.log_append_time, Some(777));
    let r = log.read(0, 1000, i64::MAX).unwrap();
    let h = headers(&r.records)[0];
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 777);
    assert!(decode_records(&r.records)
        .iter()
        .all(|r| r.record.timestamp == 777));
    assert_eq!(
        log.offset_for_timestamp(700).unwrap(),
        Some(TimestampOffset {
            offset: 0,
            timestamp: 777
        })
    );
    assert_eq!(
        log.max_timestamp(),
        Some(TimestampOffset {
            offset: 0,
            timestamp: 777
        })
    );
}

#[test]
fn append_validation_maps_to_kafka_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            max_message_bytes: 500,
            ..LogConfig::default()
        },
    );
    let good = simple_batch(2, 10, 0);
    let code = |bytes: &[u8]| log.append(bytes, 0).unwrap_err().error_code();

    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    assert_eq!(code(&bad_crc), 2);
    assert_eq!(code(&good[..good.len() - 1]), 2, "truncated");
    let mut two = good.clone();
    two.extend_from_slice(&good[..30]);
    assert_eq!(code(&two), 2, "trailing partial batch");
    assert_eq!(code(&simple_batch(2, 600, 0)), 10);
    let mut magic = good.clone();
    magic[16] = 1;
    assert_eq!(code(&magic), 43);
    let mut count = good.clone();
    count[57..61].copy_from_slice(&5i32.to_be_bytes());
    let crc = batch::compute_crc(&count);
    count[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(code(&count), 87);
    assert_eq!(code(&[]), 87);
    let mut ts = batch_of(&[TestRecord::new(-5, b"k", b"v")]);
    ts[35..43].copy_from_slice(&(-5i64).to_be_bytes());
    let crc = batch::compute_crc(&ts);
    ts[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(code(&ts), 32);
    // Nothing was written by any of these; a good append still starts at 0.
    assert_eq!(log.log_end_offset(), 0);
    // Several batches in one append get consecutive offsets.
    let mut both = good.clone();
    both.extend_from_slice(&good);
    let info = log.append(&both, 0).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 3));
    let hs = headers(&log.read(0, 1000, i64::MAX).unwrap().records);
    assert_eq!(
        hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![0, 2]
    );
}

#[test]
fn durable_offset_advances_and_wait_durable_resolves() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let mut rx = log.subscribe_durable();
    assert_eq!(*rx.borrow_and_update(), 0);
    let info = log.append(&simple_batch(10, 100, 0), 0).unwrap();
    rt.block_on(log.wait_durable(info.last_offset + 1)).unwrap();
    assert!(log.durable_offset() >= 10);
    assert!(log.durable_offset() <= log.log_end_offset());
    rt.block_on(rx.changed()).unwrap();
    assert_eq!(*rx.borrow(), 10);

    // Many appends without waiting: the flusher makes all of them durable (acks=1 path).
    for _ in 0..100 {
        log.append(&simple_batch(5, 10, 0), 0).unwrap();
    }
    rt.block_on(log.wait_durable(510)).unwrap();
    assert_eq!(log.durable_offset(), 510);
}

#[test]
fn flush_messages_forces_sync_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start();
    flusher.stop(); // no background flushing: only the forced one can advance the offset
    let log = Log::open(
        dir.path().join("t-0"),
        LogConfig {
            flush_messages: Some(1),
            ..LogConfig::default()
        },
        &flusher,
    )
    .unwrap();
    log.append(&simple_batch(3, 10, 0), 0).unwrap();
    assert_eq!(log.durable_offset(), 3);
}

#[test]
fn stopped_flusher_syncs_inline_and_close_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start();
    let log = Log::open(dir.path().join("t-0"), LogConfig::default(), &flusher).unwrap();
    flusher.stop();
    log.append(&simple_batch(3, 10, 0), 0).unwrap();
    assert_eq!(log.durable_offset(), 3);
    log.close().unwrap();
    assert!(log.append(&simple_batch(3, 10, 0), 0).is_err());
    assert!(dir.path().join("t-0").join(".clean-shutdown").exists());
    log.delete().unwrap();
    assert!(!dir.path().join("t-0").exists());
}

#[test]
fn concurrent_appends_get_disjoint_contiguous_offsets_while_readers_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        let info = log
                            .append(&simple_batch(1 + (i + t) % 5, 20, 0), 0)
                            .unwrap();
                        (info.base_offset, info.last_offset)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let reader = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for _ in 0..200 {
                let upper = log.durable_offset();
                if upper > 0 {
                    let r = log.read(0, 4096, upper).unwrap();
                    let hs = headers(&r.records);
                    assert!(hs.iter().all(|h| h.base_offset < upper));
                }
            }
        })
    };
    let mut ranges: Vec<(i64, i64)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    reader.join().unwrap();
    ranges.sort_unstable();
    assert_eq!(ranges[0].0, 0);
    for pair in ranges.windows(2) {
        assert_eq!(
            pair[0].1 + 1,
            pair[1].0,
            "offsets are contiguous and disjoint"
        );
    }
    let end = ranges.last().unwrap().1 + 1;
    assert_eq!(log.log_end_offset(), end);
    let all = read_all(&log);
    assert_eq!(all.len() as i64, end);
    assert!(all.iter().enumerate().all(|(i, r)| r.offset == i as i64));
}

#[test]
fn one_flusher_makes_many_logs_durable() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start();
    let logs: Vec<Arc<Log>> = (0..16)
        .map(|i| {
            Log::open(
                dir.path().join(format!("t-{i}")),
                LogConfig::default(),
                &flusher,
            )
            .unwrap()
        })
        .collect();
    for round in 0..5 {
        for log in &logs {
            log.append(&simple_batch(2, 10, 0), 0).unwrap();
        }
        rt.block_on(async {
            for log in &logs {
                log.wait_durable((round + 1) * 2).await.unwrap();
            }
        });
    }
    assert!(logs.iter().all(|l| l.durable_offset() == 10));
    // stop() flushes what is pending before the thread ends.
    for log in &logs {
        log.append(&simple_batch(1, 10, 0), 0).unwrap();
    }
    flusher.stop();
    assert!(logs.iter().all(|l| l.durable_offset() == 11));
}

/// Environment variable that turns the kill -9 test into its own child process.
const CRASH_CHILD_ENV: &str = "STRATA_STORAGE_CRASH_CHILD_DIR";

/// The child side of `kill_9_during_appends_keeps_every_durable_record`: appends batches of
/// varied sizes forever and prints each offset it saw become durable.
fn crash_child(dir: &str) -> ! {
    use std::io::Write;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let log = Log::open(dir, small_config(), &Flusher::start()).unwrap();
    let mut out = std::io::stdout();
    for i in 0usize.. {
        let info = log
            .append(&simple_batch(1 + i % 7, 20 + (i % 5) * 300, 0), 0)
            .unwrap();
        if i % 3 == 0 {
            rt.block_on(log.wait_durable(info.last_offset + 1)).unwrap();
            writeln!(out, "durable {}", info.last_offset + 1).unwrap();
            out.flush().unwrap();
        }
    }
    unreachable!("the parent kills this process")
}

#[test]
fn kill_9_during_appends_keeps_every_durable_record() {
    use std::io::BufRead;
    if let Ok(dir) = std::env::var(CRASH_CHILD_ENV) {
        crash_child(&dir);
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("crash-0");
    for round in 0..4 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "log::tests::kill_9_during_appends_keeps_every_durable_record",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, &dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acknowledged = 0i64;
        let mut seen = 0;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("durable ") {
                acknowledged = acknowledged.max(n.parse().unwrap());
                seen += 1;
                if seen == 30 + round * 20 {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL: no close, possibly mid-write
        child.wait().unwrap();
        assert!(seen > 0, "the child reported nothing");

        let log = Log::open(&dir, small_config(), &Flusher::start()).unwrap();
        assert!(
            log.log_end_offset() >= acknowledged,
            "round {round}: end {} lost acknowledged offset {acknowledged}",
            log.log_end_offset()
        );
        let all = read_all(&log);
        assert_eq!(all.len() as i64, log.log_end_offset());
        assert!(all.iter().enumerate().all(|(i, r)| r.offset == i as i64));
        crash(log);
    }
}

pub(crate) mod faults {
    //! Disk failures through the fault seam. Tests that install the process-wide injector
    //! take `SERIAL` so they never replace each other's.

    use std::io;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::*;
    use crate::fault::{set_injector, FileOp};

    pub(crate) static SERIAL: Mutex<()> = Mutex::new(());

    /// Fails every `op` on a path under `dir` with `errno`.
    fn fail(dir: PathBuf, ops: &'static [FileOp], errno: i32) {
        set_injector(Some(Arc::new(move |op, path: &Path| {
            (ops.contains(&op) && path.starts_with(&dir))
                .then(|| io::Error::from_raw_os_error(errno))
        })));
    }

    const EIO: i32 = 5;
    const ENOSPC: i32 = 28;

    /// Every file operation on a path under a directory, in order (nothing fails).
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(FileOp, PathBuf)>>>);

    impl Recorder {
        fn install(under: PathBuf) -> Recorder {
            let recorder = Recorder::default();
            let ops = Arc::clone(&recorder.0);
            set_injector(Some(Arc::new(move |op, path: &Path| {
                if path.starts_with(&under) {
                    lock(&ops).push((op, path.to_path_buf()));
                }
                None
            })));
            recorder
        }

        fn take(&self) -> Vec<(FileOp, PathBuf)> {
            std::mem::take(&mut *lock(&self.0))
        }
    }

    /// Whether `ops` has `(first, a)` and, after it, `(SyncDir, dir)`.
    fn dir_synced_after(ops: &[(FileOp, PathBuf)], first: FileOp, a: &Path, dir: &Path) -> bool {
        ops.iter()
            .position(|(op, p)| *op == first && p == a)
            .is_some_and(|i| {
                ops[i..]
                    .iter()
                    .any(|(op, p)| *op == FileOp::SyncDir && p == dir)
            })
    }

    /// POSIX makes a created, renamed or removed name durable only through an fsync of its
    /// directory. A partition directory created by `Log::open` (and the data directory
    /// above it), a segment created by a roll (before a flush returns), segments removed
    /// by retention, and every atomically replaced file are each followed by an fsync of
    /// the directory that holds them.
    #[test]
    fn created_renamed_and_removed_names_are_made_durable_by_a_directory_fsync() {
        let _serial = lock(&SERIAL);
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let pdir = data.join("topic-0");
        let recorder = Recorder::install(root.path().to_path_buf());
        let config = LogConfig {
            retention_bytes: Some(8192),
            ..small_config()
        };
        let log = Log::open(&pdir, config, &Flusher::start()).unwrap();
        let opened = recorder.take();
        let synced = |dir: &Path| {
            opened
                .iter()
                .any(|(op, p)| *op == FileOp::SyncDir && p == dir)
        };
        assert!(synced(root.path()) && synced(&data), "{opened:?}");
        let checkpoint = pdir.join(crate::checkpoint::CHECKPOINT_FILE);
        assert!(dir_synced_after(
            &opened,
            FileOp::Rename,
            &checkpoint,
            &pdir
        ));

        // A roll: the new segment's name is durable before the flush that covers it ends.
        let mut rolled = None;
        while rolled.is_none() {
            log.append(&simple_batch(5, 100, 0), 0).unwrap();
            let st = lock(&log.state);
            rolled = (st.segments.len() > 1).then(|| st.active().base_offset);
        }
        log.flush().unwrap();
        let ops = recorder.take();
        let new_log = crate::segment::segment_path(&pdir, rolled.unwrap(), "log");
        assert!(
            dir_synced_after(&ops, FileOp::Open, &new_log, &pdir),
            "{ops:?}"
        );

        // Retention removes the oldest segments, then fsyncs the directory.
        fill(&log, &[5; 40], 100);
        log.flush().unwrap();
        recorder.take();
        assert!(log.apply_retention(0).unwrap().segments_deleted > 0);
        let ops = recorder.take();
        let first = crate::segment::segment_path(&pdir, 0, "log");
        assert!(
            dir_synced_after(&ops, FileOp::Remove, &first, &pdir),
            "{ops:?}"
        );
        set_injector(None);
    }

    #[test]
    fn failed_fsync_takes_the_log_offline_and_fails_waiters() {
        let _serial = lock(&SERIAL);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig::default());
        let info = log.append(&simple_batch(3, 10, 0), 0).unwrap();
        rt.block_on(log.wait_durable(info.last_offset + 1)).unwrap();
        let durable = log.durable_offset();

        fail(log.dir().to_path_buf(), &[FileOp::Sync], EIO);
        let info = log.append(&simple_batch(3, 10, 0), 0).unwrap();
        let err = rt
            .block_on(log.wait_durable(info.last_offset + 1))
            .unwrap_err();
        assert_eq!(err.error_code(), 56);
        assert_eq!(
            log.durable_offset(),
            durable,
            "a failed fsync never advances the durable offset"
        );
        set_injector(None);

        // Even with the disk "healthy" again, the log stays offline: a later fsync could not
        // prove the earlier pages reached the disk.
        let err = log.append(&simple_batch(1, 10, 0), 0).unwrap_err();
        assert_eq!(err.error_code(), 56);
        assert!(
            matches!(err, AppendError::Storage(StorageError::Offline { .. })),
            "{err}"
        );
        assert!(log.flush().is_err());
        assert!(rt.block_on(log.wait_durable(info.last_offset + 1)).is_err());
        assert!(log.close().is_err());
        assert!(!log.dir().join(".clean-shutdown").exists());
        assert!(
            log.read(0, 1000, durable).is_ok(),
            "reads of durable data still work"
        );

        // Restart: recovery validates what is there; everything it keeps is durable.
        crash(log);
        let log = open(dir.path(), LogConfig::default());
        assert!(log.log_end_offset() >= durable);
        assert_eq!(log.durable_offset(), log.log_end_offset());
        assert_eq!(read_all(&log).len() as i64, log.log_end_offset());
    }

    /// Group commit, made deterministic with the fault seam: the first fdatasync is held
    /// while ten more appends arrive; exactly one more fdatasync then covers all ten.
    #[test]
    fn one_fdatasync_covers_every_append_waiting_for_it() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::mpsc;
        let _serial = lock(&SERIAL);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig::default());
        let log_file = log.dir().join("00000000000000000000.log");
        let syncs = Arc::new(AtomicUsize::new(0));
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let counter = Arc::clone(&syncs);
        set_injector(Some(Arc::new(move |op, path: &Path| {
            if op == FileOp::Sync && path == log_file && counter.fetch_add(1, Ordering::SeqCst) == 0
            {
                entered_tx.send(()).unwrap();
                release_rx.lock().unwrap().recv().unwrap();
            }
            None
        })));
        log.append(&simple_batch(1, 10, 0), 0).unwrap();
        entered_rx.recv().unwrap(); // the first fdatasync is now in progress
        for _ in 0..10 {
            log.append(&simple_batch(2, 10, 0), 0).unwrap();
        }
        release_tx.send(()).unwrap();
        rt.block_on(log.wait_durable(21)).unwrap();
        set_injector(None);
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            2,
            "one fdatasync for the ten waiting appends"
        );
        assert_eq!(log.durable_offset(), 21);
    }

    #[test]
    fn failed_write_is_cut_back_and_the_log_continues() {
        let _serial = lock(&SERIAL);
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig::default());
        let before = fill(&log, &[2, 3], 10);
        fail(log.dir().to_path_buf(), &[FileOp::Write], ENOSPC);
        let err = log.append(&simple_batch(4, 10, 0), 0).unwrap_err();
        set_injector(None);
        assert_eq!(err.error_code(), 56);
        assert!(
            err.to_string().contains("00000000000000000000.log"),
            "{err}"
        );
        assert_eq!(log.log_end_offset(), 5);
        let info = log.append(&simple_batch(4, 10, 0), 0).unwrap();
        assert_eq!(info.base_offset, 5);
        let all = read_all(&log);
        assert_eq!(all[..5], before[..]);
        assert_eq!(all.len(), 9);
    }

    /// Issue 14 item 6: a disk that fills during a roll refuses the sealed segment's index
    /// writes. Indexes are derived data: the log stays online, its data becomes durable,
    /// and the index files are written once space returns.
    #[test]
    fn index_writes_refused_at_a_roll_leave_the_log_online_and_are_retried() {
        let _serial = lock(&SERIAL);
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(
            dir.path().join("topic-0"),
            small_config(),
            &Flusher::manual(),
        )
        .unwrap();
        let mut expected = fill(&log, &[3; 6], 200);
        log.flush().unwrap();
        let sealed_before = lock(&log.state).segments.len();
        let watched = log.dir().to_path_buf();
        set_injector(Some(Arc::new(move |op, path: &Path| {
            let index = path
                .extension()
                .is_some_and(|e| e == "index" || e == "timeindex");
            (op == FileOp::Write && index && path.starts_with(&watched))
                .then(|| io::Error::from_raw_os_error(ENOSPC))
        })));
        expected.extend(fill(&log, &[3; 12], 200));
        assert!(
            lock(&log.state).segments.len() > sealed_before + 1,
            "the appends rolled"
        );
        let flushed = log.flush();
        set_injector(None);
        flushed.expect("refused index writes are not a failed sync");
        assert_eq!(log.durable_offset(), log.log_end_offset());
        expected.extend(fill(&log, &[2], 200));
        log.flush().unwrap();
        // Every sealed segment's index files now hold exactly its index.
        {
            let st = lock(&log.state);
            for seg in &st.segments[..st.segments.len() - 1] {
                assert!(seg.indexes_synced, "segment {}", seg.base_offset);
                let on_disk = std::fs::read(seg.offset_index.file.path()).unwrap();
                assert_eq!(
                    on_disk,
                    seg.offset_index.encode_all(),
                    "{}",
                    seg.base_offset
                );
                let on_disk = std::fs::read(seg.time_index.file.path()).unwrap();
                assert_eq!(on_disk, seg.time_index.encode_all(), "{}", seg.base_offset);
            }
        }
        log.close().unwrap();
        drop(log);
        let log = open(dir.path(), small_config());
        assert_eq!(read_all(&log), expected);
    }

    #[test]
    fn failed_write_that_cannot_be_cut_back_takes_the_log_offline() {
        let _serial = lock(&SERIAL);
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig::default());
        fill(&log, &[2], 10);
        fail(
            log.dir().to_path_buf(),
            &[FileOp::Write, FileOp::Truncate],
            EIO,
        );
        assert!(log.append(&simple_batch(4, 10, 0), 0).is_err());
        set_injector(None);
        let err = log.append(&simple_batch(4, 10, 0), 0).unwrap_err();
        assert!(
            matches!(err, AppendError::Storage(StorageError::Offline { .. })),
            "{err}"
        );
    }

    /// A read error in a sealed segment (a media error under an old segment) fails that
    /// read with KAFKA_STORAGE_ERROR naming the file, and every other segment is still
    /// served. (Sealed segments used to be read through an mmap, where the same error is a
    /// SIGBUS that kills the process, and the fault seam never saw the read.)
    #[test]
    fn failed_read_of_a_sealed_segment_fails_that_read_only() {
        let _serial = lock(&SERIAL);
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        let expected = fill(&log, &[5; 40], 50);
        assert!(segment_files(&log).len() > 3);
        log.flush().unwrap();
        let sealed = log.dir().join("00000000000000000000.log");
        let watched = sealed.clone();
        set_injector(Some(Arc::new(move |op, path: &Path| {
            (op == FileOp::Read && path == watched).then(|| io::Error::from_raw_os_error(EIO))
        })));
        let err = log.read(0, 1000, i64::MAX).unwrap_err();
        let end = log.log_end_offset();
        let tail = log.read(end - 1, 1000, i64::MAX);
        set_injector(None);
        assert_eq!(err.error_code(), 56, "{err}");
        assert!(
            err.to_string().contains("00000000000000000000.log"),
            "{err}"
        );
        assert!(!decode_records(&tail.unwrap().records).is_empty());
        assert_eq!(read_all(&log), expected);
        assert!(
            log.append(&simple_batch(1, 10, 0), 0).is_ok(),
            "still online"
        );
    }

    #[test]
    fn failed_read_is_a_storage_error_naming_the_file() {
        let _serial = lock(&SERIAL);
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig::default());
        fill(&log, &[2], 10);
        fail(log.dir().to_path_buf(), &[FileOp::Read], EIO);
        let err = log.read(0, 1000, i64::MAX).unwrap_err();
        set_injector(None);
        assert_eq!(err.error_code(), 56);
        assert!(
            err.to_string()
                .contains("topic-0/00000000000000000000.log at byte 0"),
            "{err}"
        );
        assert!(log.read(0, 1000, i64::MAX).is_ok());
    }
}

/// Descriptors this process holds on files under `dir`.
pub(crate) fn fds_under(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// Sealed segments are read with pread through the process-wide descriptor cache: reading
/// every offset of a log with many more segments than the cache holds (before and after a
/// reopen) leaves at most the cache's bound open, plus the active segment's own.
#[test]
fn reading_many_sealed_segments_holds_a_bounded_number_of_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 700,
        ..small_config()
    };
    let mut log = open(dir.path(), config.clone());
    let expected = fill(&log, &[3; 200], 60);
    let segments = segment_files(&log).len();
    assert!(
        segments > 2 * crate::MAX_CACHED_DESCRIPTORS,
        "{segments} segments"
    );
    for reopen in [false, true] {
        if reopen {
            log.close().unwrap();
            crash(log);
            log = open(dir.path(), config.clone());
        }
        log.flush().unwrap();
        for offset in 0..log.log_end_offset() {
            let records = decode_records(&log.read(offset, 200, i64::MAX).unwrap().records);
            assert_eq!(records[0], expected[records[0].offset as usize]);
            let open_now = fds_under(log.dir());
            assert!(
                open_now <= crate::MAX_CACHED_DESCRIPTORS + 1,
                "{open_now} descriptors open under the partition (reopened: {reopen})"
            );
        }
        assert_eq!(read_all(&log), expected);
    }
}
