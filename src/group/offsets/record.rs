//! Records of the committed-offsets log and their on-disk framing.
//!
//! A frame is `[payload length: u32 LE][CRC-32C of payload: u32 LE][payload]`,
//! where the payload is the bincode (v1, default options) encoding of an
//! [`OffsetRecord`]. A frame whose length is implausible, that is cut short,
//! whose checksum does not match or whose payload does not decode is damaged;
//! [`scan_frames`] skips damaged bytes up to the next intact frame.

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
    /// The membership of `group` (Kafka's GroupMetadata record), written when
    /// a generation completes (the leader's assignment is stored, before the
    /// SyncGroup answers go out), when a static member takes a new member id
    /// in a stable group, and when the group becomes Empty (then without
    /// members). `None` is a tombstone: the group was forgotten (its offsets,
    /// if any, are untouched). Replay keeps the latest per group; a
    /// `GroupDeleted` removes it too. Added after `TxnMarker` so that files
    /// written before it still decode (bincode numbers variants in order).
    GroupMetadata {
        group: String,
        metadata: Option<StoredGroup>,
    },
}

/// A group's membership as of its last completed generation (or as it went
/// Empty). Rebalances in progress are never stored: a group is loaded Stable
/// with these members, or Empty when there are none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGroup {
    /// `consumer` for consumer groups; `None` for a group that never had members.
    pub protocol_type: Option<String>,
    pub generation_id: i32,
    /// The protocol (assignor) chosen for the generation; `None` when Empty.
    pub protocol_name: Option<String>,
    /// Member id of the generation's leader; `None` when Empty.
    pub leader_id: Option<String>,
    /// When the group entered the stored state (Unix ms): offset expiry of an
    /// Empty group counts from here.
    pub state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

/// One member of a [`StoredGroup`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMember {
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// ms; a loaded member's session runs from the load time.
    pub session_timeout_ms: i32,
    /// ms
    pub rebalance_timeout_ms: i32,
    /// (protocol name, subscription metadata) in the member's order of
    /// preference, every protocol it joined with (Kafka keeps only the chosen
    /// one; keeping all lets an unchanged rejoin after a restart need no rebalance).
    pub protocols: Vec<(String, Vec<u8>)>,
    /// The assignment the leader gave the member in this generation.
    pub assignment: Vec<u8>,
}

impl OffsetRecord {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            OffsetRecord::Commit { group, .. }
            | OffsetRecord::Delete { group, .. }
            | OffsetRecord::GroupDeleted { group }
            | OffsetRecord::TxnCommit { group, .. }
            | OffsetRecord::TxnMarker { group, .. }
            | OffsetRecord::GroupMetadata { group, .. } => group,
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

/// Why no frame could be read at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFault {
    /// The header or the payload it announces runs past the end of the bytes:
    /// what a crash in the middle of an append leaves.
    Short,
    /// Implausible length, checksum mismatch or undecodable payload.
    Corrupt,
}

/// Reads the frame that starts at `pos`: its record and the position just after it.
pub fn decode_frame_at(bytes: &[u8], pos: usize) -> Result<(OffsetRecord, usize), FrameFault> {
    let header_end = pos
        .checked_add(FRAME_HEADER_LEN)
        .filter(|e| *e <= bytes.len())
        .ok_or(FrameFault::Short)?;
    let header = &bytes[pos..header_end];
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD_LEN {
        return Err(FrameFault::Corrupt);
    }
    let end = header_end
        .checked_add(len as usize)
        .filter(|e| *e <= bytes.len())
        .ok_or(FrameFault::Short)?;
    let payload = &bytes[header_end..end];
    if crc32c::crc32c(payload) != crc {
        return Err(FrameFault::Corrupt);
    }
    let record = bincode::deserialize::<OffsetRecord>(payload).map_err(|_| FrameFault::Corrupt)?;
    Ok((record, end))
}

/// What [`scan_frames`] found in a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameScan {
    /// Records of every intact frame, in file order.
    pub records: Vec<OffsetRecord>,
    /// Damaged byte ranges (`start..end`, byte positions in the file) that an
    /// intact frame follows: damage in the middle, skipped.
    pub skipped: Vec<std::ops::Range<usize>>,
    /// Records read after the first skipped range (recovered by resynchronising).
    pub recovered_after_damage: usize,
    /// End of the last intact frame; bytes after it are an unreadable tail.
    pub valid_end: usize,
    /// Whether that tail is a frame cut short (a torn append) rather than
    /// corrupt bytes; true when there is no tail.
    pub torn_tail: bool,
}

