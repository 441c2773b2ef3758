//! Transactions through the public `Log` API: markers, the last stable offset, the aborted
//! index and their persistence.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::log::tests::{crash, open, small_config};
use crate::testing::{headers, producer_batch, simple_batch, txn_batch};
use crate::{Log, LogConfig};

fn marker(producer_id: i64, producer_epoch: i16, commit: bool) -> TxnMarker {
    TxnMarker {
        producer_id,
        producer_epoch,
        coordinator_epoch: 0,
        commit,
    }
}

fn aborted(producer_id: i64, first_offset: i64, last_offset: i64) -> AbortedTxn {
    AbortedTxn {
        producer_id,
        first_offset,
        last_offset,
    }
}

fn open_txn(producer_id: i64, producer_epoch: i16, first_offset: i64) -> OpenTxn {
    OpenTxn {
        producer_id,
        producer_epoch,
        first_offset,
    }
}

fn pdir(dir: &Path) -> PathBuf {
    dir.join("topic-0")
}

/// Everything transactional the log exposes, to compare before/after a reopen.
fn txn_view(log: &Log) -> (Vec<OpenTxn>, Vec<AbortedTxn>, i64, i64) {
    (
        log.open_transactions(),
        log.aborted_transactions(0, i64::MAX),
        log.last_stable_offset(),
        log.log_end_offset(),
    )
}

/// The `.txnindex` files of the partition, with their bytes.
fn txn_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(pdir(dir))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_str().unwrap().ends_with(".txnindex"))
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn commit_and_abort_end_transactions_and_move_the_lso() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    log.append(&simple_batch(2, 8, 0), 0).unwrap(); // 0..=1
    log.flush().unwrap();
    assert_eq!(log.last_stable_offset(), 2);
    // Producer 7 opens a transaction at 2; producer 8 at 5.
    let a = log.append(&txn_batch(3, 7, 0, 0, 10), 0).unwrap();
    assert_eq!((a.base_offset, a.last_offset), (2, 4));
    log.append(&txn_batch(2, 8, 0, 0, 10), 0).unwrap(); // 5..=6
    log.append(&txn_batch(1, 7, 0, 3, 10), 0).unwrap(); // 7
    log.flush().unwrap();
    assert_eq!(log.durable_offset(), 8);
    assert_eq!(log.last_stable_offset(), 2);
    assert_eq!(
        log.open_transactions(),
        vec![open_txn(7, 0, 2), open_txn(8, 0, 5)]
    );
    // A plain batch from a producer inside a transaction is INVALID_TXN_STATE; a plain
    // idempotent batch from another producer is fine.
    let plain = log.append(&producer_batch(1, 7, 0, 4, 10), 0).unwrap_err();
    assert_eq!(plain.error_code(), 48, "{plain}");
    log.append(&producer_batch(1, 9, 0, 0, 10), 0).unwrap(); // 8
                                                             // Committing 7 releases the LSO up to 8's transaction.
    let c = log.append_marker(&marker(7, 0, true), 1_000).unwrap();
    assert_eq!((c.base_offset, c.last_offset), (9, 9));
    assert_eq!(log.last_stable_offset(), 5);
    assert_eq!(log.open_transactions(), vec![open_txn(8, 0, 5)]);
    // The marker is a control batch with the commit type, in the log like any batch.
    let read = log.read(9, 1000, i64::MAX).unwrap().records;
    let h = headers(&read)[0];
    assert!(h.is_control() && h.is_transactional());
    assert_eq!(crate::batch::control_record_type(&read), Some(1));
    // Aborting 8 records it and releases the LSO to the durable offset.
    let ab = log.append_marker(&marker(8, 0, false), 1_000).unwrap();
    assert_eq!(ab.base_offset, 10);
    assert!(log.last_stable_offset() <= log.durable_offset());
    log.flush().unwrap();
    assert_eq!(log.last_stable_offset(), 11);
    assert_eq!(log.open_transactions(), vec![]);
    assert_eq!(log.aborted_transactions(0, 100), vec![aborted(8, 5, 10)]);
    // Producer 7 is out of its transaction: plain batches are accepted again.
    log.append(&producer_batch(1, 7, 0, 4, 10), 0).unwrap();
    // A second marker (coordinator retry) is appended and changes nothing.
    let again = log.append_marker(&marker(8, 0, false), 1_000).unwrap();
    assert_eq!(again.base_offset, 12);
    assert_eq!(log.aborted_transactions(0, 100), vec![aborted(8, 5, 10)]);
    // A marker for a producer the partition never saw is appended too.
    log.append_marker(&marker(99, 3, true), 1_000).unwrap();
    assert_eq!(log.producer_state(99).unwrap().epoch, 3);
}

