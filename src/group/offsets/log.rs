//! The committed-offsets log file: `<data_dir>/_strata/offsets/offsets-<N>.log`,
//! N a 20-digit generation number that grows with each compaction.
//!
//! Appends are written and fsync'd before they return, so a commit answered
//! with success survives a crash. On open the newest generation is replayed:
//! - a torn tail (the last frame cut short by a crash mid-append) is truncated;
//! - damage elsewhere (a frame whose length is implausible or whose CRC-32C or
//!   payload is bad) does not end the replay: the file is first copied aside to
//!   `<name>.damaged-<unix ms>` (never deleted by Strata), replay resynchronises
//!   at the next intact frame (see [`scan_frames`]) and goes on, the skipped
//!   byte ranges are logged at warn, and the log is rewritten from the
//!   recovered records through the compaction path (atomically). A corrupt
//!   tail with no intact frame after it is copied aside too, then truncated.
//!
//! Compaction writes a snapshot of the
//! live offsets to `offsets-<N+1>.log.tmp`, fsyncs it, renames it into place,
//! fsyncs the directory and only then deletes generation N: a crash at any
//! point leaves one complete generation to replay.
//!
//! Records (framing and fields in `record.rs`), replayed in order:
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

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::record::{encode_frame, scan_frames, OffsetRecord};

