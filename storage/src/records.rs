//! Record-level validation of a produced batch: what Kafka's `LogValidator` and its record
//! iterators check before a batch is appended, so that no acknowledged batch can stop a
//! consumer. [`validate_records`] walks every record of a batch whose header and CRC
//! already passed [`crate::batch::check_batch`]; compressed batches are inflated as a
//! stream (`records/inflate.rs`), never whole, and key and value bytes are skipped, not
//! copied. Nothing is allocated per record.
//!
//! A record (Kafka's `DefaultRecord`) is, in order: `length` varint (bytes after it),
//! `attributes` i8, `timestampDelta` varlong, `offsetDelta` varint, `keyLength` varint
//! (-1 = null) and key bytes, `valueLength` varint (-1 = null) and value bytes,
//! `headerCount` varint, then per header `keyLength` varint (>= 0), key bytes,
//! `valueLength` varint (-1 = null), value bytes. Varints are zigzag, at most 5 bytes
//! (varlong: 10) and must fit their type.
//!
//! Rules, each refused with the code Kafka's broker uses (see [`RecordFault::error_code`]):
//!
//! - exactly `recordCount` records, each exactly as long as its `length`, and no byte after
//!   the last one: INVALID_RECORD ("Incorrect declared batch size", "Invalid record size");
//! - `offsetDelta` of record i is i (Kafka rewrites compressed batches whose inner offsets
//!   are not, and stores uncompressed ones as they come; Strata refuses both, so a
//!   consumer never sees two records under one offset): INVALID_RECORD;
//! - no negative header count, no null header key, no length below -1 (Kafka reads any
//!   negative key or value length as null; librdkafka fails to parse all but -1):
//!   INVALID_RECORD;
//! - with `keys_required` (a topic whose `cleanup.policy` contains `compact`), every record
//!   has a key: INVALID_RECORD, as Kafka's "Compacted topic cannot accept message without
//!   key";
//! - an idempotent batch (producer id >= 0) has a base sequence >= 0: INVALID_RECORD;
//! - a compressed payload that its codec cannot decode completely, with nothing after its
//!   end: CORRUPT_MESSAGE;
//! - the records of a compressed batch inflate to at most `max_inflated_bytes`:
//!   MESSAGE_TOO_LARGE (Kafka has no such bound; see [`RecordRules::max_inflated_bytes`]).

#[doc(hidden)]
pub mod build;
mod inflate;

use std::fmt;

use crate::batch::{BatchHeader, HEADER_LEN};
use crate::error::{CORRUPT_MESSAGE, INVALID_RECORD, MESSAGE_TOO_LARGE};

pub use inflate::Codec;

/// What a produced batch's records must satisfy besides the format itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRules {
    /// Every record must have a (non-null) key: the topic's `cleanup.policy` contains
    /// `compact`.
    pub keys_required: bool,
    /// Largest number of bytes the records of one compressed batch may inflate to. It
    /// bounds the memory and the time one batch can cost the broker (a 1 MB batch of
    /// zeros can inflate to 1 GB); the broker ties it to `socket.request.max.bytes`.
    pub max_inflated_bytes: u64,
}

/// Why a batch's records were refused. Record indexes count from 0 within the batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordFault {
    /// The records do not have the format Kafka defines. Kafka INVALID_RECORD (87).
    #[error("record {index}: {problem}")]
    Invalid { index: i32, problem: Problem },
    /// Records without a key for a compacted topic (every one is listed, as Kafka lists
    /// each in `record_errors`, when the batch has no other fault). Kafka INVALID_RECORD
    /// (87).
    #[error(
        "{count} record(s) without a key, the first at index {first}: {KEY_REQUIRED}",
        count = .indexes.len(),
        first = .indexes.first().copied().unwrap_or_default()
    )]
    KeyRequired { indexes: Vec<i32> },
    /// An idempotent batch without a base sequence. Kafka INVALID_RECORD (87).
    #[error("batch from producer {producer_id} has invalid base sequence {base_sequence}")]
    Sequence {
        producer_id: i64,
        base_sequence: i32,
    },
    /// Compression attribute 5-7. Kafka CORRUPT_MESSAGE (2).
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
    /// The compressed payload does not decode, or bytes follow its end. Kafka
    /// CORRUPT_MESSAGE (2).
    #[error("{codec} payload cannot be decompressed: {reason}")]
    Compression { codec: Codec, reason: String },
    /// The records inflate to more than [`RecordRules::max_inflated_bytes`]. Kafka
    /// MESSAGE_TOO_LARGE (10).
    #[error("{codec} records inflate to more than {max} bytes")]
    TooLarge { codec: Codec, max: u64 },
}

