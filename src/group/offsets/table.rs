//! The live committed offsets, rebuilt from the log and kept in memory.

use std::collections::{BTreeMap, HashMap};

use super::record::{CommittedOffset, OffsetRecord};

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

/// Every group's committed offsets. Only records already durable in the log
/// are applied, so what is read here survives a crash.
#[derive(Debug, Default, Clone)]
pub struct OffsetTable {
    groups: HashMap<String, PartitionOffsets>,
}

impl OffsetTable {
    /// Applies one log record.
    pub fn apply(&mut self, record: &OffsetRecord) {
        match record {
            OffsetRecord::Commit {
                group,
                topic,
                partition,
                offset,
            } => {
                self.groups
                    .entry(group.clone())
                    .or_default()
                    .insert((topic.clone(), *partition), offset.clone());
            }
            OffsetRecord::Delete {
                group,
                topic,
                partition,
            } => {
                if let Some(offsets) = self.groups.get_mut(group) {
                    offsets.remove(&(topic.clone(), *partition));
                    if offsets.is_empty() {
                        self.groups.remove(group);
                    }
                }
            }
            OffsetRecord::GroupDeleted { group } => {
                self.groups.remove(group);
            }
        }
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.groups.get(group)?.get(&(topic.to_string(), partition))
    }

    /// Every committed offset of `group`.
    pub fn group(&self, group: &str) -> Option<&PartitionOffsets> {
        self.groups.get(group)
    }

    /// Ids of the groups that have committed offsets.
    pub fn group_ids(&self) -> impl Iterator<Item = &String> {
        self.groups.keys()
    }

    /// Number of committed offsets over all groups.
    pub fn len(&self) -> usize {
        self.groups.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The live offsets as commit records: replaying them rebuilds this table.
    pub fn snapshot(&self) -> Vec<OffsetRecord> {
        let mut groups: Vec<&String> = self.groups.keys().collect();
        groups.sort();
        groups
            .into_iter()
            .flat_map(|group| {
                self.groups[group]
                    .iter()
                    .map(move |((topic, partition), offset)| OffsetRecord::Commit {
                        group: group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        offset: offset.clone(),
                    })
            })
            .collect()
    }

    /// Tombstones for the offsets that expired at `now_ms`: offsets of empty
    /// groups older than `retention_ms`, counted from the later of the commit
    /// and the moment the group became empty.
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
                if now_ms.saturating_sub(base) >= retention_ms {
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
    fn apply_commit_delete_and_group_tombstone() {
        let mut table = OffsetTable::default();
        table.apply(&commit("g", "t", 0, 5, 1));
        table.apply(&commit("g", "t", 0, 9, 2));
        table.apply(&commit("g", "t", 1, 3, 2));
        table.apply(&commit("h", "t", 0, 1, 2));
        assert_eq!(table.get("g", "t", 0).map(|o| o.offset), Some(9));
        table.apply(&OffsetRecord::Delete {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
        });
        assert_eq!(table.get("g", "t", 0), None);
        assert_eq!(table.get("g", "t", 1).map(|o| o.offset), Some(3));
        table.apply(&OffsetRecord::GroupDeleted { group: "g".into() });
        assert!(table.group("g").is_none());
        assert_eq!(table.len(), 1);

        let mut rebuilt = OffsetTable::default();
        for record in table.snapshot() {
            rebuilt.apply(&record);
        }
        assert_eq!(rebuilt.snapshot(), table.snapshot());
    }

    #[test]
    fn only_offsets_of_empty_groups_expire() {
        let mut table = OffsetTable::default();
        table.apply(&commit("active", "t", 0, 1, 0));
        table.apply(&commit("empty", "t", 0, 1, 0));
        table.apply(&commit("empty", "t", 1, 1, 900));
        table.apply(&commit("recently-empty", "t", 0, 1, 0));
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
            table.apply(record);
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
}
