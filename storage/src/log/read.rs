//! Reads by offset and by timestamp. Each snapshots what it needs under the state lock and
//! does its I/O (`pread`) without it. A read error fails that read only (a fetch answers
//! KAFKA_STORAGE_ERROR for the partition); the log stays online.
//!
//! A truncation may cut a segment while a reader works from its snapshot: every read
//! notes the log's truncation count with its snapshot and starts again when it changed, so
//! it never returns bytes a truncation removed (or new bytes written where they were).

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{Log, ReadResult, TimestampOffset};
use crate::batch::{self, BatchHeader};
use crate::error::StorageError;
use crate::file;
use crate::flusher::lock;
use crate::segment::SegmentSource;

/// Broker-wide bound on the bytes of fetch reads held in memory (read but not yet written
/// to a socket and dropped). Past it, a read returns only the batch that holds the
/// requested offset (at least one batch, as Kafka's minOneMessage), so slow consumers with
/// large fetch sizes cannot make the broker hold an unbounded amount of record data.
pub(crate) const READ_BYTES_BUDGET: usize = 128 << 20;

/// How many times a read starts again after a concurrent truncation before giving up.
const RETRIES_AFTER_TRUNCATION: usize = 8;

impl Log {
    /// Reads whole batches from `offset`, only batches with base offset < `upper` (the
    /// server passes the durable offset = high watermark). Errors with OffsetOutOfRange
    /// when offset < log_start_offset or offset > log_end_offset.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<ReadResult, StorageError> {
        #[cfg(debug_assertions)]
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let max_bytes = if file::read_bytes_outstanding() >= READ_BYTES_BUDGET {
            1
        } else {
            max_bytes
        };
        self.retry_after_truncation(|| self.read_once(offset, max_bytes, upper))
    }

    /// Runs `read` (which snapshots under the state lock, then reads) until it completes
    /// without a truncation of the log having started meanwhile.
    fn retry_after_truncation<T>(
        &self,
        mut read: impl FnMut() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        for _ in 0..RETRIES_AFTER_TRUNCATION {
            let before = self.truncations.load(Ordering::SeqCst);
            let result = read();
            if self.truncations.load(Ordering::SeqCst) == before {
                return result;
            }
        }
        Err(StorageError::io(
            "read",
            &self.dir,
            std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the log was truncated again during every attempt to read it",
            ),
        ))
    }

    fn read_once(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<ReadResult, StorageError> {
        let mut after_base: Option<i64> = None;
        loop {
            let (source, position, limit) = {
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
                (seg.source(), u64::from(position), limit)
            };
            if let Some(records) =
                read_in_segment(&source, position, limit, offset, max_bytes, upper)?
            {
                return Ok(ReadResult { records });
            }
        }
    }

    /// How many bytes [`Log::read`] from `offset` below `upper` could return, from the
    /// segments' sizes and offset indexes alone (no I/O, one short hold of the state lock):
    /// what a waiting fetch checks on each wake-up instead of reading. An upper bound: the
    /// sparse index puts each end up to one index interval (`index.interval.bytes`) beyond
    /// the exact batch boundary, and it is exact when `offset` is at or above `upper` (0).
    /// Counting stops once `enough` is reached. `None` when `offset` is out of range (the
    /// read would fail, which a fetch answers at once).
    pub fn bytes_available(&self, offset: i64, upper: i64, enough: u64) -> Option<u64> {
        let st = lock(&self.state);
        let (start, end) = (st.log_start_offset, st.log_end_offset());
        if offset < start || offset > end {
            return None;
        }
        let upper = upper.min(end);
        if offset >= upper {
            return Some(0);
        }
        let mut total = 0u64;
        for seg in &st.segments[st.segment_for(offset)..] {
            if seg.base_offset >= upper || total >= enough {
                break;
            }
            let from = if seg.base_offset <= offset {
                u64::from(seg.offset_index.floor_position(seg.relative(offset)))
            } else {
                0
            };
            let to = seg
                .offset_index
                .position_after(seg.relative(upper))
                .map_or(seg.size, u64::from)
                .min(seg.size);
            total = total.saturating_add(to.saturating_sub(from));
        }
        Some(total)
    }

    /// How many times [`Log::read`] was called (debug builds only: for tests that count
    /// the reads a request costs).
    #[cfg(debug_assertions)]
    pub fn reads_started(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The first record whose timestamp is >= `ts` at or after the log start offset
    /// (ListOffsets by time); `None` if there is none. Exact for uncompressed CreateTime
    /// batches; for compressed or LogAppendTime batches, the first offset of the first batch
    /// whose maxTimestamp is >= `ts` (at least the log start offset), with that maxTimestamp.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<TimestampOffset>, StorageError> {
        self.retry_after_truncation(|| self.offset_for_timestamp_once(ts))
    }

    fn offset_for_timestamp_once(&self, ts: i64) -> Result<Option<TimestampOffset>, StorageError> {
        let mut after_base: Option<i64> = None;
        loop {
            let (source, position, log_start) = {
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
                (seg.source(), u64::from(position), log_start)
            };
            let mut pos = position;
            while pos < source.size() {
                let h = source.header_at(pos)?;
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
}

/// Reads from one segment: finds the batch holding `offset` by scanning headers from
/// `position`, then returns it and the following whole batches below `upper` up to
/// `max_bytes`, reading no further than `limit` past the first batch (no batch starting at
/// or after `limit` is below `upper`). `None` when the segment has no batch at or after
/// `offset`.
fn read_in_segment(
    source: &SegmentSource,
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
        let h = source.header_at(pos)?;
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
mod tests {
    use crate::config::LogConfig;
    use crate::log::tests::{fill, open};
    use crate::testing::decode_records;

    /// Large windows of the active segment: the records must be exactly those appended,
    /// from any offset, and a window handed out earlier keeps its bytes while appends
    /// continue behind it.
    #[test]
    fn large_reads_of_the_active_segment_return_exactly_the_appended_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig::default());
        // 7 batches of ~100 KiB in one (active) segment.
        let appended = fill(&log, &[25; 7], 4000);
        let end = log.log_end_offset();
        let held = log.read(0, 1 << 20, end).unwrap().records;
        assert!(held.len() > 512 * 1024, "a large window");
        for offset in [0, 1, 24, 25, 60, 150, end - 1] {
            for max_bytes in [1, 150 * 1024, 1 << 20] {
                let got = decode_records(&log.read(offset, max_bytes, end).unwrap().records);
                assert!(!got.is_empty());
                let first = got[0].offset;
                assert!(
                    first <= offset && offset < first + 25,
                    "the batch holding {offset}"
                );
                let want = &appended[first as usize..first as usize + got.len()];
                assert_eq!(&got[..], want, "offset {offset} max_bytes {max_bytes}");
            }
        }
        fill(&log, &[25; 3], 4000);
        let again = decode_records(&held);
        assert_eq!(&again[..], &appended[..again.len()]);
        assert_eq!(log.read(end, 1 << 20, end).unwrap().records.len(), 0);
    }
}
