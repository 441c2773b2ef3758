//! RecordBatch v2 (magic 2) built and walked directly on bytes.
//!
//! The builder writes records straight into one reusable buffer behind a 61-byte header
//! placeholder and fills the header (counts, timestamps, CRC-32C) on `finish`; no record
//! is allocated on its own. The reader walks batches in a fetched record set without
//! copying them: it yields offsets and, when asked, each record's value.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::Compressor;
use strata_storage::batch::{put_varlong, read_varlong, varlong_len};

use super::{BenchError, Result};

/// Bytes of the RecordBatch v2 header before the first record.
pub const HEADER_LEN: usize = 61;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;

/// Batch compression codec (the low three attribute bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn attribute(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// Bytes one record with these key and value sizes takes inside a batch (its length
/// varint included), for `offset_delta` and `timestamp_delta`.
pub fn record_wire_len(
    key: Option<usize>,
    value: usize,
    offset_delta: i32,
    ts_delta: i64,
) -> usize {
    let key_len = key.map_or(-1, |k| k as i64);
    let body = 1
        + varlong_len(ts_delta)
        + varlong_len(i64::from(offset_delta))
        + varlong_len(key_len)
        + key.unwrap_or(0)
        + varlong_len(value as i64)
        + value
        + 1;
    varlong_len(body as i64) + body
}

/// Builds one uncompressed-or-compressed RecordBatch v2 at a time, reusing its buffers.
pub struct BatchBuilder {
    buf: BytesMut,
    count: i32,
    base_ts: i64,
    max_ts: i64,
    compression: Compression,
    scratch: BytesMut,
}

impl BatchBuilder {
    /// A builder whose buffer is pre-sized for `capacity` bytes.
    pub fn new(capacity: usize, compression: Compression) -> Self {
        let mut b = BatchBuilder {
            buf: BytesMut::with_capacity(capacity + HEADER_LEN),
            count: 0,
            base_ts: 0,
            max_ts: 0,
            compression,
            scratch: BytesMut::new(),
        };
        b.reset();
        b
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.buf.put_bytes(0, HEADER_LEN);
        self.count = 0;
    }

    /// Records in the open batch.
    pub fn count(&self) -> i32 {
        self.count
    }

    /// Bytes the open batch takes uncompressed, header included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no record was pushed since the last `finish`.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the next record of these sizes would add.
    pub fn next_record_len(&self, key: Option<usize>, value: usize) -> usize {
        record_wire_len(key, value, self.count, 0)
    }

    /// Appends a record with timestamp `ts_ms`; `fill_value` writes the `value_len`
    /// value bytes in place (no intermediate value buffer).
    pub fn push(
        &mut self,
        ts_ms: i64,
        key: Option<&[u8]>,
        value_len: usize,
        fill_value: impl FnOnce(&mut [u8]),
    ) {
        if self.count == 0 {
            self.base_ts = ts_ms;
            self.max_ts = ts_ms;
        }
        self.max_ts = self.max_ts.max(ts_ms);
        let ts_delta = ts_ms - self.base_ts;
        let offset_delta = i64::from(self.count);
        let key_len = key.map_or(-1, |k| k.len() as i64);
        let body = 1
            + varlong_len(ts_delta)
            + varlong_len(offset_delta)
            + varlong_len(key_len)
            + key.map_or(0, <[u8]>::len)
            + varlong_len(value_len as i64)
            + value_len
            + 1;
        put_varlong(&mut self.buf, body as i64);
        self.buf.put_i8(0); // record attributes
        put_varlong(&mut self.buf, ts_delta);
        put_varlong(&mut self.buf, offset_delta);
        put_varlong(&mut self.buf, key_len);
        if let Some(k) = key {
            self.buf.put_slice(k);
        }
        put_varlong(&mut self.buf, value_len as i64);
        let start = self.buf.len();
        self.buf.put_bytes(0, value_len);
        fill_value(&mut self.buf[start..start + value_len]);
        self.buf.put_u8(0); // no headers
        self.count += 1;
    }

