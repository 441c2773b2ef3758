//! The live committed offsets, rebuilt from the log and kept in memory,
//! and the pending transactional offsets that a transaction marker has not
//! decided yet.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::record::{CommittedOffset, OffsetRecord, StoredGroup};
use crate::group::limits::offset_cost;

/// (topic, partition) → committed offset.
pub type PartitionOffsets = BTreeMap<(String, i32), CommittedOffset>;

/// How a group looks to offset expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupActivity {
    /// The group has members: its offsets never expire.
    Active,
    /// The group is empty since this Unix ms, if known (unknown after a restart).
    EmptySince(Option<i64>),
}

/// The offsets one producer's open transaction committed for one group
/// (TxnOffsetCommit), not visible as committed offsets until its commit marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTxn {
    /// The epoch of the newest TxnOffsetCommit of this transaction.
    pub producer_epoch: i16,
    pub offsets: PartitionOffsets,
}

/// Every group's committed offsets. Only records already durable in the log
/// are applied, so what is read here survives a crash.
#[derive(Debug, Default, Clone)]
pub struct OffsetTable {
    groups: HashMap<Arc<str>, PartitionOffsets>,
    /// group → producer id → its undecided transactional offsets. An entry is
    /// never empty: empty maps are removed.
    pending: HashMap<Arc<str>, BTreeMap<i64, PendingTxn>>,
    /// group → its latest membership record (`GroupMetadata`). Its ids and byte
    /// fields are shared with the coordinator's groups, which account for them.
    metadata: HashMap<Arc<str>, StoredGroup>,
    /// Cost (see `group::limits`) of every committed and pending offset.
    bytes: u64,
}

/// Cost of one offset entry.
fn cost(key: &(String, i32), offset: &CommittedOffset) -> u64 {
    offset_cost(&key.0, offset.metadata.as_deref())
}

/// Cost of a map of offsets.
fn map_cost(offsets: &PartitionOffsets) -> u64 {
    offsets.iter().map(|(k, o)| cost(k, o)).sum()
}

/// Cost of one group's pending transactions.
fn pending_cost(txns: &BTreeMap<i64, PendingTxn>) -> u64 {
    txns.values().map(|t| map_cost(&t.offsets)).sum()
}

/// Inserts into `offsets` and returns (cost added, cost removed).
fn insert(
    offsets: &mut PartitionOffsets,
    key: (String, i32),
    offset: CommittedOffset,
) -> (u64, u64) {
    let added = cost(&key, &offset);
    let removed = match offsets.get_mut(&key) {
        Some(slot) => {
            let removed = cost(&key, slot);
            *slot = offset;
            removed
        }
        None => {
            offsets.insert(key, offset);
            0
        }
    };
    (added, removed)
}