impl RecordFault {
    /// The Kafka error code a producer gets for this fault.
    pub fn error_code(&self) -> i16 {
        match self {
            RecordFault::Invalid { .. }
            | RecordFault::KeyRequired { .. }
            | RecordFault::Sequence { .. } => INVALID_RECORD,
            RecordFault::UnknownCodec(_) | RecordFault::Compression { .. } => CORRUPT_MESSAGE,
            RecordFault::TooLarge { .. } => MESSAGE_TOO_LARGE,
        }
    }

    /// The records at fault, with what is wrong with each (Produce v8+ `record_errors`).
    pub fn record_errors(&self) -> Vec<(i32, String)> {
        match self {
            RecordFault::Invalid { index, .. } => vec![(*index, self.to_string())],
            RecordFault::KeyRequired { indexes } => indexes
                .iter()
                .map(|&i| (i, format!("record {i}: {KEY_REQUIRED}")))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Why a keyless record is refused (Kafka's words).
const KEY_REQUIRED: &str = "a compacted topic cannot accept a record without a key";

/// What is wrong with a record's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The records end inside this record (fewer records than `recordCount`).
    Truncated,
    /// Bytes follow the last of the `recordCount` records.
    TrailingBytes,
    /// A varint longer than its type allows or with bits beyond it.
    Varint,
    /// `length` is negative.
    NegativeLength(i32),
    /// `offsetDelta` is not the record's index.
    OffsetDelta(i32),
    /// A key or value length below -1.
    FieldLength(i32),
    /// A negative header count, or more headers than the record has bytes for.
    HeaderCount(i32),
    /// A header key length below 0 (a null header key).
    HeaderKeyLength(i32),
    /// The fields take more or fewer bytes than `length` says (`read` is where the fields
    /// end, or would end, relative to the record's start).
    Length { declared: i32, read: u64 },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Truncated => write!(
                f,
                "the records end inside it (fewer records than the batch's record count)"
            ),
            Problem::TrailingBytes => write!(
                f,
                "bytes follow the last record (more records than the batch's record count)"
            ),
            Problem::Varint => write!(f, "malformed varint"),
            Problem::NegativeLength(n) => write!(f, "negative record length {n}"),
            Problem::OffsetDelta(d) => write!(f, "offset delta {d}, expected the record's index"),
            Problem::FieldLength(n) => write!(f, "key or value length {n}"),
            Problem::HeaderCount(n) => write!(f, "invalid header count {n}"),
            Problem::HeaderKeyLength(n) => write!(f, "invalid header key length {n}"),
            Problem::Length { declared, read } => write!(
                f,
                "record length {declared} does not match its fields, which end at byte {read} of it"
            ),
        }
    }
}

/// Checks every record of `batch`, whose header `header` was parsed and checked (CRC
/// included) by [`crate::batch::check_batch`]; `batch` holds at least `header.size()`
/// bytes. Control batches are refused by the log before their records matter, so their
/// records get the same checks as any other.
pub fn validate_records(
    batch: &[u8],
    header: &BatchHeader,
    rules: &RecordRules,
) -> Result<(), RecordFault> {
    if header.has_producer_id() && header.base_sequence < 0 {
        return Err(RecordFault::Sequence {
            producer_id: header.producer_id,
            base_sequence: header.base_sequence,
        });
    }
    let end = header.size().min(batch.len());
    let records = batch.get(HEADER_LEN..end).unwrap_or_default();
    let count = header.record_count;
    let keys = rules.keys_required;
    match header.compression() {
        0 => walk(
            &mut SliceSource {
                bytes: records,
                pos: 0,
            },
            count,
            keys,
        ),
        id => {
            let codec = Codec::from_id(id).ok_or(RecordFault::UnknownCodec(id))?;
            let mut source = inflate::Inflated::new(codec, records, rules.max_inflated_bytes)?;
            match walk(&mut source, count, keys) {
                // Records that make no sense may be a damaged payload the codec has not
                // noticed yet (gzip's CRC-32 is at its end): a payload that does not
                // decode is reported as such.
                Err(invalid @ RecordFault::Invalid { .. }) => match source.drain() {
                    Err(Cut::Fault(fault @ RecordFault::Compression { .. })) => Err(fault),
                    _ => Err(invalid),
                },
                result => result,
            }
        }
    }
}

/// One produced batch whose header, CRC-32C and every record have been checked: the log
/// appends it without computing the CRC again ([`crate::Log::append_checked_batch`]).
/// Only [`CheckedBatch::check`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct CheckedBatch<'a> {
    bytes: &'a [u8],
    header: BatchHeader,
}