#[test]
fn lso_is_held_by_the_oldest_open_txn_and_capped_by_the_durable_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    log.append(&txn_batch(1, 1, 0, 0, 10), 0).unwrap(); // 0
    log.append(&simple_batch(4, 8, 0), 0).unwrap(); // 1..=4
                                                    // Nothing durable yet: the LSO is the durable offset (0 <= 0).
    assert_eq!(log.last_stable_offset(), log.durable_offset().min(0));
    log.flush().unwrap();
    assert_eq!(log.last_stable_offset(), 0);
    log.append_marker(&marker(1, 0, true), 0).unwrap(); // 5
                                                        // The marker is not durable yet: LSO = durable offset = 5.
    assert_eq!(log.last_stable_offset(), log.durable_offset());
    log.flush().unwrap();
    assert_eq!(log.last_stable_offset(), 6);
}

#[test]
fn stale_epochs_are_refused_and_a_higher_marker_epoch_fences_the_producer() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    log.append(&txn_batch(2, 5, 3, 0, 10), 0).unwrap(); // 0..=1, epoch 3
    let stale = log.append_marker(&marker(5, 2, false), 0).unwrap_err();
    assert_eq!(stale.error_code(), 47, "{stale}");
    assert_eq!(log.log_end_offset(), 2, "a refused marker writes nothing");
    // The coordinator bumps the epoch and aborts (InitProducerId fencing the old one).
    log.append_marker(&marker(5, 4, false), 0).unwrap(); // 2
    assert_eq!(log.aborted_transactions(0, 10), vec![aborted(5, 0, 2)]);
    let old = log.append(&txn_batch(1, 5, 3, 2, 10), 0).unwrap_err();
    assert_eq!(old.error_code(), 47, "{old}");
    // The new epoch's sequences start at 0.
    let gap = log.append(&txn_batch(1, 5, 4, 2, 10), 0).unwrap_err();
    assert_eq!(gap.error_code(), 45, "{gap}");
    let ok = log.append(&txn_batch(1, 5, 4, 0, 10), 0).unwrap();
    assert_eq!(ok.base_offset, 3);
    assert_eq!(log.open_transactions(), vec![open_txn(5, 4, 3)]);
    // A marker from an older coordinator epoch is fenced.
    log.append_marker(
        &TxnMarker {
            coordinator_epoch: 6,
            ..marker(5, 4, true)
        },
        0,
    )
    .unwrap();
    let fenced = log
        .append_marker(
            &TxnMarker {
                coordinator_epoch: 5,
                ..marker(5, 4, true)
            },
            0,
        )
        .unwrap_err();
    assert_eq!(fenced.error_code(), 52, "{fenced}");
}

