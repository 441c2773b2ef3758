//! Records of the committed-offsets log. Their framing on disk is the shared
//! record log's (`crate::broker::record_log`); the payload is the postcard
//! encoding of an [`OffsetRecord`] at [`OFFSET_RECORD_VERSION`] (layout pinned by
//! the test `version_1_layout_is_pinned`). Logs written before records had
//! versions hold the bincode 1.x encoding of the same types, read once through
//! [`crate::broker::record_log::legacy`] and rewritten.
//!
//! Ids are `Arc<str>` and byte fields `Bytes` so that a record, the offsets table and
//! the coordinator's state share one copy of each; both encode exactly as the
//! `String` and `Vec<u8>` they replaced (a length, then the bytes), so unversioned
//! files written before that change decode too (test `shared_fields_encode_as_before`).

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The layout version of [`OffsetRecord`] written today (see `LogRecord::VERSION`).
/// Bump it, and decode the previous layout in the `LogRecord` impl, when any type
/// of this module changes shape.
pub const OFFSET_RECORD_VERSION: u16 = 1;

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
        group: Arc<str>,
        topic: String,
        partition: i32,
        offset: CommittedOffset,
    },
    /// The offset of `topic`/`partition` was deleted (OffsetDelete or expiry).
    Delete {
        group: Arc<str>,
        topic: String,
        partition: i32,
    },
    /// Every offset of `group` was deleted (DeleteGroups), pending
    /// transactional ones included.
    GroupDeleted { group: Arc<str> },
    /// TxnOffsetCommit: `offset` for `topic`/`partition` is *pending* in the
    /// transaction of `producer_id` (at `producer_epoch`). Invisible to
    /// OffsetFetch until a [`OffsetRecord::TxnMarker`] for the same group and
    /// producer commits it; a later `TxnCommit` for the same partition and
    /// producer before the marker replaces it.
    TxnCommit {
        group: Arc<str>,
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
        group: Arc<str>,
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
    /// written before it still decode (variants are numbered in order).
    GroupMetadata {
        group: Arc<str>,
        metadata: Option<StoredGroup>,
    },
}

/// A group's membership as of its last completed generation (or as it went
/// Empty). Rebalances in progress are never stored: a group is loaded Stable
/// with these members, or Empty when there are none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGroup {
    /// `consumer` for consumer groups; `None` for a group that never had members.
    pub protocol_type: Option<Arc<str>>,
    pub generation_id: i32,
    /// The protocol (assignor) chosen for the generation; `None` when Empty.
    pub protocol_name: Option<Arc<str>>,
    /// Member id of the generation's leader; `None` when Empty.
    pub leader_id: Option<Arc<str>>,
    /// When the group entered the stored state (Unix ms): offset expiry of an
    /// Empty group counts from here.
    pub state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

