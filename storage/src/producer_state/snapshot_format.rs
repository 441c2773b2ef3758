//! The bytes of a `.snapshot` file, written and read field by field. Every snapshot
//! starts with its version; the layout of each version is fixed (all integers
//! little-endian except the CRC):
//!
//! ```text
//! 0..4    CRC-32C of every byte after it, u32 big-endian
//! 4..6    version u16
//! 6..14   offset i64 (the log end offset the state covers)
//! 14..22  producer count u64
//! then per producer, by ascending producer id:
//!   producer id i64, epoch i16,
//!   5 x BatchMetadata (first/last sequence i32, first/last offset i64, timestamp i64),
//!   len u8 (batches in use, at most 5), last_timestamp i64,
//!   version 2 only: current_txn_first_offset i64 (-1: none), coordinator_epoch i32 (-1: none)
//! ```
//!
//! 191 bytes per producer in version 2, 179 in version 1 (before transactions; read as
//! producers without open transactions). These are exactly the bytes bincode 1.x wrote
//! for the serde types that described the format until issue 15 (test
//! `snapshots_written_by_the_previous_release_are_read`); bincode itself is no longer
//! needed (it is unmaintained: RUSTSEC-2025-0141). A version newer than
//! [`SNAPSHOT_VERSION`] is refused by name, never guessed at.

use super::{
    BatchMetadata, ProducerEntry, ProducerStateTable, BATCHES_PER_PRODUCER, NO_COORDINATOR_EPOCH,
    NO_OFFSET,
};

/// The version written.
pub(super) const SNAPSHOT_VERSION: u16 = 2;
/// The first version (no transaction fields); still read.
const SNAPSHOT_VERSION_1: u16 = 1;
/// Bytes before the first producer.
const HEADER_LEN: usize = 22;
/// Bytes of one producer (its id included) in version 1.
const PRODUCER_LEN_V1: usize = 179;
/// Bytes of one producer (its id included) in version 2.
const PRODUCER_LEN_V2: usize = 191;