    /// Completes the batch (header, compression, CRC) and starts a new one.
    pub fn finish(&mut self) -> Result<Bytes> {
        if self.compression != Compression::None {
            self.compress()?;
        }
        let total = self.buf.len();
        let b = &mut self.buf[..];
        b[0..8].copy_from_slice(&0i64.to_be_bytes()); // base offset: the broker assigns
        b[8..12].copy_from_slice(&((total - 12) as i32).to_be_bytes());
        b[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        b[16] = 2; // magic
        b[21..23].copy_from_slice(&self.compression.attribute().to_be_bytes());
        b[23..27].copy_from_slice(&(self.count - 1).to_be_bytes());
        b[27..35].copy_from_slice(&self.base_ts.to_be_bytes());
        b[35..43].copy_from_slice(&self.max_ts.to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes()); // producer id
        b[51..53].copy_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        b[53..57].copy_from_slice(&(-1i32).to_be_bytes()); // base sequence
        b[57..61].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        let capacity = self.buf.capacity();
        let done = std::mem::replace(&mut self.buf, BytesMut::with_capacity(capacity));
        self.reset();
        Ok(done.freeze())
    }

    /// Replaces the record section with its compressed form.
    fn compress(&mut self) -> Result<()> {
        use kafka_protocol::compression as c;
        let records = &self.buf[HEADER_LEN..];
        self.scratch.clear();
        let put = |out: &mut BytesMut| {
            out.put_slice(records);
            Ok(())
        };
        let done = match self.compression {
            Compression::None => Ok(()),
            Compression::Gzip => c::Gzip::compress(&mut self.scratch, put),
            Compression::Snappy => c::Snappy::compress(&mut self.scratch, put),
            Compression::Lz4 => c::Lz4::compress(&mut self.scratch, put),
            Compression::Zstd => c::Zstd::compress(&mut self.scratch, put),
        };
        done.map_err(|e| BenchError::Codec {
            what: "compressed batch",
            message: format!("{e:#}"),
        })?;
        self.buf.truncate(HEADER_LEN);
        self.buf.put_slice(&self.scratch);
        Ok(())
    }
}

/// One batch found in a fetched record set.
pub struct BatchView {
    pub base_offset: i64,
    pub last_offset: i64,
    pub record_count: i32,
    /// The whole batch, header included (a slice of the fetched bytes, not a copy).
    pub bytes: Bytes,
}

impl BatchView {
    fn attributes(&self) -> i16 {
        i16::from_be_bytes([self.bytes[21], self.bytes[22]])
    }

