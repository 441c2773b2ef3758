//! Transactions in one partition (KIP-98), as Kafka's `ProducerStateManager` and
//! `TransactionIndex` keep them.
//!
//! - A producer's first transactional batch opens a transaction at its base offset; the
//!   transaction stays open until a *marker* (a control batch written by the transaction
//!   coordinator through [`crate::Log::append_marker`]) commits or aborts it. Open
//!   transactions live in the producer state (`producer_state`): each producer entry
//!   carries the first offset of its open transaction, and the table keeps them ordered by
//!   that offset, so the last stable offset (LSO) — the first offset of the oldest open
//!   transaction, at most the durable offset — costs one map lookup.
//! - An abort marker records an [`AbortedTxn`] in the `.txnindex` of the segment the marker
//!   lands in, so `read_committed` consumers can drop the aborted records.
//!
//! `.txnindex` (Kafka's format, one per segment that holds abort markers, named like the
//! segment: `<base offset, 20 digits>.txnindex`): a sequence of 34-byte entries, big-endian,
//! in the order the abort markers were appended (ascending `lastOffset`):
//!
//! | bytes  | field                                                                  |
//! |--------|------------------------------------------------------------------------|
//! | 0..2   | version i16 = 0                                                        |
//! | 2..10  | producerId i64                                                         |
//! | 10..18 | firstOffset i64: the transaction's first offset in this partition      |
//! | 18..26 | lastOffset i64: the abort marker's offset (inside this segment)        |
//! | 26..34 | lastStableOffset i64: the LSO right after the abort (first offset of the oldest transaction still open, else lastOffset + 1) |
//!
//! Entries are appended in memory with the marker and written + fdatasync'd by the log's
//! group commit before the durable offset passes the marker (a new file also gets its
//! directory fsync'd). At open, entries at or after the offset where producer-state replay
//! starts are dropped and re-derived from the replayed control batches, so a crash between
//! the marker's write and the index's loses nothing; a structurally damaged file makes the
//! replay start at or below its segment. Retention and DeleteRecords delete a segment's
//! `.txnindex` with the segment.

use std::io::IoSlice;
use std::path::{Path, PathBuf};

use crate::error::{StorageError, SyncFailure};
use crate::file::{self, DataFile};
use crate::segment::segment_path;

/// One transaction marker (a control batch) to write into a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    /// true: commit; false: abort.
    pub commit: bool,
}

/// A transaction that was aborted in this partition: its data lies in
/// `first_offset..=last_offset` (`last_offset` = the abort marker's offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// A transaction still open in this partition (it holds back the last stable offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenTxn {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_offset: i64,
}

pub(crate) const TXN_INDEX_SUFFIX: &str = "txnindex";
/// Bytes per `.txnindex` entry.
pub const TXN_ENTRY_LEN: usize = 34;
/// The only `.txnindex` entry version.
const TXN_ENTRY_VERSION: i16 = 0;

/// One `.txnindex` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AbortedTxnEntry {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxnEntry {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&TXN_ENTRY_VERSION.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }

    /// Parses one entry; `None` for a short slice or an unknown version.
    pub fn decode(b: &[u8]) -> Option<AbortedTxnEntry> {
        let b = b.get(..TXN_ENTRY_LEN)?;
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(a)
        };
        if i16::from_be_bytes([b[0], b[1]]) != TXN_ENTRY_VERSION {
            return None;
        }
        Some(AbortedTxnEntry {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        })
    }

    pub fn public(&self) -> AbortedTxn {
        AbortedTxn {
            producer_id: self.producer_id,
            first_offset: self.first_offset,
            last_offset: self.last_offset,
        }
    }
}

/// The aborted transactions whose abort marker lies in one segment: the in-memory copy of
/// its `.txnindex` (ascending `last_offset`), and how much of it is on disk.
#[derive(Debug)]
pub(crate) struct TxnIndex {
    path: PathBuf,
    entries: Vec<AbortedTxnEntry>,
    /// Entries written to the file and fdatasync'd (a prefix of `entries`).
    synced: usize,
    /// The file holds exactly `entries` (no file counts as an empty list). Only tracked
    /// during open; lets `reconcile` skip untouched indexes without a system call.
    file_matches: bool,
}

impl TxnIndex {
    /// An empty index for the segment at `base` (no file is created until an entry is
    /// synced).
    pub fn new(dir: &Path, base: i64) -> TxnIndex {
        TxnIndex {
            path: segment_path(dir, base, TXN_INDEX_SUFFIX),
            entries: Vec::new(),
            synced: 0,
            file_matches: true,
        }
    }

    pub fn push(&mut self, entry: AbortedTxnEntry) {
        self.entries.push(entry);
        self.file_matches = false;
    }