/// The snapshot file's bytes for `table` at log offset `offset`.
pub(super) fn encode(table: &ProducerStateTable, offset: i64) -> Vec<u8> {
    let mut producers: Vec<(&i64, &ProducerEntry)> = table.producers.iter().collect();
    producers.sort_unstable_by_key(|(pid, _)| **pid);
    let mut out = Vec::with_capacity(HEADER_LEN + producers.len() * PRODUCER_LEN_V2);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&(producers.len() as u64).to_le_bytes());
    for (pid, e) in producers {
        out.extend_from_slice(&pid.to_le_bytes());
        out.extend_from_slice(&e.epoch.to_le_bytes());
        for b in &e.batches {
            out.extend_from_slice(&b.first_sequence.to_le_bytes());
            out.extend_from_slice(&b.last_sequence.to_le_bytes());
            out.extend_from_slice(&b.first_offset.to_le_bytes());
            out.extend_from_slice(&b.last_offset.to_le_bytes());
            out.extend_from_slice(&b.timestamp.to_le_bytes());
        }
        out.push(e.len);
        out.extend_from_slice(&e.last_timestamp.to_le_bytes());
        out.extend_from_slice(&e.current_txn_first_offset.to_le_bytes());
        out.extend_from_slice(&e.coordinator_epoch.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out[4..]);
    out[..4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Reads fixed-width little-endian fields front to back.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| "truncated".to_string())?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.take().map(i16::from_le_bytes)
    }
    fn u16(&mut self) -> Result<u16, String> {
        self.take().map(u16::from_le_bytes)
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.take().map(i32::from_le_bytes)
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.take().map(i64::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, String> {
        self.take().map(u64::from_le_bytes)
    }
}

/// Decodes a snapshot file: the state and its offset, or why it is unusable.
pub(super) fn decode(bytes: &[u8]) -> Result<(ProducerStateTable, i64), String> {
    let Some((stored, body)) = bytes.split_first_chunk::<4>() else {
        return Err(format!("{} bytes, shorter than the CRC", bytes.len()));
    };
    let stored = u32::from_be_bytes(*stored);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(format!(
            "CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    let mut f = Fields(body);
    let version = f
        .u16()
        .map_err(|_| format!("{} bytes, shorter than the version", bytes.len()))?;
    let producer_len = match version {
        SNAPSHOT_VERSION => PRODUCER_LEN_V2,
        SNAPSHOT_VERSION_1 => PRODUCER_LEN_V1,
        newer if newer > SNAPSHOT_VERSION => {
            return Err(format!(
                "snapshot version {newer} is newer than the {SNAPSHOT_VERSION} this broker reads"
            ))
        }
        other => return Err(format!("unknown snapshot version {other}")),
    };
    let offset = f.i64()?;
    let count = f.u64()?;
    // The count is checked against the bytes present before anything is sized from it.
    let expected = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(producer_len))
        .and_then(|n| n.checked_add(HEADER_LEN));
    if expected != Some(bytes.len()) {
        return Err(format!(
            "{count} producers do not fit {} bytes of version {version}",
            bytes.len()
        ));
    }
    let mut table = ProducerStateTable::default();
    for _ in 0..count {
        let pid = f.i64()?;
        let epoch = f.i16()?;
        let mut batches = [BatchMetadata::default(); BATCHES_PER_PRODUCER];
        for b in &mut batches {
            *b = BatchMetadata {
                first_sequence: f.i32()?,
                last_sequence: f.i32()?,
                first_offset: f.i64()?,
                last_offset: f.i64()?,
                timestamp: f.i64()?,
            };
        }
        let len = f.u8()?;
        if usize::from(len) > BATCHES_PER_PRODUCER {
            return Err(format!(
                "producer {pid}: {len} batches, at most {BATCHES_PER_PRODUCER}"
            ));
        }
        let last_timestamp = f.i64()?;
        let (current_txn_first_offset, coordinator_epoch) = if version == SNAPSHOT_VERSION_1 {
            (NO_OFFSET, NO_COORDINATOR_EPOCH)
        } else {
            (f.i64()?, f.i32()?)
        };
        let entry = ProducerEntry {
            epoch,
            batches,
            len,
            last_timestamp,
            current_txn_first_offset,
            coordinator_epoch,
        };
        if entry.has_open_txn() {
            table.ongoing.insert(entry.current_txn_first_offset, pid);
        }
        table.producers.insert(pid, entry);
    }
    Ok((table, offset))
}

#[cfg(test)]
mod tests {
    use super::super::ProducerBatch;
    use super::*;

    fn batch(pid: i64, epoch: i16, first: i32, last: i32, transactional: bool) -> ProducerBatch {
        ProducerBatch {
            producer_id: pid,
            epoch,
            first_sequence: first,
            last_sequence: last,
            transactional,
        }
    }

    /// Producers 5 and 6, and 9 with a marker and an open transaction.
    fn table() -> ProducerStateTable {
        let mut t = ProducerStateTable::default();
        t.record(&batch(5, 2, 0, 3, false), 10, 13, 99);
        t.record(&batch(6, 0, 7, 7, false), 14, 14, 100);
        t.record(&batch(9, 1, 0, 0, true), 15, 15, 101);
        t.complete_txn(9, 1, 4, true, 16, 102);
        t.record(&batch(9, 1, 1, 2, true), 17, 18, 103);
        t
    }

    fn unhex(parts: &[&str]) -> Vec<u8> {
        let hex: String = parts.concat();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `table()` at offset 19, written by the previous release (bincode 1.x).
    const PREV_V2: &[&str] = &[
        "0e717658020013000000000000000300000000000000050000000000000002000000000003000000",
        "0a000000000000000d00000000000000630000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000163000000000000",
        "00ffffffffffffffffffffffff0600000000000000000007000000070000000e000000000000000e",
        "00000000000000640000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000016400000000000000ffffffffffffffff",
        "ffffffff0900000000000000010000000000000000000f000000000000000f000000000000006500",
        "00000000000001000000020000001100000000000000120000000000000067000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000026700000000000000110000000000000004000000",
    ];

    /// Producers 5 and 6 of `table()` at offset 15 in version 1 (bincode 1.x).
    const PREV_V1: &[&str] = &[
        "e1b6dbad01000f000000000000000200000000000000050000000000000002000000000003000000",
        "0a000000000000000d00000000000000630000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000163000000000000",
        "000600000000000000000007000000070000000e000000000000000e000000000000006400000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000016400000000000000",
    ];

    #[test]
    fn snapshots_written_by_the_previous_release_are_read() {
        let prev = unhex(PREV_V2);
        let (back, offset) = decode(&prev).unwrap();
        assert_eq!((&back, offset), (&table(), 19));
        assert_eq!(back.first_open_txn_offset(), Some(17));
        // And written byte for byte as before.
        assert_eq!(encode(&table(), 19), prev);

        let (v1, offset) = decode(&unhex(PREV_V1)).unwrap();
        assert_eq!(offset, 15);
        let mut expected = table();
        expected.producers.remove(&9);
        expected.ongoing.clear();
        assert_eq!(v1, expected);
    }

    #[test]
    fn a_newer_version_is_refused_by_name() {
        let mut bytes = encode(&table(), 19);
        bytes[4..6].copy_from_slice(&3u16.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[4..]);
        bytes[..4].copy_from_slice(&crc.to_be_bytes());
        let err = decode(&bytes).unwrap_err();
        assert!(err.contains("version 3"), "{err}");
    }

    #[test]
    fn counts_and_batch_lengths_are_checked() {
        let reseal = |mut bytes: Vec<u8>| {
            let crc = crc32c::crc32c(&bytes[4..]);
            bytes[..4].copy_from_slice(&crc.to_be_bytes());
            bytes
        };
        let mut huge = encode(&table(), 19);
        huge[14..22].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&reseal(huge)).is_err());
        let mut extra = encode(&table(), 19);
        extra.push(0);
        assert!(decode(&reseal(extra)).is_err());
        // Producer 5's `len` byte: 22 + 8 (id) + 2 (epoch) + 160 (batches).
        let mut len = encode(&table(), 19);
        len[22 + 170] = 6;
        assert!(decode(&reseal(len)).unwrap_err().contains("6 batches"));
    }
}
