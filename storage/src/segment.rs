//! One segment: `<base offset, 20 digits>.log` of whole RecordBatch v2 batches, plus its
//! offset and time indexes. Only the last segment of a log (the active one) is appended to.
//! Every segment is read with `pread`; the active one keeps its own descriptor, a sealed one
//! borrows one from the [`crate::descriptor_cache`] once it is wholly on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::error::StorageError;
use crate::file::{self, DataFile};
use crate::index::{OffsetIndex, TimeIndex, OFFSET_ENTRY_LEN, TIME_ENTRY_LEN};
use crate::txn::{TxnIndex, TXN_INDEX_SUFFIX};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Strata's own sidecar of a sealed segment: the `.log` size and the CRC-32C of both index
/// files, so the next open can trust them without reading the `.log` (Kafka tools ignore it).
pub(crate) const INDEX_DIGEST_SUFFIX: &str = "indexcrc";

/// `<dir>/<base offset as 20 digits>.<suffix>`, Kafka's segment file name.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// Parses a segment file name into `(base offset, suffix)`.
pub(crate) fn parse_segment_name(name: &str) -> Option<(i64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix))
}

#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the first record this segment may hold; also its file name.
    pub base_offset: i64,
    pub log: Arc<DataFile>,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Bytes of whole, validated batches in the `.log` file. Readers never look past it.
    pub size: u64,
    /// Bytes of the `.log` file covered by a successful fdatasync.
    pub synced_size: u64,
    /// Offset after the last record (== `base_offset` while empty).
    pub next_offset: i64,
    /// Largest batch maxTimestamp in the segment (-1 when none) ...
    pub max_timestamp: i64,
    /// ... and the offset reported for it (see `Log::max_timestamp`).
    pub offset_of_max_timestamp: i64,
    /// Log bytes appended since the last index entry.
    pub bytes_since_index: u64,
    /// Wall-clock time (ms) the segment got its first batch: the `segment.ms` clock and the
    /// retention fallback when batches carry no timestamps.
    pub created_ms: Option<i64>,
    /// No longer the active segment: nothing is appended to it again.
    pub sealed: bool,
    /// The index files of this sealed segment have been written out and fsync'd.
    pub indexes_synced: bool,
    /// Aborted transactions whose abort marker is in this segment (`.txnindex`).
    pub txn_index: TxnIndex,
}

impl Segment {
    /// Creates the three files of a new, empty segment (an existing leftover is emptied; a
    /// leftover `.txnindex` is removed: it is created with the first aborted transaction).
    pub fn create(dir: &Path, base_offset: i64) -> Result<Segment, StorageError> {
        let seg = Segment::open_files(dir, base_offset)?;
        seg.log.truncate(0)?;
        seg.offset_index.file.truncate(0)?;
        seg.time_index.file.truncate(0)?;
        file::remove_file(&segment_path(dir, base_offset, TXN_INDEX_SUFFIX))?;
        Ok(seg)
    }