    /// Loads the segment's `.txnindex` if it exists. Returns the index of the well-formed
    /// entries and whether the file was damaged (a torn entry, an unknown version, an
    /// entry outside `base..next_offset`, `first_offset > last_offset`, or last offsets not
    /// ascending); entries from the first bad one on are dropped.
    pub fn load(dir: &Path, base: i64, next_offset: i64) -> Result<(TxnIndex, bool), StorageError> {
        let mut index = TxnIndex::new(dir, base);
        let Some(bytes) = file::read_optional(&index.path)? else {
            return Ok((index, false));
        };
        let mut damaged = bytes.len() % TXN_ENTRY_LEN != 0;
        let mut last = i64::MIN;
        for chunk in bytes.chunks_exact(TXN_ENTRY_LEN) {
            match AbortedTxnEntry::decode(chunk) {
                Some(e)
                    if e.last_offset >= base
                        && e.last_offset < next_offset
                        && e.first_offset <= e.last_offset
                        && e.last_offset > last =>
                {
                    last = e.last_offset;
                    index.entries.push(e);
                }
                _ => {
                    damaged = true;
                    break;
                }
            }
        }
        index.synced = index.entries.len();
        index.file_matches = !damaged;
        Ok((index, damaged))
    }

    /// Removes the entries whose abort marker is at or after `offset` and returns them.
    pub fn split_off_from(&mut self, offset: i64) -> Vec<AbortedTxnEntry> {
        let keep = self.entries.partition_point(|e| e.last_offset < offset);
        let removed = self.entries.split_off(keep);
        self.synced = self.synced.min(keep);
        if !removed.is_empty() {
            self.file_matches = false;
        }
        removed
    }

    /// Makes the file hold exactly the in-memory entries (no file when there are none),
    /// fdatasync'd. Returns whether anything changed on disk (then the caller fsyncs the
    /// directory). Used at open, after recovery rebuilt the entries.
    pub fn reconcile(&mut self) -> Result<bool, StorageError> {
        if self.file_matches {
            self.synced = self.entries.len();
            return Ok(false);
        }
        let expected = self.encode_range(0);
        let current = file::read_optional(&self.path)?;
        let changed = match current {
            Some(bytes) if bytes == expected => false,
            None if expected.is_empty() => false,
            Some(_) if expected.is_empty() => {
                file::remove_file(&self.path)?;
                true
            }
            _ => {
                let f = DataFile::open(&self.path, true)?;
                f.truncate(0)?;
                f.append_all(&mut [IoSlice::new(&expected)], 0)?;
                f.sync_data()?;
                true
            }
        };
        self.synced = self.entries.len();
        self.file_matches = true;
        Ok(changed)
    }

    /// Entries not yet on disk: their bytes, the count they bring `synced` to, and the path.
    /// `None` when everything is synced.
    pub fn unsynced(&self) -> Option<(PathBuf, Vec<u8>, usize)> {
        (self.synced < self.entries.len()).then(|| {
            (
                self.path.clone(),
                self.encode_range(self.synced),
                self.entries.len(),
            )
        })
    }

    pub fn mark_synced(&mut self, count: usize) {
        self.synced = self.synced.max(count.min(self.entries.len()));
    }

    pub fn is_synced(&self) -> bool {
        self.synced >= self.entries.len()
    }

    fn encode_range(&self, from: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity((self.entries.len() - from) * TXN_ENTRY_LEN);
        for e in &self.entries[from..] {
            e.encode(&mut out);
        }
        out
    }
}

/// Appends `bytes` to the `.txnindex` at `path` (creating it) and fdatasyncs it. Returns
/// whether the file was created (its directory entry then needs an fsync). A write that
/// fails (a full disk) is cut back and can be retried; a failed fdatasync cannot.
pub(crate) fn append_synced(path: &Path, bytes: &[u8]) -> Result<bool, SyncFailure> {
    let created = !path.exists();
    let f = DataFile::open(path, true).map_err(SyncFailure::Retry)?;
    let end = f.len().map_err(SyncFailure::Retry)?;
    if let Err(e) = f.append_all(&mut [IoSlice::new(bytes)], end) {
        // If even the cut fails, the torn entry is found (and the index rebuilt) at open.
        let _ = f.truncate(end);
        return Err(SyncFailure::Retry(e));
    }
    f.sync_data().map_err(SyncFailure::Fatal)?;
    Ok(created)
}

/// Aborted transactions overlapping `[from, upper)` among `indexes` (the segments' indexes,
/// oldest first): `last_offset >= from && first_offset < upper`, ordered by first offset.
/// Stops at the first entry whose recorded LSO is at or above `upper`: every transaction
/// aborted later started at or after that LSO (Kafka's `TxnIndexSearchResult.isComplete`).
pub(crate) fn collect_aborted<'a>(
    indexes: impl Iterator<Item = &'a TxnIndex>,
    from: i64,
    upper: i64,
) -> Vec<AbortedTxn> {
    let mut out = Vec::new();
    'segments: for index in indexes {
        let start = index.entries.partition_point(|e| e.last_offset < from);
        for e in &index.entries[start..] {
            if e.first_offset < upper {
                out.push(e.public());
            }
            if e.last_stable_offset >= upper {
                break 'segments;
            }
        }
    }
    out.sort_by_key(|a| (a.first_offset, a.last_offset));
    out
}

#[cfg(test)]
#[path = "txn_tests.rs"]
mod tests;
