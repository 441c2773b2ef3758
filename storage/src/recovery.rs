//! Opening a partition directory: find the segments, rebuild their in-memory state and
//! indexes from the batch headers, and after an unclean shutdown validate every batch
//! (CRC included) past the recovery point, truncating the first torn or corrupt batch and
//! everything after it.
//!
//! A segment is *trusted* when the previous run shut down cleanly, or when it lies wholly
//! below the checkpointed recovery point (everything there was fsync'd). Trusted segments
//! are scanned header by header (lengths, magic, counts, offset order); the others also
//! have each batch's CRC-32C checked. Either scan stops at the first bad batch.
//!
//! The log is served up to the first bad batch and continues from there. When the damage
//! is in a sealed segment (not the active one, whose torn tail is the normal result of a
//! crash), nothing is destroyed: the cut bytes are copied to
//! `<base>.log.tail-<position>.quarantined` and every later segment's `.log` is renamed to
//! `<base>.log.quarantined` (their indexes are derived data and removed). Recovery ignores
//! quarantined files; an operator may salvage them.

use std::path::Path;

use crate::batch::{self, HEADER_LEN};
use crate::config::LogConfig;
use crate::error::StorageError;
use crate::file::{self, DataFile};
use crate::index::reconcile_file;
use crate::segment::{
    index_digest, parse_segment_name, segment_path, Segment, INDEX_DIGEST_SUFFIX, INDEX_SUFFIX,
    LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::txn::TXN_INDEX_SUFFIX;

/// Read-ahead of a validating scan (it reads every byte anyway).
const VALIDATING_CHUNK: usize = 1 << 20;
/// Read-ahead of a header-only scan: small, so batches larger than this are mostly skipped
/// rather than read.
const HEADER_CHUNK: usize = 64 << 10;
/// Last suffix of files recovery moved aside (see the module doc).
pub(crate) const QUARANTINE_SUFFIX: &str = "quarantined";

/// Reads a file through a forward-moving buffer, so a scan costs one pread per chunk.
struct ChunkReader<'a> {
    file: &'a DataFile,
    buf: Vec<u8>,
    start: u64,
    chunk: usize,
}

impl<'a> ChunkReader<'a> {
    fn new(file: &'a DataFile, chunk: usize) -> Self {
        ChunkReader {
            file,
            buf: Vec::new(),
            start: 0,
            chunk,
        }
    }

    /// Up to `len` bytes at `position` (fewer only at end of file).
    fn get(&mut self, position: u64, len: usize) -> Result<&[u8], StorageError> {
        let have_end = self.start + self.buf.len() as u64;
        if position < self.start || position + len as u64 > have_end {
            self.buf = self.file.read_up_to(position, len.max(self.chunk))?;
            self.start = position;
        }
        let from = (position - self.start) as usize;
        let to = (from + len).min(self.buf.len());
        Ok(&self.buf[from..to])
    }
}

/// The result of scanning one segment's `.log`.
pub(crate) struct ScanOutcome {
    /// Where the first bad batch starts and why it is bad; `None` if the whole file is good.
    pub fault: Option<(u64, String)>,
    /// The file's length before any truncation.
    pub file_len: u64,
}

