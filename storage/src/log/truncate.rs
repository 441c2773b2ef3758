//! Truncation from the end, as a follower does before it fetches from a new leader
//! (KIP-101): [`Log::truncate_to`] removes every batch at and above an offset and rewinds
//! everything derived from them (indexes, producer state and `.txnindex`, the leader-epoch
//! cache, the durable offset and the recovery point); [`Log::truncate_fully_and_start_at`]
//! empties the log and restarts it at an offset.
//!
//! Crash safety: `partition.truncation` is written durably before the first file is touched
//! and the recovery point is lowered to the truncation offset, so a crash anywhere in
//! between leaves a directory that `Log::open` recovers (validating every batch from the
//! truncation offset on) and then truncates again to the same offset before deriving
//! anything from the segments. Files are removed newest segment first, so a crash never
//! leaves a hole between segments. Producer snapshots past the new end are removed and the
//! directory fsync'd before the record is removed: a stale snapshot never survives to
//! describe batches written later at the same offsets.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Log;
use crate::checkpoint::{self, Checkpoint, Truncation};
use crate::error::StorageError;
use crate::file::{self, DataFile};
use crate::flusher::lock;
use crate::leader_epoch;
use crate::producer_state::{self, ReplaySegment};
use crate::segment::{segment_path, Segment, INDEX_DIGEST_SUFFIX, LOG_SUFFIX};
use crate::txn::TxnIndex;

impl Log {
    /// Removes every batch that holds an offset at or above `offset` (a batch that straddles
    /// it goes whole, as in Kafka) and returns the new log end offset. Nothing happens when
    /// `offset` is at or past the log end. An `offset` below the log start offset is
    /// OffsetOutOfRange.
    ///
    /// Afterwards the durable offset and recovery point are at most the new end (waiters
    /// for higher offsets wait for new appends), the producer state is the one of the
    /// batches left, aborted transactions whose marker was removed are gone from
    /// `.txnindex`, and leader epochs starting at or past the new end are gone from the
    /// leader-epoch cache. Appends and syncs wait for it; a reader that overlaps it reads
    /// again (see `log/read.rs`). A failure part way takes the log offline; reopening it
    /// completes the truncation.
    pub fn truncate_to(&self, offset: i64) -> Result<i64, StorageError> {
        let _append = lock(&self.append_lock);
        self.check_online()?;
        let (log_start, log_end) = {
            let st = lock(&self.state);
            if st.closed {
                return Err(StorageError::Closed {
                    dir: self.dir.clone(),
                });
            }
            (st.log_start_offset, st.log_end_offset())
        };
        if offset >= log_end {
            return Ok(log_end);
        }
        if offset < log_start {
            return Err(StorageError::OffsetOutOfRange {
                dir: self.dir.clone(),
                offset,
                log_start_offset: log_start,
                log_end_offset: log_end,
            });
        }
        // Everything appended reaches the disk first: no sync is left holding work for
        // the bytes about to go, and the indexes of sealed segments are written.
        self.sync()?;
        let _sync = lock(&self.sync_lock);
        let checkpoint_guard = lock(&self.checkpoint_lock);
        checkpoint::begin_truncation(&self.dir, Truncation::To(offset))?;
        let result = self.truncate_locked(offset, log_start, &checkpoint_guard);
        if let Err(error) = &result {
            self.go_offline(error);
        }
        result
    }

    fn truncate_locked(
        &self,
        offset: i64,
        log_start: i64,
        checkpoint_guard: &std::sync::MutexGuard<'_, ()>,
    ) -> Result<i64, StorageError> {
        // Recovery re-validates from the truncation offset if a crash interrupts the cut.
        checkpoint::write(
            &self.dir,
            &Checkpoint {
                log_start_offset: log_start,
                recovery_point: offset.min(self.durable_offset()),
            },
        )?;
        self.truncations.fetch_add(1, Ordering::SeqCst);
        let new_end = {
            let mut st = lock(&self.state);
            let new_end = cut_segments(&self.dir, &mut st.segments, offset)?
                .unwrap_or_else(|| st.log_end_offset());
            remove_snapshots_after(&self.dir, new_end)?;
            let (producers, _) = {
                let mut views: Vec<ReplaySegment<'_>> = st
                    .segments
                    .iter_mut()
                    .map(|s| ReplaySegment {
                        next_offset: s.next_offset,
                        source: s.source(),
                        txn_index: &mut s.txn_index,
                    })
                    .collect();
                producer_state::load(&self.dir, &mut views, i64::MAX)?
            };
            for seg in &mut st.segments {
                seg.txn_index.reconcile()?;
            }
            st.producers = producers;
            if st.epochs.truncate_from_end(new_end) {
                leader_epoch::write(&self.dir, &st.epochs)?;
            }
            st.unflushed_messages = 0;
            st.oldest_unflushed_ms = None;
            new_end
        };
        self.truncations.fetch_add(1, Ordering::SeqCst);
        self.durable.send_if_modified(|d| {
            let lowered = new_end < *d;
            *d = (*d).min(new_end);
            lowered
        });
        file::sync_dir(&self.dir)?;
        self.write_checkpoint_locked(checkpoint_guard)?;
        checkpoint::end_truncation(&self.dir)?;
        tracing::info!(dir = %self.dir.display(), offset, new_end, "truncated log");
        Ok(new_end)
    }
}