/// One member of a [`StoredGroup`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMember {
    pub member_id: Arc<str>,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<Arc<str>>,
    pub client_id: Arc<str>,
    pub client_host: Arc<str>,
    /// ms; a loaded member's session runs from the load time.
    pub session_timeout_ms: i32,
    /// ms
    pub rebalance_timeout_ms: i32,
    /// (protocol name, subscription metadata) in the member's order of
    /// preference, every protocol it joined with (Kafka keeps only the chosen
    /// one; keeping all lets an unchanged rejoin after a restart need no rebalance).
    pub protocols: Vec<(Arc<str>, Bytes)>,
    /// The assignment the leader gave the member in this generation.
    pub assignment: Bytes,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::broker::record_log::{encode_frame, legacy, scan_frames};

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

    /// The record types as they were before ids became `Arc<str>` and byte fields
    /// `Bytes` (bincode encodes fields in order and variants by index; names do not
    /// matter).
    mod before {
        use serde::{Deserialize, Serialize};

        #[derive(Serialize, Deserialize)]
        pub enum OffsetRecord {
            Commit {
                group: String,
                topic: String,
                partition: i32,
                offset: super::CommittedOffset,
            },
            Delete,
            GroupDeleted,
            TxnCommit,
            TxnMarker,
            GroupMetadata {
                group: String,
                metadata: Option<StoredGroup>,
            },
        }

        #[derive(Serialize, Deserialize)]
        pub struct StoredGroup {
            pub protocol_type: Option<String>,
            pub generation_id: i32,
            pub protocol_name: Option<String>,
            pub leader_id: Option<String>,
            pub state_timestamp_ms: i64,
            pub members: Vec<StoredMember>,
        }

        #[derive(Serialize, Deserialize)]
        pub struct StoredMember {
            pub member_id: String,
            pub group_instance_id: Option<String>,
            pub client_id: String,
            pub client_host: String,
            pub session_timeout_ms: i32,
            pub rebalance_timeout_ms: i32,
            pub protocols: Vec<(String, Vec<u8>)>,
            pub assignment: Vec<u8>,
        }
    }

    #[test]
    fn shared_fields_encode_as_before() {
        let old_member = |id: &str| before::StoredMember {
            member_id: id.into(),
            group_instance_id: Some("instance".into()),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocols: vec![("range".into(), vec![0, 1, 2]), ("rr".into(), vec![])],
            assignment: vec![9; 300],
        };
        let old = before::OffsetRecord::GroupMetadata {
            group: "g".into(),
            metadata: Some(before::StoredGroup {
                protocol_type: Some("consumer".into()),
                generation_id: 4,
                protocol_name: Some("range".into()),
                leader_id: Some("a".into()),
                state_timestamp_ms: 77,
                members: vec![old_member("a"), old_member("b")],
            }),
        };
        let member = |id: &str| StoredMember {
            member_id: id.into(),
            group_instance_id: Some("instance".into()),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocols: vec![
                ("range".into(), Bytes::from_static(&[0, 1, 2])),
                ("rr".into(), Bytes::new()),
            ],
            assignment: Bytes::from(vec![9; 300]),
        };
        let new = OffsetRecord::GroupMetadata {
            group: "g".into(),
            metadata: Some(StoredGroup {
                protocol_type: Some("consumer".into()),
                generation_id: 4,
                protocol_name: Some("range".into()),
                leader_id: Some("a".into()),
                state_timestamp_ms: 77,
                members: vec![member("a"), member("b")],
            }),
        };
        let old_bytes = bincode::serialize(&old).unwrap();
        assert_eq!(bincode::serialize(&new).unwrap(), old_bytes);
        assert_eq!(
            bincode::deserialize::<OffsetRecord>(&old_bytes).unwrap(),
            new
        );
        let old_commit = before::OffsetRecord::Commit {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            offset: CommittedOffset {
                offset: 5,
                leader_epoch: 1,
                metadata: Some("m".into()),
                commit_timestamp_ms: 2,
            },
        };
        let old_bytes = bincode::serialize(&old_commit).unwrap();
        assert_eq!(bincode::serialize(&commit_at(3, 5)).unwrap(), old_bytes);
    }

    fn commit_at(partition: i32, offset: i64) -> OffsetRecord {
        OffsetRecord::Commit {
            group: "g".into(),
            topic: "t".into(),
            partition,
            offset: CommittedOffset {
                offset,
                leader_epoch: 1,
                metadata: Some("m".into()),
                commit_timestamp_ms: 2,
            },
        }
    }

    fn group_metadata() -> OffsetRecord {
        OffsetRecord::GroupMetadata {
            group: "g".into(),
            metadata: Some(StoredGroup {
                protocol_type: Some("consumer".into()),
                generation_id: 7,
                protocol_name: Some("range".into()),
                leader_id: Some("m".into()),
                state_timestamp_ms: 1,
                members: vec![StoredMember {
                    member_id: "m".into(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "/h".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 300,
                    protocols: vec![("range".into(), Bytes::from_static(&[1, 2]))],
                    assignment: Bytes::from_static(&[3]),
                }],
            }),
        }
    }

    /// One record of every variant.
    pub(crate) fn every_variant() -> Vec<OffsetRecord> {
        vec![
            commit(1),
            OffsetRecord::Delete {
                group: "g".into(),
                topic: "t".into(),
                partition: 2,
            },
            OffsetRecord::GroupDeleted { group: "h".into() },
            OffsetRecord::TxnCommit {
                group: "g".into(),
                producer_id: 9,
                producer_epoch: -1,
                topic: "t".into(),
                partition: 0,
                offset: CommittedOffset {
                    offset: 300,
                    leader_epoch: 2,
                    metadata: None,
                    commit_timestamp_ms: -5,
                },
            },
            OffsetRecord::TxnMarker {
                group: "g".into(),
                producer_id: 9,
                commit: true,
            },
            group_metadata(),
            OffsetRecord::GroupMetadata {
                group: "g".into(),
                metadata: None,
            },
        ]
    }

    #[test]
    fn unversioned_frames_of_every_variant_still_decode() {
        // bincode wrote the variant index as a u32 first: the records written
        // before GroupMetadata existed keep their numbers.
        let index = |r: &OffsetRecord| {
            let bytes = bincode::serialize(r).unwrap();
            u32::from_le_bytes(bytes[..4].try_into().unwrap())
        };
        assert_eq!(index(&commit(1)), 0);
        let records = every_variant();
        assert_eq!(index(&records[4]), 4);
        assert_eq!(index(&records[5]), 5);
        let mut bytes = Vec::new();
        for r in &records {
            legacy::encode_unversioned_frame(r, &mut bytes);
        }
        let scan = scan_frames::<OffsetRecord>(&bytes).unwrap();
        assert_eq!(scan.records, records);
        assert_eq!(scan.unversioned, records.len());
        assert!(scan.skipped.is_empty());
    }

    #[test]
    fn versioned_frames_round_trip() {
        let records = every_variant();
        let mut bytes = Vec::new();
        for r in &records {
            encode_frame(r, &mut bytes).unwrap();
        }
        let scan = scan_frames::<OffsetRecord>(&bytes).unwrap();
        assert_eq!(scan.records, records);
        assert_eq!(scan.unversioned, 0);
    }

    const PINNED: [&str; 7] = [
        // Commit: variant 0; "g"; "t"; partition 0; offset 1, epoch -1 (zigzag
        // varints); Some("meta"); timestamp 1.
        "000167017400020101046d65746102",
        "010167017404",
        "020168",
        "0301671201017400d804040009",
        "0401671201",
        "050167010108636f6e73756d65720e010572616e676501016d0201016d000163022f68a09c01d804010572616e67650201020103",
        "05016700",
    ];

    /// The postcard bytes of version 1 (one line per variant of `every_variant`). A
    /// failure here means the serde shape of a record changed: bump
    /// [`OFFSET_RECORD_VERSION`] and decode version 1 in the `LogRecord` impl instead
    /// of changing these bytes.
    #[test]
    fn version_1_layout_is_pinned() {
        assert_eq!(OFFSET_RECORD_VERSION, 1);
        let got: Vec<String> = every_variant()
            .iter()
            .map(|r| {
                let bytes = postcard::to_allocvec(r).unwrap();
                bytes.iter().map(|b| format!("{b:02x}")).collect()
            })
            .collect();
        let pinned = PINNED;
        assert_eq!(got, pinned);
    }
}
