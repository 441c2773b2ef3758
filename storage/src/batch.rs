//! Kafka RecordBatch v2: header layout and validation. `Log::append` checks headers and
//! CRCs only; the records of a produced batch are walked, without being copied, by
//! [`crate::records::validate_records`] on the produce path, and `first_record_at_or_after`
//! walks uncompressed records for timestamp lookups.
//!
//! Header layout (big-endian), byte offsets from the start of the batch:
//!
//! | bytes  | field                                                          |
//! |--------|----------------------------------------------------------------|
//! | 0..8   | baseOffset i64 (assigned by the broker; outside the CRC)        |
//! | 8..12  | batchLength i32 = total size - 12                               |
//! | 12..16 | partitionLeaderEpoch i32 (outside the CRC)                      |
//! | 16     | magic i8 = 2                                                    |
//! | 17..21 | crc u32: CRC-32C (Castagnoli) of bytes 21..end                  |
//! | 21..23 | attributes i16: bits 0-2 compression, 3 timestamp type (1 = LogAppendTime), 4 transactional, 5 control |
//! | 23..27 | lastOffsetDelta i32                                             |
//! | 27..35 | baseTimestamp i64                                               |
//! | 35..43 | maxTimestamp i64                                                |
//! | 43..51 | producerId i64                                                  |
//! | 51..53 | producerEpoch i16                                               |
//! | 53..57 | baseSequence i32                                                |
//! | 57..61 | recordCount i32 = lastOffsetDelta + 1                           |
//! | 61..   | records                                                         |

/// Bytes before `batchLength` counts: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 61;
pub(crate) const BASE_OFFSET: usize = 0;
pub(crate) const LENGTH: usize = 8;
pub(crate) const PARTITION_LEADER_EPOCH: usize = 12;
pub(crate) const MAGIC: usize = 16;
pub(crate) const CRC: usize = 17;
pub(crate) const ATTRIBUTES: usize = 21;
pub(crate) const LAST_OFFSET_DELTA: usize = 23;
pub(crate) const BASE_TIMESTAMP: usize = 27;
pub(crate) const MAX_TIMESTAMP: usize = 35;
pub(crate) const PRODUCER_ID: usize = 43;
pub(crate) const PRODUCER_EPOCH: usize = 51;
pub(crate) const BASE_SEQUENCE: usize = 53;
pub(crate) const RECORD_COUNT: usize = 57;

/// Attribute bit: the batch's timestamps are LogAppendTime.
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit: the batch is part of a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit: control batch (transaction markers).
pub const ATTR_CONTROL: i16 = 0x20;
/// Attribute bits 0-2: compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// The fields of a batch header the log needs. Parsed from the first [`HEADER_LEN`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// `batchLength`: bytes after the length field.
    pub batch_length: i32,
    /// `partitionLeaderEpoch`: the epoch of the leader that appended the batch (stamped by
    /// the log; -1 = none). Outside the CRC.
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    /// `producerId`; -1 for a batch from a producer that is not idempotent.
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// `baseSequence`: the sequence number of the first record; -1 when not idempotent.
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses a header; `None` when fewer than [`HEADER_LEN`] bytes are given.
    pub fn parse(bytes: &[u8]) -> Option<BatchHeader> {
        if bytes.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(bytes, BASE_OFFSET),
            batch_length: be_i32(bytes, LENGTH),
            partition_leader_epoch: be_i32(bytes, PARTITION_LEADER_EPOCH),
            magic: bytes[MAGIC] as i8,
            crc: be_u32(bytes, CRC),
            attributes: be_i16(bytes, ATTRIBUTES),
            last_offset_delta: be_i32(bytes, LAST_OFFSET_DELTA),
            base_timestamp: be_i64(bytes, BASE_TIMESTAMP),
            max_timestamp: be_i64(bytes, MAX_TIMESTAMP),
            producer_id: be_i64(bytes, PRODUCER_ID),
            producer_epoch: be_i16(bytes, PRODUCER_EPOCH),
            base_sequence: be_i32(bytes, BASE_SEQUENCE),
            record_count: be_i32(bytes, RECORD_COUNT),
        })
    }

    /// Total size of the batch in bytes, header included. Only meaningful once
    /// [`check_header`] accepted the header.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset right after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Whether the batch comes from an idempotent (or transactional) producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record: `baseSequence + lastOffsetDelta`, wrapping past
    /// `i32::MAX` to 0 as Kafka's `DefaultRecordBatch.incrementSequence` does.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `sequence + increment`, wrapping past `i32::MAX` to 0 (Kafka's sequence arithmetic).
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// Why bytes are not a valid batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchFault {
    /// Fewer bytes than a header (`available` of [`HEADER_LEN`]).
    ShortHeader { available: usize },
    /// Magic byte other than 2.
    Magic(i8),
    /// `batchLength` smaller than a header or larger than the bytes that follow.
    Length { batch_length: i32, available: usize },
    /// Stored CRC differs from the CRC-32C of bytes 21..end.
    Crc { stored: u32, computed: u32 },
    /// `recordCount` is not `lastOffsetDelta + 1`, or not positive.
    Count {
        record_count: i32,
        last_offset_delta: i32,
    },
}

