//! The transaction log: `<data_dir>/_strata/transactions/transactions-<N>.log`, a
//! [`RecordLog`] of [`TxnRecord`]s (file format, durability of appends, torn tails,
//! quarantine of damaged files and compaction are described there).
//!
//! Every change of a transactional id's state is appended as a [`TxnRecord`] carrying the
//! whole [`TxnMetadata`], so the last record of an id is its state; a compaction
//! snapshot ([`snapshot`]) is one `State` per live id.
//!
//! Records are postcard at [`TXN_RECORD_VERSION`] (layout pinned by the test
//! `version_1_layout_is_pinned`; [`TxnMetadata`] and [`super::metadata::TxnState`] are
//! part of it). Files written by earlier releases (unversioned bincode records,
//! framed the same way) open with every record and are rewritten in versioned records
//! at that open (tests `a_file_written_before_the_shared_log_opens`,
//! `a_log_of_the_previous_release_opens_with_every_record`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::metadata::TxnMetadata;
use crate::broker::record_log::{legacy, LogRecord, RecordLog, RecordLogError};

/// The layout version of [`TxnRecord`] written today (see `LogRecord::VERSION`). Bump
/// it, and decode the previous layout in the `LogRecord` impl, when `TxnRecord`,
/// [`TxnMetadata`] or its `TxnState` changes shape.
pub const TXN_RECORD_VERSION: u16 = 1;

/// One entry of the transaction log. The state is shared with the coordinator's table
/// and the writer's live map (one copy in memory); `Arc`s encode as what they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnRecord {
    /// The new state of a transactional id.
    State(Arc<TxnMetadata>),
    /// The transactional id expired (`transactional.id.expiration.ms`) and is forgotten.
    Removed { transactional_id: Arc<str> },
}

impl LogRecord for TxnRecord {
    const FILE_STEM: &'static str = "transactions";
    const VERSION: u16 = TXN_RECORD_VERSION;

    /// Logs of releases before issue 15: bincode 1.x of these same types.
    fn decode_unversioned(payload: &[u8]) -> Option<Self> {
        legacy::decode_bincode1(payload)
    }
}

/// The open transaction log.
pub type TxnLog = RecordLog<TxnRecord>;

/// Errors of the transaction log; each names the file concerned.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TxnLogError(#[from] pub RecordLogError);

/// The live state of each transactional id, by id.
pub type LiveStates = BTreeMap<Arc<str>, Arc<TxnMetadata>>;

/// The live states after replaying `records` in order.
pub fn replay(records: &[TxnRecord]) -> LiveStates {
    let mut live = BTreeMap::new();
    for record in records {
        apply(&mut live, record);
    }
    live
}

/// Applies one record to a map of live states (sharing, not copying, its state).
pub fn apply(live: &mut LiveStates, record: &TxnRecord) {
    match record {
        TxnRecord::State(m) => {
            live.insert(m.transactional_id.clone(), m.clone());
        }
        TxnRecord::Removed { transactional_id } => {
            live.remove(transactional_id);
        }
    }
}

/// The compaction snapshot of `live`: one `State` record per live id.
pub fn snapshot(live: &LiveStates) -> Vec<TxnRecord> {
    live.values().cloned().map(TxnRecord::State).collect()
}

#[cfg(test)]
mod tests {
    use super::super::metadata::TxnState;
    use super::*;
    use crate::broker::record_log::testing;

    fn state(id: &str, epoch: i16, partitions: &[(&str, i32)]) -> TxnRecord {
        let mut m = TxnMetadata::new(id.into(), 7, 60_000, 1);
        m.producer_epoch = epoch;
        if !partitions.is_empty() {
            m.state = TxnState::Ongoing;
            m.partitions = partitions
                .iter()
                .map(|(t, p)| (t.to_string(), *p))
                .collect();
            m.groups.insert("g".into());
        }
        TxnRecord::State(Arc::new(m))
    }

