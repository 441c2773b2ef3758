//! [`Log`]: the log of one partition — a directory of segments with append, read by offset
//! and by timestamp, group-committed durability, retention and recovery.
//!
//! Concurrency: appends are serialized by `append_lock`; the segment list and counters live
//! in `state` (a mutex held only for in-memory work, never across a data write, fsync or
//! read); `sync_lock` serializes syncs. Readers snapshot what they need under `state` and do
//! their I/O without it.

use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::batch::{self, BatchFault, BatchHeader, ATTR_LOG_APPEND_TIME, HEADER_LEN};
use crate::checkpoint::{self, Checkpoint};
use crate::config::{LogConfig, TimestampType};
use crate::error::{AppendError, StorageError};
use crate::file::{self, DataFile};
use crate::flusher::{lock, Flusher};
use crate::recovery;
use crate::retention::{self, SegmentFacts};
use crate::segment::{Segment, SegmentSource};

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
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn batch_error(dir: &Path, position: usize, fault: BatchFault) -> AppendError {
    match fault {
        BatchFault::Magic(magic) => AppendError::UnsupportedForMessageFormat {
            dir: dir.to_path_buf(),
            position,
            magic,
        },
        BatchFault::Count { .. } => AppendError::InvalidRecord {
            dir: dir.to_path_buf(),
            position,
            reason: fault.to_string(),
        },
        BatchFault::ShortHeader { .. } | BatchFault::Length { .. } | BatchFault::Crc { .. } => {
            AppendError::CorruptMessage {
                dir: dir.to_path_buf(),
                position,
                reason: fault.to_string(),
            }
        }
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
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io("create directory", &dir, e))?;
        let clean = checkpoint::was_clean(&dir);
        let saved = checkpoint::read(&dir)?;
        let recovery_point = saved.map_or(0, |c| c.recovery_point);
        let saved_start = saved.map_or(0, |c| c.log_start_offset);
        let (mut segments, untrusted) =
            recovery::load_segments(&dir, &config, clean, recovery_point, saved_start)?;
        for &i in &untrusted {
            segments[i].log.sync_data()?;
        }
        for seg in &mut segments {
            seg.synced_size = seg.size;
        }
        file::sync_dir(&dir)?;
        let log_end = segments[segments.len() - 1].next_offset;
        let log_start = saved_start.max(segments[0].base_offset).min(log_end);
        checkpoint::clear_clean(&dir)?;
        checkpoint::write(
            &dir,
            &Checkpoint {
                log_start_offset: log_start,
                recovery_point: log_end,
            },
        )?;
        tracing::debug!(dir = %dir.display(), clean, log_start, log_end, segments = segments.len(), "opened log");
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
            }),
            sync_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
            durable,
            offline: Mutex::new(None),
            scheduled: AtomicBool::new(false),
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

    /// Validates every batch of a produce request: structure, size, CRC, record count.
    fn validate(
        &self,
        batches: &[u8],
        config: &LogConfig,
    ) -> Result<Vec<(usize, BatchHeader)>, AppendError> {
        if batches.is_empty() {
            return Err(AppendError::InvalidRecord {
                dir: self.dir.clone(),
                position: 0,
                reason: "no record batch".into(),
            });
        }
        let mut out = Vec::new();
        let mut position = 0;
        while position < batches.len() {
            let rest = &batches[position..];
            let h = batch::check_header(&rest[..rest.len().min(HEADER_LEN)], rest.len())
                .map_err(|f| batch_error(&self.dir, position, f))?;
            if h.size() as u64 > config.max_message_bytes {
                return Err(AppendError::MessageTooLarge {
                    dir: self.dir.clone(),
                    size: h.size() as u64,
                    max: config.max_message_bytes,
                });
            }
            let computed = batch::compute_crc(&rest[..h.size()]);
            if computed != h.crc {
                return Err(batch_error(
                    &self.dir,
                    position,
                    BatchFault::Crc {
                        stored: h.crc,
                        computed,
                    },
                ));
            }
            if h.is_control() {
                return Err(AppendError::InvalidRecord {
                    dir: self.dir.clone(),
                    position,
                    reason: "clients may not write control batches".into(),
                });
            }
            if h.compression() > 4 {
                return Err(AppendError::CorruptMessage {
                    dir: self.dir.clone(),
                    position,
                    reason: format!("unknown compression codec {}", h.compression()),
                });
            }
            if config.timestamp_type == TimestampType::CreateTime && h.max_timestamp < -1 {
                return Err(AppendError::InvalidTimestamp {
                    dir: self.dir.clone(),
                    position,
                    timestamp: h.max_timestamp,
                });
            }
            out.push((position, h));
            position += h.size();
        }
        Ok(out)
    }

    /// Validates then appends one or more client batches (bytes exactly as received).
    /// Writes base offsets into bytes 0..8 (the rest is written from `batches` as is);
    /// LogAppendTime rewrites timestamps + CRC in a copy. Schedules a group-commit flush; with
    /// `flush.messages` / `flush.ms` reached, flushes before returning.
    pub fn append(&self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, AppendError> {
        self.check_online()?;
        let config = self.config();
        let headers = self.validate(batches, &config)?;
        let total_bytes: u64 = headers.iter().map(|(_, h)| h.size() as u64).sum();
        let total_records: i64 = headers.iter().map(|(_, h)| i64::from(h.record_count)).sum();
        let log_append = config.timestamp_type == TimestampType::LogAppendTime;

        let append_guard = lock(&self.append_lock);
        self.check_online()?;
        let (file, position, base_offset) = {
            let mut st = lock(&self.state);
            if st.closed {
                return Err(StorageError::Closed {
                    dir: self.dir.clone(),
                }
                .into());
            }
            self.maybe_roll(
                &mut st,
                total_bytes,
                headers.len() as u64,
                total_records,
                now_ms,
            )?;
            let active = st.active();
            (Arc::clone(&active.log), active.size, active.next_offset)
        };

        // Assign offsets and describe each batch as it will sit on disk.
        let mut stored = Vec::with_capacity(headers.len());
        let mut next = base_offset;
        for (_, h) in &headers {
            let mut s = *h;
            s.base_offset = next;
            if log_append {
                s.attributes |= ATTR_LOG_APPEND_TIME;
                s.max_timestamp = now_ms;
            }
            next = s.next_offset();
            stored.push(s);
        }
        let offset_bytes: Vec<[u8; 8]> =
            stored.iter().map(|s| s.base_offset.to_be_bytes()).collect();
        let mut stamped: Vec<Vec<u8>> = Vec::new();
        if log_append {
            for ((pos, h), bytes) in headers.iter().zip(&offset_bytes) {
                let mut copy = batches[*pos..*pos + h.size()].to_vec();
                copy[..8].copy_from_slice(bytes);
                batch::set_log_append_time(&mut copy, now_ms);
                stamped.push(copy);
            }
        }
        let write_result = {
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(headers.len() * 2);
            if log_append {
                slices.extend(stamped.iter().map(|b| IoSlice::new(b)));
            } else {
                for ((pos, h), bytes) in headers.iter().zip(&offset_bytes) {
                    slices.push(IoSlice::new(bytes));
                    slices.push(IoSlice::new(&batches[*pos + 8..*pos + h.size()]));
                }
            }
            file.append_all(&mut slices, position)
        };
        if let Err(e) = write_result {
            // Cut a partial write so the file ends on a batch boundary again; if even that
            // fails, the file's tail is unknown and the log goes offline.
            if let Err(cut) = file.truncate(position) {
                self.go_offline(&cut);
            }
            return Err(e.into());
        }

        let (info, force_flush) = {
            let mut st = lock(&self.state);
            let interval = st.config.index_interval_bytes;
            let seg = st.active_mut();
            let mut p = position;
            for s in &stored {
                seg.note_batch(p, s, interval);
                p += s.size() as u64;
            }
            if seg.created_ms.is_none() {
                seg.created_ms = Some(now_ms);
            }
            st.unflushed_messages += total_records as u64;
            let oldest = *st.oldest_unflushed_ms.get_or_insert(now_ms);
            let force = st
                .config
                .flush_messages
                .is_some_and(|n| st.unflushed_messages >= n)
                || st.config.flush_ms.is_some_and(|ms| {
                    now_ms.saturating_sub(oldest) >= i64::try_from(ms).unwrap_or(i64::MAX)
                });
            let info = AppendInfo {
                base_offset,
                last_offset: next - 1,
                log_append_time: log_append.then_some(now_ms),
                log_start_offset: st.log_start_offset,
            };
            (info, force)
        };
        drop(append_guard);

        if force_flush {
            self.sync()?;
        } else {
            self.schedule_sync()?;
        }
        Ok(info)
    }

    /// Rolls to a new active segment when the incoming append would break `segment.bytes`,
    /// `segment.ms`, the index size or the u32 relative offsets / positions of the indexes.
    fn maybe_roll(
        &self,
        st: &mut LogState,
        incoming_bytes: u64,
        incoming_batches: u64,
        incoming_records: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let cfg = &st.config;
        let active = st.active();
        if active.is_empty() {
            return Ok(());
        }
        let new_size = active.size + incoming_bytes;
        let reason = if new_size > cfg.segment_bytes {
            Some("segment.bytes")
        } else if cfg
            .segment_ms
            .zip(active.created_ms)
            .is_some_and(|(ms, created)| {
                now_ms.saturating_sub(created) >= i64::try_from(ms).unwrap_or(i64::MAX)
            })
        {
            Some("segment.ms")
        } else if !active.index_has_room(cfg.segment_index_bytes, incoming_batches) {
            Some("segment.index.bytes")
        } else if active.next_offset + incoming_records - 1 - active.base_offset
            > i64::from(i32::MAX)
            || new_size > u64::from(u32::MAX)
        {
            Some("index range")
        } else {
            None
        };
        let Some(reason) = reason else {
            return Ok(());
        };
        let new_base = st.log_end_offset();
        let new = Segment::create(&self.dir, new_base)?;
        if let Err(e) = st.active_mut().seal() {
            let _ = new.delete_files(&self.dir);
            return Err(e);
        }
        tracing::debug!(dir = %self.dir.display(), new_base, reason, "rolled segment");
        st.segments.push(new);
        st.dir_dirty = true;
        st.checkpoint_due = true;
        Ok(())
    }

    fn schedule_sync(&self) -> Result<(), StorageError> {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let queued = match self.self_ref.upgrade() {
            Some(me) => self.flusher.schedule(me),
            None => false,
        };
        if !queued {
            self.scheduled.store(false, Ordering::Release);
            self.sync()?;
        }
        Ok(())
    }

    /// Called by the flusher thread for a scheduled log.
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
    fn sync(&self) -> Result<(), StorageError> {
        self.sync_with(false)
    }

    /// [`Log::sync`]; `all_indexes` also writes the active segment's pending index entries.
    fn sync_with(&self, all_indexes: bool) -> Result<(), StorageError> {
        struct Work {
            base_offset: i64,
            log: Arc<DataFile>,
            size: u64,
            log_dirty: bool,
            index: (Arc<DataFile>, Vec<u8>, usize),
            time_index: (Arc<DataFile>, Vec<u8>, usize),
            seal_indexes: bool,
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
            for seg in &st.segments {
                let sealed = seg.mapped.is_some();
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
                if log_dirty || seal_indexes || !index_bytes.is_empty() || !time_bytes.is_empty() {
                    work.push(Work {
                        base_offset: seg.base_offset,
                        log: Arc::clone(&seg.log),
                        size: seg.size,
                        log_dirty,
                        index: (Arc::clone(&seg.offset_index.file), index_bytes, index_count),
                        time_index: (Arc::clone(&seg.time_index.file), time_bytes, time_count),
                        seal_indexes,
                    });
                }
            }
            let dir_dirty = std::mem::take(&mut st.dir_dirty);
            (st.log_end_offset(), work, dir_dirty, st.unflushed_messages)
        };
        if work.is_empty() && !dir_dirty && target <= *self.durable.borrow() {
            return Ok(());
        }
        let io = || -> Result<(), StorageError> {
            for w in &work {
                for (file, bytes, _) in [&w.index, &w.time_index] {
                    if !bytes.is_empty() {
                        let end = file.len()?;
                        file.append_all(&mut [IoSlice::new(bytes)], end)?;
                    }
                }
                if w.log_dirty {
                    w.log.sync_data()?;
                }
                if w.seal_indexes {
                    w.index.0.sync_data()?;
                    w.time_index.0.sync_data()?;
                }
            }
            if dir_dirty {
                file::sync_dir(&self.dir)?;
            }
            Ok(())
        };
        if let Err(e) = io() {
            self.go_offline(&e);
            return Err(e);
        }
        let checkpoint_now = {
            let mut st = lock(&self.state);
            for w in &work {
                let Ok(i) = st
                    .segments
                    .binary_search_by_key(&w.base_offset, |s| s.base_offset)
                else {
                    continue; // deleted by retention meanwhile
                };
                let seg = &mut st.segments[i];
                seg.synced_size = seg.synced_size.max(w.size);
                seg.offset_index.mark_persisted(w.index.2);
                seg.time_index.mark_persisted(w.time_index.2);
                if w.seal_indexes {
                    seg.indexes_synced = true;
                }
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
            self.write_checkpoint()?;
        }
        Ok(())
    }

    /// Persists the log start offset and the durable offset as recovery point.
    fn write_checkpoint(&self) -> Result<(), StorageError> {
        let _c = lock(&self.checkpoint_lock);
        let checkpoint = {
            let mut st = lock(&self.state);
            st.last_checkpoint = Instant::now();
            Checkpoint {
                log_start_offset: st.log_start_offset,
                recovery_point: *self.durable.borrow(),
            }
        };
        checkpoint::write(&self.dir, &checkpoint)
    }

    /// Reads whole batches from `offset`, only batches with base offset < `upper` (the
    /// server passes the durable offset = high watermark). Errors with OffsetOutOfRange
    /// when offset < log_start_offset or offset > log_end_offset.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<ReadResult, StorageError> {
        let mut after_base: Option<i64> = None;
        loop {
            let (source, path, position, limit) = {
                let st = lock(&self.state);
                let (start, end) = (st.log_start_offset, st.log_end_offset());
                if offset < start || offset > end {
                    return Err(StorageError::OffsetOutOfRange {
                        dir: self.dir.clone(),
                        offset,
                        log_start_offset: start,
                        log_end_offset: end,
                    });
                }
                if offset >= end || offset >= upper {
                    return Ok(ReadResult {
                        records: Bytes::new(),
                    });
                }
                let i = match after_base {
                    None => st.segment_for(offset),
                    Some(b) => st.segments.partition_point(|s| s.base_offset <= b),
                };
                let Some(seg) = st.segments.get(i) else {
                    return Ok(ReadResult {
                        records: Bytes::new(),
                    });
                };
                let position = if seg.base_offset <= offset {
                    seg.offset_index.floor_position(seg.relative(offset))
                } else {
                    0
                };
                // Batches from here on start at or above `upper`: no need to read past it.
                let limit = seg
                    .offset_index
                    .position_after(seg.relative(upper))
                    .map_or(seg.size, u64::from);
                after_base = Some(seg.base_offset);
                (
                    seg.source(),
                    seg.log.path().to_path_buf(),
                    u64::from(position),
                    limit,
                )
            };
            if let Some(records) =
                read_in_segment(&source, &path, position, limit, offset, max_bytes, upper)?
            {
                return Ok(ReadResult { records });
            }
        }
    }

    /// The first record whose timestamp is >= `ts` at or after the log start offset
    /// (ListOffsets by time); `None` if there is none. Exact for uncompressed CreateTime
    /// batches; for compressed or LogAppendTime batches, the first offset of the first batch
    /// whose maxTimestamp is >= `ts` (at least the log start offset), with that maxTimestamp.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<TimestampOffset>, StorageError> {
        let mut after_base: Option<i64> = None;
        loop {
            let (source, path, position, log_start) = {
                let st = lock(&self.state);
                let log_start = st.log_start_offset;
                let from = match after_base {
                    None => 0,
                    Some(b) => st.segments.partition_point(|s| s.base_offset <= b),
                };
                let Some(seg) = st.segments[from.min(st.segments.len())..]
                    .iter()
                    .find(|s| s.max_timestamp >= ts && s.next_offset > log_start)
                else {
                    return Ok(None);
                };
                let position = seg
                    .time_index
                    .last_before(ts)
                    .map_or(0, |rel| seg.offset_index.floor_position(rel));
                after_base = Some(seg.base_offset);
                (
                    seg.source(),
                    seg.log.path().to_path_buf(),
                    u64::from(position),
                    log_start,
                )
            };
            let mut pos = position;
            while pos < source.size() {
                let h = source.header_at(pos, &path)?;
                if h.max_timestamp >= ts && h.last_offset() >= log_start {
                    let bytes = source.bytes(pos, h.size() as u64)?;
                    if let Some((offset, timestamp)) =
                        batch::first_record_at_or_after(&bytes, ts, log_start)
                    {
                        return Ok(Some(TimestampOffset { offset, timestamp }));
                    }
                    let walkable = h.compression() == 0 && !h.is_log_append_time();
                    if !walkable {
                        return Ok(Some(TimestampOffset {
                            offset: h.base_offset.max(log_start),
                            timestamp: h.max_timestamp,
                        }));
                    }
                }
                pos += h.size() as u64;
            }
        }
    }

    /// Largest batch timestamp in the log (at or after the log start offset) and the offset
    /// reported for it (ListOffsets -3): the last offset of the first batch holding it
    /// (the record itself when timestamps grow within a batch, as producers write them), or
    /// the batch's first offset for LogAppendTime. `None` when no batch has a timestamp.
    pub fn max_timestamp(&self) -> Option<TimestampOffset> {
        let st = lock(&self.state);
        let mut best: Option<TimestampOffset> = None;
        for seg in st
            .segments
            .iter()
            .filter(|s| s.next_offset > st.log_start_offset)
        {
            if seg.max_timestamp >= 0 && best.is_none_or(|b| seg.max_timestamp > b.timestamp) {
                best = Some(TimestampOffset {
                    offset: seg.offset_of_max_timestamp.max(st.log_start_offset),
                    timestamp: seg.max_timestamp,
                });
            }
        }
        best
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
    /// refuses appends with a storage error; a failed fsync is never treated as success).
    pub async fn wait_durable(&self, offset: i64) -> Result<(), StorageError> {
        let mut rx = self.durable.subscribe();
        loop {
            self.check_online()?;
            if *rx.borrow_and_update() >= offset {
                return Ok(());
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
    fn finish_removal(&self, removed: &[Segment]) -> Result<(), StorageError> {
        if removed.is_empty() {
            return Ok(());
        }
        self.write_checkpoint()?;
        for seg in removed {
            seg.delete_files(&self.dir)?;
        }
        Ok(())
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
        checkpoint::mark_clean(&self.dir)?;
        lock(&self.state).closed = true;
        tracing::debug!(dir = %self.dir.display(), "closed log cleanly");
        Ok(())
    }

    /// Closes the log (no clean marker) and removes its directory (topic deletion).
    pub fn delete(&self) -> Result<(), StorageError> {
        let _append = lock(&self.append_lock);
        lock(&self.state).closed = true;
        std::fs::remove_dir_all(&self.dir)
            .map_err(|e| StorageError::io("remove directory", &self.dir, e))
    }
}

/// Reads from one segment: finds the batch holding `offset` by scanning headers from
/// `position`, then returns it and the following whole batches below `upper` up to
/// `max_bytes`, reading no further than `limit` past the first batch (no batch starting at
/// or after `limit` is below `upper`). `None` when the segment has no batch at or after
/// `offset`.
fn read_in_segment(
    source: &SegmentSource,
    path: &Path,
    position: u64,
    limit: u64,
    offset: i64,
    max_bytes: usize,
    upper: i64,
) -> Result<Option<Bytes>, StorageError> {
    let end = source.size();
    let mut pos = position;
    let first = loop {
        if pos >= end {
            return Ok(None);
        }
        let h = source.header_at(pos, path)?;
        if h.last_offset() >= offset {
            break h;
        }
        pos += h.size() as u64;
    };
    if first.base_offset >= upper {
        return Ok(Some(Bytes::new()));
    }
    let want = (first.size().max(max_bytes) as u64)
        .min(end - pos)
        .min(limit.saturating_sub(pos).max(first.size() as u64));
    let window = source.bytes(pos, want)?;
    let mut cut = first.size();
    while let Some(h) = window.get(cut..).and_then(BatchHeader::parse) {
        let next = cut + h.size();
        if h.base_offset >= upper || next > window.len() || next > max_bytes || h.batch_length <= 0
        {
            break;
        }
        cut = next;
    }
    Ok(Some(window.slice(..cut)))
}

#[cfg(test)]
#[path = "log_tests.rs"]
pub(crate) mod tests;
