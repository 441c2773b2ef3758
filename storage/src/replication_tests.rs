//! The log operations replication calls: leader epochs stamped into batches, the
//! leader-epoch cache and its checkpoint file, the follower's append, and `truncate_to`
//! (including a crash at every step of it).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::tests::{crash, faults::SERIAL, open, read_all, small_config};
use super::*;
use crate::batch;
use crate::error::AppendError;
use crate::fault::{set_injector, FileOp};
use crate::leader_epoch::{EpochEntry, LEADER_EPOCH_CHECKPOINT};
use crate::testing::{headers, producer_batch, simple_batch, txn_batch, DecodedRecord};
use crate::txn::TxnMarker;

fn entries(pairs: &[(i32, i64)]) -> Vec<EpochEntry> {
    pairs
        .iter()
        .map(|&(epoch, start_offset)| EpochEntry {
            epoch,
            start_offset,
        })
        .collect()
}

fn checkpoint_text(log: &Log) -> Option<String> {
    std::fs::read_to_string(log.dir().join(LEADER_EPOCH_CHECKPOINT)).ok()
}

/// Every batch header of the log, in offset order.
fn all_headers(log: &Log) -> Vec<batch::BatchHeader> {
    raw_batches(log, log.log_start_offset())
        .iter()
        .flat_map(|b| headers(b))
        .collect()
}

/// The log's bytes from `from` to its end, as a fetcher gets them (one read per segment).
fn raw_batches(log: &Log, from: i64) -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.log_end_offset() {
        let r = log.read(offset, 1 << 20, i64::MAX).unwrap().records;
        offset = headers(&r).last().unwrap().next_offset();
        out.push(r);
    }
    out
}

fn marker(producer_id: i64, commit: bool) -> TxnMarker {
    TxnMarker {
        producer_id,
        producer_epoch: 0,
        coordinator_epoch: 0,
        commit,
    }
}

#[test]
fn appends_stamp_the_leader_epoch_and_the_cache_records_where_each_starts() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.leader_epoch(), 0, "a single node appends at epoch 0");
    assert_eq!(checkpoint_text(&log), None, "written with the first batch");
    for _ in 0..10 {
        log.append(&simple_batch(3, 100, 0), 0).unwrap();
    }
    assert_eq!(checkpoint_text(&log).unwrap(), "0\n1\n0 0\n");
    log.set_leader_epoch(3).unwrap();
    log.set_leader_epoch(3).unwrap();
    assert_eq!(checkpoint_text(&log).unwrap(), "0\n2\n0 0\n3 30\n");
    for _ in 0..10 {
        log.append(&simple_batch(3, 100, 0), 0).unwrap();
    }
    log.append_marker(&marker(5, true), 0).unwrap();
    let hs = all_headers(&log);
    assert_eq!(hs.len(), 21);
    assert!(hs[..10].iter().all(|h| h.partition_leader_epoch == 0));
    assert!(hs[10..].iter().all(|h| h.partition_leader_epoch == 3));
    let end = log.log_end_offset();
    assert_eq!(log.end_offset_for_epoch(0), (0, 30));
    assert_eq!(log.end_offset_for_epoch(3), (3, end));
    assert_eq!(log.end_offset_for_epoch(2), (0, 30));
    assert_eq!(log.end_offset_for_epoch(4), (-1, -1));
    assert_eq!(log.end_offset_for_epoch(-1), (-1, -1));
    let fenced = log.set_leader_epoch(2).unwrap_err();
    assert_eq!(fenced.error_code(), 74, "{fenced}");
    let want = entries(&[(0, 0), (3, 30)]);
    assert_eq!(log.epoch_entries(), want);

    // Reopened (clean, then after a crash) from the file; then rebuilt from the batches
    // when the file is missing or damaged.
    log.close().unwrap();
    crash(log);
    for damage in [None, Some(None), Some(Some("0\n2\n0 0\n"))] {
        let path = dir.path().join("topic-0").join(LEADER_EPOCH_CHECKPOINT);
        match damage {
            None => {}
            Some(None) => std::fs::remove_file(&path).unwrap(),
            Some(Some(text)) => std::fs::write(&path, text).unwrap(),
        }
        let log = open(dir.path(), small_config());
        assert_eq!(log.epoch_entries(), want, "{damage:?}");
        assert_eq!(log.leader_epoch(), 3);
        assert_eq!(checkpoint_text(&log).unwrap(), "0\n2\n0 0\n3 30\n");
        crash(log);
    }
}

