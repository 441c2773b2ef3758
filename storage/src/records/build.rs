//! Builders of RecordBatch v2 bytes whose records may lie (wrong counts, lengths,
//! offset deltas, undecodable payloads), always with a valid CRC: for tests, benches and
//! the fuzz target. Not part of the storage API proper.

use std::io::Write;

use super::Codec;
use crate::batch::{self, put_varlong, HEADER_LEN, LOG_OVERHEAD};

/// One record to encode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawRecord {
    pub timestamp_delta: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// (key, value) pairs; a header key is never null in this builder.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl RawRecord {
    /// A record with this key (None = null) and value, no headers.
    pub fn new(key: Option<&[u8]>, value: &[u8]) -> RawRecord {
        RawRecord {
            timestamp_delta: 0,
            key: key.map(<[u8]>::to_vec),
            value: Some(value.to_vec()),
            headers: Vec::new(),
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Appends one record as Kafka encodes it, with this offset delta.
pub fn encode_record(out: &mut Vec<u8>, offset_delta: i32, record: &RawRecord) {
    let mut body = Vec::new();
    body.push(0); // attributes
    put_varlong(&mut body, record.timestamp_delta);
    put_varlong(&mut body, i64::from(offset_delta));
    put_bytes(&mut body, record.key.as_deref());
    put_bytes(&mut body, record.value.as_deref());
    put_varlong(&mut body, record.headers.len() as i64);
    for (key, value) in &record.headers {
        put_bytes(&mut body, Some(key));
        put_bytes(&mut body, value.as_deref());
    }
    put_varlong(out, body.len() as i64);
    out.extend_from_slice(&body);
}

/// The records section of a well-formed batch: record i has offset delta i.
pub fn encode_records(records: &[RawRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        encode_record(&mut out, i as i32, r);
    }
    out
}

/// `raw` compressed as Kafka clients do; snappy as one raw block (librdkafka, kafkajs).
pub fn compress(codec: Codec, raw: &[u8]) -> Vec<u8> {
    match codec {
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(raw).expect("gzip into memory");
            e.finish().expect("gzip into memory")
        }
        Codec::Snappy => snap::raw::Encoder::new()
            .compress_vec(raw)
            .expect("snappy into memory"),
        Codec::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .build(Vec::new())
                .expect("lz4 encoder");
            e.write_all(raw).expect("lz4 into memory");
            let (out, result) = e.finish();
            result.expect("lz4 into memory");
            out
        }
        Codec::Zstd => zstd::bulk::compress(raw, 3).expect("zstd into memory"),
    }
}

/// `raw` in snappy-java's framing (Java and kafka-python): header, then blocks of at
/// most `block` input bytes, each `length i32` + a raw snappy block.
pub fn compress_xerial(raw: &[u8], block: usize) -> Vec<u8> {
    let mut out = vec![
        0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
    ];
    let mut encoder = snap::raw::Encoder::new();
    for chunk in raw.chunks(block.max(1)) {
        let compressed = encoder.compress_vec(chunk).expect("snappy into memory");
        out.extend_from_slice(&(compressed.len() as i32).to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    out
}

/// A batch (base offset 0, no producer, CreateTime 0) whose records section is
/// `payload` as given, declaring `record_count` records (lastOffsetDelta = count - 1),
/// with compression attribute `codec` and a valid CRC-32C.
pub fn batch(payload: &[u8], record_count: i32, codec: i16) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out.extend_from_slice(payload);
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    out[16] = 2;
    out[21..23].copy_from_slice(&(codec & batch::ATTR_COMPRESSION_MASK).to_be_bytes());
    out[23..27].copy_from_slice(&record_count.wrapping_sub(1).to_be_bytes());
    out[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    out[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    out[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    out[57..61].copy_from_slice(&record_count.to_be_bytes());
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Kafka's compression attribute of `codec` (0 for `None`).
pub fn codec_id(codec: Option<Codec>) -> i16 {
    match codec {
        None => 0,
        Some(Codec::Gzip) => 1,
        Some(Codec::Snappy) => 2,
        Some(Codec::Lz4) => 3,
        Some(Codec::Zstd) => 4,
    }
}

/// A well-formed batch of `records`, compressed with `codec` (snappy as a raw block).
pub fn batch_of(records: &[RawRecord], codec: Option<Codec>) -> Vec<u8> {
    let raw = encode_records(records);
    let payload = match codec {
        None => raw,
        Some(c) => compress(c, &raw),
    };
    batch(&payload, records.len() as i32, codec_id(codec))
}