#[test]
fn transactional_batches_need_a_producer_id_and_clients_cannot_write_markers() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let no_pid = crate::testing::with_transactional(simple_batch(1, 8, 0), -1, -1, -1);
    assert_eq!(log.append(&no_pid, 0).unwrap_err().error_code(), 87);
    let control = crate::batch::control_batch(3, 0, 0, true, 0);
    assert_eq!(log.append(&control, 0).unwrap_err().error_code(), 87);
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn a_torn_marker_is_cut_and_its_transaction_is_open_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    log.append(&txn_batch(2, 4, 0, 0, 10), 0).unwrap(); // 0..=1
    log.append(&simple_batch(1, 8, 0), 0).unwrap(); // 2
    log.append_marker(&marker(4, 0, false), 0).unwrap(); // 3
    log.flush().unwrap();
    assert_eq!(txn_files(dir.path()).len(), 1);
    let log_file = pdir(dir.path()).join(format!("{:020}.log", 0));
    crash(log);
    // The crash tore the marker: recovery cuts it; the index entry past the log end is
    // dropped with it and the transaction is open again (the coordinator re-sends).
    let len = std::fs::metadata(&log_file).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&log_file)
        .unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.open_transactions(), vec![open_txn(4, 0, 0)]);
    assert_eq!(log.aborted_transactions(0, 100), vec![]);
    assert_eq!(log.last_stable_offset(), 0);
    assert!(txn_files(dir.path()).is_empty());
    log.append_marker(&marker(4, 0, false), 0).unwrap();
    assert_eq!(log.aborted_transactions(0, 100), vec![aborted(4, 0, 3)]);
}

#[test]
fn a_request_mixing_transactional_and_plain_batches_of_one_producer_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let mut request = txn_batch(2, 6, 0, 0, 10);
    request.extend(producer_batch(1, 6, 0, 2, 10));
    assert_eq!(log.append(&request, 0).unwrap_err().error_code(), 48);
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.open_transactions(), vec![]);
    // Two transactional batches in one request: one transaction from the first.
    let mut request = txn_batch(2, 6, 0, 0, 10);
    request.extend(txn_batch(1, 6, 0, 2, 10));
    request.extend(producer_batch(1, 7, 0, 0, 10));
    log.append(&request, 0).unwrap();
    assert_eq!(log.open_transactions(), vec![open_txn(6, 0, 0)]);
    // LogAppendTime markers carry the append time, and replay keeps the state.
    let mut config = small_config();
    config.timestamp_type = crate::TimestampType::LogAppendTime;
    log.set_config(config.clone());
    let m = log.append_marker(&marker(6, 0, false), 77_000).unwrap();
    assert_eq!(m.log_append_time, Some(77_000));
    assert_eq!(log.producer_state(6).unwrap().last_timestamp, 77_000);
    log.flush().unwrap();
    let before = txn_view(&log);
    crash(log);
    let log = open(dir.path(), config);
    assert_eq!(txn_view(&log), before);
    assert_eq!(log.producer_state(6).unwrap().last_timestamp, 77_000);
}

/// Writes transactions over several segments: committed and aborted ones, interleaved
/// producers, one transaction spanning a roll, and two left open.
fn mixed_history(log: &Log) {
    let mut seq = [0i32; 6];
    let mut data = |log: &Log, pid: i64, n: usize| {
        let s = &mut seq[pid as usize];
        log.append(&txn_batch(n, pid, 0, *s, 10), 0).unwrap();
        *s += n as i32;
    };
    for round in 0..12 {
        data(log, 1, 3);
        data(log, 2, 2);
        log.append(&simple_batch(3, 64, 0), 0).unwrap();
        data(log, 1, 1);
        log.append_marker(&marker(1, 0, round % 3 != 0), 0).unwrap();
        if round % 2 == 1 {
            log.append_marker(&marker(2, 0, round % 4 == 1), 0).unwrap();
        }
    }
    // Producer 3's transaction spans several segment rolls, then aborts.
    data(log, 3, 2);
    for _ in 0..10 {
        log.append(&simple_batch(4, 100, 0), 0).unwrap();
    }
    log.append_marker(&marker(3, 0, false), 0).unwrap();
    // Left open: 4 and 5 (5 spans a roll).
    data(log, 4, 2);
    data(log, 5, 1);
    for _ in 0..10 {
        log.append(&simple_batch(4, 100, 0), 0).unwrap();
    }
    data(log, 4, 1);
}