/// Why [`CheckedBatch::check`] refused a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchRefusal {
    /// The header or CRC (the log refuses such a batch with Kafka's code for it).
    Header(crate::batch::BatchFault),
    /// The records.
    Records(RecordFault),
}

impl<'a> CheckedBatch<'a> {
    /// Checks the batch at the start of `bytes` (header and CRC, then every record under
    /// `rules`); the batch is `bytes[..header.size()]`.
    pub fn check(bytes: &'a [u8], rules: &RecordRules) -> Result<Self, BatchRefusal> {
        let header = crate::batch::check_batch(bytes).map_err(BatchRefusal::Header)?;
        validate_records(bytes, &header, rules).map_err(BatchRefusal::Records)?;
        Ok(CheckedBatch {
            bytes: &bytes[..header.size()],
            header,
        })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Why reading a record stopped.
pub(crate) enum Cut {
    /// No more bytes.
    End,
    /// The record's bytes break a rule.
    Bad(Problem),
    /// The source itself failed (decompression, inflated size).
    Fault(RecordFault),
}

impl Cut {
    fn at(self, index: i32) -> RecordFault {
        match self {
            Cut::End => RecordFault::Invalid {
                index,
                problem: Problem::Truncated,
            },
            Cut::Bad(problem) => RecordFault::Invalid { index, problem },
            Cut::Fault(fault) => fault,
        }
    }
}

/// The records' bytes, uncompressed: a slice or an inflating stream.
pub(crate) trait Source {
    /// The next byte.
    fn byte(&mut self) -> Result<u8, Cut>;
    /// Skips `n` bytes.
    fn skip(&mut self, n: u64) -> Result<(), Cut>;
    /// Bytes consumed so far.
    fn consumed(&self) -> u64;
    /// Whether every byte has been consumed.
    fn at_end(&mut self) -> Result<bool, Cut>;
}

/// The records of an uncompressed batch.
struct SliceSource<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Source for SliceSource<'_> {
    #[inline]
    fn byte(&mut self) -> Result<u8, Cut> {
        let b = *self.bytes.get(self.pos).ok_or(Cut::End)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn skip(&mut self, n: u64) -> Result<(), Cut> {
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return Err(Cut::End);
        }
        self.pos += n as usize;
        Ok(())
    }

    #[inline]
    fn consumed(&self) -> u64 {
        self.pos as u64
    }

    fn at_end(&mut self) -> Result<bool, Cut> {
        Ok(self.pos == self.bytes.len())
    }
}

/// Walks `count` records, then requires the end of the source. A malformed record stops
/// the walk; keyless records where keys are required are all collected first (Kafka
/// reports each of them), which allocates only for a batch that is refused.
fn walk<S: Source>(source: &mut S, count: i32, keys_required: bool) -> Result<(), RecordFault> {
    let mut keyless = Vec::new();
    for index in 0..count {
        let has_key = walk_record(source, index).map_err(|cut| cut.at(index))?;
        if keys_required && !has_key {
            keyless.push(index);
        }
    }
    match source.at_end() {
        Ok(true) if keyless.is_empty() => Ok(()),
        Ok(true) => Err(RecordFault::KeyRequired { indexes: keyless }),
        Ok(false) => Err(Cut::Bad(Problem::TrailingBytes).at(count)),
        Err(cut) => Err(cut.at(count)),
    }
}

/// Where a record's body (the bytes its `length` counts) lies in the source.
#[derive(Clone, Copy)]
struct Body {
    start: u64,
    length: i32,
}

impl Body {
    fn end(self) -> u64 {
        self.start + self.length as u64
    }

