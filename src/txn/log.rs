//! The transaction log: `<data_dir>/_strata/transactions/transactions-<N>.log`, N a
//! 20-digit generation number that grows with each compaction.
//!
//! Every change of a transactional id's state is appended as a [`TxnRecord`] carrying the
//! whole [`TxnMetadata`], so the last record of an id is its state. A frame is
//! `[payload length: u32 LE][CRC-32C of payload: u32 LE][payload]`, the payload being the
//! bincode (v1, default options) encoding of the record; a frame with an implausible
//! length, cut short, or with a wrong checksum ends the readable part of the file (the
//! same framing as the committed-offsets log).
//!
//! Appends are written and fsync'd before they return, so a state the coordinator
//! answered a client with survives a crash. On open the newest generation is replayed
//! and a torn or corrupt tail is truncated. Compaction writes the live states to
//! `transactions-<N+1>.log.tmp`, fsyncs it, renames it into place, fsyncs the directory
//! and only then deletes generation N: a crash at any point leaves one complete
//! generation to replay.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::metadata::TxnMetadata;

/// Bytes of a frame header (length + CRC).
const FRAME_HEADER_LEN: usize = 8;
/// Upper bound on one record's payload; a larger length marks a corrupt frame.
const MAX_RECORD_LEN: u32 = 16 * 1024 * 1024;

/// One entry of the transaction log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnRecord {
    /// The new state of a transactional id.
    State(TxnMetadata),
    /// The transactional id expired (`transactional.id.expiration.ms`) and is forgotten.
    Removed { transactional_id: String },
}

/// The live states after replaying `records` in order.
pub fn replay(records: &[TxnRecord]) -> BTreeMap<String, TxnMetadata> {
    let mut live = BTreeMap::new();
    for record in records {
        apply(&mut live, record);
    }
    live
}

/// Applies one record to a map of live states.
pub fn apply(live: &mut BTreeMap<String, TxnMetadata>, record: &TxnRecord) {
    match record {
        TxnRecord::State(m) => {
            live.insert(m.transactional_id.clone(), m.clone());
        }
        TxnRecord::Removed { transactional_id } => {
            live.remove(transactional_id);
        }
    }
}

/// Errors of the transaction log; each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TxnLogError {
    #[error("transaction log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("transaction log {path}: cannot encode record: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: bincode::Error,
    },
    #[error("transaction log {path} failed earlier and could not be repaired; restart the broker")]
    Failed { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TxnLogError + '_ {
    move |source| TxnLogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Appends the frame of `record` to `out`.
fn encode_frame(record: &TxnRecord, out: &mut Vec<u8>) -> Result<(), bincode::Error> {
    let payload = bincode::serialize(record)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_RECORD_LEN)
        .ok_or_else(|| {
            Box::new(bincode::ErrorKind::Custom(format!(
                "transaction record of {} bytes exceeds {MAX_RECORD_LEN} bytes",
                payload.len()
            )))
        })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Decodes the frames at the start of `bytes`: the records of every whole, intact frame
/// and the byte length of that valid prefix.
fn decode_frames(bytes: &[u8]) -> (Vec<TxnRecord>, usize) {
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
        match bincode::deserialize::<TxnRecord>(payload) {
            Ok(record) => records.push(record),
            Err(_) => break,
        }
        pos = end;
    }
    (records, pos)
}

fn file_name(generation: u64) -> String {
    format!("transactions-{generation:020}.log")
}