#[test]
fn roll_in_the_middle_of_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    log.append(&txn_batch(1, 1, 0, 0, 10), 0).unwrap(); // 0
    for _ in 0..20 {
        log.append(&simple_batch(4, 100, 0), 0).unwrap();
    }
    let marker_at = log
        .append_marker(&marker(1, 0, false), 0)
        .unwrap()
        .base_offset;
    let files = txn_files(dir.path());
    let logs = std::fs::read_dir(pdir(dir.path()))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(logs >= 2, "the transaction spans segments");
    log.flush().unwrap();
    // Its index entry lives in the segment holding the marker, not the first one.
    let files_after = txn_files(dir.path());
    assert!(files.is_empty() || files == files_after);
    assert_eq!(files_after.len(), 1);
    let (name, bytes) = &files_after[0];
    assert_ne!(name, &format!("{:020}.txnindex", 0));
    assert_eq!(bytes.len(), TXN_ENTRY_LEN);
    let entry = AbortedTxnEntry::decode(bytes).unwrap();
    assert_eq!(
        (entry.producer_id, entry.first_offset, entry.last_offset),
        (1, 0, marker_at)
    );
    assert_eq!(entry.last_stable_offset, marker_at + 1);
    // Queries starting in a later segment still see it; ones ending before it do too.
    assert_eq!(
        log.aborted_transactions(marker_at, marker_at + 1),
        vec![aborted(1, 0, marker_at)]
    );
    assert_eq!(
        log.aborted_transactions(0, 1),
        vec![aborted(1, 0, marker_at)]
    );
    assert_eq!(log.aborted_transactions(marker_at + 1, i64::MAX), vec![]);
}

#[test]
fn reopen_after_clean_close_and_crash_rebuilds_identically() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    mixed_history(&log);
    log.flush().unwrap();
    let before = txn_view(&log);
    let files = txn_files(dir.path());
    assert_eq!(before.0.len(), 2, "two open transactions: {:?}", before.0);
    assert!(before.1.len() >= 5, "{:?}", before.1);
    assert!(files.len() >= 2, "aborts in several segments");

    // Clean close: nothing replayed, everything loaded.
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(txn_view(&log), before);
    assert_eq!(txn_files(dir.path()), files);

    // Crash (no close): the active segment is replayed.
    crash(log);
    let log = open(dir.path(), small_config());
    assert_eq!(txn_view(&log), before);
    assert_eq!(txn_files(dir.path()), files);

    // Crash with every producer snapshot gone: the whole log is replayed.
    crash(log);
    for e in std::fs::read_dir(pdir(dir.path())).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "snapshot") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let log = open(dir.path(), small_config());
    assert_eq!(txn_view(&log), before);
    assert_eq!(txn_files(dir.path()), files);
    // The rebuilt state keeps working: the open transactions end.
    log.append_marker(&marker(4, 0, false), 0).unwrap();
    log.append_marker(&marker(5, 0, true), 0).unwrap();
    log.flush().unwrap();
    assert_eq!(log.open_transactions(), vec![]);
    assert_eq!(log.last_stable_offset(), log.log_end_offset());
}

