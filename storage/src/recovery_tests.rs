//! Crash recovery: torn and corrupt tails at every byte, corrupt index files, unclean
//! reopen. Each case is compared with a reference log that never held the damaged batch.

use std::path::{Path, PathBuf};

use crate::log::tests::{fill, read_all};
use crate::testing::{batch_of, headers, TestRecord};
use crate::{Flusher, Log, LogConfig};

/// One way to damage a file's bytes.
type Damage = Box<dyn Fn(&mut Vec<u8>)>;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 650,
        segment_ms: None,
        index_interval_bytes: 100,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// The files of a partition directory except the checkpoint, as (name, bytes).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .filter(|(n, _)| n.ends_with(".log") || n.ends_with("index"))
        .collect();
    files.sort();
    files
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    /// A crashed log (never closed) whose last batch is `last`.
    crashed: PathBuf,
    /// The directory a clean log without the last batch has after reopening.
    reference: Vec<(String, Vec<u8>)>,
    reference_records: Vec<crate::testing::DecodedRecord>,
    /// File name of the last segment and the position and size of the last batch in it.
    last_segment: String,
    last_position: u64,
    last_size: u64,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let flusher = Flusher::start();
    let counts = [3, 1, 4, 1, 5, 2, 6, 2, 3, 5];
    let last = batch_of(&[
        TestRecord::new(5000, b"last", b"the last batch"),
        TestRecord::new(5001, b"", b"x"),
    ]);

    // Reference: everything but the last batch, reopened (indexes as recovery builds them).
    let reference_dir = tmp.path().join("reference-0");
    let log = Log::open(&reference_dir, config(), &flusher).unwrap();
    let reference_records = fill(&log, &counts, 40);
    log.close().unwrap();
    drop(log);
    let log = Log::open(&reference_dir, config(), &flusher).unwrap();
    log.close().unwrap();
    drop(log);
    let reference = snapshot(&reference_dir);

    // Crashed: the same plus the last batch, flushed but never closed.
    let crashed = tmp.path().join("crashed-0");
    let log = Log::open(&crashed, config(), &flusher).unwrap();
    fill(&log, &counts, 40);
    let end_before = log.log_end_offset();
    log.append(&last, 0).unwrap();
    log.flush().unwrap();
    let segments = snapshot(&crashed);
    let (last_segment, bytes) = segments
        .iter()
        .rev()
        .find(|(n, _)| n.ends_with(".log"))
        .unwrap()
        .clone();
    let hs = headers(&bytes);
    assert_eq!(
        hs.last().unwrap().base_offset,
        end_before,
        "last batch shares the segment"
    );
    let last_size = hs.last().unwrap().size() as u64;
    let last_position = bytes.len() as u64 - last_size;
    assert!(
        last_position > 0,
        "the last segment holds an earlier batch too"
    );
    flusher.stop();
    drop(log);
    Fixture {
        _tmp: tmp,
        crashed,
        reference,
        reference_records,
        last_segment,
        last_position,
        last_size,
    }
}

/// Reopens a damaged copy and checks it equals the reference: same records, same log end,
/// same segment and index files byte for byte.
fn assert_recovers_to_reference(f: &Fixture, damaged: &Path, what: &str) {
    let log = Log::open(damaged, config(), &Flusher::start()).unwrap();
    assert_eq!(
        log.log_end_offset(),
        f.reference_records.len() as i64,
        "{what}"
    );
    assert_eq!(read_all(&log), f.reference_records, "{what}");
    assert_eq!(log.durable_offset(), log.log_end_offset(), "{what}");
    log.close().unwrap();
    drop(log);
    assert_eq!(
        snapshot(damaged),
        f.reference,
        "{what}: files differ from the reference"
    );
}