/// A partition written by a broker that kept the client's `partitionLeaderEpoch` (-1, as
/// Strata's previous versions did) opens with its batches unchanged and an empty cache
/// (written out as an empty checkpoint); the first append starts epoch 0 at the log end.
#[test]
fn a_log_without_epochs_opens_unchanged_and_starts_epoch_zero_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("topic-0");
    std::fs::create_dir_all(&pdir).unwrap();
    // Legacy writer: batches with epoch -1 at offsets 0, 4, 8.
    let mut bytes = Vec::new();
    for i in 0..3i64 {
        let mut b = simple_batch(4, 10, 0);
        b[..8].copy_from_slice(&(i * 4).to_be_bytes());
        bytes.extend_from_slice(&b);
    }
    std::fs::write(pdir.join("00000000000000000000.log"), &bytes).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), 12);
    assert!(log.epoch_entries().is_empty());
    assert_eq!(
        checkpoint_text(&log).as_deref(),
        Some("0\n0\n"),
        "written once, so the next open need not read the batches"
    );
    assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
    assert_eq!(
        &log.read(0, 1 << 20, i64::MAX).unwrap().records[..],
        &bytes[..],
        "stored batches are not rewritten"
    );
    log.append(&simple_batch(2, 10, 0), 0).unwrap();
    assert_eq!(log.epoch_entries(), entries(&[(0, 12)]));
    assert_eq!(log.end_offset_for_epoch(0), (0, 14));
}

#[test]
fn a_follower_append_keeps_the_leaders_offsets_epochs_and_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let leader = Log::open(
        dir.path().join("leader-0"),
        small_config(),
        &Flusher::start(),
    )
    .unwrap();
    leader.set_leader_epoch(1).unwrap();
    leader.append(&producer_batch(5, 7, 0, 0, 0), 0).unwrap();
    leader.append(&txn_batch(3, 9, 0, 0, 0), 0).unwrap();
    for i in 0..20 {
        leader
            .append(&producer_batch(2, 7, 0, 5 + 2 * i, 0), 0)
            .unwrap();
    }
    leader.append_marker(&marker(9, false), 0).unwrap();
    leader.set_leader_epoch(4).unwrap();
    for _ in 0..20 {
        leader.append(&simple_batch(4, 60, 0), 0).unwrap();
    }
    leader.append(&txn_batch(2, 11, 0, 0, 0), 0).unwrap();

    let follower = Log::open(
        dir.path().join("follower-0"),
        small_config(),
        &Flusher::start(),
    )
    .unwrap();
    let chunks = raw_batches(&leader, 0);
    assert!(chunks.len() > 2, "several segments");
    // Out of place: an offset past the follower's end, a gap inside a chunk, a bad CRC.
    let err = follower.append_as_follower(&chunks[1], 0).unwrap_err();
    assert!(
        matches!(err, AppendError::UnexpectedAppendOffset { .. }),
        "{err}"
    );
    let mut gap = chunks[0].to_vec();
    let second = headers(&gap)[0].size();
    gap[second..second + 8].copy_from_slice(&1000i64.to_be_bytes());
    let err = follower.append_as_follower(&gap, 0).unwrap_err();
    assert!(
        matches!(err, AppendError::UnexpectedAppendOffset { .. }),
        "{err}"
    );
    let mut bad = chunks[0].to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        follower
            .append_as_follower(&bad, 0)
            .unwrap_err()
            .error_code(),
        2
    );
    assert_eq!(follower.log_end_offset(), 0, "nothing was appended");

    for chunk in &chunks {
        follower.append_as_follower(chunk, 0).unwrap();
    }
    let end = leader.log_end_offset();
    assert_eq!(follower.log_end_offset(), end);
    assert_eq!(raw_batches(&follower, 0), chunks, "byte for byte");
    assert_eq!(follower.epoch_entries(), leader.epoch_entries());
    assert_eq!(
        follower.end_offset_for_epoch(1),
        leader.end_offset_for_epoch(1)
    );
    assert_eq!(
        follower.aborted_transactions(0, end),
        leader.aborted_transactions(0, end)
    );
    assert_eq!(follower.aborted_transactions(0, end).len(), 1);
    assert_eq!(follower.open_transactions(), leader.open_transactions());
    assert_eq!(follower.producer_state(7), leader.producer_state(7));
    follower.flush().unwrap();
    assert_eq!(follower.last_stable_offset(), follower.log_end_offset() - 2);
    // A follower stamps nothing: it keeps epoch 0 for its own appends until told.
    assert_eq!(follower.leader_epoch(), 0);
    follower.flush().unwrap();
    crash(follower);
    let follower = Log::open(
        dir.path().join("follower-0"),
        small_config(),
        &Flusher::start(),
    )
    .unwrap();
    assert_eq!(raw_batches(&follower, 0), chunks);
    assert_eq!(follower.epoch_entries(), leader.epoch_entries());
    assert_eq!(follower.leader_epoch(), 4);
    assert_eq!(
        follower.aborted_transactions(0, end),
        leader.aborted_transactions(0, end)
    );
}