/// Scans the `.log` of `seg` (whose in-memory state must be empty), filling the in-memory
/// indexes and counters from every good batch. `validate_crc` also checks each CRC;
/// `limit` is the next segment's base offset, which no batch may reach.
pub(crate) fn scan_segment(
    seg: &mut Segment,
    config: &LogConfig,
    validate_crc: bool,
    limit: Option<i64>,
) -> Result<ScanOutcome, StorageError> {
    let log = std::sync::Arc::clone(&seg.log);
    let file_len = log.len()?;
    let chunk = if validate_crc {
        VALIDATING_CHUNK
    } else {
        HEADER_CHUNK
    };
    let mut reader = ChunkReader::new(&log, chunk);
    let mut position = 0u64;
    let mut expected = seg.base_offset;
    while position < file_len {
        let available = usize::try_from(file_len - position).unwrap_or(usize::MAX);
        let head = reader.get(position, HEADER_LEN)?;
        let h = match batch::check_header(head, available) {
            Ok(h) => h,
            Err(fault) => {
                return Ok(ScanOutcome {
                    fault: Some((position, fault.to_string())),
                    file_len,
                })
            }
        };
        if validate_crc {
            let whole = reader.get(position, h.size())?;
            if let Err(fault) = batch::check_batch(whole) {
                return Ok(ScanOutcome {
                    fault: Some((position, fault.to_string())),
                    file_len,
                });
            }
        }
        // Strata's logs have no offset gaps (no compaction yet), so a base offset other than
        // the next expected one means the (un-checksummed) offset field is corrupt.
        let reason = if h.base_offset != expected {
            Some(format!(
                "base offset {} is not the expected {expected}",
                h.base_offset
            ))
        } else if limit.is_some_and(|l| h.last_offset() >= l) {
            Some(format!(
                "last offset {} reaches the next segment",
                h.last_offset()
            ))
        } else if h.last_offset() - seg.base_offset > i64::from(u32::MAX) {
            Some(format!(
                "offset {} does not fit the segment's index",
                h.last_offset()
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Ok(ScanOutcome {
                fault: Some((position, reason)),
                file_len,
            });
        }
        if seg.created_ms.is_none() && h.max_timestamp >= 0 {
            seg.created_ms = Some(h.max_timestamp);
        }
        seg.note_batch(position, &h, config.index_interval_bytes);
        expected = h.next_offset();
        position += h.size() as u64;
    }
    Ok(ScanOutcome {
        fault: None,
        file_len,
    })
}

/// What [`load_segments`] found.
pub(crate) struct LoadedSegments {
    /// Oldest first; the last is the active one.
    pub segments: Vec<Segment>,
    /// Indices of the untrusted segments that were scanned (they must be fsync'd).
    pub untrusted: Vec<usize>,
    /// Base offsets (ascending) of the kept segments that have a `.txnindex` file.
    pub txn_index_bases: Vec<i64>,
}

/// Loads every segment of `dir`, oldest first; the last is the active one (created at
/// `empty_base` when the directory holds none). Untrusted bytes are validated, a bad tail is
/// truncated (reported with `tracing::warn!`), later segments are moved aside, and index
/// files that differ from the rebuilt indexes are rewritten. Sealed segments come back
/// reading through the descriptor cache.
pub(crate) fn load_segments(
    dir: &Path,
    config: &LogConfig,
    clean: bool,
    recovery_point: i64,
    empty_base: i64,
) -> Result<LoadedSegments, StorageError> {
    let mut bases = Vec::new();
    let mut index_files = Vec::new();
    let mut txn_index_bases = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            file::remove_file(&entry.path())?;
            continue;
        }
        match parse_segment_name(name) {
            Some((base, LOG_SUFFIX)) => bases.push(base),
            Some((base, suffix @ (INDEX_SUFFIX | TIME_INDEX_SUFFIX | TXN_INDEX_SUFFIX))) => {
                if suffix == TXN_INDEX_SUFFIX {
                    txn_index_bases.push(base);
                }
                index_files.push((base, entry.path()))
            }
            _ => {}
        }
    }
    bases.sort_unstable();
    for (base, path) in index_files {
        if bases.binary_search(&base).is_err() {
            tracing::warn!(file = %path.display(), "removing index file without a segment");
            file::remove_file(&path)?;
        }
    }
    if bases.is_empty() {
        return Ok(LoadedSegments {
            segments: vec![Segment::create(dir, empty_base)?],
            untrusted: vec![0],
            txn_index_bases: Vec::new(),
        });
    }

    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    let mut scanned_untrusted = Vec::new();
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let trusted = clean || next_base.is_some_and(|n| n <= recovery_point);
        if let (true, Some(next_base)) = (trusted, next_base) {
            if let Some(seg) = load_sealed_from_indexes(dir, base, next_base)? {
                segments.push(seg);
                continue;
            }
        }
        let mut seg = Segment::open_files(dir, base)?;
        let outcome = scan_segment(&mut seg, config, !trusted, next_base)?;
        if !trusted {
            scanned_untrusted.push(i);
        }
        let mut stop = false;
        if let Some((position, reason)) = outcome.fault {
            tracing::warn!(
                dir = %dir.display(),
                file = %seg.log.path().display(),
                position,
                truncated_bytes = outcome.file_len - position,
                %reason,
                "truncating torn or corrupt log tail"
            );
            file::remove_file(&segment_path(dir, base, INDEX_DIGEST_SUFFIX))?;
            if next_base.is_some() {
                // Both the copy of the cut bytes and the later segments' new names are
                // durable before anything is cut: a crash before the cut finds the damage
                // again, one after it finds a log that ends at the damage, never a log with
                // later segments after a hole.
                quarantine_tail(dir, &seg.log, base, position, outcome.file_len)?;
                quarantine_segments(dir, &bases[i + 1..])?;
                file::sync_dir(dir)?;
            }
            seg.log.truncate(position)?;
            seg.log.sync_data()?;
            stop = true;
        }
        let index_written = rewrite_index(&seg.offset_index.file, &seg.offset_index.encode_all());
        if index_written {
            seg.offset_index.mark_persisted(seg.offset_index.len());
        }
        let last = stop || next_base.is_none();
        if !last {
            seg.seal();
        }
        let time_index_written = rewrite_index(&seg.time_index.file, &seg.time_index.encode_all());
        if time_index_written {
            seg.time_index.mark_persisted(seg.time_index.len());
        }
        if !last && index_written && time_index_written {
            seg.indexes_synced = trusted;
            if let Err(error) = write_index_digest(dir, &seg) {
                // Without its digest the segment is scanned again at the next open.
                tracing::warn!(dir = %dir.display(), base_offset = base, %error,
                    "cannot write the index digest");
            }
        }
        if !last {
            // A sealed segment holds no descriptor of its own (see `descriptor_cache`), so
            // opening a partition of thousands of segments needs a bounded number of them.
            seg.log = std::sync::Arc::new(seg.log.to_cached());
        }
        segments.push(seg);
        if stop {
            break;
        }
    }
    txn_index_bases.retain(|b| segments.iter().any(|s| s.base_offset == *b));
    txn_index_bases.sort_unstable();
    Ok(LoadedSegments {
        segments,
        untrusted: scanned_untrusted,
        txn_index_bases,
    })
}