    /// The fault for fields that end at source position `at` instead of the body's end.
    fn mismatch(self, at: u64) -> Cut {
        Cut::Bad(Problem::Length {
            declared: self.length,
            read: at - self.start,
        })
    }
}

/// Reads one record, skipping its key, value and header bytes; whether it has a key.
#[inline]
fn walk_record<S: Source>(s: &mut S, index: i32) -> Result<bool, Cut> {
    let length = varint(s)?;
    if length < 0 {
        return Err(Cut::Bad(Problem::NegativeLength(length)));
    }
    let body = Body {
        start: s.consumed(),
        length,
    };
    let _attributes = s.byte()?;
    let _timestamp_delta = varlong(s)?;
    let offset_delta = varint(s)?;
    if offset_delta != index {
        return Err(Cut::Bad(Problem::OffsetDelta(offset_delta)));
    }
    let key = varint(s)?;
    skip_field(s, key, body, Problem::FieldLength(key))?;
    let value = varint(s)?;
    skip_field(s, value, body, Problem::FieldLength(value))?;
    let headers = varint(s)?;
    // Each header takes at least two bytes (its two lengths).
    let room = body.end().saturating_sub(s.consumed());
    if headers < 0 || headers as u64 > room / 2 {
        return Err(Cut::Bad(Problem::HeaderCount(headers)));
    }
    for _ in 0..headers {
        let key = varint(s)?;
        if key < 0 {
            return Err(Cut::Bad(Problem::HeaderKeyLength(key)));
        }
        skip_field(s, key, body, Problem::HeaderKeyLength(key))?;
        let value = varint(s)?;
        skip_field(s, value, body, Problem::FieldLength(value))?;
    }
    if s.consumed() != body.end() {
        return Err(body.mismatch(s.consumed()));
    }
    Ok(key != -1)
}

/// Skips a key, value or header field of `len` bytes (-1 = null; below that `bad_len`),
/// which must end within the record's body.
#[inline]
fn skip_field<S: Source>(s: &mut S, len: i32, body: Body, bad_len: Problem) -> Result<(), Cut> {
    match len {
        -1 => Ok(()),
        n if n < -1 => Err(Cut::Bad(bad_len)),
        n => {
            let to = s.consumed() + n as u64;
            if to > body.end() {
                return Err(body.mismatch(to));
            }
            s.skip(n as u64)
        }
    }
}

/// A zigzag varint that must fit an i32 (Kafka's `ByteUtils.readVarint`; at most 5 bytes,
/// and the fifth may not carry bits beyond 32).
#[inline]
fn varint<S: Source>(s: &mut S) -> Result<i32, Cut> {
    let mut raw: u32 = 0;
    for shift in (0..35).step_by(7) {
        let b = s.byte()?;
        if shift == 28 && b > 0x0f {
            return Err(Cut::Bad(Problem::Varint));
        }
        raw |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32));
        }
    }
    Err(Cut::Bad(Problem::Varint))
}

/// A zigzag varlong (Kafka's `ByteUtils.readVarlong`; at most 10 bytes, the tenth may not
/// carry bits beyond 64).
#[inline]
fn varlong<S: Source>(s: &mut S) -> Result<i64, Cut> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = s.byte()?;
        if shift == 63 && b > 0x01 {
            return Err(Cut::Bad(Problem::Varint));
        }
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(Cut::Bad(Problem::Varint))
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