/// One step of the workload the truncation tests write.
#[derive(Clone, Copy, Debug)]
enum Op {
    Plain(usize),
    Idempotent(usize),
    Txn(usize),
    Abort,
    Commit,
    Epoch(i32),
}

/// The workload: plain, idempotent (producer 7) and transactional (producer 9) batches
/// over several segments, two aborted transactions and a committed one, three epochs.
fn workload() -> Vec<Op> {
    use Op::*;
    let mut ops = vec![Plain(3), Idempotent(4), Txn(2)];
    for i in 0..12 {
        ops.push(if i % 3 == 0 { Plain(5) } else { Idempotent(3) });
    }
    ops.extend([Abort, Epoch(2), Txn(3), Idempotent(2), Commit, Txn(1)]);
    for _ in 0..10 {
        ops.push(Idempotent(2));
    }
    ops.extend([Abort, Epoch(5), Plain(6), Txn(4), Idempotent(3), Plain(2)]);
    ops
}

/// Applies `ops` to `log` while it ends below `until`, carrying the producers' sequences.
fn apply(log: &Log, ops: &[Op], until: i64) {
    let (mut seq7, mut seq9) = (0, 0);
    for op in ops {
        if log.log_end_offset() >= until {
            return;
        }
        match *op {
            Op::Plain(n) => drop(log.append(&simple_batch(n, 40, 0), 0).unwrap()),
            Op::Idempotent(n) => {
                log.append(&producer_batch(n, 7, 0, seq7, 0), 0).unwrap();
                seq7 += n as i32;
            }
            Op::Txn(n) => {
                log.append(&txn_batch(n, 9, 0, seq9, 0), 0).unwrap();
                seq9 += n as i32;
            }
            Op::Abort | Op::Commit => {
                let commit = matches!(op, Op::Commit);
                log.append_marker(&marker(9, commit), 0).unwrap();
            }
            Op::Epoch(e) => log.set_leader_epoch(e).unwrap(),
        }
    }
}

/// What a log holds, for comparing a truncated log with one that never had the suffix.
#[derive(Clone, Debug, PartialEq)]
struct Contents {
    end: i64,
    records: Vec<DecodedRecord>,
    headers: Vec<batch::BatchHeader>,
    aborted: Vec<crate::AbortedTxn>,
    open: Vec<crate::OpenTxn>,
    producer_7: Option<crate::producer_state::ProducerEntry>,
    producer_9: Option<crate::producer_state::ProducerEntry>,
    last_stable: i64,
}