#[test]
fn damaged_or_lost_txn_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    mixed_history(&log);
    log.flush().unwrap();
    let before = txn_view(&log);
    let files = txn_files(dir.path());
    log.close().unwrap();
    let path = |name: &str| pdir(dir.path()).join(name);

    // A torn entry in a sealed segment's index (after a clean close, so nothing would be
    // replayed otherwise): detected, rebuilt from an older snapshot or the whole log.
    for (name, bytes) in &files {
        std::fs::write(path(name), &bytes[..bytes.len() - 5]).unwrap();
        let log = open(dir.path(), small_config());
        assert_eq!(txn_view(&log), before, "torn {name}");
        assert_eq!(txn_files(dir.path()), files, "torn {name}");
        log.close().unwrap();
    }
    // An unknown version.
    let (name, bytes) = &files[0];
    let mut bad = bytes.clone();
    bad[1] = 9;
    std::fs::write(path(name), &bad).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(txn_view(&log), before);
    assert_eq!(txn_files(dir.path()), files);

    // Unclean stop that lost the active segment's index (never synced, or torn).
    log.append(&txn_batch(2, 0, 0, 0, 10), 0).unwrap();
    log.append_marker(&marker(0, 0, false), 0).unwrap();
    log.flush().unwrap();
    let before = txn_view(&log);
    let files = txn_files(dir.path());
    let (last_name, last_bytes) = files.last().unwrap().clone();
    assert_eq!(
        AbortedTxnEntry::decode(&last_bytes[last_bytes.len() - TXN_ENTRY_LEN..])
            .unwrap()
            .producer_id,
        0
    );
    crash(log);
    std::fs::remove_file(path(&last_name)).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(txn_view(&log), before);
    assert_eq!(txn_files(dir.path()), files);
    // (That open replayed the active segment, so it wrote a snapshot at the log end: a torn
    // index is now detected by its size and rebuilt from the older roll snapshot.)
    crash(log);
    std::fs::write(path(&last_name), &last_bytes[..last_bytes.len() - 5]).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(txn_view(&log), before);
    assert_eq!(txn_files(dir.path()), files);
}

#[test]
fn an_abort_marker_in_the_replayed_range_is_indexed_even_if_its_entry_never_reached_disk() {
    // The crash window: marker appended (and its data written), index entry not yet
    // synced. Simulated by crashing before any sync: the flusher is stopped first.
    let dir = tempfile::tempdir().unwrap();
    let flusher = crate::Flusher::manual();
    let log = Log::open(pdir(dir.path()), small_config(), &flusher).unwrap();
    log.append(&txn_batch(2, 3, 0, 0, 10), 0).unwrap();
    log.append_marker(&marker(3, 0, false), 0).unwrap();
    assert!(txn_files(dir.path()).is_empty(), "not synced yet");
    let before = txn_view(&log);
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.aborted_transactions(0, 10), vec![aborted(3, 0, 2)]);
    assert_eq!(txn_view(&log).1, before.1);
    assert_eq!(txn_files(dir.path()).len(), 1);
}

#[test]
fn retention_and_delete_records_remove_txn_indexes_with_their_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    mixed_history(&log);
    log.flush().unwrap();
    let files = txn_files(dir.path());
    assert!(files.len() >= 2);
    let all = log.aborted_transactions(0, i64::MAX);
    // DeleteRecords past the first indexed segment.
    let first_base: i64 = files[0].0[..20].parse().unwrap();
    let second_base: i64 = files[1].0[..20].parse().unwrap();
    log.delete_records_before(second_base).unwrap();
    let left = txn_files(dir.path());
    assert!(!left.iter().any(|(n, _)| n == &files[0].0), "{left:?}");
    assert!(left.iter().any(|(n, _)| n == &files[1].0));
    assert!(first_base < second_base);
    let remaining = log.aborted_transactions(0, i64::MAX);
    assert!(remaining.len() < all.len());
    assert!(remaining.iter().all(|a| a.last_offset >= second_base));
    // Retention by size down to the active segment: every sealed segment's index goes.
    let mut config = small_config();
    config.retention_bytes = Some(1);
    log.set_config(config.clone());
    log.apply_retention(0).unwrap();
    let active: i64 = {
        let names: Vec<String> = std::fs::read_dir(pdir(dir.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".log"))
            .collect();
        assert_eq!(names.len(), 1);
        names[0][..20].parse().unwrap()
    };
    assert!(txn_files(dir.path())
        .iter()
        .all(|(n, _)| n[..20].parse::<i64>().unwrap() >= active));
    // Open transactions whose start was deleted still hold the LSO (at the log start).
    assert_eq!(log.open_transactions().len(), 2);
    assert_eq!(log.last_stable_offset(), log.log_start_offset());
    crash(log);
    let log = open(dir.path(), config);
    assert_eq!(log.open_transactions().len(), 2);
    assert_eq!(log.last_stable_offset(), log.log_start_offset());
}

