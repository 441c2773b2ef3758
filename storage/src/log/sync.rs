//! Making appended data durable: the sync the flusher (and `flush`, `close`,
//! `flush.messages`) runs, and the checkpoint it writes.

use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{Log, ROLL_CHECKPOINT_INTERVAL};
use crate::checkpoint::{self, Checkpoint};
use crate::error::{StorageError, SyncFailure};
use crate::file::{self, DataFile};
use crate::flusher::lock;
use crate::segment::INDEX_DIGEST_SUFFIX;

impl Log {
    /// Called by a flusher thread for a scheduled log; the flusher never runs it for one log
    /// on two threads at once (see `crate::flusher`), so it waits on `sync_lock` only for a
    /// sync run outside the flusher (`flush`, `close`, `flush.messages`, a roll).
    pub(crate) fn run_scheduled_sync(&self) {
        self.scheduled.store(false, Ordering::Release);
        if let Err(error) = self.sync() {
            if !matches!(error, StorageError::Offline { .. }) {
                tracing::error!(dir = %self.dir.display(), %error, "group commit failed");
            }
        }
    }

    /// Makes everything appended so far durable: writes pending index entries, fdatasyncs
    /// every segment file with unsynced bytes (and the directory after a roll), then
    /// advances the durable offset to what the fsyncs covered. A failure takes the log
    /// offline.
    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        self.sync_with(false)
    }

    /// [`Log::sync`]; `all_indexes` also writes the active segment's pending index entries.
    pub(super) fn sync_with(&self, all_indexes: bool) -> Result<(), StorageError> {
        struct Work {
            base_offset: i64,
            log: Arc<DataFile>,
            size: u64,
            log_dirty: bool,
            index: (Arc<DataFile>, Vec<u8>, usize),
            time_index: (Arc<DataFile>, Vec<u8>, usize),
            seal_indexes: bool,
            /// For a segment whose indexes are being sealed: its digest sidecar.
            digest: Option<String>,
            /// Aborted-transaction entries to append to the `.txnindex`: path, bytes, and
            /// the entry count they bring the synced prefix to.
            txn: Option<(std::path::PathBuf, Vec<u8>, usize)>,
        }
        self.check_online()?;
        let _sync = lock(&self.sync_lock);
        self.check_online()?;
        let (target, work, dir_dirty, messages) = {
            let mut st = lock(&self.state);
            if st.closed {
                // close() synced everything; after delete() the files are gone.
                return Ok(());
            }
            let mut work = Vec::new();
            // Newest first: once a sealed segment is wholly synced, so are all older ones.
            for seg in st.segments.iter().rev() {
                let sealed = seg.sealed;
                if sealed
                    && seg.indexes_synced
                    && seg.synced_size == seg.size
                    && seg.txn_index.is_synced()
                {
                    break;
                }
                let seal_indexes = sealed && !seg.indexes_synced;
                // The active segment's index files are written only when it is sealed or the
                // log closes: they are rebuilt at open anyway, and touching them on every
                // group commit would add metadata to each fdatasync's journal commit.
                let write_indexes = sealed || all_indexes;
                let (index_bytes, index_count) = if write_indexes {
                    seg.offset_index.unpersisted()
                } else {
                    (Vec::new(), 0)
                };
                let (time_bytes, time_count) = if write_indexes {
                    seg.time_index.unpersisted()
                } else {
                    (Vec::new(), 0)
                };
                let log_dirty = seg.synced_size < seg.size;
                let txn = seg.txn_index.unsynced();
                if log_dirty
                    || seal_indexes
                    || !index_bytes.is_empty()
                    || !time_bytes.is_empty()
                    || txn.is_some()
                {
                    work.push(Work {
                        base_offset: seg.base_offset,
                        log: Arc::clone(&seg.log),
                        size: seg.size,
                        log_dirty,
                        index: (Arc::clone(&seg.offset_index.file), index_bytes, index_count),
                        time_index: (Arc::clone(&seg.time_index.file), time_bytes, time_count),
                        seal_indexes,
                        digest: seal_indexes.then(|| seg.index_digest()),
                        txn,
                    });
                }
            }
            let dir_dirty = std::mem::take(&mut st.dir_dirty);
            (st.log_end_offset(), work, dir_dirty, st.unflushed_messages)
        };
        if work.is_empty() && !dir_dirty && target <= *self.durable.borrow() {
            return Ok(());
        }
        // Which work items' index files (and `.txnindex` entries) reached the disk.
        let mut written = vec![Written::default(); work.len()];
        let io = |written: &mut [Written]| -> Result<(), SyncFailure> {
            let mut created = false;
            for (w, done) in work.iter().zip(written.iter_mut()) {
                // Aborted transactions are durable with the data: before the durable offset
                // passes their marker.
                if let Some((path, bytes, _)) = &w.txn {
                    created |= crate::txn::append_synced(path, bytes)?;
                    done.txn = true;
                }
                if w.log_dirty {
                    w.log.sync_data().map_err(SyncFailure::Fatal)?;
                }
                // Index files are derived data, rebuilt or re-validated at open: failing to
                // write them (a full disk) costs nothing now, and a later sync tries again.
                match self.write_indexes(
                    w.base_offset,
                    &w.index,
                    &w.time_index,
                    w.seal_indexes,
                    w.digest.as_deref(),
                ) {
                    Ok(()) => done.indexes = true,
                    Err(error) => {
                        tracing::warn!(dir = %self.dir.display(), base_offset = w.base_offset,
                        %error, "cannot write index files yet; will retry")
                    }
                }
            }
            if dir_dirty || created {
                file::sync_dir(&self.dir).map_err(SyncFailure::Fatal)?;
            }
            Ok(())
        };
        if let Err(failure) = io(&mut written) {
            if lock(&self.state).closed {
                // delete() removed the directory while this sync ran: nothing left to save.
                return Ok(());
            }
            return Err(match failure {
                SyncFailure::Retry(e) => {
                    lock(&self.state).dir_dirty |= dir_dirty;
                    self.flusher.schedule_retry(self.self_ref.clone());
                    e
                }
                SyncFailure::Fatal(e) => {
                    self.go_offline(&e);
                    e
                }
            });
        }
        let checkpoint_now = {
            let mut st = lock(&self.state);
            for (w, done) in work.iter().zip(&written) {
                let Ok(i) = st
                    .segments
                    .binary_search_by_key(&w.base_offset, |s| s.base_offset)
                else {
                    continue; // deleted by retention meanwhile
                };
                let seg = &mut st.segments[i];
                seg.synced_size = seg.synced_size.max(w.size);
                if done.indexes {
                    seg.offset_index.mark_persisted(w.index.2);
                    seg.time_index.mark_persisted(w.time_index.2);
                    if w.seal_indexes {
                        seg.indexes_synced = true;
                    }
                }
                if let (Some((_, _, count)), true) = (&w.txn, done.txn) {
                    seg.txn_index.mark_synced(*count);
                }
                seg.release_descriptor_if_done();
            }
            st.unflushed_messages = st.unflushed_messages.saturating_sub(messages);
            if st.unflushed_messages == 0 {
                st.oldest_unflushed_ms = None;
            }
            let due = st.checkpoint_due
                && target >= st.active().base_offset
                && st.last_checkpoint.elapsed() >= ROLL_CHECKPOINT_INTERVAL;
            if due {
                st.checkpoint_due = false;
            }
            due
        };
        self.durable.send_if_modified(|d| {
            if target > *d {
                *d = target;
                true
            } else {
                false
            }
        });
        if checkpoint_now {
            // A lagging recovery point only lengthens the scan after a crash: a checkpoint
            // that cannot be written now (a full disk) is tried again at the next roll.
            if let Err(error) = self.write_checkpoint() {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot write the checkpoint yet");
                lock(&self.state).checkpoint_due = true;
            }
        }
        Ok(())
    }

    /// Persists the log start offset and the durable offset as recovery point.
    /// Nothing is written once the log is closed or deleted.
    pub(super) fn write_checkpoint(&self) -> Result<(), StorageError> {
        let guard = lock(&self.checkpoint_lock);
        self.write_checkpoint_locked(&guard)
    }

    /// [`Log::write_checkpoint`] for a caller that holds `checkpoint_lock`.
    pub(super) fn write_checkpoint_locked(
        &self,
        _checkpoint_lock: &std::sync::MutexGuard<'_, ()>,
    ) -> Result<(), StorageError> {
        let checkpoint = {
            let mut st = lock(&self.state);
            if st.closed {
                return Ok(());
            }
            st.last_checkpoint = Instant::now();
            Checkpoint {
                log_start_offset: st.log_start_offset,
                recovery_point: *self.durable.borrow(),
            }
        };
        checkpoint::write(&self.dir, &checkpoint)
    }

    /// Appends a segment's unwritten index entries to its `.index` and `.timeindex`; when
    /// the segment is being sealed, fsyncs both and writes its digest sidecar. A failed
    /// write is cut back so the file ends on an entry boundary (if even that fails, the
    /// digest no longer matches and the next open rebuilds the index from the log).
    fn write_indexes(
        &self,
        base_offset: i64,
        index: &(Arc<DataFile>, Vec<u8>, usize),
        time_index: &(Arc<DataFile>, Vec<u8>, usize),
        seal: bool,
        digest: Option<&str>,
    ) -> Result<(), StorageError> {
        for (file, bytes, _) in [index, time_index] {
            if bytes.is_empty() {
                continue;
            }
            let end = file.len()?;
            if let Err(e) = file.append_all(&mut [IoSlice::new(bytes)], end) {
                let _ = file.truncate(end);
                return Err(e);
            }
        }
        if seal {
            index.0.sync_data()?;
            time_index.0.sync_data()?;
        }
        if let Some(digest) = digest {
            let name = format!("{base_offset:020}.{INDEX_DIGEST_SUFFIX}");
            file::write_unsynced(&self.dir, &name, digest.as_bytes())?;
        }
        Ok(())
    }
}

/// What one work item of a sync got onto the disk.
#[derive(Clone, Copy, Debug, Default)]
struct Written {
    /// The index entries (and, when sealing, the fsync and digest).
    indexes: bool,
    /// The `.txnindex` entries, fdatasync'd.
    txn: bool,
}