impl OffsetTable {
    /// Applies one log record, taking its ids and metadata (nothing is copied).
    pub fn apply(&mut self, record: OffsetRecord) {
        match record {
            OffsetRecord::Commit {
                group,
                topic,
                partition,
                offset,
            } => {
                let offsets = self.groups.entry(group).or_default();
                let (added, removed) = insert(offsets, (topic, partition), offset);
                self.bytes = self.bytes + added - removed;
            }
            OffsetRecord::Delete {
                group,
                topic,
                partition,
            } => {
                let key = (topic, partition);
                if let Some(offsets) = self.groups.get_mut(&group) {
                    if let Some(old) = offsets.remove(&key) {
                        self.bytes -= cost(&key, &old);
                    }
                    if offsets.is_empty() {
                        self.groups.remove(&group);
                    }
                }
                // Kafka's GroupMetadata.removeOffsets drops the partition's
                // pending transactional offsets too.
                if let Some(txns) = self.pending.get_mut(&group) {
                    for txn in txns.values_mut() {
                        if let Some(old) = txn.offsets.remove(&key) {
                            self.bytes -= cost(&key, &old);
                        }
                    }
                    txns.retain(|_, txn| !txn.offsets.is_empty());
                    if txns.is_empty() {
                        self.pending.remove(&group);
                    }
                }
            }
            OffsetRecord::GroupDeleted { group } => {
                if let Some(offsets) = self.groups.remove(&group) {
                    self.bytes -= map_cost(&offsets);
                }
                if let Some(txns) = self.pending.remove(&group) {
                    self.bytes -= pending_cost(&txns);
                }
                self.metadata.remove(&group);
            }
            OffsetRecord::GroupMetadata { group, metadata } => match metadata {
                Some(stored) => {
                    self.metadata.insert(group, stored);
                }
                None => {
                    self.metadata.remove(&group);
                }
            },
            OffsetRecord::TxnCommit {
                group,
                producer_id,
                producer_epoch,
                topic,
                partition,
                offset,
            } => {
                let txn = self
                    .pending
                    .entry(group)
                    .or_default()
                    .entry(producer_id)
                    .or_insert_with(|| PendingTxn {
                        producer_epoch,
                        offsets: PartitionOffsets::new(),
                    });
                txn.producer_epoch = producer_epoch;
                let (added, removed) = insert(&mut txn.offsets, (topic, partition), offset);
                self.bytes = self.bytes + added - removed;
            }
            OffsetRecord::TxnMarker {
                group,
                producer_id,
                commit,
            } => {
                let Some(txns) = self.pending.get_mut(&group) else {
                    return;
                };
                let txn = txns.remove(&producer_id);
                if txns.is_empty() {
                    self.pending.remove(&group);
                }
                let Some(txn) = txn else {
                    return;
                };
                self.bytes -= map_cost(&txn.offsets);
                if commit {
                    let offsets = self.groups.entry(group).or_default();
                    for (key, offset) in txn.offsets {
                        let (added, removed) = insert(offsets, key, offset);
                        self.bytes = self.bytes + added - removed;
                    }
                }
            }
        }
    }

    /// Cost (see `group::limits`) of every committed and pending offset.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The cost committing `offsets` for `group` would add: new partitions cost
    /// their whole cost, replaced ones the growth of their metadata (a commit that
    /// replaces offsets with no longer metadata adds nothing). With `producer_id`,
    /// as pending offsets of that producer's transaction (TxnOffsetCommit).
    pub fn commit_growth(
        &self,
        group: &str,
        producer_id: Option<i64>,
        offsets: &[(String, i32, CommittedOffset)],
    ) -> u64 {
        let existing = match producer_id {
            None => self.groups.get(group),
            Some(pid) => self
                .pending
                .get(group)
                .and_then(|txns| txns.get(&pid))
                .map(|t| &t.offsets),
        };
        let mut seen = BTreeSet::new();
        offsets
            .iter()
            .filter(|(topic, partition, _)| seen.insert((topic.as_str(), *partition)))
            .map(|(topic, partition, offset)| {
                let new = offset_cost(topic, offset.metadata.as_deref());
                let old = existing
                    .and_then(|o| o.get(&(topic.clone(), *partition)))
                    .map_or(0, |o| offset_cost(topic, o.metadata.as_deref()));
                new.saturating_sub(old)
            })
            .sum()
    }

    /// The id of `group` as this table holds it, to share rather than copy.
    pub fn group_key(&self, group: &str) -> Option<&Arc<str>> {
        self.groups
            .get_key_value(group)
            .map(|(k, _)| k)
            .or_else(|| self.pending.get_key_value(group).map(|(k, _)| k))
            .or_else(|| self.metadata.get_key_value(group).map(|(k, _)| k))
    }