#[test]
fn producers_with_open_transactions_never_expire() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    log.append(&txn_batch(1, 1, 0, 0, 1_000), 0).unwrap();
    log.append(&producer_batch(1, 2, 0, 0, 1_000), 0).unwrap();
    assert_eq!(log.expire_producers(1_000_000, 10), 1);
    assert!(log.producer_state(1).is_some());
    assert!(log.producer_state(2).is_none());
    log.append_marker(&marker(1, 0, true), 2_000).unwrap();
    // The marker's timestamp counts as the producer's last activity.
    assert_eq!(log.expire_producers(2_005, 10), 0);
    assert_eq!(log.expire_producers(2_010, 10), 1);
}

#[test]
fn a_failed_txn_index_fsync_keeps_the_marker_from_becoming_durable() {
    use crate::fault::{set_injector, FileOp};
    let _serial = crate::flusher::lock(&crate::log::tests::faults::SERIAL);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    log.append(&txn_batch(2, 3, 0, 0, 10), 0).unwrap();
    log.flush().unwrap();
    let durable = log.durable_offset();
    let txn_dir = log.dir().to_path_buf();
    set_injector(Some(Arc::new(move |op, path: &Path| {
        (op == FileOp::Sync
            && path.starts_with(&txn_dir)
            && path.extension().is_some_and(|x| x == "txnindex"))
        .then(|| std::io::Error::from_raw_os_error(5))
    })));
    let info = log.append_marker(&marker(3, 0, false), 0).unwrap();
    let waited = rt.block_on(log.wait_durable(info.last_offset + 1));
    set_injector(None);
    assert_eq!(waited.unwrap_err().error_code(), 56);
    assert_eq!(log.durable_offset(), durable);
    assert!(log.last_stable_offset() <= durable);
    // Restart: the marker's bytes are there, so recovery re-derives its entry.
    crash(log);
    let log = open(dir.path(), small_config());
    // (The write reached the page cache, which this process's "crash" does not lose.)
    assert_eq!(log.log_end_offset(), info.last_offset + 1);
    assert_eq!(log.aborted_transactions(0, 10), vec![aborted(3, 0, 2)]);
    assert_eq!(log.open_transactions(), vec![]);
    assert_eq!(txn_files(dir.path()).len(), 1);
}

