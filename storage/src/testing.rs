//! Builders and decoders for RecordBatch v2 bytes, for tests and benches (here and in the
//! broker's tests). Not part of the storage API proper.

use crate::batch::{self, BatchHeader, HEADER_LEN};

/// One record to encode: timestamp in milliseconds, key, value (no headers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRecord {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

impl TestRecord {
    /// A record with a key (`None` when empty) and a value.
    pub fn new(timestamp: i64, key: &[u8], value: &[u8]) -> TestRecord {
        TestRecord {
            timestamp,
            key: if key.is_empty() {
                None
            } else {
                Some(key.to_vec())
            },
            value: Some(value.to_vec()),
        }
    }
}

/// Appends a zigzag varint.
pub use crate::batch::put_varlong;

fn put_bytes(out: &mut Vec<u8>, bytes: &Option<Vec<u8>>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// An uncompressed, non-transactional RecordBatch v2 (base offset 0, producer id -1) holding
/// `records`, with a valid CRC-32C. Panics on an empty slice (test helper).
pub fn batch_of(records: &[TestRecord]) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch needs at least one record");
    let base_timestamp = records.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let mut out = vec![0u8; HEADER_LEN];
    let mut body = Vec::new();
    for (i, r) in records.iter().enumerate() {
        body.clear();
        body.push(0); // attributes
        put_varlong(&mut body, r.timestamp - base_timestamp);
        put_varlong(&mut body, i as i64);
        put_bytes(&mut body, &r.key);
        put_bytes(&mut body, &r.value);
        put_varlong(&mut body, 0); // headers
        put_varlong(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
    }
    let batch_length = (out.len() - batch::LOG_OVERHEAD) as i32;
    let last_offset_delta = records.len() as i32 - 1;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
    out[16] = 2;
    out[21..23].copy_from_slice(&0i16.to_be_bytes());
    out[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    out[27..35].copy_from_slice(&base_timestamp.to_be_bytes());
    out[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    out[43..51].copy_from_slice(&(-1i64).to_be_bytes()); // producerId
    out[51..53].copy_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
    out[53..57].copy_from_slice(&(-1i32).to_be_bytes()); // baseSequence
    out[57..61].copy_from_slice(&(records.len() as i32).to_be_bytes());
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// A batch of `count` records, each with a `value_len`-byte value; record `i` has timestamp
/// `first_timestamp + i` and key `k<i>`.
pub fn simple_batch(count: usize, value_len: usize, first_timestamp: i64) -> Vec<u8> {
    let records: Vec<TestRecord> = (0..count)
        .map(|i| {
            let value: Vec<u8> = (0..value_len).map(|j| (i + j) as u8).collect();
            TestRecord::new(
                first_timestamp + i as i64,
                format!("k{i}").as_bytes(),
                &value,
            )
        })
        .collect();
    batch_of(&records)
}

/// A record decoded from stored batches: its absolute offset plus the record itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    pub offset: i64,
    pub record: TestRecord,
}

fn get_bytes(b: &[u8], pos: &mut usize) -> Option<Option<Vec<u8>>> {
    let len = batch::read_varlong(b, pos)?;
    if len < 0 {
        return Some(None);
    }
    let end = pos.checked_add(len as usize)?;
    let v = b.get(*pos..end)?.to_vec();
    *pos = end;
    Some(Some(v))
}

/// Decodes every record of concatenated uncompressed batches (as `Log::read` returns them).
/// Panics on malformed input (test helper). LogAppendTime batches report maxTimestamp.
pub fn decode_records(mut bytes: &[u8]) -> Vec<DecodedRecord> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let h = batch::check_batch(bytes).expect("valid batch");
        let b = &bytes[..h.size()];
        let mut pos = HEADER_LEN;
        for _ in 0..h.record_count {
            let len = batch::read_varlong(b, &mut pos).expect("record length");
            let end = pos + len as usize;
            pos += 1;
            let ts_delta = batch::read_varlong(b, &mut pos).expect("timestamp delta");
            let offset_delta = batch::read_varlong(b, &mut pos).expect("offset delta");
            let key = get_bytes(b, &mut pos).expect("key");
            let value = get_bytes(b, &mut pos).expect("value");
            let timestamp = if h.is_log_append_time() {
                h.max_timestamp
            } else {
                h.base_timestamp + ts_delta
            };
            out.push(DecodedRecord {
                offset: h.base_offset + offset_delta,
                record: TestRecord {
                    timestamp,
                    key,
                    value,
                },
            });
            pos = end;
        }
        bytes = &bytes[h.size()..];
    }
    out
}

/// Headers of concatenated batches (panics on malformed input; test helper).
pub fn headers(mut bytes: &[u8]) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let h = batch::check_batch(bytes).expect("valid batch");
        bytes = &bytes[h.size()..];
        out.push(h);
    }
    out
}

/// `batch` (one RecordBatch v2, as [`batch_of`] makes it) re-stamped as an idempotent
/// producer's batch: producer id, epoch and base sequence set, CRC recomputed.
pub fn with_producer(
    mut batch: Vec<u8>,
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
) -> Vec<u8> {
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = batch::compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// An idempotent producer's batch of `count` records (see [`simple_batch`]).
pub fn producer_batch(
    count: usize,
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    first_timestamp: i64,
) -> Vec<u8> {
    with_producer(
        simple_batch(count, 8, first_timestamp),
        producer_id,
        epoch,
        base_sequence,
    )
}

/// `batch` re-stamped as a transactional producer's batch: attribute bit 4 set, producer
/// id, epoch and base sequence set, CRC recomputed.
pub fn with_transactional(
    mut batch: Vec<u8>,
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
) -> Vec<u8> {
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | batch::ATTR_TRANSACTIONAL;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    with_producer(batch, producer_id, epoch, base_sequence)
}

/// A transactional producer's batch of `count` records (see [`simple_batch`]).
pub fn txn_batch(
    count: usize,
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    first_timestamp: i64,
) -> Vec<u8> {
    with_transactional(
        simple_batch(count, 8, first_timestamp),
        producer_id,
        epoch,
        base_sequence,
    )
}