    /// Opens (creating if missing) the files of a segment, with empty in-memory state; the
    /// caller fills it by scanning the `.log` (see recovery).
    pub fn open_files(dir: &Path, base_offset: i64) -> Result<Segment, StorageError> {
        let log = DataFile::open(&segment_path(dir, base_offset, LOG_SUFFIX), true)?;
        // Index files hold no descriptor between uses (see `DataFile::open_on_demand`).
        let index = DataFile::open_on_demand(&segment_path(dir, base_offset, INDEX_SUFFIX), true)?;
        let time_index =
            DataFile::open_on_demand(&segment_path(dir, base_offset, TIME_INDEX_SUFFIX), true)?;
        Ok(Segment {
            base_offset,
            log: Arc::new(log),
            offset_index: OffsetIndex::new(index),
            time_index: TimeIndex::new(time_index),
            size: 0,
            synced_size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            bytes_since_index: 0,
            created_ms: None,
            sealed: false,
            indexes_synced: false,
            txn_index: TxnIndex::new(dir, base_offset),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Relative offset of `offset` in this segment (saturating; the log rolls before an
    /// offset would not fit in u32).
    pub fn relative(&self, offset: i64) -> u32 {
        u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX)
    }

    /// Whether the offset index could take `n` more entries under `segment.index.bytes`.
    pub fn index_has_room(&self, index_bytes: u64, n: u64) -> bool {
        (self.offset_index.len() as u64 + n) * OFFSET_ENTRY_LEN <= index_bytes
            && (self.time_index.len() as u64 + n) * TIME_ENTRY_LEN <= index_bytes
    }

    /// Accounts for a batch that now sits at `position` of the `.log` (already written, or
    /// found by a scan): indexes, next offset, max timestamp. Mirrors Kafka's
    /// `LogSegment.append`: an index entry when more than `index_interval` bytes were
    /// appended since the last one.
    pub fn note_batch(&mut self, position: u64, h: &BatchHeader, index_interval: u64) {
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = if h.is_log_append_time() {
                h.base_offset
            } else {
                h.last_offset()
            };
        }
        if self.bytes_since_index > index_interval {
            let rel = self.relative(h.last_offset());
            // Positions of a segment the log keeps under 4 GiB (segment.bytes is an i32 in
            // Kafka); a larger one just stops getting entries.
            if let Ok(pos) = u32::try_from(position) {
                self.offset_index.push(rel, pos);
                self.time_index.maybe_push(
                    self.max_timestamp,
                    self.relative(self.offset_of_max_timestamp),
                );
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.size() as u64;
        self.size = position + h.size() as u64;
        self.next_offset = h.next_offset();
    }

    /// Cuts the segment back to its batches below `position` (a batch boundary; the batch
    /// there starts at offset `next_offset`), which makes it the active segment again:
    /// appends continue at `position` through `log` (a descriptor of its own). The indexes
    /// keep their entries of the batches left, and none of them counts as persisted (the
    /// caller empties the index files). `tail` holds the headers of the batches from the last
    /// kept offset-index entry's position (or 0) up to `position`: with the kept time index
    /// entries they give the largest timestamp left and the index spacing, without reading
    /// the whole segment.
    pub fn cut(
        &mut self,
        position: u64,
        next_offset: i64,
        tail_from: u64,
        tail: &[BatchHeader],
        log: Arc<DataFile>,
    ) {
        self.offset_index.cut_at(position);
        let relative_end = self.relative(next_offset);
        self.time_index.cut_at(relative_end);
        match self.time_index.last() {
            Some((timestamp, rel)) => {
                self.max_timestamp = timestamp;
                self.offset_of_max_timestamp = self.base_offset + i64::from(rel);
            }
            None => {
                self.max_timestamp = -1;
                self.offset_of_max_timestamp = self.base_offset;
            }
        }
        for h in tail {
            if h.max_timestamp > self.max_timestamp {
                self.max_timestamp = h.max_timestamp;
                self.offset_of_max_timestamp = if h.is_log_append_time() {
                    h.base_offset
                } else {
                    h.last_offset()
                };
            }
        }
        self.bytes_since_index = position - tail_from.min(position);
        self.size = position;
        self.synced_size = self.synced_size.min(position);
        self.next_offset = next_offset;
        if position == 0 {
            self.created_ms = None;
        }
        self.sealed = false;
        self.indexes_synced = false;
        self.log = log;
    }

    /// Seals the segment: the final time index entry (as Kafka's `onBecomeInactiveSegment`);
    /// nothing is appended to it from now on.
    pub fn seal(&mut self) {
        if self.max_timestamp >= 0 {
            self.time_index.maybe_push(
                self.max_timestamp,
                self.relative(self.offset_of_max_timestamp),
            );
        }
        self.offset_index.shrink();
        self.time_index.shrink();
        self.sealed = true;
    }

    /// Once a sealed segment is wholly fsync'd (log and indexes), nothing writes or syncs
    /// its `.log` again: its own descriptor is closed and reads borrow one from the
    /// descriptor cache (readers holding the old handle keep it until they drop it), so
    /// sealed segments cost no file descriptor of their own. Idempotent.
    pub fn release_descriptor_if_done(&mut self) {
        if self.sealed
            && self.indexes_synced
            && self.synced_size >= self.size
            && self.log.holds_descriptor()
        {
            self.log = Arc::new(self.log.to_cached());
        }
    }

    /// What a reader needs to read this segment without the log's lock: its file and the
    /// size validated so far.
    pub fn source(&self) -> SegmentSource {
        SegmentSource {
            file: Arc::clone(&self.log),
            size: self.size,
        }
    }

    /// The index digest this segment's sidecar must hold: `<log size> <crc of .index>
    /// <crc of .timeindex>` (CRC-32C, hex) and a newline.
    pub fn index_digest(&self) -> String {
        index_digest(
            self.size,
            &self.offset_index.encode_all(),
            &self.time_index.encode_all(),
        )
    }

    /// Removes the segment's files (its `.txnindex` too).
    pub fn delete_files(&self, dir: &Path) -> Result<(), StorageError> {
        file::remove_file(&segment_path(dir, self.base_offset, INDEX_DIGEST_SUFFIX))?;
        file::remove_file(&segment_path(dir, self.base_offset, TXN_INDEX_SUFFIX))?;
        file::remove_file(&segment_path(dir, self.base_offset, LOG_SUFFIX))?;
        file::remove_file(&segment_path(dir, self.base_offset, INDEX_SUFFIX))?;
        file::remove_file(&segment_path(dir, self.base_offset, TIME_INDEX_SUFFIX))
    }
}

/// See [`Segment::index_digest`].
pub(crate) fn index_digest(log_size: u64, index: &[u8], time_index: &[u8]) -> String {
    format!(
        "{log_size} {:08x} {:08x}\n",
        crc32c::crc32c(index),
        crc32c::crc32c(time_index)
    )
}

/// A snapshot of a segment's readable bytes: its file, and the size of whole, validated
/// batches at snapshot time (bytes below it are read; nothing past it is).
#[derive(Clone, Debug)]
pub(crate) struct SegmentSource {
    file: Arc<DataFile>,
    size: u64,
}

impl SegmentSource {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The header of the batch at `position` (which the log put there after validating it).
    pub fn header_at(&self, position: u64) -> Result<BatchHeader, StorageError> {
        let path = self.file.path();
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason,
        };
        let end = self.size;
        if position + HEADER_LEN as u64 > end {
            return Err(corrupt(format!(
                "batch header runs past the segment end {end}"
            )));
        }
        let mut raw = [0u8; HEADER_LEN];
        self.file.read_exact_at(&mut raw, position)?;
        batch::check_header(&raw, (end - position) as usize).map_err(|f| corrupt(f.to_string()))
    }

    /// Bytes `position..position+len` (clamped to the size), read with one pread into a
    /// pooled buffer. A file shorter than the validated size (cut behind the reader's back,
    /// by a truncation or another process) is reported as corruption.
    pub fn bytes(&self, position: u64, len: u64) -> Result<Bytes, StorageError> {
        let end = self.size.min(position.saturating_add(len));
        if position >= end {
            return Ok(Bytes::new());
        }
        let buf = self.file.read_shared(position, (end - position) as usize)?;
        if (buf.len() as u64) < end - position {
            return Err(StorageError::Corrupt {
                path: self.file.path().to_path_buf(),
                position: position + buf.len() as u64,
                reason: "segment file is shorter than its validated size".into(),
            });
        }
        Ok(buf)
    }
}