/// Brute force: every aborted transaction of a random history against a plain list.
mod brute_force {
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Step {
        Data { pid: i64, n: usize, txn: bool },
        Plain(usize),
        Marker { pid: i64, commit: bool },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0i64..4, 1usize..4, any::<bool>()).prop_map(|(pid, n, txn)| Step::Data {
                pid,
                n,
                txn
            }),
            (1usize..6).prop_map(Step::Plain),
            (0i64..4, any::<bool>()).prop_map(|(pid, commit)| Step::Marker { pid, commit }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn aborted_transactions_match_brute_force(steps in prop::collection::vec(step(), 1..80)) {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig { segment_bytes: 1024, ..small_config() };
            let log: Arc<Log> = open(dir.path(), config.clone());
            let mut seq = [0i32; 4];
            let mut open_at: [Option<i64>; 4] = [None; 4];
            let mut expected: Vec<AbortedTxn> = Vec::new();
            for s in &steps {
                match *s {
                    Step::Data { pid, n, txn } => {
                        let i = pid as usize;
                        let b = if txn {
                            txn_batch(n, pid, 0, seq[i], 10)
                        } else {
                            producer_batch(n, pid, 0, seq[i], 10)
                        };
                        match log.append(&b, 0) {
                            Ok(info) => {
                                prop_assert!(txn || open_at[i].is_none());
                                if txn && open_at[i].is_none() {
                                    open_at[i] = Some(info.base_offset);
                                }
                                seq[i] += n as i32;
                            }
                            Err(e) => {
                                prop_assert_eq!(e.error_code(), 48);
                                prop_assert!(!txn && open_at[i].is_some());
                            }
                        }
                    }
                    Step::Plain(n) => {
                        log.append(&simple_batch(n, 40, 0), 0).unwrap();
                    }
                    Step::Marker { pid, commit } => {
                        let at = log.append_marker(&marker(pid, 0, commit), 0).unwrap().base_offset;
                        if let Some(first) = open_at[pid as usize].take() {
                            if !commit {
                                expected.push(aborted(pid, first, at));
                            }
                        }
                    }
                }
            }
            log.flush().unwrap();
            let end = log.log_end_offset();
            let mut want_open: Vec<OpenTxn> = open_at
                .iter()
                .enumerate()
                .filter_map(|(pid, at)| at.map(|a| open_txn(pid as i64, 0, a)))
                .collect();
            want_open.sort_by_key(|o| o.first_offset);
            prop_assert_eq!(log.open_transactions(), want_open.clone());
            let lso = want_open.first().map_or(end, |o| o.first_offset);
            prop_assert_eq!(log.last_stable_offset(), lso);
            let check = |log: &Log| -> Result<(), TestCaseError> {
                for from in 0..=end {
                    for upper in from..=end + 1 {
                        let mut want: Vec<AbortedTxn> = expected
                            .iter()
                            .filter(|a| a.last_offset >= from && a.first_offset < upper)
                            .copied()
                            .collect();
                        want.sort_by_key(|a| (a.first_offset, a.last_offset));
                        prop_assert_eq!(log.aborted_transactions(from, upper), want, "[{}, {})", from, upper);
                    }
                }
                Ok(())
            };
            check(&log)?;
            crash(log);
            let log = open(dir.path(), config);
            check(&log)?;
            prop_assert_eq!(log.open_transactions(), want_open);
        }
    }
}

#[test]
fn waiting_for_a_marker_of_a_log_deleted_before_its_sync_ends_with_an_error() {
    // The coordinator waits `wait_durable` for every marker it wrote; a topic deleted
    // between the marker's append and its group commit must not leave that wait (and with
    // it the transactional id, held busy) pending forever.
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let dir = tempfile::tempdir().unwrap();
    let flusher = crate::Flusher::manual();
    let log = Log::open(pdir(dir.path()), small_config(), &flusher).unwrap();
    log.append(&txn_batch(2, 3, 0, 0, 10), 0).unwrap();
    let info = log.append_marker(&marker(3, 0, true), 0).unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let mut wait = std::pin::pin!(log.wait_durable(info.last_offset + 1));
    assert!(wait.as_mut().poll(&mut cx).is_pending(), "not synced yet");
    log.delete().unwrap();
    match wait.as_mut().poll(&mut cx) {
        Poll::Ready(Err(StorageError::Closed { .. })) => {}
        other => panic!("expected Closed once the log is deleted, got {other:?}"),
    }
    // A wait that starts after the deletion ends at once too.
    let mut late = std::pin::pin!(log.wait_durable(info.last_offset + 1));
    assert!(matches!(
        late.as_mut().poll(&mut cx),
        Poll::Ready(Err(StorageError::Closed { .. }))
    ));
}