/// Errors of the committed-offsets log; each names the file concerned.
#[derive(Debug, Error)]
pub enum OffsetLogError {
    #[error("offsets log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("offsets log {path}: cannot encode record: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: bincode::Error,
    },
    #[error("offsets log {path} failed earlier and could not be repaired; restart the broker")]
    Failed { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OffsetLogError + '_ {
    move |source| OffsetLogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The open committed-offsets log.
#[derive(Debug)]
pub struct OffsetLog {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    generation: u64,
    /// Bytes in the current file (all of them valid frames).
    len: u64,
    /// Length of the file when it was last compacted or opened.
    base_len: u64,
    /// Compact once the file exceeds this many bytes and twice its base length.
    compact_threshold: u64,
    /// Set when a failed append could not be rolled back: no further writes.
    failed: bool,
}

fn file_name(generation: u64) -> String {
    format!("offsets-{generation:020}.log")
}

fn parse_generation(name: &str) -> Option<u64> {
    name.strip_prefix("offsets-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

fn sync_dir(dir: &Path) -> Result<(), OffsetLogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Copies `path` to `<path>.damaged-<unix ms>` in `dir` (a fresh name) and
/// makes the copy durable; returns the copy's path.
fn quarantine(dir: &Path, path: &Path) -> Result<PathBuf, OffsetLogError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let copy = loop {
        let candidate = dir.join(format!("{name}.damaged-{ms}"));
        if !candidate.exists() {
            break candidate;
        }
        ms += 1;
    };
    fs::copy(path, &copy).map_err(io_err(&copy))?;
    File::open(&copy)
        .and_then(|f| f.sync_all())
        .map_err(io_err(&copy))?;
    sync_dir(dir)?;
    Ok(copy)
}

impl OffsetLog {
    /// Opens (or creates) the log in `dir` and returns it with the records to
    /// replay, in order. `compact_threshold` is in bytes.
    pub fn open(
        dir: &Path,
        compact_threshold: u64,
    ) -> Result<(OffsetLog, Vec<OffsetRecord>), OffsetLogError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut generations = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // An unfinished compaction: the previous generation is complete.
                fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
            } else if let Some(generation) = parse_generation(&name) {
                generations.push(generation);
            }
        }
        generations.sort_unstable();
        let generation = generations.last().copied().unwrap_or(0);
        for old in &generations[..generations.len().saturating_sub(1)] {
            let old_path = dir.join(file_name(*old));
            fs::remove_file(&old_path).map_err(io_err(&old_path))?;
        }
        let path = dir.join(file_name(generation));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        let scan = scan_frames(&bytes);
        let valid = scan.valid_end;
        let damaged_tail = valid < bytes.len() && !scan.torn_tail;
        if !scan.skipped.is_empty() || damaged_tail {
            let copy = quarantine(dir, &path)?;
            tracing::warn!(path = %path.display(), copy = %copy.display(),
                skipped = ?scan.skipped, records = scan.records.len(),
                recovered_after_damage = scan.recovered_after_damage,
                "offsets log is damaged: copied it aside, skipped the damaged byte ranges");
        }
        if valid < bytes.len() {
            tracing::warn!(path = %path.display(), valid, total = bytes.len(),
                torn = scan.torn_tail, "truncating torn or corrupt tail of the offsets log");
            file.set_len(valid as u64).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        sync_dir(dir)?;
        let len = valid as u64;
        let mut log = OffsetLog {
            dir: dir.to_path_buf(),
            path,
            file,
            generation,
            len,
            base_len: len,
            compact_threshold,
            failed: false,
        };
        if !scan.skipped.is_empty() {
            // Appends must not follow damaged bytes: the next open would have
            // to skip them again. The damaged original is already copied aside.
            log.rewrite(&scan.records)?;
            tracing::warn!(path = %log.path.display(), records = scan.records.len(),
                "rewrote the offsets log from the recovered records");
        }
        Ok((log, scan.records))
    }

    /// The file currently appended to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the current file.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `records` and fsyncs them. On error nothing of this call is
    /// kept: the file is cut back to its previous length.
    pub fn append(&mut self, records: &[OffsetRecord]) -> Result<(), OffsetLogError> {
        if self.failed {
            return Err(OffsetLogError::Failed {
                path: self.path.clone(),
            });
        }
        let mut bytes = Vec::new();
        for record in records {
            encode_frame(record, &mut bytes).map_err(|source| OffsetLogError::Encode {
                path: self.path.clone(),
                source,
            })?;
        }
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            // Roll back so that later appends do not follow a torn frame.
            if self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_all())
                .is_err()
            {
                self.failed = true;
            }
            return Err(OffsetLogError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Whether the file has grown enough to be worth compacting.
    pub fn needs_compaction(&self) -> bool {
        self.len > self.compact_threshold && self.len > self.base_len.saturating_mul(2)
    }

    /// Replaces the log with `snapshot` (the live offsets) atomically.
    pub fn rewrite(&mut self, snapshot: &[OffsetRecord]) -> Result<(), OffsetLogError> {
        let next = self.generation + 1;
        let final_path = self.dir.join(file_name(next));
        let tmp_path = self.dir.join(format!("{}.tmp", file_name(next)));
        let mut bytes = Vec::new();
        for record in snapshot {
            encode_frame(record, &mut bytes).map_err(|source| OffsetLogError::Encode {
                path: tmp_path.clone(),
                source,
            })?;
        }
        {
            let mut tmp = File::create(&tmp_path).map_err(io_err(&tmp_path))?;
            tmp.write_all(&bytes)
                .and_then(|()| tmp.sync_all())
                .map_err(io_err(&tmp_path))?;
        }
        fs::rename(&tmp_path, &final_path).map_err(io_err(&final_path))?;
        sync_dir(&self.dir)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&final_path)
            .map_err(io_err(&final_path))?;
        let old_path = std::mem::replace(&mut self.path, final_path);
        self.file = file;
        self.generation = next;
        self.len = bytes.len() as u64;
        self.base_len = self.len;
        self.failed = false;
        if let Err(e) = fs::remove_file(&old_path) {
            // Harmless: the next open keeps only the newest generation.
            tracing::warn!(path = %old_path.display(), error = %e, "cannot remove compacted offsets log");
        }
        tracing::info!(path = %self.path.display(), bytes = self.len, "compacted the offsets log");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{CommittedOffset, FRAME_HEADER_LEN};
    use super::*;

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
    fn replays_appended_records_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, records) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
            assert!(records.is_empty());
            log.append(&[commit("a", 0, 1), commit("a", 1, 2)]).unwrap();
            log.append(&[OffsetRecord::GroupDeleted { group: "a".into() }])
                .unwrap();
        }
        let (_, records) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            records,
            vec![
                commit("a", 0, 1),
                commit("a", 1, 2),
                OffsetRecord::GroupDeleted { group: "a".into() }
            ]
        );
    }

    #[test]
    fn torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let (mut log, _) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
            log.append(&[commit("a", 0, 1), commit("a", 0, 2)]).unwrap();
            log.path().to_path_buf()
        };
        let full = fs::metadata(&path).unwrap().len();
        // Cut the last frame in half, as a crash mid-write would.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(full - 5)
            .unwrap();
        {
            let (mut log, records) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(records, vec![commit("a", 0, 1)]);
            assert!(fs::metadata(&path).unwrap().len() < full - 5);
            assert!(
                damaged_copies(dir.path()).is_empty(),
                "a torn tail is only cut"
            );
            log.append(&[commit("a", 0, 3)]).unwrap();
        }
        let (_, records) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(records, vec![commit("a", 0, 1), commit("a", 0, 3)]);
    }

    fn damaged_copies(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".damaged-"))
            .collect()
    }

    #[test]
    fn damage_in_the_middle_keeps_later_records_and_quarantines_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (path, frame_len) = {
            let (mut log, _) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
            log.append(&[commit("a", 0, 1)]).unwrap();
            let frame_len = log.len() as usize;
            for n in 2..=10 {
                log.append(&[commit("a", 0, n)]).unwrap();
            }
            (log.path().to_path_buf(), frame_len)
        };
        let original = fs::read(&path).unwrap();
        // Every frame has the same length: flip bytes in the payload of frame 4
        // (offset 5) and in the header of frame 7 (offset 8).
        let mut bytes = original.clone();
        bytes[4 * frame_len + FRAME_HEADER_LEN + 3] ^= 0xff;
        bytes[7 * frame_len + 5] ^= 0x10;
        fs::write(&path, &bytes).unwrap();

        let expected: Vec<OffsetRecord> = [1, 2, 3, 4, 6, 7, 9, 10]
            .into_iter()
            .map(|n| commit("a", 0, n))
            .collect();
        {
            let (mut log, records) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(records, expected);
            // Rewritten into a new generation without the damaged frames.
            assert_eq!(log.generation, 1);
            assert!(!path.exists());
            assert_eq!(log.len() as usize, original.len() - 2 * frame_len);
            log.append(&[commit("a", 0, 11)]).unwrap();
        }
        let copies = damaged_copies(dir.path());
        assert_eq!(copies.len(), 1);
        assert_eq!(fs::read(&copies[0]).unwrap(), bytes);
        let (_, records) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
        let mut after = expected;
        after.push(commit("a", 0, 11));
        assert_eq!(records, after);
        // A clean open neither copies nor rewrites again.
        assert_eq!(damaged_copies(dir.path()).len(), 1);
    }

    #[test]
    fn garbage_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let (mut log, _) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
            log.append(&[commit("a", 0, 1)]).unwrap();
            log.path().to_path_buf()
        };
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9])
            .unwrap();
        drop(f);
        let (_, records) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(records, vec![commit("a", 0, 1)]);
        // Corrupt, not torn: the file was copied aside before the cut.
        assert_eq!(damaged_copies(dir.path()).len(), 1);
    }

    #[test]
    fn compaction_switches_to_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = OffsetLog::open(dir.path(), 256).unwrap();
        let mut n = 0;
        while !log.needs_compaction() {
            n += 1;
            log.append(&[commit("a", 0, n)]).unwrap();
        }
        assert!(n > 1);
        let before = log.len();
        let old_path = log.path().to_path_buf();
        log.rewrite(&[commit("a", 0, n)]).unwrap();
        assert!(log.len() < before);
        assert!(!old_path.exists());
        assert!(!log.needs_compaction());
        log.append(&[commit("b", 1, 7)]).unwrap();

        let (_, records) = OffsetLog::open(dir.path(), 256).unwrap();
        assert_eq!(records, vec![commit("a", 0, n), commit("b", 1, 7)]);
        let files: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn unfinished_compaction_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
            log.append(&[commit("a", 0, 1)]).unwrap();
        }
        // A crash after writing the temporary snapshot but before the rename.
        fs::write(dir.path().join(format!("{}.tmp", file_name(1))), b"partial").unwrap();
        let (log, records) = OffsetLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(records, vec![commit("a", 0, 1)]);
        assert_eq!(log.generation, 0);
        assert!(!dir.path().join(format!("{}.tmp", file_name(1))).exists());
    }
}