fn contents(log: &Log) -> Contents {
    log.flush().unwrap();
    let end = log.log_end_offset();
    Contents {
        end,
        records: read_all(log),
        headers: all_headers(log),
        aborted: log.aborted_transactions(0, end),
        open: log.open_transactions(),
        producer_7: log.producer_state(7),
        producer_9: log.producer_state(9),
        last_stable: log.last_stable_offset(),
    }
}

/// The log `ops` write up to `new_end`, and the leader-epoch entries below it.
fn reference(dir: &Path, ops: &[Op], new_end: i64) -> (Contents, Vec<EpochEntry>) {
    let log = Log::open(dir.join("reference-0"), small_config(), &Flusher::start()).unwrap();
    apply(&log, ops, new_end);
    assert_eq!(
        log.log_end_offset(),
        new_end,
        "truncation ends on a batch boundary"
    );
    let mut epochs = log.epoch_entries();
    epochs.retain(|e| e.start_offset < new_end);
    let c = contents(&log);
    log.delete().unwrap();
    (c, epochs)
}

/// `truncate_to` at every offset of a workload leaves exactly the log that never had the
/// removed batches (records, headers with their epochs, producer state, aborted and open
/// transactions, last stable offset) and a leader-epoch cache without the epochs that
/// started past it; the same after a crash and reopen; and appending the rest of the
/// workload again gives the original log back.
#[test]
fn truncate_to_rewinds_the_log_producers_transactions_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let ops = workload();
    let full = Log::open(dir.path().join("full-0"), small_config(), &Flusher::start()).unwrap();
    apply(&full, &ops, i64::MAX);
    let end = full.log_end_offset();
    let full_contents = contents(&full);
    let full_epochs = full.epoch_entries();
    full.delete().unwrap();
    let segments_of = |log: &Log| {
        std::fs::read_dir(log.dir())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".log")
            })
            .count()
    };
    for offset in (0..end).step_by(7).chain([end - 1, 1]) {
        let pdir = dir.path().join(format!("t{offset}-0"));
        let log = Log::open(&pdir, small_config(), &Flusher::start()).unwrap();
        apply(&log, &ops, i64::MAX);
        let segments_before = segments_of(&log);
        let new_end = log.truncate_to(offset).unwrap();
        assert!(new_end <= offset, "{new_end} {offset}");
        let (want, want_epochs) = reference(dir.path(), &ops, new_end);
        assert_eq!(contents(&log), want, "truncated to {offset}");
        assert_eq!(log.epoch_entries(), want_epochs);
        assert!(log.durable_offset() <= new_end);
        assert!(segments_of(&log) <= segments_before);
        crash(log);
        let log = Log::open(&pdir, small_config(), &Flusher::start()).unwrap();
        assert_eq!(
            contents(&log),
            want,
            "reopened after truncating to {offset}"
        );
        assert_eq!(log.epoch_entries(), want_epochs);
        // The rest of the workload again (epochs re-assigned as the ops say).
        apply_from(&log, &ops, new_end);
        assert_eq!(contents(&log), full_contents, "re-appended after {offset}");
        assert_eq!(log.epoch_entries(), full_epochs);
        log.delete().unwrap();
    }
}

/// Applies the whole of `ops` to a log that already holds their first `held` offsets:
/// earlier ops only advance the producers' sequences and set epochs.
fn apply_from(log: &Log, ops: &[Op], held: i64) {
    let (mut seq7, mut seq9) = (0, 0);
    let mut offset = 0i64;
    for op in ops {
        let skip = offset < held;
        match *op {
            Op::Plain(n) => {
                if !skip {
                    log.append(&simple_batch(n, 40, 0), 0).unwrap();
                }
                offset += n as i64;
            }
            Op::Idempotent(n) => {
                if !skip {
                    log.append(&producer_batch(n, 7, 0, seq7, 0), 0).unwrap();
                }
                seq7 += n as i32;
                offset += n as i64;
            }
            Op::Txn(n) => {
                if !skip {
                    log.append(&txn_batch(n, 9, 0, seq9, 0), 0).unwrap();
                }
                seq9 += n as i32;
                offset += n as i64;
            }
            Op::Abort | Op::Commit => {
                if !skip {
                    let commit = matches!(op, Op::Commit);
                    log.append_marker(&marker(9, commit), 0).unwrap();
                }
                offset += 1;
            }
            Op::Epoch(e) => {
                if !skip {
                    log.set_leader_epoch(e).unwrap();
                }
            }
        }
    }
}