    /// Whether a transaction has a pending offset for this partition of `group`
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT).
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.pending
            .get(group)
            .is_some_and(|txns| txns.values().any(|t| t.offsets.contains_key(&key)))
    }

    /// The pending transactions of `group` by producer id.
    pub fn pending(&self, group: &str) -> Option<&BTreeMap<i64, PendingTxn>> {
        self.pending.get(group)
    }

    /// The latest stored membership of every group that has one, by group id.
    pub fn group_metadata(&self) -> &HashMap<Arc<str>, StoredGroup> {
        &self.metadata
    }

    /// Whether `group` has committed or pending offsets.
    pub fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group) || self.pending.contains_key(group)
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.groups.get(group)?.get(&(topic.to_string(), partition))
    }

    /// Every committed offset of `group`.
    pub fn group(&self, group: &str) -> Option<&PartitionOffsets> {
        self.groups.get(group)
    }

    /// Ids of the groups that have committed or pending offsets (each once).
    pub fn group_ids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.groups.keys().chain(
            self.pending
                .keys()
                .filter(|g| !self.groups.contains_key(*g)),
        )
    }

    /// Number of committed offsets over all groups.
    pub fn len(&self) -> usize {
        self.groups.values().map(BTreeMap::len).sum()
    }

    /// Number of pending transactional offsets over all groups and producers.
    pub fn pending_len(&self) -> usize {
        self.pending
            .values()
            .flat_map(BTreeMap::values)
            .map(|t| t.offsets.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.pending.is_empty() && self.metadata.is_empty()
    }

    /// The live state as records: a `Commit` per committed offset, then a
    /// `TxnCommit` per still-pending transactional offset (decided ones are
    /// gone), then the latest `GroupMetadata` of each group (tombstones are
    /// gone). Replaying them rebuilds this table.
    pub fn snapshot(&self) -> Vec<OffsetRecord> {
        let mut groups: Vec<&Arc<str>> = self.groups.keys().collect();
        groups.sort();
        let committed = groups.into_iter().flat_map(|group| {
            self.groups[group]
                .iter()
                .map(move |((topic, partition), offset)| OffsetRecord::Commit {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    offset: offset.clone(),
                })
        });
        let mut pending_groups: Vec<&Arc<str>> = self.pending.keys().collect();
        pending_groups.sort();
        let pending = pending_groups.into_iter().flat_map(|group| {
            self.pending[group]
                .iter()
                .flat_map(move |(producer_id, txn)| {
                    txn.offsets.iter().map(move |((topic, partition), offset)| {
                        OffsetRecord::TxnCommit {
                            group: group.clone(),
                            producer_id: *producer_id,
                            producer_epoch: txn.producer_epoch,
                            topic: topic.clone(),
                            partition: *partition,
                            offset: offset.clone(),
                        }
                    })
                })
        });
        let mut metadata_groups: Vec<&Arc<str>> = self.metadata.keys().collect();
        metadata_groups.sort();
        let metadata = metadata_groups
            .into_iter()
            .map(|group| OffsetRecord::GroupMetadata {
                group: group.clone(),
                metadata: Some(self.metadata[group].clone()),
            });
        committed.chain(pending).chain(metadata).collect()
    }

    /// (group, (topic, partition)) of every committed and every pending offset; a
    /// partition with both appears twice.
    fn offset_keys(&self) -> impl Iterator<Item = (&Arc<str>, &(String, i32))> {
        let committed = self
            .groups
            .iter()
            .flat_map(|(group, offsets)| offsets.keys().map(move |key| (group, key)));
        let pending = self.pending.iter().flat_map(|(group, txns)| {
            txns.values()
                .flat_map(move |txn| txn.offsets.keys().map(move |key| (group, key)))
        });
        committed.chain(pending)
    }

    /// Every topic with a committed or pending offset in some group.
    pub fn topics(&self) -> BTreeSet<&str> {
        self.offset_keys()
            .map(|(_, (topic, _))| topic.as_str())
            .collect()
    }

    /// Tombstones for every offset of `topic`, committed or pending, in every group:
    /// what Kafka's coordinator removes when the topic is deleted.
    pub fn topic_tombstones(&self, topic: &str) -> Vec<OffsetRecord> {
        let found: BTreeSet<(&Arc<str>, i32)> = self
            .offset_keys()
            .filter(|(_, (t, _))| t == topic)
            .map(|(group, (_, partition))| (group, *partition))
            .collect();
        found
            .into_iter()
            .map(|(group, partition)| OffsetRecord::Delete {
                group: group.clone(),
                topic: topic.to_owned(),
                partition,
            })
            .collect()
    }

    /// Tombstones for the offsets that expired at `now_ms`: offsets of empty
    /// groups older than `retention_ms`, counted from the later of the commit
    /// and the moment the group became empty. A partition with a pending
    /// transactional offset does not expire (as in Kafka) until it is decided.
    pub fn expired(
        &self,
        now_ms: i64,
        retention_ms: i64,
        activity: impl Fn(&str) -> GroupActivity,
    ) -> Vec<OffsetRecord> {
        let mut tombstones = Vec::new();
        for (group, offsets) in &self.groups {
            let GroupActivity::EmptySince(empty_since) = activity(group) else {
                continue;
            };
            for ((topic, partition), offset) in offsets {
                let base = offset
                    .commit_timestamp_ms
                    .max(empty_since.unwrap_or(i64::MIN));
                if now_ms.saturating_sub(base) >= retention_ms
                    && !self.has_pending(group, topic, *partition)
                {
                    tombstones.push(OffsetRecord::Delete {
                        group: group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                    });
                }
            }
        }
        tombstones
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(group: &str, topic: &str, partition: i32, offset: i64, ts: i64) -> OffsetRecord {
        OffsetRecord::Commit {
            group: group.into(),
            topic: topic.into(),
            partition,
            offset: CommittedOffset {
                offset,
                leader_epoch: -1,
                metadata: None,
                commit_timestamp_ms: ts,
            },
        }
    }

    #[test]
    fn topic_tombstones_cover_committed_and_pending_offsets_of_that_topic_only() {
        let mut table = OffsetTable::default();
        table.apply(commit("g1", "gone", 0, 5, 1));
        table.apply(commit("g1", "gone", 1, 6, 1));
        table.apply(commit("g1", "kept", 0, 7, 1));
        table.apply(commit("g2", "kept", 0, 8, 1));
        table.apply(commit("g3", "gone", 0, 9, 1));
        table.apply(OffsetRecord::TxnCommit {
            group: "g3".into(),
            producer_id: 1,
            producer_epoch: 0,
            topic: "gone".into(),
            partition: 0,
            offset: CommittedOffset {
                offset: 10,
                leader_epoch: -1,
                metadata: None,
                commit_timestamp_ms: 1,
            },
        });
        table.apply(OffsetRecord::TxnCommit {
            group: "g4".into(),
            producer_id: 2,
            producer_epoch: 0,
            topic: "gone".into(),
            partition: 2,
            offset: CommittedOffset {
                offset: 11,
                leader_epoch: -1,
                metadata: None,
                commit_timestamp_ms: 1,
            },
        });
        assert_eq!(table.topics(), BTreeSet::from(["gone", "kept"]));
        let tombstones = table.topic_tombstones("gone");
        let targets: Vec<(String, i32)> = tombstones
            .iter()
            .map(|r| match r {
                OffsetRecord::Delete {
                    group,
                    topic,
                    partition,
                } => {
                    assert_eq!(topic, "gone");
                    (group.to_string(), *partition)
                }
                other => panic!("not a tombstone: {other:?}"),
            })
            .collect();
        assert_eq!(
            targets,
            vec![
                ("g1".to_owned(), 0),
                ("g1".to_owned(), 1),
                ("g3".to_owned(), 0),
                ("g4".to_owned(), 2)
            ]
        );
        for record in &tombstones {
            table.apply(record.clone());
        }
        assert!(table.get("g1", "gone", 0).is_none());
        assert!(table.get("g3", "gone", 0).is_none());
        assert!(!table.has_pending("g3", "gone", 0));
        assert!(!table.has_pending("g4", "gone", 2));
        assert_eq!(table.get("g1", "kept", 0).map(|o| o.offset), Some(7));
        assert_eq!(table.get("g2", "kept", 0).map(|o| o.offset), Some(8));
        assert!(table.topic_tombstones("gone").is_empty());
        assert_eq!(table.topics(), BTreeSet::from(["kept"]));
    }

    /// The cost of a table recomputed from its snapshot (every live offset once).
    fn recomputed(table: &OffsetTable) -> u64 {
        table
            .snapshot()
            .iter()
            .map(|r| match r {
                OffsetRecord::Commit { topic, offset, .. }
                | OffsetRecord::TxnCommit { topic, offset, .. } => {
                    offset_cost(topic, offset.metadata.as_deref())
                }
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn the_cost_follows_every_record_and_growth_counts_only_what_is_new() {
        let mut table = OffsetTable::default();
        let with_metadata = |group: &str, partition: i32, metadata: &str| OffsetRecord::Commit {
            group: group.into(),
            topic: "topic".into(),
            partition,
            offset: CommittedOffset {
                offset: 1,
                leader_epoch: -1,
                metadata: Some(metadata.into()),
                commit_timestamp_ms: 1,
            },
        };
        let steps = vec![
            with_metadata("g", 0, "m"),
            with_metadata("g", 1, "mm"),
            with_metadata("g", 0, "a longer metadata"),
            with_metadata("g", 0, ""),
            commit("h", "t", 0, 1, 1),
            txn("g", 7, 0, 5),
            txn("g", 7, 0, 6),
            txn("g", 8, 3, 6),
            marker("g", 7, true),
            marker("g", 8, false),
            txn("h", 9, 2, 1),
            OffsetRecord::Delete {
                group: "g".into(),
                topic: "topic".into(),
                partition: 1,
            },
            OffsetRecord::Delete {
                group: "h".into(),
                topic: "t".into(),
                partition: 2,
            },
            txn("h", 9, 4, 1),
            OffsetRecord::GroupDeleted { group: "h".into() },
        ];
        for step in steps {
            table.apply(step);
            assert_eq!(table.bytes(), recomputed(&table));
        }
        assert!(table.bytes() > 0);
        table.apply(OffsetRecord::GroupDeleted { group: "g".into() });
        assert_eq!(table.bytes(), 0);

        table.apply(with_metadata("g", 0, "mm"));
        let offset = |metadata: &str| CommittedOffset {
            offset: 2,
            leader_epoch: -1,
            metadata: Some(metadata.into()),
            commit_timestamp_ms: 2,
        };
        let again = vec![("topic".to_string(), 0, offset("mm"))];
        assert_eq!(table.commit_growth("g", None, &again), 0);
        let longer = vec![("topic".to_string(), 0, offset("mmmm"))];
        assert_eq!(table.commit_growth("g", None, &longer), 2);
        let new = vec![
            ("topic".to_string(), 1, offset("")),
            ("topic".to_string(), 1, offset("")),
        ];
        assert_eq!(
            table.commit_growth("g", None, &new),
            offset_cost("topic", Some("")),
            "a partition named twice counts once"
        );
        assert_eq!(
            table.commit_growth("g", Some(7), &again),
            offset_cost("topic", Some("mm")),
            "pending offsets are charged apart from committed ones"
        );
    }

    #[test]
    fn apply_commit_delete_and_group_tombstone() {
        let mut table = OffsetTable::default();
        table.apply(commit("g", "t", 0, 5, 1));
        table.apply(commit("g", "t", 0, 9, 2));
        table.apply(commit("g", "t", 1, 3, 2));
        table.apply(commit("h", "t", 0, 1, 2));
        assert_eq!(table.get("g", "t", 0).map(|o| o.offset), Some(9));
        table.apply(OffsetRecord::Delete {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
        });
        assert_eq!(table.get("g", "t", 0), None);
        assert_eq!(table.get("g", "t", 1).map(|o| o.offset), Some(3));
        table.apply(OffsetRecord::GroupDeleted { group: "g".into() });
        assert!(table.group("g").is_none());
        assert_eq!(table.len(), 1);

        let mut rebuilt = OffsetTable::default();
        for record in table.snapshot() {
            rebuilt.apply(record.clone());
        }
        assert_eq!(rebuilt.snapshot(), table.snapshot());
    }

    #[test]
    fn only_offsets_of_empty_groups_expire() {
        let mut table = OffsetTable::default();
        table.apply(commit("active", "t", 0, 1, 0));
        table.apply(commit("empty", "t", 0, 1, 0));
        table.apply(commit("empty", "t", 1, 1, 900));
        table.apply(commit("recently-empty", "t", 0, 1, 0));
        let expired = table.expired(1000, 500, |g| match g {
            "active" => GroupActivity::Active,
            "recently-empty" => GroupActivity::EmptySince(Some(800)),
            _ => GroupActivity::EmptySince(None),
        });
        assert_eq!(
            expired,
            vec![OffsetRecord::Delete {
                group: "empty".into(),
                topic: "t".into(),
                partition: 0
            }]
        );
        for record in &expired {
            table.apply(record.clone());
        }
        assert_eq!(table.len(), 3);
        // Later the recently emptied group's offset expires too.
        let expired = table.expired(1300, 500, |g| match g {
            "active" => GroupActivity::Active,
            "recently-empty" => GroupActivity::EmptySince(Some(800)),
            _ => GroupActivity::EmptySince(None),
        });
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].group(), "recently-empty");
    }

    fn txn(group: &str, producer_id: i64, partition: i32, offset: i64) -> OffsetRecord {
        OffsetRecord::TxnCommit {
            group: group.into(),
            producer_id,
            producer_epoch: 0,
            topic: "t".into(),
            partition,
            offset: CommittedOffset {
                offset,
                leader_epoch: -1,
                metadata: None,
                commit_timestamp_ms: 1,
            },
        }
    }

    fn marker(group: &str, producer_id: i64, commit: bool) -> OffsetRecord {
        OffsetRecord::TxnMarker {
            group: group.into(),
            producer_id,
            commit,
        }
    }

    #[test]
    fn pending_offsets_apply_only_on_a_commit_marker() {
        let mut table = OffsetTable::default();
        table.apply(commit("g", "t", 0, 5, 1));
        table.apply(txn("g", 7, 0, 10));
        table.apply(txn("g", 7, 0, 11)); // replaces the pending value
        table.apply(txn("g", 7, 1, 20));
        table.apply(txn("g", 8, 2, 30));
        assert_eq!(table.get("g", "t", 0).map(|o| o.offset), Some(5));
        assert_eq!(table.get("g", "t", 1), None);
        assert!(table.has_pending("g", "t", 0) && table.has_pending("g", "t", 2));
        assert!(!table.has_pending("g", "t", 3) && !table.has_pending("h", "t", 0));
        assert_eq!(table.pending_len(), 3);

        table.apply(marker("g", 7, true));
        assert_eq!(table.get("g", "t", 0).map(|o| o.offset), Some(11));
        assert_eq!(table.get("g", "t", 1).map(|o| o.offset), Some(20));
        assert!(!table.has_pending("g", "t", 0));
        // A re-sent marker changes nothing.
        table.apply(marker("g", 7, true));
        table.apply(marker("g", 7, false));
        assert_eq!(table.get("g", "t", 0).map(|o| o.offset), Some(11));

        table.apply(marker("g", 8, false));
        assert_eq!(table.get("g", "t", 2), None);
        assert_eq!(table.pending_len(), 0);
        assert!(table.pending("g").is_none());
    }

    #[test]
    fn snapshot_keeps_pending_and_drops_decided_transactions() {
        let mut table = OffsetTable::default();
        table.apply(commit("g", "t", 0, 5, 1));
        table.apply(txn("g", 7, 0, 10));
        table.apply(txn("g", 8, 1, 20));
        table.apply(marker("g", 8, true));
        table.apply(txn("only-pending", 9, 0, 1));
        let snapshot = table.snapshot();
        assert_eq!(
            snapshot,
            vec![
                commit("g", "t", 0, 5, 1),
                commit("g", "t", 1, 20, 1),
                txn("g", 7, 0, 10),
                txn("only-pending", 9, 0, 1),
            ]
        );
        let mut rebuilt = OffsetTable::default();
        for record in &snapshot {
            rebuilt.apply(record.clone());
        }
        assert_eq!(rebuilt.snapshot(), snapshot);
        rebuilt.apply(marker("g", 7, true));
        assert_eq!(rebuilt.get("g", "t", 0).map(|o| o.offset), Some(10));
        let mut ids: Vec<&Arc<str>> = table.group_ids().collect();
        ids.sort();
        assert_eq!(ids, [&Arc::from("g"), &Arc::from("only-pending")]);
    }

    #[test]
    fn deletes_drop_pending_offsets_and_pending_partitions_do_not_expire() {
        let mut table = OffsetTable::default();
        table.apply(commit("g", "t", 0, 5, 0));
        table.apply(commit("g", "t", 1, 5, 0));
        table.apply(txn("g", 7, 0, 10));
        let expired = table.expired(1000, 1, |_| GroupActivity::EmptySince(None));
        assert_eq!(
            expired,
            vec![OffsetRecord::Delete {
                group: "g".into(),
                topic: "t".into(),
                partition: 1
            }]
        );
        table.apply(OffsetRecord::Delete {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
        });
        assert!(!table.has_pending("g", "t", 0));
        table.apply(txn("g", 7, 3, 10));
        table.apply(OffsetRecord::GroupDeleted { group: "g".into() });
        assert!(!table.has_group("g"));
        table.apply(marker("g", 7, true));
        assert_eq!(table.get("g", "t", 3), None);
    }

    fn stored(generation_id: i32, members: &[&str]) -> OffsetRecord {
        OffsetRecord::GroupMetadata {
            group: "g".into(),
            metadata: Some(StoredGroup {
                protocol_type: Some("consumer".into()),
                generation_id,
                protocol_name: Some("range".into()),
                leader_id: members.first().map(|m| Arc::from(*m)),
                state_timestamp_ms: 5,
                members: members
                    .iter()
                    .map(|m| super::super::record::StoredMember {
                        member_id: Arc::from(*m),
                        group_instance_id: None,
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        session_timeout_ms: 10_000,
                        rebalance_timeout_ms: 30_000,
                        protocols: vec![("range".into(), vec![0, 1].into())],
                        assignment: vec![2, 3].into(),
                    })
                    .collect(),
            }),
        }
    }

    #[test]
    fn snapshot_keeps_only_the_latest_group_record() {
        let mut table = OffsetTable::default();
        table.apply(stored(1, &["a", "b"]));
        table.apply(commit("g", "t", 0, 5, 1));
        table.apply(stored(2, &["a"]));
        table.apply(stored(3, &[]));
        let snapshot = table.snapshot();
        assert_eq!(snapshot, vec![commit("g", "t", 0, 5, 1), stored(3, &[])]);
        let mut rebuilt = OffsetTable::default();
        for record in &snapshot {
            rebuilt.apply(record.clone());
        }
        assert_eq!(rebuilt.group_metadata()["g"].generation_id, 3);

        // A tombstone drops only the membership; GroupDeleted drops it too.
        table.apply(OffsetRecord::GroupMetadata {
            group: "g".into(),
            metadata: None,
        });
        assert!(table.group_metadata().is_empty());
        assert_eq!(table.snapshot(), vec![commit("g", "t", 0, 5, 1)]);
        table.apply(stored(4, &["c"]));
        table.apply(OffsetRecord::GroupDeleted { group: "g".into() });
        assert!(table.is_empty());
    }
}
