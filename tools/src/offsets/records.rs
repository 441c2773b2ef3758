//! RecordBatch v2 records, decoded and encoded here rather than through kafka-protocol's
//! `Record` (whose headers are a map): Kafka allows a header key to repeat, and replay must
//! keep every header in order. Decompression uses kafka-protocol's codecs.
//!
//! Record layout (all varints zigzag-encoded, Kafka's `varint`/`varlong`):
//! `length | attributes i8 | timestampDelta varlong | offsetDelta varint |
//!  keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value |
//!  headerCount varint | (headerKeyLength varint | key | headerValueLength varint | value)*`

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use strata_storage::batch::{check_batch, put_varlong, read_varlong, BatchHeader, HEADER_LEN};

use super::output::RecordView;

/// One record with the batch facts a reader needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    pub offset: i64,
    /// Milliseconds since the epoch: CreateTime of the record, or the batch's append time
    /// when the batch is LogAppendTime.
    pub timestamp: i64,
    pub log_append_time: bool,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Headers in record order; a key may repeat. Keys are UTF-8 (lossy if not).
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl BatchRecord {
    /// The record as `replay` / `log dump --records` print it.
    pub fn view<'a>(&'a self, topic: Option<&'a str>, partition: Option<i32>) -> RecordView<'a> {
        RecordView {
            topic,
            partition,
            offset: self.offset,
            timestamp: self.timestamp,
            log_append_time: self.log_append_time,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .collect(),
        }
    }
}

/// Checks a whole batch (header rules and CRC-32C) and decodes its records. `Err` says why
/// the batch cannot be read.
pub fn decode_batch(batch: &Bytes) -> Result<(BatchHeader, Vec<BatchRecord>), String> {
    let header = check_batch(batch).map_err(|f| f.to_string())?;
    let body = batch.slice(HEADER_LEN..header.size());
    let mut data = decompress(header.compression(), body)?;
    let log_append_time = header.is_log_append_time();
    let mut records = Vec::with_capacity(header.record_count.clamp(0, 1 << 16) as usize);
    for i in 0..header.record_count {
        let bad = |what: &str| {
            format!(
                "record {i} of the batch at offset {}: {what}",
                header.base_offset
            )
        };
        let length = varint(&mut data).ok_or_else(|| bad("truncated length"))?;
        let length = usize::try_from(length).map_err(|_| bad("negative length"))?;
        if data.remaining() < length {
            return Err(bad("length past the end of the batch"));
        }
        let mut r = data.split_to(length);
        if r.remaining() < 1 {
            return Err(bad("empty record"));
        }
        r.advance(1); // attributes (unused by Kafka)
        let timestamp_delta = varint(&mut r).ok_or_else(|| bad("truncated timestamp"))?;
        let offset_delta = varint(&mut r).ok_or_else(|| bad("truncated offset"))?;
        let key = bytes_field(&mut r).ok_or_else(|| bad("truncated key"))?;
        let value = bytes_field(&mut r).ok_or_else(|| bad("truncated value"))?;
        let count = varint(&mut r).ok_or_else(|| bad("truncated header count"))?;
        let mut headers = Vec::new();
        for _ in 0..count.max(0) {
            let name = bytes_field(&mut r)
                .ok_or_else(|| bad("truncated header key"))?
                .ok_or_else(|| bad("null header key"))?;
            let value = bytes_field(&mut r).ok_or_else(|| bad("truncated header value"))?;
            headers.push((String::from_utf8_lossy(&name).into_owned(), value));
        }
        records.push(BatchRecord {
            offset: header.base_offset.saturating_add(offset_delta),
            timestamp: if log_append_time {
                header.max_timestamp
            } else {
                header.base_timestamp.saturating_add(timestamp_delta)
            },
            log_append_time,
            key,
            value,
            headers,
        });
    }
    Ok((header, records))
}

fn decompress(codec: i16, mut body: Bytes) -> Result<Bytes, String> {
    let out = match codec {
        0 => return Ok(body),
        1 => Gzip::decompress(&mut body, |b: &mut Bytes| Ok(std::mem::take(b))),
        2 => Snappy::decompress(&mut body, |b: &mut Bytes| Ok(std::mem::take(b))),
        3 => Lz4::decompress(&mut body, |b: &mut Bytes| Ok(std::mem::take(b))),
        4 => Zstd::decompress(&mut body, |b: &mut Bytes| Ok(std::mem::take(b))),
        other => return Err(format!("unknown compression codec {other}")),
    };
    out.map_err(|e| format!("decompressing {}: {e}", codec_name(codec)))
}

fn codec_name(codec: i16) -> &'static str {
    match codec {
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "none",
    }
}

