//! [`Log`]: the log of one partition — a directory of segments with append, read by offset
//! and by timestamp, group-committed durability, retention and recovery.
//!
//! Concurrency: appends are serialized by `append_lock`; the segment list and counters live
//! in `state`, a mutex held for in-memory work only — never across a data write, fsync or
//! read (a roll creates its segment files under it, and a truncation, a follower's rare
//! operation, cuts the files and reloads producer state under it). `sync_lock` serializes
//! syncs of this log. Readers snapshot what they need under `state` and do their I/O
//! without it. The idempotent-producer state lives in `state` too (the append takes that
//! lock anyway) and changes only under `append_lock` (and by expiry). Lock order:
//! append_lock, sync_lock, checkpoint_lock, state.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::checkpoint::{self, Checkpoint, Truncation};
use crate::config::LogConfig;
use crate::error::StorageError;
use crate::file;
use crate::flusher::{lock, Flusher};
use crate::leader_epoch::{self, LeaderEpochCache};
use crate::producer_state::{self, ProducerEntry, ProducerStateTable, ReplaySegment};
use crate::recovery;
use crate::retention::{self, SegmentFacts};
use crate::segment::Segment;
use crate::txn::{self, AbortedTxn, OpenTxn, TxnIndex};

/// Minimum time between two recovery-point checkpoints triggered by segment rolls (Kafka's
/// `log.flush.offset.checkpoint.interval.ms` plays this role). A lagging recovery point is
/// always safe; it only means a longer scan after a crash.
const ROLL_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);

/// What an append did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// `Some(now_ms)` when the log's timestamp type is LogAppendTime.
    pub log_append_time: Option<i64>,
    pub log_start_offset: i64,
    /// The request was a retry of batches the log already holds (same producer id, epoch
    /// and sequences): nothing was appended; the offsets are the original ones.
    pub duplicate: bool,
}

/// Bytes for a fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole RecordBatch v2 batches, starting with the batch that contains the requested
    /// offset, all from one segment, at most `max_bytes` unless the first batch alone is
    /// larger (then exactly that batch). Empty when the offset is at the upper bound.
    /// Sealed segments: a slice of an mmap (no copy). Active segment: one pread copy.
    pub records: Bytes,
}

/// A record offset and its timestamp (ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: i64,
    pub timestamp: i64,
}

/// What `apply_retention` deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: i64,
}

struct LogState {
    config: LogConfig,
    /// Oldest first; never empty; the last one is the active segment.
    segments: Vec<Segment>,
    /// First offset readers may see; >= the first segment's base offset.
    log_start_offset: i64,
    /// Records appended but not yet covered by a sync, and the append time of the oldest.
    unflushed_messages: u64,
    oldest_unflushed_ms: Option<i64>,
    /// A segment file was created since the last directory fsync.
    dir_dirty: bool,
    /// A segment was sealed since the last checkpoint (write one when its data is durable,
    /// at most once per [`ROLL_CHECKPOINT_INTERVAL`]).
    checkpoint_due: bool,
    /// When the recovery point was last checkpointed.
    last_checkpoint: Instant,
    closed: bool,
    /// Idempotent-producer state, covering every batch appended so far.
    producers: ProducerStateTable,
    /// The epoch this log stamps into the batches it appends as leader (0 on a single
    /// node; see [`Log::set_leader_epoch`]).
    leader_epoch: i32,
    /// The leader-epoch cache; its file is rewritten before a batch starts a new epoch.
    epochs: LeaderEpochCache,
}

/// What an append that rolled writes once the state lock is released
/// ([`Log::write_before_append`]).
struct RollSnapshot {
    base_offset: i64,
    producers: ProducerStateTable,
    txn_unsynced: bool,
}

impl LogState {
    fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// The producer state to snapshot if the log rolled since it had `segments_before`
    /// segments: as of the new segment's base (the append is not in it yet). The snapshot
    /// stops recovery from replaying the sealed segments, so their aborted transactions
    /// must be on disk before it is written (`txn_unsynced`).
    fn roll_snapshot(&self, segments_before: usize) -> Option<RollSnapshot> {
        (self.segments.len() != segments_before).then(|| RollSnapshot {
            base_offset: self.active().base_offset,
            producers: self.producers.clone(),
            txn_unsynced: self.segments.iter().any(|s| !s.txn_index.is_synced()),
        })
    }