    /// Calls `f` with the first bytes (up to 8) of every record's value; decompresses
    /// first if the batch is compressed.
    pub fn for_each_value_prefix(&self, mut f: impl FnMut(&[u8])) -> Result<()> {
        use kafka_protocol::compression as c;
        use kafka_protocol::compression::Decompressor;
        let codec = self.attributes() & 7;
        let mut compressed = self.bytes.slice(HEADER_LEN..);
        let mut walk = |records: &mut Bytes| {
            walk_records(records, &mut f);
            Ok(())
        };
        let done = match codec {
            0 => walk(&mut compressed),
            1 => c::Gzip::decompress(&mut compressed, walk),
            2 => c::Snappy::decompress(&mut compressed, walk),
            3 => c::Lz4::decompress(&mut compressed, walk),
            4 => c::Zstd::decompress(&mut compressed, walk),
            other => {
                return Err(BenchError::Protocol(format!(
                    "unknown compression codec {other}"
                )))
            }
        };
        done.map_err(|e| BenchError::Codec {
            what: "fetched batch",
            message: format!("{e:#}"),
        })
    }
}

fn walk_records(records: &Bytes, f: &mut impl FnMut(&[u8])) {
    let data = &records[..];
    let mut pos = 0;
    while pos < data.len() {
        let Some(len) = read_varlong(data, &mut pos) else {
            return;
        };
        let end = pos + len as usize;
        if len < 0 || end > data.len() {
            return;
        }
        let mut p = pos + 1; // attributes
        let fields = (|| {
            read_varlong(data, &mut p)?; // timestamp delta
            read_varlong(data, &mut p)?; // offset delta
            let key_len = read_varlong(data, &mut p)?;
            if key_len > 0 {
                p += key_len as usize;
            }
            let value_len = read_varlong(data, &mut p)?;
            Some(value_len)
        })();
        if let Some(value_len) = fields {
            if value_len >= 0 && p + (value_len as usize) <= end {
                let n = (value_len as usize).min(8);
                f(&data[p..p + n]);
            }
        }
        pos = end;
    }
}

/// Splits a fetched record set into whole batches; a trailing partial batch (allowed by
/// the protocol when the size limit cuts one) is ignored.
pub fn batches(records: &Bytes) -> Vec<BatchView> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while records.len() - pos >= HEADER_LEN {
        let h = &records[pos..];
        let base_offset = i64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
        let batch_len = i32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        let Some(total) = usize::try_from(batch_len).ok().map(|l| l + 12) else {
            break;
        };
        if total < HEADER_LEN || pos + total > records.len() {
            break;
        }
        let last_delta = i32::from_be_bytes([h[23], h[24], h[25], h[26]]);
        let record_count = i32::from_be_bytes([h[57], h[58], h[59], h[60]]);
        out.push(BatchView {
            base_offset,
            last_offset: base_offset + i64::from(last_delta),
            record_count,
            bytes: records.slice(pos..pos + total),
        });
        pos += total;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn build(compression: Compression) -> Bytes {
        let mut b = BatchBuilder::new(4096, compression);
        for i in 0..10u64 {
            let key = format!("k{i}");
            b.push(1_000 + i as i64, Some(key.as_bytes()), 100, |v| {
                v[..8].copy_from_slice(&i.to_be_bytes());
            });
        }
        b.push(1_020, None, 300, |v| v.fill(7));
        b.finish().unwrap()
    }

    #[test]
    fn uncompressed_batch_decodes_with_kafka_protocol_and_crc_checks() {
        let mut bytes = build(Compression::None);
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        let records = set.records;
        assert_eq!(records.len(), 11);
        assert_eq!(records[3].key.as_deref(), Some(&b"k3"[..]));
        assert_eq!(records[3].timestamp, 1_003);
        assert_eq!(records[3].offset, 3);
        assert_eq!(records[10].key, None);
        assert_eq!(records[10].value.as_ref().unwrap().len(), 300);
    }

    #[test]
    fn compressed_batches_round_trip() {
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut bytes = build(c);
            let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
            assert_eq!(set.records.len(), 11, "{c:?}");
            let whole = build(c);
            let views = batches(&whole);
            assert_eq!(views.len(), 1);
            let mut prefixes = Vec::new();
            views[0]
                .for_each_value_prefix(|p| prefixes.push(p.to_vec()))
                .unwrap();
            assert_eq!(prefixes.len(), 11);
            assert_eq!(prefixes[5], 5u64.to_be_bytes().to_vec());
        }
    }

    #[test]
    fn walks_batches_and_ignores_a_partial_tail() {
        let a = build(Compression::None);
        let b = build(Compression::None);
        let mut set = BytesMut::new();
        set.put_slice(&a);
        set.put_slice(&b);
        set.put_slice(&b[..30]);
        let set = set.freeze();
        let views = batches(&set);
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].record_count, 11);
        assert_eq!(views[0].last_offset, 10);
        let mut n = 0;
        views[1].for_each_value_prefix(|_| n += 1).unwrap();
        assert_eq!(n, 11);
    }

    #[test]
    fn record_wire_len_matches_the_builder() {
        let mut b = BatchBuilder::new(1024, Compression::None);
        let predicted = b.next_record_len(Some(3), 1024);
        b.push(5, Some(b"abc"), 1024, |_| {});
        assert_eq!(b.len(), HEADER_LEN + predicted);
    }
}