/// Reads a zigzag varint/varlong, advancing `buf` past it.
fn varint(buf: &mut Bytes) -> Option<i64> {
    let mut pos = 0;
    let value = read_varlong(buf, &mut pos)?;
    buf.advance(pos);
    Some(value)
}

/// A varint length then that many bytes; length -1 is null. `None` when truncated.
fn bytes_field(buf: &mut Bytes) -> Option<Option<Bytes>> {
    let len = varint(buf)?;
    if len < 0 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    if buf.remaining() < len {
        return None;
    }
    Some(Some(buf.split_to(len)))
}

fn put_bytes_field(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.put_slice(b);
        }
    }
}

/// Encodes `records` as one uncompressed CreateTime RecordBatch v2 (no producer id, base
/// offset 0, offset deltas 0..n, each record's own timestamp). `records` must not be empty.
pub fn encode_batch(records: &[BatchRecord]) -> Bytes {
    let base_timestamp = records.first().map_or(0, |r| r.timestamp);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let mut body = BytesMut::new();
    for (i, r) in records.iter().enumerate() {
        let mut rec = BytesMut::new();
        rec.put_i8(0);
        put_varlong(&mut rec, r.timestamp.wrapping_sub(base_timestamp));
        put_varlong(&mut rec, i as i64);
        put_bytes_field(&mut rec, r.key.as_deref());
        put_bytes_field(&mut rec, r.value.as_deref());
        put_varlong(&mut rec, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_bytes_field(&mut rec, Some(k.as_bytes()));
            put_bytes_field(&mut rec, v.as_deref());
        }
        put_varlong(&mut body, rec.len() as i64);
        body.put_slice(&rec);
    }
    let count = records.len() as i32;
    let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
    out.put_i64(0); // base offset (assigned by the broker)
    out.put_i32((HEADER_LEN - 12 + body.len()) as i32); // batch length
    out.put_i32(-1); // partition leader epoch
    out.put_i8(2); // magic
    out.put_u32(0); // CRC, filled in below
    out.put_i16(0); // attributes: no compression, CreateTime
    out.put_i32(count - 1); // last offset delta
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(-1); // producer id
    out.put_i16(-1); // producer epoch
    out.put_i32(-1); // base sequence
    out.put_i32(count);
    out.put_slice(&body);
    let crc = strata_storage::batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn record(
        offset: i64,
        ts: i64,
        key: Option<&str>,
        headers: &[(&str, Option<&str>)],
    ) -> BatchRecord {
        BatchRecord {
            offset,
            timestamp: ts,
            log_append_time: false,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::from(format!("value {offset}"))),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn encode_then_decode_keeps_repeated_headers_and_timestamps() {
        let records = vec![
            record(
                0,
                1000,
                Some("a"),
                &[("trace", Some("1")), ("trace", Some("2"))],
            ),
            record(1, 900, None, &[("empty", None)]),
            record(2, 5000, Some(""), &[]),
        ];
        let batch = encode_batch(&records);
        let (header, decoded) = decode_batch(&batch).unwrap();
        assert_eq!(header.record_count, 3);
        assert_eq!(header.max_timestamp, 5000);
        assert_eq!(decoded, records);
    }

    #[test]
    fn decodes_every_codec_written_by_kafka_protocol() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let records: Vec<Record> = (0..5)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: 10 + i,
                    sequence: -1 + i as i32,
                    timestamp: 100 + i,
                    key: Some(Bytes::from(format!("k{i}"))),
                    value: Some(Bytes::from(vec![b'v'; 300])),
                    headers: Default::default(),
                })
                .collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                records.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
            )
            .unwrap();
            let (header, decoded) = decode_batch(&buf.freeze()).unwrap();
            assert_eq!(header.compression(), compression as i16);
            assert_eq!(decoded.len(), 5, "{compression:?}");
            for (i, r) in decoded.iter().enumerate() {
                assert_eq!(r.offset, 10 + i as i64);
                assert_eq!(r.timestamp, 100 + i as i64);
                assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
                assert_eq!(r.value.as_deref(), Some(&[b'v'; 300][..]));
            }
        }
    }

    #[test]
    fn corrupt_batches_are_errors_not_panics() {
        let batch = encode_batch(&[record(0, 1, Some("k"), &[("h", Some("v"))])]);
        // Flip each byte and fix the CRC, so the record parser sees every corruption.
        for i in 21..batch.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = batch.to_vec();
                bad[i] ^= flip;
                let crc = strata_storage::batch::compute_crc(&bad);
                bad[17..21].copy_from_slice(&crc.to_be_bytes());
                let _ = decode_batch(&Bytes::from(bad));
            }
        }
        for len in 0..batch.len() {
            assert!(decode_batch(&batch.slice(..len)).is_err());
        }
    }
}