    /// Counts `records` just appended as unflushed; true when `flush.messages` or
    /// `flush.ms` says the log must be synced now rather than by the flusher's schedule.
    fn note_unflushed(&mut self, records: u64, now_ms: i64) -> bool {
        self.unflushed_messages += records;
        let oldest = *self.oldest_unflushed_ms.get_or_insert(now_ms);
        self.config
            .flush_messages
            .is_some_and(|n| self.unflushed_messages >= n)
            || self.config.flush_ms.is_some_and(|ms| {
                now_ms.saturating_sub(oldest) >= i64::try_from(ms).unwrap_or(i64::MAX)
            })
    }

    /// Installs a leader-epoch cache written out while the state lock was released; a log
    /// start moved meanwhile (retention, DeleteRecords) is applied to it again.
    fn replace_epochs(&mut self, epochs: LeaderEpochCache) {
        self.epochs = epochs;
        self.epochs.truncate_from_start(self.log_start_offset);
    }

    /// Index of the segment that would hold `offset` (the last with base <= offset).
    fn segment_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }
}

/// One partition's log. `Send + Sync`; shared as `Arc<Log>`. Appends are serialized inside.
pub struct Log {
    dir: PathBuf,
    flusher: Flusher,
    self_ref: Weak<Log>,
    append_lock: Mutex<()>,
    state: Mutex<LogState>,
    sync_lock: Mutex<()>,
    checkpoint_lock: Mutex<()>,
    /// The durable offset: every record below it is fsync'd. Only grows.
    durable: watch::Sender<i64>,
    /// Set once by the first failed write or fsync; the log refuses work from then on.
    offline: Mutex<Option<String>>,
    /// The log is queued on the flusher (cleared by the flusher before it syncs).
    scheduled: AtomicBool,
    /// Truncations started so far (raised under `state` before any file is cut): a reader
    /// that sees it change while it reads starts again (see `log/read.rs`).
    truncations: AtomicU64,
    /// Calls of [`Log::read`] so far (debug builds: tests count what a request reads).
    #[cfg(debug_assertions)]
    reads: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Opens or creates the partition directory `dir`, recovering after an unclean shutdown
    /// (scans past the recovery point, truncates a torn/corrupt tail, rebuilds indexes).
    /// Everything the opened log holds is fsync'd before this returns, so the durable offset
    /// starts at the log end offset.
    pub fn open(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        flusher: &Flusher,
    ) -> Result<Arc<Log>, StorageError> {
        let dir: PathBuf = dir.into();
        // A new partition directory is durable before anything is written in it.
        file::create_dir_durable(&dir)?;
        let mut clean = checkpoint::was_clean(&dir);
        // A damaged checkpoint (it is replaced atomically, so only the disk damages it) is
        // not trusted for anything: recover as after a crash with no recovery point (every
        // batch's CRC checked), starting at the oldest segment. Records removed by
        // DeleteRecords inside that segment may become visible again; none is lost.
        let saved = match checkpoint::read(&dir) {
            Err(StorageError::Corrupt { path, reason, .. }) => {
                tracing::warn!(file = %path.display(), %reason,
                    "ignoring damaged partition checkpoint: validating every batch; log start \
                     falls back to the oldest segment");
                clean = false;
                None
            }
            other => other?,
        };
        let recovery_point = saved.map_or(0, |c| c.recovery_point);
        let saved_start = saved.map_or(0, |c| c.log_start_offset);
        let recovery::LoadedSegments {
            mut segments,
            untrusted,
            txn_index_bases,
        } = recovery::load_segments(&dir, &config, clean, recovery_point, saved_start)?;
        for &i in &untrusted {
            segments[i].log.sync_data()?;
        }
        for seg in &mut segments {
            seg.synced_size = seg.size;
            seg.release_descriptor_if_done();
        }
        // A truncation a crash interrupted is completed before anything is derived from
        // the segments (see `log/truncate.rs`).
        let pending_truncation = checkpoint::pending_truncation(&dir)?;
        match pending_truncation {
            Some(Truncation::To(offset)) => {
                tracing::info!(dir = %dir.display(), offset, "completing an interrupted truncation");
                truncate::cut_segments(&dir, &mut segments, offset.max(saved_start))?;
            }
            Some(Truncation::Fully(offset)) => {
                tracing::info!(dir = %dir.display(), offset, "completing an interrupted full truncation");
                truncate::replace_all_segments(&dir, &mut segments, offset)?;
            }
            None => {}
        }
        file::sync_dir(&dir)?;
        let log_end = segments[segments.len() - 1].next_offset;
        // Aborted-transaction indexes: a damaged one is rebuilt by replaying from a snapshot
        // at or below its segment's base (see `txn`).
        let mut replay_from_at_most = i64::MAX;
        for seg in &mut segments {
            if txn_index_bases.binary_search(&seg.base_offset).is_err() {
                continue;
            }
            let (index, damaged) = TxnIndex::load(&dir, seg.base_offset, seg.next_offset)?;
            if damaged {
                tracing::warn!(dir = %dir.display(), base_offset = seg.base_offset,
                    "damaged transaction index; rebuilding it from the log");
                replay_from_at_most = replay_from_at_most.min(seg.base_offset);
            }
            seg.txn_index = index;
        }
        let (producers, replayed) = {
            let mut views: Vec<ReplaySegment<'_>> = segments
                .iter_mut()
                .map(|s| ReplaySegment {
                    next_offset: s.next_offset,
                    source: s.source(),
                    txn_index: &mut s.txn_index,
                })
                .collect();
            producer_state::load(&dir, &mut views, replay_from_at_most)?
        };
        let mut txn_files_changed = false;
        for seg in &mut segments {
            txn_files_changed |= seg.txn_index.reconcile()?;
        }
        if txn_files_changed {
            file::sync_dir(&dir)?;
        }
        if replayed > 0 {
            // Only saves the next recovery this replay.
            if let Err(error) = producer_state::write_snapshot(&dir, &producers, log_end) {
                tracing::warn!(dir = %dir.display(), %error, "cannot write a producer snapshot");
            }
        }
        let log_start = saved_start.max(segments[0].base_offset).min(log_end);
        let epochs = load_epochs(&dir, &segments, log_start, log_end)?;
        let leader_epoch = epochs.latest().map_or(0, |e| e.epoch);
        checkpoint::clear_clean(&dir)?;
        let written = checkpoint::write(
            &dir,
            &Checkpoint {
                log_start_offset: log_start,
                recovery_point: log_end,
            },
        );
        match written {
            Ok(()) => {}
            // A full disk: the previous checkpoint stays (an older recovery point only
            // lengthens the next recovery), reads are served, and appends fail until
            // space returns.
            Err(error) if error.is_no_space() => {
                tracing::warn!(dir = %dir.display(), %error,
                    "disk full: partition opened without a new checkpoint; writes fail until space returns");
            }
            Err(error) => return Err(error),
        }
        if pending_truncation.is_some() {
            // The stale producer snapshots `load` removed stay removed.
            file::sync_dir(&dir)?;
            checkpoint::end_truncation(&dir)?;
        }
        tracing::debug!(dir = %dir.display(), clean, log_start, log_end, segments = segments.len(),
                        producers = producers.len(), replayed, "opened log");
        let (durable, _) = watch::channel(log_end);
        Ok(Arc::new_cyclic(|me| Log {
            dir,
            flusher: flusher.clone(),
            self_ref: me.clone(),
            append_lock: Mutex::new(()),
            state: Mutex::new(LogState {
                config,
                segments,
                log_start_offset: log_start,
                unflushed_messages: 0,
                oldest_unflushed_ms: None,
                dir_dirty: false,
                checkpoint_due: false,
                last_checkpoint: Instant::now(),
                closed: false,
                producers,
                leader_epoch,
                epochs,
            }),
            sync_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
            durable,
            offline: Mutex::new(None),
            scheduled: AtomicBool::new(false),
            truncations: AtomicU64::new(0),
            #[cfg(debug_assertions)]
            reads: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> LogConfig {
        lock(&self.state).config.clone()
    }

    /// Replaces the config; roll, retention and flush rules use it from the next call on.
    pub fn set_config(&self, config: LogConfig) {
        lock(&self.state).config = config;
    }

    fn check_online(&self) -> Result<(), StorageError> {
        match &*lock(&self.offline) {
            Some(cause) => Err(StorageError::Offline {
                dir: self.dir.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Takes the log offline after a failed write or fsync: from now on appends fail and
    /// durability waiters get an error. Never undone: a failed fsync may have dropped dirty
    /// pages, so a later "successful" fsync would prove nothing.
    fn go_offline(&self, error: &StorageError) {
        let mut offline = lock(&self.offline);
        if offline.is_none() {
            tracing::error!(dir = %self.dir.display(), %error, "log is going offline");
            *offline = Some(error.to_string());
        }
        drop(offline);
        self.durable.send_modify(|_| {});
    }

    pub fn log_start_offset(&self) -> i64 {
        lock(&self.state).log_start_offset
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        lock(&self.state).log_end_offset()
    }

    /// Everything below this offset is fsync'd. Always at a batch boundary; <= log end.
    pub fn durable_offset(&self) -> i64 {
        *self.durable.borrow()
    }

    /// Resolves when `durable_offset() >= offset`; Err if an fsync failed (the log then
    /// refuses appends with a storage error; a failed fsync is never treated as success),
    /// and Err `Closed` if the log is closed or deleted before `offset` is durable (nothing
    /// will sync it any more: without this a waiter that holds the `Arc<Log>` of a deleted
    /// topic would wait forever).
    pub async fn wait_durable(&self, offset: i64) -> Result<(), StorageError> {
        let mut rx = self.durable.subscribe();
        loop {
            self.check_online()?;
            if *rx.borrow_and_update() >= offset {
                return Ok(());
            }
            if lock(&self.state).closed {
                return Err(StorageError::Closed {
                    dir: self.dir.clone(),
                });
            }
            if rx.changed().await.is_err() {
                return Err(StorageError::Closed {
                    dir: self.dir.clone(),
                });
            }
        }
    }

    /// Watch channel carrying the durable offset; fetch long-polls wake on it.
    pub fn subscribe_durable(&self) -> watch::Receiver<i64> {
        self.durable.subscribe()
    }

    /// Deletes whole sealed segments by `retention.ms` / `retention.bytes` (never the active
    /// one), oldest first, and moves the log start offset past them (persisted).
    pub fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        let (removed, log_start) = {
            let mut st = lock(&self.state);
            let facts: Vec<SegmentFacts> = st
                .segments
                .iter()
                .map(|s| SegmentFacts {
                    size: s.size,
                    newest_ms: if s.max_timestamp >= 0 {
                        Some(s.max_timestamp)
                    } else {
                        s.created_ms
                    },
                    next_offset: s.next_offset,
                })
                .collect();
            let n = retention::deletable_prefix(
                &facts,
                st.config.retention_ms,
                st.config.retention_bytes,
                st.log_start_offset,
                now_ms,
            );
            let removed: Vec<Segment> = st.segments.drain(..n).collect();
            st.log_start_offset = st.log_start_offset.max(st.segments[0].base_offset);
            let start = st.log_start_offset;
            // In memory only (Kafka's `truncateFromStart`): the next open cuts the file's
            // entries to the log start again.
            st.epochs.truncate_from_start(start);
            (removed, st.log_start_offset)
        };
        self.finish_removal(&removed)?;
        let outcome = RetentionOutcome {
            segments_deleted: removed.len(),
            bytes_deleted: removed.iter().map(|s| s.size).sum(),
            log_start_offset: log_start,
        };
        if outcome.segments_deleted > 0 {
            tracing::info!(dir = %self.dir.display(), segments = outcome.segments_deleted, bytes = outcome.bytes_deleted, log_start, "retention deleted segments");
        }
        Ok(outcome)
    }

    /// Checkpoints the new log start offset, then deletes the removed segments' files.
    /// Holds `checkpoint_lock` throughout, so a deletion of the log waits for it (see
    /// [`Log::delete`]).
    fn finish_removal(&self, removed: &[Segment]) -> Result<(), StorageError> {
        if removed.is_empty() {
            return Ok(());
        }
        let checkpoint = lock(&self.checkpoint_lock);
        if lock(&self.state).closed {
            return Ok(());
        }
        self.write_checkpoint_locked(&checkpoint)?;
        for seg in removed {
            seg.delete_files(&self.dir)?;
        }
        // The removals are durable: a crash cannot bring the segments back.
        file::sync_dir(&self.dir)
    }

    /// DeleteRecords: moves the log start offset to `offset` (<= the durable offset, which is
    /// the high watermark), deleting whole segments below it; persisted. Returns the new log
    /// start offset. An offset at or below the current start changes nothing.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let durable = self.durable_offset();
        let removed = {
            let mut st = lock(&self.state);
            if offset < 0 || offset > durable {
                return Err(StorageError::OffsetOutOfRange {
                    dir: self.dir.clone(),
                    offset,
                    log_start_offset: st.log_start_offset,
                    log_end_offset: st.log_end_offset(),
                });
            }
            if offset <= st.log_start_offset {
                return Ok(st.log_start_offset);
            }
            st.log_start_offset = offset;
            st.epochs.truncate_from_start(offset);
            let keep_from = st.segments[1..].partition_point(|s| s.base_offset <= offset);
            st.segments.drain(..keep_from).collect::<Vec<_>>()
        };
        if removed.is_empty() {
            self.write_checkpoint()?;
        } else {
            self.finish_removal(&removed)?;
        }
        Ok(offset)
    }

    /// Bytes of log in all segments.
    pub fn size_bytes(&self) -> u64 {
        lock(&self.state).segments.iter().map(|s| s.size).sum()
    }

    /// fsync everything appended so far (synchronous).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.sync()
    }

    /// Clean shutdown: flush, checkpoint, write the clean-shutdown marker. Appends fail
    /// afterwards; a second close does nothing.
    pub fn close(&self) -> Result<(), StorageError> {
        let _append = lock(&self.append_lock);
        if lock(&self.state).closed {
            return Ok(());
        }
        self.sync_with(true)?;
        self.write_checkpoint()?;
        let (producers, log_end) = {
            let st = lock(&self.state);
            (st.producers.clone(), st.log_end_offset())
        };
        producer_state::write_snapshot(&self.dir, &producers, log_end)?;
        checkpoint::mark_clean(&self.dir)?;
        lock(&self.state).closed = true;
        tracing::debug!(dir = %self.dir.display(), "closed log cleanly");
        Ok(())
    }

    /// The last stable offset: `min(durable_offset(), first offset of the oldest open
    /// transaction)`, the latter raised to the log start offset (Kafka's rule). Records at or
    /// above it are invisible to `read_committed` consumers. One lock and a map lookup.
    pub fn last_stable_offset(&self) -> i64 {
        let durable = self.durable_offset();
        let st = lock(&self.state);
        match st.producers.first_open_txn_offset() {
            Some(first) => first.max(st.log_start_offset).min(durable),
            None => durable,
        }
    }

    /// Aborted transactions overlapping `[from, upper)`: `last_offset >= from &&
    /// first_offset < upper`, ordered by first offset (what a `read_committed` fetch of
    /// `from..upper` lists so the client drops their records). Only segments still in the
    /// log are searched.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let st = lock(&self.state);
        let first = st.segments.partition_point(|s| s.next_offset <= from);
        txn::collect_aborted(
            st.segments[first..].iter().map(|s| &s.txn_index),
            from,
            upper,
        )
    }

    /// Open transactions in this partition, oldest first.
    pub fn open_transactions(&self) -> Vec<OpenTxn> {
        lock(&self.state).producers.open_transactions()
    }

    /// The idempotent-producer state of `producer_id` in this partition, if any.
    pub fn producer_state(&self, producer_id: i64) -> Option<ProducerEntry> {
        lock(&self.state).producers.get(producer_id).copied()
    }

    /// Producers with state in this partition.
    pub fn producer_count(&self) -> usize {
        lock(&self.state).producers.len()
    }

    /// Forgets producers whose newest batch's timestamp is `expiration_ms` or more before
    /// `now_ms` (Kafka's `producer.id.expiration.ms`; the broker calls this periodically),
    /// except producers with an open transaction here.
    /// Returns how many were forgotten. A forgotten producer is unknown again: its next
    /// batch is accepted at any sequence, and a retry of an old batch is no longer caught.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: u64) -> usize {
        let removed = lock(&self.state).producers.expire(now_ms, expiration_ms);
        if removed > 0 {
            tracing::debug!(dir = %self.dir.display(), removed, "expired idle producer ids");
        }
        removed
    }

    /// Closes the log (no clean marker) and removes its directory (topic deletion), as
    /// Kafka does: the directory is first renamed to a unique name ending in
    /// [`DELETED_DIR_SUFFIX`], then removed; a removal cut short by a crash leaves only
    /// such a directory, which the broker removes at its next start.
    ///
    /// Every writer that names files by path holds `append_lock` (appends, rolls, producer
    /// snapshots), `sync_lock` (index, digest and `.txnindex` writes) or `checkpoint_lock`
    /// (checkpoints, segment removal by retention) and checks `closed` under it. Taking all
    /// three waits for a write in progress, and none starts afterwards: nothing of this log
    /// can land in a partition created again under the same name.
    pub fn delete(&self) -> Result<(), StorageError> {
        let _append = lock(&self.append_lock);
        let _sync = lock(&self.sync_lock);
        let _checkpoint = lock(&self.checkpoint_lock);
        lock(&self.state).closed = true;
        // Wake durability waiters: they see `closed` and stop waiting.
        self.durable.send_modify(|_| {});
        let doomed = deleted_dir_path(&self.dir);
        file::rename(&self.dir, &doomed)?;
        if let Some(parent) = self.dir.parent() {
            file::sync_dir(parent)?;
        }
        std::fs::remove_dir_all(&doomed)
            .map_err(|e| StorageError::io("remove directory", &doomed, e))
    }
}

/// The leader-epoch cache of a freshly opened log: its checkpoint file, or when that is
/// missing or damaged, rebuilt from the batches' `partitionLeaderEpoch` fields; then cut to
/// `log_start..log_end` (entries a truncation or a crash left past the log end, and the
/// start moved by retention). The file is rewritten only when that changed it or it was
/// missing from a non-empty log.
fn load_epochs(
    dir: &Path,
    segments: &[Segment],
    log_start: i64,
    log_end: i64,
) -> Result<LeaderEpochCache, StorageError> {
    let (mut epochs, mut changed) = match leader_epoch::read(dir)? {
        leader_epoch::Loaded::Read(cache) => (cache, false),
        loaded => {
            if let leader_epoch::Loaded::Damaged(reason) = &loaded {
                tracing::warn!(dir = %dir.display(), %reason,
                    "damaged leader-epoch checkpoint: rebuilding it from the log");
            }
            let sources: Vec<_> = segments
                .iter()
                .map(|s| (s.source(), s.offset_index.last_position()))
                .collect();
            let rebuilt = leader_epoch::rebuild(&sources)?;
            // Written even when empty, so the next open reads the file instead of the
            // batches (a log of the previous version has no file); an empty new log gets
            // it with its first batch instead, so creating a partition costs no fsync more.
            let changed = log_end > log_start || !rebuilt.entries().is_empty();
            (rebuilt, changed)
        }
    };
    changed |= epochs.truncate_from_end(log_end);
    changed |= epochs.truncate_from_start(log_start);
    if changed {
        // Derived data: the cache in memory is right, and the next open derives it again.
        // A full disk must not keep the partition from opening for reads.
        if let Err(error) = leader_epoch::write(dir, &epochs) {
            tracing::warn!(dir = %dir.display(), %error, "cannot write the leader-epoch checkpoint");
        }
    }
    Ok(epochs)
}

/// The suffix of a partition directory being deleted (Kafka's `-delete`). A live partition
/// directory always ends in `-<partition number>`, so the two never collide.
pub const DELETED_DIR_SUFFIX: &str = "-delete";

/// `<dir>.<unique id>-delete`, beside `dir`.
fn deleted_dir_path(dir: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{nanos:x}{sequence:x}{DELETED_DIR_SUFFIX}"));
    dir.with_file_name(name)
}

mod append;
mod read;
mod replicate;
mod sync;
mod truncate;

#[cfg(test)]
#[path = "log_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "replication_tests.rs"]
mod replication_tests;
