//! The committed-offsets log: `<data_dir>/_strata/offsets/offsets-<N>.log`, a
//! [`RecordLog`] of [`OffsetRecord`]s (file format, durability of appends, torn
//! tails, quarantine of damaged files and compaction are described there).
//! Files written by earlier releases (unversioned bincode records, framed the same
//! way) open with every record and are rewritten in versioned records at that
//! open (tests `a_file_written_before_the_shared_log_opens`,
//! `a_log_of_the_previous_release_opens_with_every_record`).
//!
//! Records (fields in `record.rs`), replayed in order:
//! - `Commit` sets a committed offset; `Delete` removes one (OffsetDelete,
//!   expiry) with any pending transactional offset of that partition;
//!   `GroupDeleted` removes every committed and pending offset of a group.
//! - `TxnCommit` (TxnOffsetCommit) holds an offset *pending* for
//!   (group, producer id): replay keeps it aside, invisible to OffsetFetch,
//!   until a `TxnMarker` for the same group and producer decides it: commit
//!   turns the producer's pending offsets into committed ones, abort drops
//!   them. A marker with nothing pending is a no-op (markers are re-sent after
//!   a coordinator restart).
//! - `GroupMetadata` (Kafka's GroupMetadata record) holds a group's
//!   membership: protocol type, generation, chosen protocol, leader, state
//!   timestamp and per member its id, `group.instance.id`, client id/host,
//!   session and rebalance timeouts, protocols with their subscription bytes,
//!   and assignment. It is written (fsync'd) when a generation completes —
//!   after the leader's SyncGroup and *before* any SyncGroup answer goes out
//!   (the group stays CompletingRebalance until then, as in Kafka) — when a
//!   static member takes a new member id in a stable group (before its
//!   JoinGroup answer), and when the group becomes Empty (no members). A
//!   `GroupMetadata` with `None` is a tombstone written when an empty group
//!   without offsets is forgotten; `GroupDeleted` drops it too. Replay keeps
//!   the latest per group; at start a group with members is loaded Stable in
//!   that generation (each member's session runs from the load, so members
//!   heartbeat on without a rebalance and one that does not come back expires
//!   after its session timeout), one without members Empty since the record's
//!   timestamp. Rebalances in progress are never written: a broker that stops
//!   mid-rebalance comes back with the last completed generation.
//!   The variant was added last so logs written before it still decode.
//! - A compaction snapshot is the live state: a `Commit` per committed offset,
//!   a `TxnCommit` per still-pending offset and the latest `GroupMetadata` per
//!   group; decided transactions, their markers and tombstones are gone.

use crate::broker::record_log::{legacy, LogRecord, RecordLog, RecordLogError};

use super::record::{OffsetRecord, OFFSET_RECORD_VERSION};

impl LogRecord for OffsetRecord {
    const FILE_STEM: &'static str = "offsets";
    const VERSION: u16 = OFFSET_RECORD_VERSION;

    /// Logs of releases before issue 15: bincode 1.x of these same types.
    fn decode_unversioned(payload: &[u8]) -> Option<Self> {
        legacy::decode_bincode1(payload)
    }
}

/// The open committed-offsets log.
pub type OffsetLog = RecordLog<OffsetRecord>;

/// Errors of the committed-offsets log; each names the file concerned.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct OffsetLogError(#[from] pub RecordLogError);

#[cfg(test)]
mod tests {
    use super::super::record::CommittedOffset;
    use super::*;
    use crate::broker::record_log::testing;

    fn commit(group: &str, partition: i32, offset: i64) -> OffsetRecord {
        OffsetRecord::Commit {
            group: group.into(),
            topic: "t".into(),
            partition,
            offset: CommittedOffset {
                offset,
                leader_epoch: 3,
                metadata: Some(format!("m{offset}")),
                commit_timestamp_ms: 1000 + offset,
            },
        }
    }

    #[test]
    fn a_file_written_before_the_shared_log_opens() {
        // Written by the offsets log of commit 1e6a580 (before `RecordLog`): a
        // Commit of g/t/1 at 42 (epoch 3, metadata "m", time 1000) and a
        // GroupDeleted of h.
        const OLD: &str = "38000000dcc50f3100000000010000000000000067010000000000000074\
            010000002a00000000000000030000000101000000000000006de80300000000\
            00000d000000cbc8dec202000000010000000000000068";
        let bytes: Vec<u8> = (0..OLD.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&OLD[i..i + 2], 16).unwrap())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets-00000000000000000000.log");
        std::fs::write(&path, &bytes).unwrap();
        let (mut log, records) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
        let mut expected = commit("g", 1, 42);
        if let OffsetRecord::Commit { offset, .. } = &mut expected {
            offset.metadata = Some("m".into());
            offset.commit_timestamp_ms = 1000;
        }
        let deleted = OffsetRecord::GroupDeleted { group: "h".into() };
        assert_eq!(records, vec![expected.clone(), deleted.clone()]);
        // Rewritten in versioned records as generation 1.
        assert_eq!(log.generation(), 1);
        assert!(!path.exists());
        log.append(&[commit("g", 1, 43)]).unwrap();
        drop(log);
        let (log, records) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(records, vec![expected, deleted, commit("g", 1, 43)]);
        assert_eq!(log.generation(), 1);
    }

    #[test]
    fn a_log_of_the_previous_release_opens_with_every_record() {
        // What the previous release wrote: unversioned frames, here of every variant,
        // with a torn append at the end.
        let records = crate::group::offsets::record::tests::every_variant();
        let mut bytes = Vec::new();
        for r in &records {
            legacy::encode_unversioned_frame(r, &mut bytes);
        }
        let torn = bytes.len();
        legacy::encode_unversioned_frame(&commit("g", 0, 99), &mut bytes);
        bytes.truncate(bytes.len() - 3);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("offsets-00000000000000000007.log"), &bytes).unwrap();
        let (log, replayed) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(replayed, records);
        assert_eq!(log.generation(), 8);
        assert!(!log.is_empty() && log.len() != torn as u64);
        drop(log);
        let (_, again) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(again, records);
    }

    #[test]
    fn a_compaction_failing_after_its_rename_loses_no_acknowledged_commit() {
        testing::compaction_failing_after_its_rename_loses_nothing(
            commit("a", 0, 1),
            commit("a", 0, 2),
        );
    }
}
