//! The leader-epoch cache of one partition, as Kafka's `LeaderEpochFileCache` keeps it
//! (KIP-101, KIP-279): for every leader epoch that appended to the log, the offset of its
//! first batch. A follower asks the leader for the end offset of its own latest epoch
//! (OffsetsForLeaderEpoch) and truncates to it, so replicas never diverge.
//!
//! Every appended batch carries the epoch of the leader that appended it in its
//! `partitionLeaderEpoch` field (bytes 12..16, outside the CRC): a leader stamps its current
//! epoch, a follower keeps the leader's. The cache gains an entry when a batch's epoch
//! differs from the latest entry's; entries with an epoch or start offset at or above a new
//! entry's are removed first, so epochs and start offsets both strictly increase.
//!
//! `leader-epoch-checkpoint` in the partition directory, Kafka's own format (text):
//!
//! ```text
//! 0                 <- version
//! 2                 <- number of entries
//! 0 0               <- epoch start_offset
//! 3 1200
//! ```
//!
//! Replaced atomically (temp file, fsync, rename, directory fsync). A new entry is written
//! before the batch that starts the epoch is appended, so the file never lacks an epoch the
//! log holds; truncations rewrite it; a log start offset moved by retention or DeleteRecords
//! only changes it in memory (Kafka's `truncateFromStart`, flushed lazily: at open, entries
//! past the log end or before the log start are corrected from the log's offsets). A
//! missing or damaged file is rebuilt from the batches' `partitionLeaderEpoch` fields.

use std::path::Path;

use crate::error::StorageError;
use crate::file;
use crate::segment::SegmentSource;

