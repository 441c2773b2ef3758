//! The sparse indexes of a segment, in Kafka's file formats.
//!
//! `.index` (offset index): 8-byte entries `relative offset u32 BE | position u32 BE`, where
//! relative offset = (last offset of a batch) - segment base offset and position = byte
//! offset of that batch in the `.log` file. One entry per `index.interval.bytes` of log.
//!
//! `.timeindex` (time index): 12-byte entries `timestamp i64 BE | relative offset u32 BE`:
//! the largest batch maxTimestamp seen so far in the segment and the relative (last) offset
//! of the batch that holds it. Appended with the offset index entries when the timestamp
//! grew, and once more when the segment is sealed.
//!
//! Both live in memory (binary-searched) and are appended to their files by the flusher.
//! They are derived data: `Log::open` rebuilds them from the batch headers and rewrites a
//! file whose bytes differ, so a torn or stale index file never misdirects a read.

use std::sync::Arc;

use crate::error::StorageError;
use crate::file::DataFile;

/// Bytes per offset index entry.
pub const OFFSET_ENTRY_LEN: u64 = 8;
/// Bytes per time index entry.
pub const TIME_ENTRY_LEN: u64 = 12;

/// Offset index of one segment.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    pub file: Arc<DataFile>,
    /// `(relative offset, position)`, both strictly increasing.
    entries: Vec<(u32, u32)>,
    /// How many entries are already in the file.
    persisted: usize,
}

impl OffsetIndex {
    pub fn new(file: DataFile) -> OffsetIndex {
        OffsetIndex {
            file: Arc::new(file),
            entries: Vec::new(),
            persisted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Loads entries from the file's bytes; `None` unless they form a valid index: whole
    /// entries, offsets and positions strictly increasing, offsets below `max_relative`,
    /// positions below `log_size`.
    pub fn load(&mut self, bytes: &[u8], max_relative: u64, log_size: u64) -> Option<()> {
        if bytes.len() % OFFSET_ENTRY_LEN as usize != 0 {
            return None;
        }
        let mut entries: Vec<(u32, u32)> = Vec::with_capacity(bytes.len() / 8);
        for e in bytes.chunks_exact(8) {
            let rel = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let pos = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            let ordered = entries.last().is_none_or(|&(r, p)| rel > r && pos > p);
            if !ordered || u64::from(rel) >= max_relative || u64::from(pos) >= log_size {
                return None;
            }
            entries.push((rel, pos));
        }
        self.persisted = entries.len();
        self.entries = entries;
        Some(())
    }

    pub fn push(&mut self, relative_offset: u32, position: u32) {
        self.entries.push((relative_offset, position));
    }

    /// Position of the batch named by the last entry whose relative offset is <=
    /// `relative_offset`, or 0 (start of segment) when there is none.
    pub fn floor_position(&self, relative_offset: u32) -> u32 {
        let i = self
            .entries
            .partition_point(|&(rel, _)| rel <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// Drops spare capacity (a sealed segment's index never grows again).
    pub fn shrink(&mut self) {
        self.entries.shrink_to_fit();
    }

    /// Position of the last entry (a batch start), or 0 when there is none.
    pub fn last_position(&self) -> u64 {
        self.entries.last().map_or(0, |&(_, pos)| u64::from(pos))
    }

    /// Position of the last entry below `position`, or 0 when there is none.
    pub fn last_position_below(&self, position: u64) -> u64 {
        let i = self
            .entries
            .partition_point(|&(_, pos)| u64::from(pos) < position);
        i.checked_sub(1).map_or(0, |i| u64::from(self.entries[i].1))
    }

    /// Keeps only the entries of batches starting below `position` (the log was cut
    /// there). Nothing is persisted any more: the caller empties the file.
    pub fn cut_at(&mut self, position: u64) {
        let keep = self
            .entries
            .partition_point(|&(_, pos)| u64::from(pos) < position);
        self.entries.truncate(keep);
        self.persisted = 0;
    }

    /// A position at or before which every batch starting at or after it has a base offset
    /// above `relative_offset`: the second entry whose (last) relative offset is >=
    /// `relative_offset`. `None` when the index cannot tell (use the segment end).
    pub fn position_after(&self, relative_offset: u32) -> Option<u32> {
        let i = self
            .entries
            .partition_point(|&(rel, _)| rel < relative_offset);
        self.entries.get(i + 1).map(|&(_, pos)| pos)
    }

    /// The file bytes of the entries not yet written, and how many entries that is.
    pub fn unpersisted(&self) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity((self.entries.len() - self.persisted) * 8);
        for &(rel, pos) in &self.entries[self.persisted..] {
            out.extend_from_slice(&rel.to_be_bytes());
            out.extend_from_slice(&pos.to_be_bytes());
        }
        (out, self.entries.len())
    }

    /// Records that the first `count` entries are in the file.
    pub fn mark_persisted(&mut self, count: usize) {
        self.persisted = self.persisted.max(count.min(self.entries.len()));
    }

    /// The whole file as it should be.
    pub fn encode_all(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 8);
        for &(rel, pos) in &self.entries {
            out.extend_from_slice(&rel.to_be_bytes());
            out.extend_from_slice(&pos.to_be_bytes());
        }
        out
    }
}

/// Time index of one segment.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    pub file: Arc<DataFile>,
    /// `(timestamp, relative offset)`, timestamps strictly increasing, offsets non-decreasing.
    entries: Vec<(i64, u32)>,
    persisted: usize,
}

impl TimeIndex {
    pub fn new(file: DataFile) -> TimeIndex {
        TimeIndex {
            file: Arc::new(file),
            entries: Vec::new(),
            persisted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The last entry: the segment's largest timestamp so far and its relative offset.
    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// Loads entries from the file's bytes; `None` unless they form a valid time index:
    /// whole entries, timestamps strictly increasing, offsets non-decreasing and below
    /// `max_relative`.
    pub fn load(&mut self, bytes: &[u8], max_relative: u64) -> Option<()> {
        if bytes.len() % TIME_ENTRY_LEN as usize != 0 {
            return None;
        }
        let mut entries: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / 12);
        for e in bytes.chunks_exact(12) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&e[..8]);
            let ts = i64::from_be_bytes(ts);
            let rel = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            let ordered = entries.last().is_none_or(|&(t, r)| ts > t && rel >= r);
            if !ordered || u64::from(rel) >= max_relative {
                return None;
            }
            entries.push((ts, rel));
        }
        self.persisted = entries.len();
        self.entries = entries;
        Some(())
    }