#[test]
fn torn_last_batch_at_every_length_is_truncated() {
    let f = fixture();
    for cut in f.last_position..f.last_position + f.last_size {
        let dir = f.crashed.with_file_name(format!("cut-{cut}-0"));
        copy_dir(&f.crashed, &dir);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(&f.last_segment))
            .unwrap();
        file.set_len(cut).unwrap();
        drop(file);
        assert_recovers_to_reference(&f, &dir, &format!("cut at {cut}"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn flipped_byte_anywhere_in_last_batch_is_truncated() {
    let f = fixture();
    for i in 0..f.last_size {
        // partitionLeaderEpoch (bytes 12..16) is outside the CRC and means nothing to a
        // single node: a flip there leaves a valid batch.
        if (12..16).contains(&i) {
            continue;
        }
        let dir = f.crashed.with_file_name(format!("flip-{i}-0"));
        copy_dir(&f.crashed, &dir);
        let path = dir.join(&f.last_segment);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(f.last_position + i) as usize] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        assert_recovers_to_reference(&f, &dir, &format!("flip at byte {i} of the last batch"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn damaged_index_files_are_rebuilt() {
    let f = fixture();
    // Reference with the last batch: reopen the crashed log once, cleanly.
    let good = f.crashed.with_file_name("good-0");
    copy_dir(&f.crashed, &good);
    Log::open(&good, config(), &Flusher::start())
        .unwrap()
        .close()
        .unwrap();
    let expected = snapshot(&good);
    let indexes: Vec<String> = expected
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| n.ends_with("index"))
        .collect();
    assert!(indexes.iter().any(|n| n.ends_with(".timeindex")));
    for clean in [false, true] {
        for name in &indexes {
            let len = std::fs::read(good.join(name)).unwrap().len();
            assert!(len > 0 || name.ends_with(".timeindex"), "{name} is empty");
            let damages: Vec<Damage> = (0..len)
                .map(|i| Box::new(move |b: &mut Vec<u8>| b[i] ^= 0x10) as Damage)
                .chain((0..len).map(|n| Box::new(move |b: &mut Vec<u8>| b.truncate(n)) as Damage))
                .chain(std::iter::once(
                    Box::new(|b: &mut Vec<u8>| b.extend_from_slice(&[7; 13])) as Damage,
                ))
                .collect();
            for (k, damage) in damages.iter().enumerate() {
                let dir = good.with_file_name(format!("idx-{k}-0"));
                copy_dir(&good, &dir);
                if !clean {
                    std::fs::remove_file(dir.join(".clean-shutdown")).unwrap();
                }
                let path = dir.join(name);
                let mut bytes = std::fs::read(&path).unwrap();
                damage(&mut bytes);
                std::fs::write(&path, bytes).unwrap();
                let log = Log::open(&dir, config(), &Flusher::start()).unwrap();
                for r in 0..log.log_end_offset() {
                    let hs = headers(&log.read(r, 1, i64::MAX).unwrap().records);
                    assert!(hs[0].base_offset <= r && r <= hs[0].last_offset());
                }
                log.close().unwrap();
                drop(log);
                assert_eq!(
                    snapshot(&dir),
                    expected,
                    "{name} damage {k} (clean={clean})"
                );
                std::fs::remove_dir_all(&dir).unwrap();
            }
        }
    }
}

#[test]
fn missing_index_files_and_stray_files_are_handled() {
    let f = fixture();
    let dir = f.crashed.with_file_name("missing-0");
    copy_dir(&f.crashed, &dir);
    for (name, _) in snapshot(&dir) {
        if name.ends_with("index") {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
    }
    std::fs::write(dir.join("partition.checkpoint.tmp"), b"half").unwrap();
    std::fs::write(dir.join("00000000000000099999.index"), b"orphan").unwrap();
    let log = Log::open(&dir, config(), &Flusher::start()).unwrap();
    assert_eq!(log.log_end_offset(), f.reference_records.len() as i64 + 2);
    drop(log);
    assert!(!dir.join("partition.checkpoint.tmp").exists());
    assert!(!dir.join("00000000000000099999.index").exists());
}

#[test]
fn corrupt_middle_segment_is_served_up_to_the_damage_and_the_rest_kept_aside() {
    let f = fixture();
    let dir = f.crashed.with_file_name("middle-0");
    copy_dir(&f.crashed, &dir);
    let logs: Vec<String> = snapshot(&dir)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.ends_with(".log"))
        .collect();
    assert!(logs.len() >= 3);
    // Without a checkpoint nothing is trusted; corrupt the second segment's first batch CRC.
    std::fs::remove_file(dir.join("partition.checkpoint")).unwrap();
    let path = dir.join(&logs[1]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[30] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let later: Vec<(String, Vec<u8>)> = logs[2..]
        .iter()
        .map(|n| (n.clone(), std::fs::read(dir.join(n)).unwrap()))
        .collect();
    let log = Log::open(&dir, config(), &Flusher::start()).unwrap();
    let base: i64 = logs[1][..20].parse().unwrap();
    assert_eq!(log.log_end_offset(), base);
    assert_eq!(read_all(&log), f.reference_records[..base as usize]);
    drop(log);
    let left: Vec<String> = snapshot(&dir)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.ends_with(".log"))
        .collect();
    assert_eq!(left, logs[..2]);
    // Nothing destroyed: the cut bytes and every later segment are kept aside.
    let tail = std::fs::read(dir.join(format!("{}.tail-0.quarantined", logs[1]))).unwrap();
    assert_eq!(tail, bytes);
    for (name, content) in later {
        assert_eq!(
            std::fs::read(dir.join(format!("{name}.quarantined"))).unwrap(),
            content
        );
    }
    // And a reopen ignores them.
    let log = Log::open(&dir, config(), &Flusher::start()).unwrap();
    assert_eq!(log.log_end_offset(), base);
}

#[test]
fn trusted_sealed_segments_open_from_their_digest_without_reading_the_log() {
    let f = fixture();
    let good = f.crashed.with_file_name("digest-0");
    copy_dir(&f.crashed, &good);
    Log::open(&good, config(), &Flusher::start())
        .unwrap()
        .close()
        .unwrap();
    let end = f.reference_records.len() as i64 + 2;
    let first_log = good.join("00000000000000000000.log");
    let digest = good.join("00000000000000000000.indexcrc");
    assert!(digest.exists(), "sealed segments get a digest sidecar");
    // Break the second batch's magic byte inside the first (sealed, trusted) segment.
    let mut bytes = std::fs::read(&first_log).unwrap();
    let second = headers(&bytes[..]).first().map(|h| h.size()).unwrap();
    bytes[second + 16] = 7;
    std::fs::write(&first_log, &bytes).unwrap();

    // With a matching digest the open never reads that batch: nothing is truncated.
    let log = Log::open(&good, config(), &Flusher::start()).unwrap();
    assert_eq!(log.log_end_offset(), end);
    log.close().unwrap();
    drop(log);

    // Without the digest the header scan finds the bad batch and cuts the log there.
    std::fs::remove_file(&digest).unwrap();
    let log = Log::open(&good, config(), &Flusher::start()).unwrap();
    let first_batch = headers(&bytes[..second])[0];
    assert_eq!(log.log_end_offset(), first_batch.next_offset());
}