    #[test]
    fn replays_appended_records_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, records) = TxnLog::open(dir.path(), 1 << 20).unwrap();
            assert!(records.is_empty());
            log.append(&[state("a", 0, &[]), state("a", 0, &[("t", 0)])])
                .unwrap();
            log.append(&[
                state("b", 3, &[]),
                TxnRecord::Removed {
                    transactional_id: "b".into(),
                },
            ])
            .unwrap();
        }
        let (_, records) = TxnLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(records.len(), 4);
        let live = replay(&records);
        assert_eq!(live.len(), 1);
        assert_eq!(
            TxnRecord::State(live["a"].clone()),
            state("a", 0, &[("t", 0)])
        );
    }

    #[test]
    fn a_file_written_before_the_shared_log_opens() {
        // Written by the transaction log of commit 1e6a580 (before `RecordLog`): the
        // state of "old-id" (producer 7, epoch 2, timeout 60000, Empty, at 1) and the
        // removal of "gone".
        const OLD: &str = "4e000000b68061f10000000006000000000000006f6c642d696407000000\
            00000000ffffffffffffffff0200ffff60ea0000000000000000000000000000\
            0000000000000000ffffffffffffffff010000000000000010000000e125c85a\
            010000000400000000000000676f6e65";
        let bytes: Vec<u8> = (0..OLD.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&OLD[i..i + 2], 16).unwrap())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transactions-00000000000000000000.log");
        std::fs::write(&path, &bytes).unwrap();
        let (mut log, records) = TxnLog::open(dir.path(), 1 << 20).unwrap();
        let removed = TxnRecord::Removed {
            transactional_id: "gone".into(),
        };
        assert_eq!(records, vec![state("old-id", 2, &[]), removed.clone()]);
        // Rewritten in versioned records as generation 1.
        assert_eq!(log.generation(), 1);
        assert!(!path.exists());
        log.append(&[state("old-id", 3, &[])]).unwrap();
        drop(log);
        let (_, records) = TxnLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            records,
            vec![state("old-id", 2, &[]), removed, state("old-id", 3, &[])]
        );
    }

    /// One record of every shape: each state, partitions and groups, both variants.
    fn every_variant() -> Vec<TxnRecord> {
        let mut records: Vec<TxnRecord> = TxnState::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut m = TxnMetadata::new(format!("id-{i}").into(), 7 + i as i64, 60_000, 1);
                m.state = *s;
                m.producer_epoch = i as i16;
                m.last_producer_id = -1;
                m.partitions = [("t".to_string(), 0), ("u".to_string(), i as i32)].into();
                m.groups = ["g".to_string()].into();
                m.txn_start_ms = 1_700_000_000_000;
                m.last_update_ms = 1_700_000_000_123;
                TxnRecord::State(Arc::new(m))
            })
            .collect();
        records.push(TxnRecord::Removed {
            transactional_id: "gone".into(),
        });
        records
    }

    #[test]
    fn a_log_of_the_previous_release_opens_with_every_record() {
        let records = every_variant();
        let mut bytes = Vec::new();
        for r in &records {
            legacy::encode_unversioned_frame(r, &mut bytes);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("transactions-00000000000000000003.log"),
            &bytes,
        )
        .unwrap();
        let (log, replayed) = TxnLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(replayed, records);
        assert_eq!(log.generation(), 4);
        drop(log);
        let (_, again) = TxnLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(again, records);
    }

    /// Variant 0; "a"; producer id 7, last -1, epoch 2, last -1 (zigzag varints);
    /// timeout 60000; Ongoing (variant 1); partitions {("t", 1)}; groups {"g"};
    /// start -1; last update 1.
    const PINNED_STATE: &str = "0001610e010401c0a90701010174020101670102";
    /// Variant 1; "gone".
    const PINNED_REMOVED: &str = "0104676f6e65";

    /// The postcard bytes of version 1: an Ongoing state and a removal. A failure here means the serde shape of a record changed: bump
    /// [`TXN_RECORD_VERSION`] and decode version 1 in the `LogRecord` impl instead of
    /// changing these bytes.
    #[test]
    fn version_1_layout_is_pinned() {
        assert_eq!(TXN_RECORD_VERSION, 1);
        let hex = |r: &TxnRecord| -> String {
            let bytes = postcard::to_allocvec(r).unwrap();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        };
        assert_eq!(hex(&state("a", 2, &[("t", 1)])), PINNED_STATE);
        let removed = TxnRecord::Removed {
            transactional_id: "gone".into(),
        };
        assert_eq!(hex(&removed), PINNED_REMOVED);
        let mut bytes = Vec::new();
        for r in &every_variant() {
            crate::broker::record_log::encode_frame(r, &mut bytes).unwrap();
        }
        let scan = crate::broker::record_log::scan_frames::<TxnRecord>(&bytes).unwrap();
        assert_eq!(scan.records, every_variant());
    }

    #[test]
    fn compaction_keeps_only_live_states() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = TxnLog::open(dir.path(), 512).unwrap();
        let mut live = BTreeMap::new();
        let mut n = 0;
        while !log.needs_compaction() {
            n += 1;
            let record = state(if n % 2 == 0 { "a" } else { "b" }, n, &[("t", 0)]);
            log.append(std::slice::from_ref(&record)).unwrap();
            apply(&mut live, &record);
        }
        let before = log.len();
        let old_path = log.path().to_path_buf();
        log.rewrite(&snapshot(&live)).unwrap();
        assert!(log.len() < before);
        assert!(!old_path.exists());
        log.append(&[state("c", 0, &[])]).unwrap();
        let (_, records) = TxnLog::open(dir.path(), 512).unwrap();
        assert_eq!(records.len(), 3);
        let replayed = replay(&records);
        assert_eq!(replayed["a"], live["a"]);
        assert_eq!(replayed["b"], live["b"]);
        assert!(replayed.contains_key("c"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_compaction_failing_after_its_rename_loses_no_acknowledged_state() {
        testing::compaction_failing_after_its_rename_loses_nothing(
            state("a", 1, &[("t", 0)]),
            state("a", 2, &[("t", 0), ("t", 1)]),
        );
    }
}