impl std::fmt::Display for BatchFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchFault::ShortHeader { available } => {
                write!(f, "only {available} bytes left, a batch header needs {HEADER_LEN}")
            }
            BatchFault::Magic(m) => write!(f, "magic {m}, expected 2"),
            BatchFault::Length {
                batch_length,
                available,
            } => write!(
                f,
                "batch length {batch_length} does not fit the {available} bytes that follow the length field"
            ),
            BatchFault::Crc { stored, computed } => {
                write!(f, "CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            BatchFault::Count {
                record_count,
                last_offset_delta,
            } => write!(
                f,
                "record count {record_count} does not equal lastOffsetDelta {last_offset_delta} + 1"
            ),
        }
    }
}

/// Checks everything about a batch that its header alone can tell, given that `available`
/// bytes (counted from the start of the batch) exist: magic, length, record count.
pub fn check_header(header: &[u8], available: usize) -> Result<BatchHeader, BatchFault> {
    if header.len() > MAGIC && header[MAGIC] as i8 != 2 {
        return Err(BatchFault::Magic(header[MAGIC] as i8));
    }
    let h = BatchHeader::parse(header).ok_or(BatchFault::ShortHeader {
        available: header.len().min(available),
    })?;
    let after_length = available.saturating_sub(LOG_OVERHEAD);
    if h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 || h.batch_length as usize > after_length
    {
        return Err(BatchFault::Length {
            batch_length: h.batch_length,
            available: after_length,
        });
    }
    if h.record_count <= 0
        || h.last_offset_delta < 0
        || i64::from(h.record_count) != i64::from(h.last_offset_delta) + 1
    {
        return Err(BatchFault::Count {
            record_count: h.record_count,
            last_offset_delta: h.last_offset_delta,
        });
    }
    Ok(h)
}

/// CRC-32C of a batch's checksummed part (bytes 21..end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES..])
}

/// Checks a whole batch at the start of `bytes` (which may hold more after it): header rules
/// and the CRC. Returns the header; the batch is `bytes[..header.size()]`.
pub fn check_batch(bytes: &[u8]) -> Result<BatchHeader, BatchFault> {
    let h = check_header(&bytes[..bytes.len().min(HEADER_LEN)], bytes.len())?;
    let computed = compute_crc(&bytes[..h.size()]);
    if computed != h.crc {
        return Err(BatchFault::Crc {
            stored: h.crc,
            computed,
        });
    }
    Ok(h)
}

/// Stamps a batch with LogAppendTime as Kafka does (`setMaxTimestamp`): sets the timestamp
/// type attribute, writes `now_ms` as maxTimestamp and recomputes the CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, ATTRIBUTES) | ATTR_LOG_APPEND_TIME;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Control record type (the `type` field of a control record's key): abort marker.
pub const CONTROL_TYPE_ABORT: i16 = 0;
/// Control record type: commit marker.
pub const CONTROL_TYPE_COMMIT: i16 = 1;