/// Moves aside the `.log` of every segment at `bases` (those after a damaged one) as
/// `<base>.log.quarantined` and removes their derived files. The caller fsyncs `dir`.
fn quarantine_segments(dir: &Path, bases: &[i64]) -> Result<(), StorageError> {
    for &later in bases {
        let from = segment_path(dir, later, LOG_SUFFIX);
        let to = dir.join(format!("{later:020}.{LOG_SUFFIX}.{QUARANTINE_SUFFIX}"));
        tracing::warn!(dir = %dir.display(), base_offset = later, moved_to = %to.display(),
            "moving aside a segment after a damaged one; the partition continues from the damage");
        file::rename(&from, &to)?;
        for suffix in [
            INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            INDEX_DIGEST_SUFFIX,
            TXN_INDEX_SUFFIX,
        ] {
            file::remove_file(&segment_path(dir, later, suffix))?;
        }
    }
    Ok(())
}

/// Makes an index file hold exactly `expected` (the index rebuilt from the log). Index
/// files are derived data, so a failure (a full disk) is not an error: the file is emptied
/// instead, and the flusher writes the entries later (a sealed segment without a matching
/// digest is scanned again at the next open). Returns whether the file holds `expected`.
fn rewrite_index(file: &DataFile, expected: &[u8]) -> bool {
    match reconcile_file(file, expected) {
        Ok(rebuilt) => {
            if rebuilt {
                tracing::info!(file = %file.path().display(), "rebuilt index");
            }
            true
        }
        Err(error) => {
            tracing::warn!(file = %file.path().display(), %error,
                "cannot rewrite the index file yet; the flusher writes it later");
            let _ = file.truncate(0);
            false
        }
    }
}