impl Log {
    /// Empties the log and makes it start at `offset` (Kafka's `truncateFullyAndStartAt`:
    /// a follower whose log ends below the leader's log start): every segment, producer
    /// snapshot and leader epoch goes, one empty segment starts at `offset`, which becomes
    /// the log start, log end, durable offset and recovery point. Crash-safe as
    /// [`Log::truncate_to`]: a reopen completes an interrupted one.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), StorageError> {
        let _append = lock(&self.append_lock);
        self.check_online()?;
        if lock(&self.state).closed {
            return Err(StorageError::Closed {
                dir: self.dir.clone(),
            });
        }
        if offset < 0 {
            let st = lock(&self.state);
            return Err(StorageError::OffsetOutOfRange {
                dir: self.dir.clone(),
                offset,
                log_start_offset: st.log_start_offset,
                log_end_offset: st.log_end_offset(),
            });
        }
        self.sync()?;
        let _sync = lock(&self.sync_lock);
        let checkpoint_guard = lock(&self.checkpoint_lock);
        checkpoint::begin_truncation(&self.dir, Truncation::Fully(offset))?;
        let result = self.truncate_fully_locked(offset, &checkpoint_guard);
        if let Err(error) = &result {
            self.go_offline(error);
        }
        result
    }

    fn truncate_fully_locked(
        &self,
        offset: i64,
        checkpoint_guard: &std::sync::MutexGuard<'_, ()>,
    ) -> Result<(), StorageError> {
        checkpoint::write(
            &self.dir,
            &Checkpoint {
                log_start_offset: offset,
                recovery_point: offset,
            },
        )?;
        self.truncations.fetch_add(1, Ordering::SeqCst);
        {
            let mut st = lock(&self.state);
            replace_all_segments(&self.dir, &mut st.segments, offset)?;
            st.producers = Default::default();
            st.epochs.clear();
            st.log_start_offset = offset;
            st.unflushed_messages = 0;
            st.oldest_unflushed_ms = None;
        }
        self.truncations.fetch_add(1, Ordering::SeqCst);
        self.durable.send_replace(offset);
        self.write_checkpoint_locked(checkpoint_guard)?;
        checkpoint::end_truncation(&self.dir)?;
        tracing::info!(dir = %self.dir.display(), offset, "emptied log");
        Ok(())
    }
}

/// Replaces every segment with one empty segment at `offset` and removes every producer
/// snapshot and the leader-epoch checkpoint (files removed newest first, the directory
/// fsync'd). Idempotent, so `Log::open` runs it again after a crash.
pub(super) fn replace_all_segments(
    dir: &Path,
    segments: &mut Vec<Segment>,
    offset: i64,
) -> Result<(), StorageError> {
    for seg in segments.drain(..).rev() {
        seg.delete_files(dir)?;
    }
    for at in producer_state::list_snapshots(dir)?.into_iter().rev() {
        file::remove_file(&producer_state::snapshot_path(dir, at))?;
    }
    file::remove_file(&dir.join(leader_epoch::LEADER_EPOCH_CHECKPOINT))?;
    segments.push(Segment::create(dir, offset)?);
    file::sync_dir(dir)
}

/// Removes producer snapshots past `end` (they describe batches that are gone).
fn remove_snapshots_after(dir: &Path, end: i64) -> Result<(), StorageError> {
    for at in producer_state::list_snapshots(dir)? {
        if at > end {
            file::remove_file(&producer_state::snapshot_path(dir, at))?;
        }
    }
    Ok(())
}

/// Cuts `segments` (oldest first, never empty) back to the batches wholly below `offset`:
/// later segments' files are removed newest first, the segment holding `offset` is cut at
/// the batch that holds it (its `.log` is cut and fsync'd, its index files emptied and its
/// digest removed, its `.txnindex` entries at or past the cut removed) and becomes the
/// active segment. The first segment is kept, possibly empty. Returns the new log end, or
/// `None` when `offset` is at or past the end (nothing changes). Idempotent, so `Log::open`
/// runs it again after a crash.
pub(super) fn cut_segments(
    dir: &Path,
    segments: &mut Vec<Segment>,
    offset: i64,
) -> Result<Option<i64>, StorageError> {
    let Some(last) = segments.last() else {
        return Ok(None);
    };
    if offset >= last.next_offset {
        return Ok(None);
    }
    let keep = segments.partition_point(|s| s.base_offset < offset).max(1);
    let removed: Vec<Segment> = segments.drain(keep..).collect();
    for seg in removed.iter().rev() {
        seg.delete_files(dir)?;
    }
    let Some(seg) = segments.last_mut() else {
        return Ok(None);
    };
    // The first batch whose last offset is at or past `offset`: the cut goes before it.
    let source = seg.source();
    let mut position = u64::from(seg.offset_index.floor_position(seg.relative(offset)));
    let mut new_end = seg.next_offset;
    while position < source.size() {
        let h = source.header_at(position)?;
        if h.last_offset() >= offset {
            new_end = if position == 0 {
                seg.base_offset
            } else {
                h.base_offset
            };
            break;
        }
        position += h.size() as u64;
    }
    // Headers from the last index entry kept to the cut, for the segment's bookkeeping.
    let tail_from = seg.offset_index.last_position_below(position);
    let mut tail = Vec::new();
    let mut p = tail_from;
    while p < position {
        let h = source.header_at(p)?;
        p += h.size() as u64;
        tail.push(h);
    }
    let base = seg.base_offset;
    file::remove_file(&segment_path(dir, base, INDEX_DIGEST_SUFFIX))?;
    let log = Arc::new(DataFile::open(&segment_path(dir, base, LOG_SUFFIX), false)?);
    log.truncate(position)?;
    log.sync_data()?;
    seg.offset_index.file.truncate(0)?;
    seg.time_index.file.truncate(0)?;
    let (mut txn_index, _) = TxnIndex::load(dir, base, i64::MAX)?;
    txn_index.split_off_from(new_end);
    txn_index.reconcile()?;
    seg.txn_index = txn_index;
    seg.cut(position, new_end, tail_from, &tail, log);
    file::sync_dir(dir)?;
    Ok(Some(new_end))
}