/// Issue 14 item 10: a sync already running when its partition is deleted writes the
/// `.txnindex` (and index digests, and the checkpoint) by path. Deletion waits for it, so
/// nothing it writes can land in a partition created again under the same name, where a
/// clean restart would trust a stale aborted-transaction index.
#[test]
fn a_sync_running_at_deletion_cannot_write_into_the_partition_created_again() {
    use crate::fault::{set_injector, FileOp};
    use std::sync::mpsc;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    let _serial = crate::flusher::lock(&crate::log::tests::faults::SERIAL);
    let dir = tempfile::tempdir().unwrap();
    let flusher = crate::Flusher::manual();
    let log = Log::open(pdir(dir.path()), small_config(), &flusher).unwrap();
    log.append(&txn_batch(2, 3, 0, 0, 10), 0).unwrap();
    log.flush().unwrap();
    log.append_marker(&marker(3, 0, false), 0).unwrap(); // an abort: a .txnindex entry
                                                         // Hold the sync at the moment it opens the .txnindex by path.
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let entered_tx = Mutex::new(Some(entered_tx));
    let watched = pdir(dir.path());
    set_injector(Some(Arc::new(move |op, path: &Path| {
        let txn_index =
            path.starts_with(&watched) && path.extension().is_some_and(|e| e == "txnindex");
        if op == FileOp::Open && txn_index {
            if let Some(tx) = entered_tx.lock().unwrap().take() {
                tx.send(()).unwrap();
                release_rx.lock().unwrap().recv().unwrap();
            }
        }
        None
    })));
    let syncing = {
        let log = log.clone();
        std::thread::spawn(move || log.flush())
    };
    entered_rx.recv().unwrap();
    let deleting = {
        let log = log.clone();
        std::thread::spawn(move || log.delete())
    };
    // A deletion that does not wait for the sync returns at once; give it the chance.
    let until = Instant::now() + Duration::from_millis(300);
    while !deleting.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let recreate = || Log::open(pdir(dir.path()), small_config(), &crate::Flusher::manual());
    let recreated_early = deleting.is_finished().then(|| recreate().unwrap());
    release_tx.send(()).unwrap();
    let _ = syncing.join().unwrap();
    deleting.join().unwrap().unwrap();
    set_injector(None);
    // The successor takes records and shuts down cleanly; a clean restart trusts its files.
    let successor = recreated_early.unwrap_or_else(|| recreate().unwrap());
    successor.append(&simple_batch(3, 10, 0), 0).unwrap();
    successor.close().unwrap();
    drop(successor);
    let again = recreate().unwrap();
    assert_eq!(again.log_end_offset(), 3);
    assert!(
        again.aborted_transactions(0, i64::MAX).is_empty(),
        "the deleted partition's aborted transaction leaked into its successor: {:?}",
        again.aborted_transactions(0, i64::MAX)
    );
}

/// Issue 14 item 6: a `.txnindex` write refused by a full disk holds the durable offset
/// below the abort marker (read_committed consumers must not pass it before its entry is
/// on disk) without taking the log offline; a later sync writes it.
#[test]
fn a_txn_index_write_refused_by_a_full_disk_is_retried_not_fatal() {
    use crate::fault::{set_injector, FileOp};
    let _serial = crate::flusher::lock(&crate::log::tests::faults::SERIAL);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(pdir(dir.path()), small_config(), &crate::Flusher::manual()).unwrap();
    log.append(&txn_batch(2, 3, 0, 0, 10), 0).unwrap();
    log.flush().unwrap();
    let before = log.durable_offset();
    log.append_marker(&marker(3, 0, false), 0).unwrap();
    let watched = pdir(dir.path());
    set_injector(Some(Arc::new(move |op, path: &Path| {
        let txn_index =
            path.starts_with(&watched) && path.extension().is_some_and(|e| e == "txnindex");
        (op == FileOp::Write && txn_index).then(|| std::io::Error::from_raw_os_error(28))
    })));
    let refused = log.flush().unwrap_err();
    assert!(refused.is_no_space(), "{refused}");
    assert_eq!(log.durable_offset(), before, "not past the marker");
    set_injector(None);
    log.flush().unwrap();
    assert_eq!(log.durable_offset(), log.log_end_offset());
    let info = log.append(&simple_batch(1, 10, 0), 0).unwrap();
    assert_eq!(info.base_offset, 3, "still online");
    crash(log);
    let log = Log::open(pdir(dir.path()), small_config(), &crate::Flusher::manual()).unwrap();
    assert_eq!(
        log.aborted_transactions(0, i64::MAX),
        vec![aborted(3, 0, 2)]
    );
}