/// Reads every intact frame of `bytes`. At a damaged frame it resynchronises:
/// it scans forward byte by byte for the next position where a whole frame has
/// a plausible length, a matching CRC-32C and a decodable payload, records the
/// skipped range and goes on from there. Damage with no intact frame after it
/// is the tail (`valid_end..`).
pub fn scan_frames(bytes: &[u8]) -> FrameScan {
    let mut scan = FrameScan {
        records: Vec::new(),
        skipped: Vec::new(),
        recovered_after_damage: 0,
        valid_end: 0,
        torn_tail: true,
    };
    let mut pos = 0usize;
    while pos < bytes.len() {
        match decode_frame_at(bytes, pos) {
            Ok((record, end)) => {
                scan.records.push(record);
                if !scan.skipped.is_empty() {
                    scan.recovered_after_damage += 1;
                }
                scan.valid_end = end;
                pos = end;
            }
            Err(fault) => {
                let next = (pos + 1..bytes.len().saturating_sub(FRAME_HEADER_LEN - 1))
                    .find(|q| decode_frame_at(bytes, *q).is_ok());
                match next {
                    Some(next) => {
                        scan.skipped.push(pos..next);
                        pos = next;
                    }
                    None => {
                        scan.torn_tail = fault == FrameFault::Short;
                        break;
                    }
                }
            }
        }
    }
    scan
}

/// Decodes frames from the start of `bytes`. Returns the records of every
/// whole, intact frame and the byte length of that valid prefix; decoding stops
/// at the first torn or corrupt frame.
pub fn decode_frames(bytes: &[u8]) -> (Vec<OffsetRecord>, usize) {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while let Ok((record, end)) = decode_frame_at(bytes, pos) {
        records.push(record);
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

    #[test]
    fn scan_resynchronises_after_damage_in_the_middle() {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for n in 0..5 {
            starts.push(bytes.len());
            encode_frame(&commit(n), &mut bytes).unwrap();
        }
        starts.push(bytes.len());
        let clean = scan_frames(&bytes);
        assert_eq!(clean.records.len(), 5);
        assert!(clean.skipped.is_empty() && clean.torn_tail);
        assert_eq!(clean.valid_end, bytes.len());
        let intact = bytes.clone();

        // A flipped payload byte in frame 1 and a wild length in frame 3.
        bytes[starts[1] + FRAME_HEADER_LEN + 2] ^= 0x40;
        bytes[starts[3] + 3] = 0x7f;
        let scan = scan_frames(&bytes);
        assert_eq!(scan.records, vec![commit(0), commit(2), commit(4)]);
        assert_eq!(
            scan.skipped,
            vec![starts[1]..starts[2], starts[3]..starts[4]]
        );
        assert_eq!(scan.recovered_after_damage, 2);
        assert_eq!(scan.valid_end, bytes.len());

        // Damage in the last frame too: frames 3 and 4 are a corrupt tail.
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let scan = scan_frames(&bytes);
        assert_eq!(scan.records, vec![commit(0), commit(2)]);
        assert_eq!(scan.skipped, vec![starts[1]..starts[2]]);
        assert_eq!(scan.valid_end, starts[3]);
        assert!(!scan.torn_tail);
        // A frame cut short is a torn tail.
        let scan = scan_frames(&intact[..starts[5] - 3]);
        assert_eq!(scan.records.len(), 4);
        assert_eq!(scan.valid_end, starts[4]);
        assert!(scan.torn_tail && scan.skipped.is_empty());
    }

    #[test]
    fn variants_keep_their_numbers_so_older_files_still_decode() {
        // bincode writes the variant index as a u32 first: the records written
        // before GroupMetadata existed keep their numbers.
        let index = |r: &OffsetRecord| {
            let bytes = bincode::serialize(r).unwrap();
            u32::from_le_bytes(bytes[..4].try_into().unwrap())
        };
        assert_eq!(index(&commit(1)), 0);
        let marker = OffsetRecord::TxnMarker {
            group: "g".into(),
            producer_id: 1,
            commit: true,
        };
        assert_eq!(index(&marker), 4);
        let metadata = OffsetRecord::GroupMetadata {
            group: "g".into(),
            metadata: Some(StoredGroup {
                protocol_type: Some("consumer".into()),
                generation_id: 7,
                protocol_name: None,
                leader_id: None,
                state_timestamp_ms: 1,
                members: Vec::new(),
            }),
        };
        assert_eq!(index(&metadata), 5);
        let mut bytes = Vec::new();
        encode_frame(&marker, &mut bytes).unwrap();
        encode_frame(&metadata, &mut bytes).unwrap();
        assert_eq!(decode_frames(&bytes).0, vec![marker, metadata]);
    }
}