    /// Appends `(timestamp, relative offset)` if `timestamp` is larger than the last entry's.
    pub fn maybe_push(&mut self, timestamp: i64, relative_offset: u32) {
        if self.entries.last().is_none_or(|&(ts, _)| timestamp > ts) {
            self.entries.push((timestamp, relative_offset));
        }
    }

    /// Drops spare capacity (a sealed segment's index never grows again).
    pub fn shrink(&mut self) {
        self.entries.shrink_to_fit();
    }

    /// Keeps only the entries naming batches below relative offset `relative_end` (the log
    /// was cut there). Nothing is persisted any more: the caller empties the file.
    pub fn cut_at(&mut self, relative_end: u32) {
        let keep = self.entries.partition_point(|&(_, rel)| rel < relative_end);
        self.entries.truncate(keep);
        self.persisted = 0;
    }

    /// Relative offset of the last entry whose timestamp is < `timestamp`: every batch up to
    /// and including that offset has maxTimestamp < `timestamp`. `None` = scan from the start.
    pub fn last_before(&self, timestamp: i64) -> Option<u32> {
        let i = self.entries.partition_point(|&(ts, _)| ts < timestamp);
        if i == 0 {
            None
        } else {
            Some(self.entries[i - 1].1)
        }
    }

    pub fn unpersisted(&self) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity((self.entries.len() - self.persisted) * 12);
        for &(ts, rel) in &self.entries[self.persisted..] {
            out.extend_from_slice(&ts.to_be_bytes());
            out.extend_from_slice(&rel.to_be_bytes());
        }
        (out, self.entries.len())
    }

    pub fn mark_persisted(&mut self, count: usize) {
        self.persisted = self.persisted.max(count.min(self.entries.len()));
    }

    pub fn encode_all(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 12);
        for &(ts, rel) in &self.entries {
            out.extend_from_slice(&ts.to_be_bytes());
            out.extend_from_slice(&rel.to_be_bytes());
        }
        out
    }
}

/// Makes an index file hold exactly `expected`: leaves it alone when it already does,
/// otherwise truncates and rewrites it. Returns whether it was rewritten.
pub(crate) fn reconcile_file(file: &DataFile, expected: &[u8]) -> Result<bool, StorageError> {
    let len = file.len()?;
    if len == expected.len() as u64 {
        let current = file.read_up_to(0, expected.len())?;
        if current == expected {
            return Ok(false);
        }
    }
    file.truncate(0)?;
    let mut bufs = [std::io::IoSlice::new(expected)];
    file.append_all(&mut bufs, 0)?;
    Ok(true)
}