/// File name of the checkpoint in the partition directory (Kafka's).
pub(crate) const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
/// The only checkpoint format version.
const VERSION: i64 = 0;
/// Kafka's `UNDEFINED_EPOCH`: no epoch (a batch not stamped by a leader, or no answer).
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's `UNDEFINED_EPOCH_OFFSET`: no end offset known for the requested epoch.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One epoch and the offset of its first batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The cache: entries with strictly increasing epochs and start offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset` (Kafka's `assign`): nothing when it is
    /// the latest epoch already (at or before that offset) or either value is negative;
    /// otherwise every entry whose epoch or start offset is at or above the new one's is
    /// removed and the new one appended. Returns whether the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        let needed = self
            .latest()
            .is_none_or(|l| epoch != l.epoch || start_offset < l.start_offset);
        if !needed {
            return false;
        }
        while self
            .entries
            .last()
            .is_some_and(|l| l.epoch >= epoch || l.start_offset >= start_offset)
        {
            self.entries.pop();
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Removes the entries starting at or after `end_offset` (the log was cut there).
    /// Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// The log now starts at `start_offset` (Kafka's `truncateFromStart`): entries starting
    /// at or before it are removed, and the last of them comes back starting at
    /// `start_offset` (its epoch still covers the first offsets left). Returns whether the
    /// cache changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covered = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if covered == 0 {
            return false;
        }
        let first = EpochEntry {
            epoch: self.entries[covered - 1].epoch,
            start_offset,
        };
        let changed = covered > 1 || self.entries[0] != first;
        self.entries.splice(..covered, [first]);
        changed
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The end offset of `requested` and the epoch it belongs to, exactly as Kafka's
    /// `endOffsetFor` (what OffsetsForLeaderEpoch answers):
    /// - `requested` undefined (-1): `(-1, -1)`;
    /// - `requested` is the latest epoch: `(requested, log_end)`;
    /// - no epoch above `requested` is known: `(-1, -1)`;
    /// - otherwise the end is the start of the first epoch above it, paired with the largest
    ///   epoch at or below `requested`, or with `requested` itself when every known epoch
    ///   is above it (older epochs were removed with the log's start).
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest().is_some_and(|l| l.epoch == requested) {
            return (requested, log_end);
        }
        let above = self.entries.partition_point(|e| e.epoch <= requested);
        let Some(higher) = self.entries.get(above) else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        match above.checked_sub(1).map(|i| self.entries[i]) {
            Some(floor) => (floor.epoch, higher.start_offset),
            None => (requested, higher.start_offset),
        }
    }

    /// The checkpoint file's text.
    pub fn encode(&self) -> String {
        let mut out = format!("{VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            out.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        out
    }

    /// Parses a checkpoint file; `None` unless it is exactly a version line, a count line and
    /// that many `epoch start_offset` lines with epochs and offsets non-negative and strictly
    /// increasing.
    pub fn decode(text: &str) -> Option<LeaderEpochCache> {
        let mut lines = text.lines();
        if lines.next()?.trim().parse::<i64>().ok()? != VERSION {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        let mut cache = LeaderEpochCache::default();
        for _ in 0..count {
            let mut fields = lines.next()?.split_whitespace();
            let epoch: i32 = fields.next()?.parse().ok()?;
            let start_offset: i64 = fields.next()?.parse().ok()?;
            let ordered = cache
                .latest()
                .is_none_or(|l| epoch > l.epoch && start_offset > l.start_offset);
            if fields.next().is_some() || epoch < 0 || start_offset < 0 || !ordered {
                return None;
            }
            cache.entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return None;
        }
        Some(cache)
    }
}

/// What [`read`] found.
pub(crate) enum Loaded {
    Missing,
    Damaged(String),
    Read(LeaderEpochCache),
}

/// Reads the checkpoint of `dir`.
pub(crate) fn read(dir: &Path) -> Result<Loaded, StorageError> {
    let Some(bytes) = file::read_optional(&dir.join(LEADER_EPOCH_CHECKPOINT))? else {
        return Ok(Loaded::Missing);
    };
    let text = String::from_utf8_lossy(&bytes);
    Ok(match LeaderEpochCache::decode(&text) {
        Some(cache) => Loaded::Read(cache),
        None => Loaded::Damaged(format!(
            "not a leader-epoch checkpoint: {:?}",
            truncated(&text)
        )),
    })
}

fn truncated(text: &str) -> &str {
    let end = text.char_indices().nth(80).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// Writes the checkpoint of `dir` atomically and durably.
pub(crate) fn write(dir: &Path, cache: &LeaderEpochCache) -> Result<(), StorageError> {
    file::write_atomic(
        &dir.join(LEADER_EPOCH_CHECKPOINT),
        cache.encode().as_bytes(),
    )
}

/// Rebuilds the cache from the batches of `segments` (oldest first; `last_positions[i]` a
/// position in segment i at or before its last batch), as Kafka's recovery does: each batch
/// whose epoch is above the latest entry's starts an entry. Epochs never decrease along a
/// log a leader or follower wrote, so a segment whose first and last batches share an epoch
/// holds no other: only its first and last batches are read, and the others only in a
/// segment where the epoch changes.
pub(crate) fn rebuild(segments: &[(SegmentSource, u64)]) -> Result<LeaderEpochCache, StorageError> {
    let mut cache = LeaderEpochCache::default();
    let assign = |cache: &mut LeaderEpochCache, epoch: i32, offset: i64| {
        if epoch >= 0 && cache.latest().is_none_or(|l| epoch > l.epoch) {
            cache.assign(epoch, offset);
        }
    };
    for (source, last_position) in segments {
        if source.size() == 0 {
            continue;
        }
        let first = source.header_at(0)?;
        let mut last = first;
        let mut position = *last_position;
        while position < source.size() {
            last = source.header_at(position)?;
            position += last.size() as u64;
        }
        if first.partition_leader_epoch == last.partition_leader_epoch {
            assign(&mut cache, first.partition_leader_epoch, first.base_offset);
            continue;
        }
        let mut position = 0;
        while position < source.size() {
            let h = source.header_at(position)?;
            assign(&mut cache, h.partition_leader_epoch, h.base_offset);
            position += h.size() as u64;
        }
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache {
            entries: entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        }
    }

    /// Kafka's `endOffsetFor` cases (LeaderEpochFileCacheTest), as a table:
    /// (cache, requested epoch, log end) -> (epoch, end offset).
    #[test]
    fn end_offset_for_epoch_matches_kafka() {
        /// (cache entries, requested epoch, log end, expected answer)
        type Case = (&'static [(i32, i64)], i32, i64, (i32, i64));
        let table: &[Case] = &[
            // undefined epoch asked
            (&[(2, 6)], -1, 20, (-1, -1)),
            // empty cache
            (&[], 0, 20, (-1, -1)),
            (&[], 5, 20, (-1, -1)),
            // the latest epoch: the log end
            (&[(2, 6)], 2, 20, (2, 20)),
            (&[(2, 6), (4, 11)], 4, 20, (4, 20)),
            // an earlier epoch: the start of the next one
            (&[(2, 6), (4, 11), (5, 13)], 2, 20, (2, 11)),
            (&[(2, 6), (4, 11), (5, 13)], 4, 20, (4, 13)),
            // an epoch between known ones: the largest epoch below it, the next start
            (&[(2, 6), (4, 11), (5, 13)], 3, 20, (2, 11)),
            // below every known epoch: itself, the first start
            (&[(2, 6), (4, 11)], 1, 20, (1, 6)),
            (&[(2, 6), (4, 11)], 0, 20, (0, 6)),
            // above every known epoch
            (&[(2, 6), (4, 11)], 5, 20, (-1, -1)),
            (&[(2, 6), (4, 11)], 7, 20, (-1, -1)),
        ];
        for (i, (entries, requested, log_end, want)) in table.iter().enumerate() {
            assert_eq!(
                cache(entries).end_offset_for(*requested, *log_end),
                *want,
                "case {i}: {entries:?} epoch {requested}"
            );
        }
    }

    #[test]
    fn assign_keeps_epochs_and_offsets_increasing() {
        let mut c = LeaderEpochCache::default();
        assert!(c.assign(0, 0));
        assert!(!c.assign(0, 5), "same epoch later: nothing");
        assert!(c.assign(2, 10));
        assert!(!c.assign(-1, 12), "unstamped batches are ignored");
        assert_eq!(c, cache(&[(0, 0), (2, 10)]));
        // A new epoch at the same start offset replaces the entry (a leader elected
        // without appending anything).
        assert!(c.assign(3, 10));
        assert_eq!(c, cache(&[(0, 0), (3, 10)]));
        // A lower epoch or an earlier offset removes the entries it contradicts.
        assert!(c.assign(1, 20));
        assert_eq!(c, cache(&[(0, 0), (1, 20)]));
        assert!(c.assign(4, 5));
        assert_eq!(c, cache(&[(0, 0), (4, 5)]));
        // The same epoch starting earlier moves the entry back.
        assert!(c.assign(4, 3));
        assert_eq!(c, cache(&[(0, 0), (4, 3)]));
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(0, 0), (2, 10), (4, 20)]);
        assert!(!c.truncate_from_end(25));
        assert!(c.truncate_from_end(20));
        assert_eq!(c, cache(&[(0, 0), (2, 10)]));
        assert!(c.truncate_from_end(5));
        assert_eq!(c, cache(&[(0, 0)]));
        let mut c = cache(&[(0, 0), (2, 10), (4, 20)]);
        assert!(!c.truncate_from_start(0), "already starts there");
        assert!(c.truncate_from_start(12));
        assert_eq!(c, cache(&[(2, 12), (4, 20)]));
        assert!(c.truncate_from_start(20));
        assert_eq!(c, cache(&[(4, 20)]));
        assert!(c.truncate_from_start(30));
        assert_eq!(c, cache(&[(4, 30)]));
        assert!(!c.truncate_from_start(7), "before the first entry: nothing");
    }

    #[test]
    fn checkpoint_text_round_trip_and_damage() {
        let c = cache(&[(0, 0), (3, 1200)]);
        let text = c.encode();
        assert_eq!(text, "0\n2\n0 0\n3 1200\n", "Kafka's layout");
        assert_eq!(LeaderEpochCache::decode(&text), Some(c));
        assert_eq!(
            LeaderEpochCache::decode("0\n0\n"),
            Some(LeaderEpochCache::default())
        );
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\n0 0\n1 5\n",
            "0\n2\n3 5\n1 9\n",
            "0\n2\n1 9\n3 5\n",
            "0\n1\n-1 0\n",
            "0\n1\n0 x\n",
            "0\n1\n0 0 0\n",
        ] {
            assert_eq!(LeaderEpochCache::decode(bad), None, "{bad:?}");
        }
    }
}