/// Copies bytes `from..len` of a damaged sealed segment's `.log` (about to be cut) to
/// `<base>.log.tail-<from>.quarantined`, durably, in 1 MiB pieces.
fn quarantine_tail(
    dir: &Path,
    log: &DataFile,
    base: i64,
    from: u64,
    len: u64,
) -> Result<(), StorageError> {
    let path = dir.join(format!(
        "{base:020}.{LOG_SUFFIX}.tail-{from}.{QUARANTINE_SUFFIX}"
    ));
    let out = DataFile::open(&path, true)?;
    out.truncate(0)?;
    let mut position = from;
    while position < len {
        let piece = log.read_up_to(position, VALIDATING_CHUNK.min((len - position) as usize))?;
        if piece.is_empty() {
            break;
        }
        out.append_all(&mut [std::io::IoSlice::new(&piece)], position - from)?;
        position += piece.len() as u64;
    }
    out.sync_data()?;
    tracing::warn!(file = %path.display(), bytes = position - from,
        "kept the cut tail of a damaged sealed segment");
    Ok(())
}

/// Writes a sealed segment's index digest sidecar unless it already holds the right one.
pub(crate) fn write_index_digest(dir: &Path, seg: &Segment) -> Result<(), StorageError> {
    let path = segment_path(dir, seg.base_offset, INDEX_DIGEST_SUFFIX);
    let digest = seg.index_digest();
    if file::read_optional(&path)?.as_deref() == Some(digest.as_bytes()) {
        return Ok(());
    }
    let name = format!("{:020}.{INDEX_DIGEST_SUFFIX}", seg.base_offset);
    file::write_unsynced(dir, &name, digest.as_bytes())
}

/// Loads a trusted sealed segment from its index files alone, without reading its `.log`:
/// only when its digest sidecar matches the `.log` size and both index files byte for byte,
/// the indexes are well formed, and the first batch header is sound. `None` = scan instead.
fn load_sealed_from_indexes(
    dir: &Path,
    base: i64,
    next_base: i64,
) -> Result<Option<Segment>, StorageError> {
    let Some(digest) = file::read_optional(&segment_path(dir, base, INDEX_DIGEST_SUFFIX))? else {
        return Ok(None);
    };
    let mut seg = Segment::open_files(dir, base)?;
    let size = seg.log.len()?;
    let index_len = usize::try_from(seg.offset_index.file.len()?).unwrap_or(usize::MAX);
    let time_len = usize::try_from(seg.time_index.file.len()?).unwrap_or(usize::MAX);
    let index_bytes = seg.offset_index.file.read_up_to(0, index_len)?;
    let time_bytes = seg.time_index.file.read_up_to(0, time_len)?;
    if digest != index_digest(size, &index_bytes, &time_bytes).as_bytes() {
        return Ok(None);
    }
    let span = u64::try_from(next_base - base).unwrap_or(0);
    if seg.offset_index.load(&index_bytes, span, size).is_none()
        || seg.time_index.load(&time_bytes, span).is_none()
        || size < HEADER_LEN as u64
    {
        return Ok(None);
    }
    let mut head = [0u8; HEADER_LEN];
    seg.log.read_exact_at(&mut head, 0)?;
    let available = usize::try_from(size).unwrap_or(usize::MAX);
    match batch::check_header(&head, available) {
        Ok(h) if h.base_offset == base => {
            seg.created_ms = (h.max_timestamp >= 0).then_some(h.max_timestamp);
        }
        _ => return Ok(None),
    }
    seg.size = size;
    seg.next_offset = next_base;
    if let Some((timestamp, rel)) = seg.time_index.last() {
        seg.max_timestamp = timestamp;
        seg.offset_of_max_timestamp = base + i64::from(rel);
    }
    seg.seal();
    seg.indexes_synced = true;
    seg.log = std::sync::Arc::new(seg.log.to_cached());
    Ok(Some(seg))
}

#[cfg(test)]
#[path = "recovery_tests.rs"]
mod tests;