#[test]
fn truncate_to_is_a_no_op_at_the_end_and_refuses_below_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    apply(&log, &workload(), i64::MAX);
    let end = log.log_end_offset();
    let before = contents(&log);
    assert_eq!(log.truncate_to(end).unwrap(), end);
    assert_eq!(log.truncate_to(end + 100).unwrap(), end);
    assert_eq!(contents(&log), before);
    log.delete_records_before(10).unwrap();
    assert_eq!(log.truncate_to(5).unwrap_err().error_code(), 1);
    assert_eq!(log.truncate_to(0).unwrap_err().error_code(), 1);
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn truncate_fully_and_start_at_empties_the_log_and_restarts_it_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    apply(&log, &workload(), i64::MAX);
    log.truncate_fully_and_start_at(500).unwrap();
    let check = |log: &Log| {
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.durable_offset()
            ),
            (500, 500, 500)
        );
        assert!(log.epoch_entries().is_empty());
        assert_eq!(log.producer_state(7), None);
        assert!(log.open_transactions().is_empty());
        assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    };
    check(&log);
    log.close().unwrap();
    crash(log);
    let log = open(dir.path(), small_config());
    check(&log);
    let names: Vec<String> = std::fs::read_dir(log.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('0'))
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with("00000000000000000500.")),
        "{names:?}"
    );
    // A follower continues from there.
    let info = log.append(&producer_batch(3, 7, 0, 40, 0), 0).unwrap();
    assert_eq!(info.base_offset, 500);
    assert_eq!(log.epoch_entries(), entries(&[(0, 500)]));
}

/// A crash at any point of a truncation (simulated by failing the k-th file operation it
/// makes, for every k) leaves a directory that reopens as either the log before the
/// truncation (the crash came before the truncation was recorded) or the truncated log —
/// never anything in between; a recorded truncation is always completed by the reopen.
#[test]
fn a_crash_at_any_step_of_truncate_to_reopens_on_one_side_of_it() {
    crash_at_every_step(|log| log.truncate_to(40).map(drop));
}

#[test]
fn a_crash_at_any_step_of_truncate_fully_reopens_on_one_side_of_it() {
    crash_at_every_step(|log| log.truncate_fully_and_start_at(1000));
}

