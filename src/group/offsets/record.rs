//! Records of the committed-offsets log and their on-disk framing.
//!
//! A frame is `[payload length: u32 LE][CRC-32C of payload: u32 LE][payload]`,
//! where the payload is the bincode (v1, default options) encoding of an
//! [`OffsetRecord`]. A frame whose length is implausible, that is cut short, or
//! whose checksum does not match ends the readable part of the file.

use serde::{Deserialize, Serialize};

/// Bytes of the frame header (length + CRC).
pub const FRAME_HEADER_LEN: usize = 8;

/// Upper bound on one record's payload; a larger length marks a corrupt frame.
pub const MAX_RECORD_LEN: u32 = 16 * 1024 * 1024;

/// One committed offset of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// The next offset the group will consume.
    pub offset: i64,
    /// The leader epoch the client saw for `offset`, or -1.
    pub leader_epoch: i32,
    /// The client's metadata string, returned as given (may be null).
    pub metadata: Option<String>,
    /// When the commit was accepted (Unix ms); expiry counts from here.
    pub commit_timestamp_ms: i64,
}

/// One entry of the committed-offsets log. Replaying the log in order from
/// the start rebuilds the committed offsets of every group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffsetRecord {
    /// `group` committed `offset` for `topic`/`partition`.
    Commit {
        group: String,
        topic: String,
        partition: i32,
        offset: CommittedOffset,
    },
    /// The offset of `topic`/`partition` was deleted (OffsetDelete or expiry).
    Delete {
        group: String,
        topic: String,
        partition: i32,
    },
    /// Every offset of `group` was deleted (DeleteGroups), pending
    /// transactional ones included.
    GroupDeleted { group: String },
    /// TxnOffsetCommit: `offset` for `topic`/`partition` is *pending* in the
    /// transaction of `producer_id` (at `producer_epoch`). Invisible to
    /// OffsetFetch until a [`OffsetRecord::TxnMarker`] for the same group and
    /// producer commits it; a later `TxnCommit` for the same partition and
    /// producer before the marker replaces it.
    TxnCommit {
        group: String,
        producer_id: i64,
        producer_epoch: i16,
        topic: String,
        partition: i32,
        offset: CommittedOffset,
    },
    /// The transaction of `producer_id` ended for `group`: `commit` makes every
    /// pending offset of that producer in the group a committed offset (as if
    /// [`OffsetRecord::Commit`]s were written here), abort drops them. A marker
    /// with nothing pending changes nothing.
    TxnMarker {
        group: String,
        producer_id: i64,
        commit: bool,
    },
}

impl OffsetRecord {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            OffsetRecord::Commit { group, .. }
            | OffsetRecord::Delete { group, .. }
            | OffsetRecord::GroupDeleted { group }
            | OffsetRecord::TxnCommit { group, .. }
            | OffsetRecord::TxnMarker { group, .. } => group,
        }
    }
}

/// Appends the frame of `record` to `out`.
pub fn encode_frame(record: &OffsetRecord, out: &mut Vec<u8>) -> Result<(), bincode::Error> {
    let payload = bincode::serialize(record)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_RECORD_LEN)
        .ok_or_else(|| {
            Box::new(bincode::ErrorKind::Custom(format!(
                "offset record of {} bytes exceeds {} bytes",
                payload.len(),
                MAX_RECORD_LEN
            )))
        })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Decodes frames from the start of `bytes`. Returns the records of every
/// whole, intact frame and the byte length of that valid prefix; decoding stops
/// at the first torn or corrupt frame.
pub fn decode_frames(bytes: &[u8]) -> (Vec<OffsetRecord>, usize) {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= FRAME_HEADER_LEN {
        let header = &bytes[pos..pos + FRAME_HEADER_LEN];
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD_LEN {
            break;
        }
        let start = pos + FRAME_HEADER_LEN;
        let Some(end) = start
            .checked_add(len as usize)
            .filter(|e| *e <= bytes.len())
        else {
            break;
        };
        let payload = &bytes[start..end];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        match bincode::deserialize::<OffsetRecord>(payload) {
            Ok(record) => records.push(record),
            Err(_) => break,
        }
        pos = end;
    }
    (records, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(offset: i64) -> OffsetRecord {
        OffsetRecord::Commit {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            offset: CommittedOffset {
                offset,
                leader_epoch: -1,
                metadata: Some("meta".into()),
                commit_timestamp_ms: 1,
            },
        }
    }

    #[test]
    fn frames_round_trip_and_stop_at_corruption() {
        let mut bytes = Vec::new();
        encode_frame(&commit(1), &mut bytes).unwrap();
        let first = bytes.len();
        encode_frame(&commit(2), &mut bytes).unwrap();
        let (records, valid) = decode_frames(&bytes);
        assert_eq!(records, vec![commit(1), commit(2)]);
        assert_eq!(valid, bytes.len());

        // Flip a payload byte of the second frame: only the first survives.
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let (records, valid) = decode_frames(&bytes);
        assert_eq!(records, vec![commit(1)]);
        assert_eq!(valid, first);
    }
}