/// Appends a zigzag varint (Kafka's `varint`/`varlong`).
pub fn put_varlong(out: &mut impl bytes::BufMut, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Bytes [`put_varlong`] writes for `value` (1 to 10).
pub fn varlong_len(value: i64) -> usize {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// A transaction marker as Kafka writes it (`MemoryRecords.withEndTransactionMarker`): one
/// uncompressed RecordBatch v2 (base offset 0, to be assigned; partitionLeaderEpoch -1;
/// attributes transactional | control; baseSequence -1; both timestamps `timestamp_ms`)
/// holding one record whose key is `version i16 = 0, type i16` (0 abort, 1 commit) and
/// whose value is `version i16 = 0, coordinatorEpoch i32`, with a valid CRC-32C.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
    timestamp_ms: i64,
) -> Vec<u8> {
    let kind = if commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    let mut record = Vec::with_capacity(20);
    record.push(0); // record attributes
    put_varlong(&mut record, 0); // timestampDelta
    put_varlong(&mut record, 0); // offsetDelta
    put_varlong(&mut record, 4); // key length
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&kind.to_be_bytes());
    put_varlong(&mut record, 6); // value length
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&coordinator_epoch.to_be_bytes());
    put_varlong(&mut record, 0); // headers
    let mut out = vec![0u8; HEADER_LEN];
    put_varlong(&mut out, record.len() as i64);
    out.extend_from_slice(&record);
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[LENGTH..LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
    out[MAGIC] = 2;
    out[ATTRIBUTES..ATTRIBUTES + 2]
        .copy_from_slice(&(ATTR_TRANSACTIONAL | ATTR_CONTROL).to_be_bytes());
    out[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&0i32.to_be_bytes());
    out[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    out[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    out[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    out[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&producer_epoch.to_be_bytes());
    out[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
    out[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&1i32.to_be_bytes());
    let crc = compute_crc(&out);
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The control record type (key bytes 2..4; 0 abort, 1 commit) of the first record of a
/// control batch; `None` when `batch` is not an uncompressed control batch or its first
/// record's key is shorter than 4 bytes. Kafka writes markers uncompressed, one record each.
pub fn control_record_type(batch: &[u8]) -> Option<i16> {
    control_record(batch).map(|(kind, _)| kind)
}

/// The first record of a control batch as `(type, coordinator epoch)`: the type as
/// [`control_record_type`]; the coordinator epoch is value bytes 2..6 of a transaction
/// marker (-1 when the value is shorter, as for control records that are not markers).
pub fn control_record(batch: &[u8]) -> Option<(i16, i32)> {
    let h = BatchHeader::parse(batch)?;
    if !h.is_control() || h.compression() != 0 {
        return None;
    }
    let mut pos = HEADER_LEN;
    let _length = read_varlong(batch, &mut pos)?;
    pos += 1; // record attributes
    let _timestamp_delta = read_varlong(batch, &mut pos)?;
    let _offset_delta = read_varlong(batch, &mut pos)?;
    let key_len = usize::try_from(read_varlong(batch, &mut pos)?).ok()?;
    if key_len < 4 {
        return None;
    }
    let key = batch.get(pos..pos.checked_add(key_len)?)?;
    let kind = be_i16(key, 2);
    pos += key_len;
    let value_len = read_varlong(batch, &mut pos)?;
    let coordinator_epoch = match usize::try_from(value_len) {
        Ok(len) if len >= 6 => batch.get(pos..pos + 6).map_or(-1, |v| be_i32(v, 2)),
        _ => -1,
    };
    Some((kind, coordinator_epoch))
}

/// Reads a zigzag varint (Kafka's `varint`/`varlong`) at `*pos`, advancing it. `None` when
/// `bytes` ends inside it or it runs past 10 bytes.
pub fn read_varlong(bytes: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((value >> 1) as i64) ^ -((value & 1) as i64))
}

/// In an uncompressed CreateTime batch, the first record at or after `min_offset` whose
/// timestamp is >= `ts`, as
/// `(offset, timestamp)`. `None` when no record qualifies or the records cannot be walked
/// (compressed, LogAppendTime, or malformed): callers then fall back to the batch level.
pub fn first_record_at_or_after(batch: &[u8], ts: i64, min_offset: i64) -> Option<(i64, i64)> {
    let h = BatchHeader::parse(batch)?;
    if h.compression() != 0 || h.is_log_append_time() {
        return None;
    }
    let mut pos = HEADER_LEN;
    for _ in 0..h.record_count {
        let length = read_varlong(batch, &mut pos)?;
        let start = pos;
        let _attributes = *batch.get(pos)?;
        pos += 1;
        let timestamp_delta = read_varlong(batch, &mut pos)?;
        let offset_delta = read_varlong(batch, &mut pos)?;
        let timestamp = h.base_timestamp.checked_add(timestamp_delta)?;
        let offset = h.base_offset.checked_add(offset_delta)?;
        if timestamp >= ts && offset >= min_offset {
            return Some((offset, timestamp));
        }
        pos = start.checked_add(usize::try_from(length).ok()?)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{batch_of, TestRecord};

    #[test]
    fn varlongs_round_trip_with_their_length_and_truncation_is_refused() {
        for value in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            300,
            i32::MAX as i64,
            i32::MIN as i64,
        ]
        .into_iter()
        .chain([i64::MAX, i64::MIN])
        {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out.len(), varlong_len(value), "{value}");
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos), Some(value));
            assert_eq!(pos, out.len());
            let mut pos = 0;
            assert_eq!(read_varlong(&out[..out.len() - 1], &mut pos), None);
        }
        // Kafka's encoding of -1 (a null length) and 1 are single bytes 0x01 and 0x02.
        let mut out = Vec::new();
        put_varlong(&mut out, -1);
        put_varlong(&mut out, 1);
        assert_eq!(out, [0x01, 0x02]);
        // Eleven continuation bytes are not a varlong.
        let mut pos = 0;
        assert_eq!(read_varlong(&[0x80; 11], &mut pos), None);
    }

    #[test]
    fn valid_batch_passes_and_every_corruption_is_caught() {
        let batch = batch_of(&[
            TestRecord::new(10, b"k", b"value"),
            TestRecord::new(11, b"", b"v2"),
        ]);
        let h = check_batch(&batch).unwrap();
        assert_eq!(h.size(), batch.len());
        assert_eq!(h.record_count, 2);
        assert_eq!(h.max_timestamp, 11);
        for i in 0..batch.len() {
            let mut bad = batch.clone();
            bad[i] ^= 0x01;
            let verdict = check_batch(&bad);
            if i < LENGTH || (12..16).contains(&i) {
                // baseOffset and partitionLeaderEpoch are outside the CRC.
                assert!(verdict.is_ok(), "byte {i}");
            } else {
                assert!(verdict.is_err(), "flip at byte {i} not detected");
            }
        }
        for len in 0..batch.len() {
            assert!(check_batch(&batch[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut batch = batch_of(&[TestRecord::new(10, b"k", b"v")]);
        set_log_append_time(&mut batch, 12345);
        let h = check_batch(&batch).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 12345);
    }

    #[test]
    fn control_batches_round_trip_their_type_and_coordinator_epoch() {
        for (commit, kind) in [(true, CONTROL_TYPE_COMMIT), (false, CONTROL_TYPE_ABORT)] {
            let b = control_batch(42, 7, 13, commit, 5_000);
            let h = check_batch(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 7, -1)
            );
            assert_eq!((h.record_count, h.max_timestamp), (1, 5_000));
            assert_eq!(control_record_type(&b), Some(kind));
            assert_eq!(control_record(&b), Some((kind, 13)));
            // Kafka's record layout: key = version 0 + type, value = version 0 + epoch.
            let records = crate::testing::decode_records(&b);
            assert_eq!(records.len(), 1);
            let key = records[0].record.key.clone().unwrap();
            assert_eq!(key, [0, 0, 0, kind as u8]);
            assert_eq!(
                records[0].record.value.clone().unwrap(),
                [0, 0, 0, 0, 0, 13]
            );
        }
        // A data batch is not a control batch.
        let data = batch_of(&[TestRecord::new(1, b"k", b"v")]);
        assert_eq!(control_record_type(&data), None);
        // Truncated record: no type.
        let b = control_batch(1, 0, 0, true, 0);
        assert_eq!(control_record_type(&b[..HEADER_LEN + 5]), None);
    }

    #[test]
    fn record_walk_finds_first_timestamp() {
        let batch = batch_of(&[
            TestRecord::new(10, b"a", b"1"),
            TestRecord::new(20, b"b", b"2"),
            TestRecord::new(30, b"c", b"3"),
        ]);
        assert_eq!(first_record_at_or_after(&batch, 0, 0), Some((0, 10)));
        assert_eq!(first_record_at_or_after(&batch, 11, 0), Some((1, 20)));
        assert_eq!(first_record_at_or_after(&batch, 30, 0), Some((2, 30)));
        assert_eq!(first_record_at_or_after(&batch, 31, 0), None);
        assert_eq!(first_record_at_or_after(&batch, 0, 2), Some((2, 30)));
    }
}