fn crash_at_every_step(truncate: impl Fn(&Log) -> Result<(), StorageError>) {
    let _serial = crate::flusher::lock(&SERIAL);
    let dir = tempfile::tempdir().unwrap();
    let ops = workload();
    let full = Log::open(dir.path().join("full-0"), small_config(), &Flusher::start()).unwrap();
    apply(&full, &ops, i64::MAX);
    let full_contents = contents(&full);
    let full_epochs = full.epoch_entries();
    full.delete().unwrap();
    let truncated = Log::open(
        dir.path().join("truncated-0"),
        small_config(),
        &Flusher::start(),
    )
    .unwrap();
    apply(&truncated, &ops, i64::MAX);
    truncate(&truncated).unwrap();
    let (want, want_epochs) = (contents(&truncated), truncated.epoch_entries());
    truncated.delete().unwrap();
    let (mut k, mut completed, mut untouched) = (1, 0, 0);
    loop {
        let pdir = dir.path().join(format!("k{k}-0"));
        let log = Log::open(&pdir, small_config(), &Flusher::start()).unwrap();
        apply(&log, &ops, i64::MAX);
        log.flush().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let (watched, counter) = (pdir.clone(), Arc::clone(&count));
        set_injector(Some(Arc::new(move |op, path: &Path| {
            if op == FileOp::Read || !path.starts_with(&watched) {
                return None;
            }
            (counter.fetch_add(1, Ordering::SeqCst) + 1 == k)
                .then(|| io::Error::from_raw_os_error(5))
        })));
        let result = truncate(&log);
        set_injector(None);
        if result.is_ok() {
            assert!(
                count.load(Ordering::SeqCst) < k,
                "every step was failed once"
            );
            break;
        }
        crash(log);
        let recorded = pdir.join(crate::checkpoint::TRUNCATION_FILE).exists();
        let log = Log::open(&pdir, small_config(), &Flusher::start()).unwrap();
        assert!(!pdir.join(crate::checkpoint::TRUNCATION_FILE).exists());
        let now = (contents(&log), log.epoch_entries());
        // Recorded: the reopen completes it. Not recorded: it had not started, or it had
        // finished (only the record's removal was left to make durable).
        if now == (want.clone(), want_epochs.clone()) {
            completed += 1;
        } else {
            assert!(!recorded, "crash at step {k}: recorded but not completed");
            assert!(
                now == (full_contents.clone(), full_epochs.clone()),
                "crash at step {k}: {now:?}"
            );
            untouched += 1;
        }
        log.delete().unwrap();
        k += 1;
    }
    assert!(completed > 5 && untouched > 0, "{completed} {untouched}");
}

/// Readers running while the log is truncated and written again never see a torn batch
/// or bytes of two generations mixed: every batch they get passes its CRC and the batches
/// of one read are contiguous. (A read overlapping a truncation starts again.)
#[test]
fn reads_during_truncations_return_whole_consistent_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for _ in 0..60 {
        log.append(&simple_batch(4, 50, 0), 0).unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut offset = r;
                while !stop.load(Ordering::Relaxed) {
                    let end = log.log_end_offset().max(1);
                    offset = (offset * 7 + 3) % end;
                    let records = match log.read(offset, 3000, i64::MAX) {
                        Ok(r) => r.records,
                        Err(e) => {
                            // The log may have become shorter between the two calls.
                            assert_eq!(e.error_code(), 1, "{e}");
                            continue;
                        }
                    };
                    let mut at = 0;
                    let mut next = None;
                    while at < records.len() {
                        let h = batch::BatchHeader::parse(&records[at..]).unwrap();
                        let bytes = &records[at..at + h.size()];
                        assert_eq!(batch::compute_crc(bytes), h.crc, "a torn batch");
                        if let Some(n) = next {
                            assert_eq!(h.base_offset, n, "batches of one read are contiguous");
                        }
                        next = Some(h.next_offset());
                        at += h.size();
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for round in 0..60usize {
        let end = log.log_end_offset();
        log.truncate_to(end / 2 + (round as i64 % 5)).unwrap();
        while log.log_end_offset() < end {
            log.append(&simple_batch(1 + round % 4, 30 + round, 0), 0)
                .unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
}

/// `flush.messages` applies to a follower's appends: with 1, each is fsync'd before
/// `append_as_follower` returns.
#[test]
fn a_follower_append_honours_flush_messages() {
    let dir = tempfile::tempdir().unwrap();
    let leader = Log::open(
        dir.path().join("leader-0"),
        small_config(),
        &Flusher::start(),
    )
    .unwrap();
    let config = LogConfig {
        flush_messages: Some(1),
        ..small_config()
    };
    // A flusher that never syncs: only the append itself can make the data durable.
    let flusher = Flusher::manual();
    let follower = Log::open(dir.path().join("follower-0"), config, &flusher).unwrap();
    for _ in 0..3 {
        leader.append(&simple_batch(2, 10, 0), 0).unwrap();
        let end = follower.log_end_offset();
        let chunk = leader.read(end, 1 << 20, i64::MAX).unwrap().records;
        follower.append_as_follower(&chunk, 0).unwrap();
        assert_eq!(follower.durable_offset(), follower.log_end_offset());
    }
}