fn parse_generation(name: &str) -> Option<u64> {
    name.strip_prefix("transactions-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

fn sync_dir(dir: &Path) -> Result<(), TxnLogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
thread_local! {
    /// Tests: make [`TxnLog::rewrite`]'s directory fsync after its rename fail.
    static FAIL_AFTER_RENAME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The open transaction log.
#[derive(Debug)]
pub struct TxnLog {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    generation: u64,
    /// Bytes in the current file (all of them whole frames).
    len: u64,
    /// Length of the file when it was last compacted or opened.
    base_len: u64,
    /// Compact once the file exceeds this many bytes and twice its base length.
    compact_threshold: u64,
    /// Set when a failed append could not be rolled back: no further writes.
    failed: bool,
}

impl TxnLog {
    /// Opens (or creates) the log in `dir` and returns it with the records to replay, in
    /// order. `compact_threshold` is in bytes. Blocking.
    pub fn open(
        dir: &Path,
        compact_threshold: u64,
    ) -> Result<(TxnLog, Vec<TxnRecord>), TxnLogError> {
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
        let (records, valid) = decode_frames(&bytes);
        if valid < bytes.len() {
            tracing::warn!(path = %path.display(), valid, total = bytes.len(),
                "truncating torn or corrupt tail of the transaction log");
            file.set_len(valid as u64).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        sync_dir(dir)?;
        let len = valid as u64;
        Ok((
            TxnLog {
                dir: dir.to_path_buf(),
                path,
                file,
                generation,
                len,
                base_len: len,
                compact_threshold,
                failed: false,
            },
            records,
        ))
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

    /// Appends `records` and fsyncs them. On error nothing of this call is kept: the file
    /// is cut back to its previous length. Blocking.
    pub fn append(&mut self, records: &[TxnRecord]) -> Result<(), TxnLogError> {
        if self.failed {
            return Err(TxnLogError::Failed {
                path: self.path.clone(),
            });
        }
        let mut bytes = Vec::new();
        for record in records {
            encode_frame(record, &mut bytes).map_err(|source| TxnLogError::Encode {
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
            return Err(TxnLogError::Io {
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

    /// Replaces the log atomically with one record per live state. Blocking.
    pub fn rewrite<'a>(
        &mut self,
        live: impl IntoIterator<Item = &'a TxnMetadata>,
    ) -> Result<(), TxnLogError> {
        let next = self.generation + 1;
        let final_path = self.dir.join(file_name(next));
        let tmp_path = self.dir.join(format!("{}.tmp", file_name(next)));
        let mut bytes = Vec::new();
        for state in live {
            encode_frame(&TxnRecord::State(state.clone()), &mut bytes).map_err(|source| {
                TxnLogError::Encode {
                    path: tmp_path.clone(),
                    source,
                }
            })?;
        }
        {
            let mut tmp = File::create(&tmp_path).map_err(io_err(&tmp_path))?;
            tmp.write_all(&bytes)
                .and_then(|()| tmp.sync_all())
                .map_err(io_err(&tmp_path))?;
        }
        // Opened before the rename (the handle follows the file): nothing that can fail
        // for lack of descriptors is left between the rename and the switch.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&tmp_path)
            .map_err(io_err(&tmp_path))?;
        fs::rename(&tmp_path, &final_path).map_err(io_err(&final_path))?;
        // From here a restart replays generation `next` and deletes this one: appending
        // to this one any further would lose those records. Switch now; if the rename
        // cannot be made durable, which generation a crash leaves is unknown, so stop
        // writing (Failed) rather than acknowledge records either may lose.
        let old_path = std::mem::replace(&mut self.path, final_path);
        self.file = file;
        self.generation = next;
        self.len = bytes.len() as u64;
        self.base_len = self.len;
        self.failed = false;
        let synced = sync_dir(&self.dir);
        #[cfg(test)]
        let synced = if FAIL_AFTER_RENAME.with(|f| f.get()) {
            Err(TxnLogError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other("injected directory fsync failure"),
            })
        } else {
            synced
        };
        if let Err(e) = synced {
            self.failed = true;
            return Err(e);
        }
        if let Err(e) = fs::remove_file(&old_path) {
            // Harmless: the next open keeps only the newest generation.
            tracing::warn!(path = %old_path.display(), error = %e, "cannot remove compacted transaction log");
        }
        tracing::info!(path = %self.path.display(), bytes = self.len, "compacted the transaction log");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::metadata::TxnState;
    use super::*;

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
        TxnRecord::State(m)
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
    fn torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let (mut log, _) = TxnLog::open(dir.path(), 1 << 20).unwrap();
            log.append(&[state("a", 1, &[]), state("a", 2, &[])])
                .unwrap();
            log.path().to_path_buf()
        };
        let full = fs::metadata(&path).unwrap().len();
        // Cut the last frame short, as a crash mid-write would.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(full - 3)
            .unwrap();
        {
            let (mut log, records) = TxnLog::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(records, vec![state("a", 1, &[])]);
            assert!(fs::metadata(&path).unwrap().len() < full - 3);
            log.append(&[state("a", 5, &[])]).unwrap();
        }
        let (_, records) = TxnLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(records, vec![state("a", 1, &[]), state("a", 5, &[])]);
    }

    #[test]
    fn a_flipped_byte_ends_the_readable_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let (mut log, _) = TxnLog::open(dir.path(), 1 << 20).unwrap();
            log.append(&[state("a", 1, &[])]).unwrap();
            log.append(&[state("a", 2, &[])]).unwrap();
            log.path().to_path_buf()
        };
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        fs::write(&path, &bytes).unwrap();
        let (_, records) = TxnLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(records, vec![state("a", 1, &[])]);
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
        log.rewrite(live.values()).unwrap();
        assert!(log.len() < before);
        assert!(!old_path.exists());
        log.append(&[state("c", 0, &[])]).unwrap();
        let (_, records) = TxnLog::open(dir.path(), 512).unwrap();
        assert_eq!(records.len(), 3);
        let replayed = replay(&records);
        assert_eq!(replayed["a"], live["a"]);
        assert_eq!(replayed["b"], live["b"]);
        assert!(replayed.contains_key("c"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_compaction_failing_after_its_rename_loses_no_acknowledged_record() {
        // Once the compacted generation is renamed into place, a restart replays it and
        // deletes the older one: the log may not go on appending to the older one.
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = TxnLog::open(dir.path(), 1 << 20).unwrap();
        let first = state("a", 1, &[("t", 0)]);
        log.append(std::slice::from_ref(&first)).unwrap();
        let live = replay(std::slice::from_ref(&first));
        FAIL_AFTER_RENAME.with(|f| f.set(true));
        assert!(log.rewrite(live.values()).is_err());
        FAIL_AFTER_RENAME.with(|f| f.set(false));
        let later = state("a", 2, &[("t", 0), ("t", 1)]);
        let acknowledged = log.append(std::slice::from_ref(&later)).is_ok();
        drop(log);
        let (_, records) = TxnLog::open(dir.path(), 1 << 20).unwrap();
        let replayed = replay(&records);
        if acknowledged {
            assert_eq!(
                TxnRecord::State(replayed["a"].clone()),
                later,
                "an append that succeeded after the failed compaction was lost"
            );
        } else {
            assert_eq!(TxnRecord::State(replayed["a"].clone()), first);
        }
    }

    #[test]
    fn unfinished_compaction_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = TxnLog::open(dir.path(), 1 << 20).unwrap();
            log.append(&[state("a", 1, &[])]).unwrap();
        }
        fs::write(dir.path().join(format!("{}.tmp", file_name(1))), b"partial").unwrap();
        let (log, records) = TxnLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(records, vec![state("a", 1, &[])]);
        assert_eq!(log.generation, 0);
        assert!(!dir.path().join(format!("{}.tmp", file_name(1))).exists());
    }
}
