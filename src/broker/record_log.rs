//! A durable, append-only log of bincode records in one directory, shared by the
//! committed-offsets log (`group::offsets`) and the transaction log (`txn::log`).
//!
//! # Files
//!
//! The log lives in `<dir>/<stem>-<N>.log`, `<stem>` being [`LogRecord::FILE_STEM`]
//! (`offsets`, `transactions`) and `<N>` the generation: a decimal number padded
//! with zeros to 20 digits that grows by one with each compaction. Only one
//! generation is live; an open keeps the newest one and deletes the older ones.
//! `<name>.tmp` is a compaction that has not been renamed into place (deleted at
//! open); `<name>.damaged-<unix ms>` is a copy of a damaged file set aside at open
//! (never deleted by Strata, for an operator to inspect).
//!
//! # Frames
//!
//! A file is a sequence of frames and nothing else (no file header):
//!
//! | bytes        | field                                                    |
//! |--------------|----------------------------------------------------------|
//! | 0..4         | payload length `L`, u32 little-endian, at most [`MAX_RECORD_LEN`] |
//! | 4..8         | CRC-32C (Castagnoli) of the payload, u32 little-endian    |
//! | 8..8+L       | payload: the record in bincode 1.x default options (fixed-width little-endian integers, u64 lengths, u32 enum variant index) |
//!
//! Both logs wrote exactly this framing before it was shared (same header, same
//! checksum, same length bound, same bincode options), so their files open
//! unchanged; only the file stem differs, and it is a parameter.
//!
//! # Invariants
//!
//! - When [`RecordLog::append`] returns `Ok`, its frames are written and
//!   fsync'd: they survive a crash. On `Err` none of them is kept (the file is
//!   cut back); if even that fails the log is *Failed* and refuses writes until
//!   the broker restarts.
//! - At open the newest generation is read frame by frame:
//!   - a *torn tail* (the last frame cut short, what a crash mid-append leaves)
//!     is truncated, nothing else;
//!   - *damage* (a frame whose length is implausible, whose CRC-32C does not
//!     match or whose payload does not decode) does not end the replay: the file
//!     is first copied to `<name>.damaged-<unix ms>` (fsync'd), the reader
//!     resynchronises at the next position where a whole intact frame starts
//!     ([`scan_frames`]), the skipped byte ranges are logged at warn, and the
//!     log is rewritten from the recovered records through the compaction path
//!     (so appends never follow damaged bytes). Damage with no intact frame
//!     after it is copied aside too, then truncated.
//! - [`RecordLog::rewrite`] (compaction) writes `<stem>-<N+1>.log.tmp`, fsyncs
//!   it, opens it, renames it into place and switches appends to it right away
//!   (from the rename on, a restart replays N+1 and deletes N); then it fsyncs
//!   the directory and deletes N. A crash at any point leaves one complete
//!   generation. A failed directory fsync after the rename leaves unknown which
//!   generation a crash would keep, so the log goes Failed rather than
//!   acknowledge records either could lose.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bytes of a frame header (length + CRC).
pub const FRAME_HEADER_LEN: usize = 8;

/// Upper bound on one record's payload in bytes; a larger length marks a corrupt frame.
pub const MAX_RECORD_LEN: u32 = 16 * 1024 * 1024;

/// A record type stored in a [`RecordLog`].
pub trait LogRecord: Serialize + DeserializeOwned {
    /// Files are named `<FILE_STEM>-<generation: 20 digits>.log`.
    const FILE_STEM: &'static str;
    /// The version of the record's layout, written into every record.
    const VERSION: u16 = 1;
}

/// Errors of a record log; each names the file or directory concerned.
#[derive(Debug, thiserror::Error)]
pub enum RecordLogError {
    #[error("log file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("log file {path}: cannot encode record: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: bincode::Error,
    },
    #[error("log file {path} failed earlier and could not be repaired; restart the broker")]
    Failed { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RecordLogError + '_ {
    move |source| RecordLogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Appends the frame of `record` to `out`.
pub fn encode_frame<R: Serialize>(record: &R, out: &mut Vec<u8>) -> Result<(), bincode::Error> {
    let payload = bincode::serialize(record)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_RECORD_LEN)
        .ok_or_else(|| {
            Box::new(bincode::ErrorKind::Custom(format!(
                "record of {} bytes exceeds {MAX_RECORD_LEN} bytes",
                payload.len()
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

/// Reads the frame that starts at byte `pos`: its record and the position just after it.
pub fn decode_frame_at<R: DeserializeOwned>(
    bytes: &[u8],
    pos: usize,
) -> Result<(R, usize), FrameFault> {
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
    let record = bincode::deserialize::<R>(payload).map_err(|_| FrameFault::Corrupt)?;
    Ok((record, end))
}

/// What [`scan_frames`] found in a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameScan<R> {
    /// Records of every intact frame, in file order.
    pub records: Vec<R>,
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
pub fn scan_frames<R: DeserializeOwned>(bytes: &[u8]) -> FrameScan<R> {
    let mut scan = FrameScan {
        records: Vec::new(),
        skipped: Vec::new(),
        recovered_after_damage: 0,
        valid_end: 0,
        torn_tail: true,
    };
    let mut pos = 0usize;
    while pos < bytes.len() {
        match decode_frame_at::<R>(bytes, pos) {
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
                    .find(|q| decode_frame_at::<R>(bytes, *q).is_ok());
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

fn file_name(stem: &str, generation: u64) -> String {
    format!("{stem}-{generation:020}.log")
}

fn parse_generation(stem: &str, name: &str) -> Option<u64> {
    name.strip_prefix(stem)?
        .strip_prefix('-')?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

fn sync_dir(dir: &Path) -> Result<(), RecordLogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Copies `path` to `<path>.damaged-<unix ms>` in `dir` (a fresh name) and
/// makes the copy durable; returns the copy's path.
fn quarantine(dir: &Path, path: &Path) -> Result<PathBuf, RecordLogError> {
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

#[cfg(test)]
thread_local! {
    /// Tests: make [`RecordLog::rewrite`]'s directory fsync after its rename fail.
    static FAIL_DIR_SYNC_AFTER_RENAME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// An open record log (see the module doc for the format and invariants).
/// Blocking: call it from `spawn_blocking` in async code.
#[derive(Debug)]
pub struct RecordLog<R> {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    generation: u64,
    /// Bytes in the current file (all of them intact frames).
    len: u64,
    /// Length of the file when it was last compacted or opened.
    base_len: u64,
    /// Compact once the file exceeds this many bytes and twice its base length.
    compact_threshold: u64,
    /// Set when a failed write could not be undone: no further writes.
    failed: bool,
    records: PhantomData<fn() -> R>,
}

impl<R: LogRecord> RecordLog<R> {
    /// Opens (or creates) the log in `dir` and returns it with the records to
    /// replay, in order. `compact_threshold` is in bytes.
    pub fn open(dir: &Path, compact_threshold: u64) -> Result<(Self, Vec<R>), RecordLogError> {
        let stem = R::FILE_STEM;
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut generations = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(stem) && name.ends_with(".tmp") {
                // An unfinished compaction: the previous generation is complete.
                fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
            } else if let Some(generation) = parse_generation(stem, &name) {
                generations.push(generation);
            }
        }
        generations.sort_unstable();
        let generation = generations.last().copied().unwrap_or(0);
        for old in &generations[..generations.len().saturating_sub(1)] {
            let old_path = dir.join(file_name(stem, *old));
            fs::remove_file(&old_path).map_err(io_err(&old_path))?;
        }
        let path = dir.join(file_name(stem, generation));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        let scan = scan_frames::<R>(&bytes);
        let valid = scan.valid_end;
        let damaged_tail = valid < bytes.len() && !scan.torn_tail;
        if !scan.skipped.is_empty() || damaged_tail {
            let copy = quarantine(dir, &path)?;
            tracing::warn!(path = %path.display(), copy = %copy.display(),
                skipped = ?scan.skipped, records = scan.records.len(),
                recovered_after_damage = scan.recovered_after_damage,
                "log file is damaged: copied it aside, skipped the damaged byte ranges");
        }
        if valid < bytes.len() {
            tracing::warn!(path = %path.display(), valid, total = bytes.len(),
                torn = scan.torn_tail, "truncating the torn or corrupt tail of the log file");
            file.set_len(valid as u64).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        sync_dir(dir)?;
        let len = valid as u64;
        let mut log = RecordLog {
            dir: dir.to_path_buf(),
            path,
            file,
            generation,
            len,
            base_len: len,
            compact_threshold,
            failed: false,
            records: PhantomData,
        };
        if !scan.skipped.is_empty() {
            // Appends must not follow damaged bytes: the next open would have
            // to skip them again. The damaged original is already copied aside.
            log.rewrite(&scan.records)?;
            tracing::warn!(path = %log.path.display(), records = scan.records.len(),
                "rewrote the log file from the recovered records");
        }
        Ok((log, scan.records))
    }

    /// The file currently appended to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The generation of the file currently appended to.
    pub fn generation(&self) -> u64 {
        self.generation
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
    pub fn append(&mut self, records: &[R]) -> Result<(), RecordLogError> {
        if self.failed {
            return Err(RecordLogError::Failed {
                path: self.path.clone(),
            });
        }
        let bytes = self.encode(records, &self.path)?;
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
            return Err(RecordLogError::Io {
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

    /// Replaces the log atomically with `snapshot` (the records that rebuild
    /// the live state), as generation N+1.
    pub fn rewrite(&mut self, snapshot: &[R]) -> Result<(), RecordLogError> {
        let next = self.generation + 1;
        let final_path = self.dir.join(file_name(R::FILE_STEM, next));
        let tmp_path = self
            .dir
            .join(format!("{}.tmp", file_name(R::FILE_STEM, next)));
        let bytes = self.encode(snapshot, &tmp_path)?;
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
        let synced = if FAIL_DIR_SYNC_AFTER_RENAME.with(|f| f.get()) {
            Err(RecordLogError::Io {
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
            tracing::warn!(path = %old_path.display(), error = %e, "cannot remove a compacted log file");
        }
        tracing::info!(path = %self.path.display(), bytes = self.len, "compacted the log");
        Ok(())
    }

    /// The frames of `records`; `path` names the file in an encoding error.
    fn encode(&self, records: &[R], path: &Path) -> Result<Vec<u8>, RecordLogError> {
        let mut bytes = Vec::new();
        for record in records {
            encode_frame(record, &mut bytes).map_err(|source| RecordLogError::Encode {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(bytes)
    }
}

/// Test support for the logs built on [`RecordLog`].
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Checks that a compaction whose directory fsync fails after its rename
    /// loses no acknowledged record: `first` is appended, a compaction to
    /// `[first]` fails after the rename, then `later` is appended; a reopen must
    /// replay `later` last if that append succeeded, else `first`.
    pub(crate) fn compaction_failing_after_its_rename_loses_nothing<R>(first: R, later: R)
    where
        R: LogRecord + Clone + PartialEq + std::fmt::Debug,
    {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = RecordLog::<R>::open(dir.path(), 1 << 20).unwrap();
        log.append(std::slice::from_ref(&first)).unwrap();
        FAIL_DIR_SYNC_AFTER_RENAME.with(|f| f.set(true));
        let compacted = log.rewrite(std::slice::from_ref(&first));
        FAIL_DIR_SYNC_AFTER_RENAME.with(|f| f.set(false));
        assert!(compacted.is_err());
        let acknowledged = log.append(std::slice::from_ref(&later)).is_ok();
        drop(log);
        let (_, records) = RecordLog::<R>::open(dir.path(), 1 << 20).unwrap();
        let expected = if acknowledged { later } else { first };
        assert_eq!(
            records.last(),
            Some(&expected),
            "acknowledged: {acknowledged}; an append that succeeded after the failed compaction was lost"
        );
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    enum TestRecord {
        Put { key: String, value: i64 },
        Gone { key: String },
    }

    impl LogRecord for TestRecord {
        const FILE_STEM: &'static str = "test";
    }

    type TestLog = RecordLog<TestRecord>;

    fn put(key: &str, value: i64) -> TestRecord {
        TestRecord::Put {
            key: key.into(),
            value,
        }
    }

    fn damaged_copies(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".damaged-"))
            .collect()
    }

    #[test]
    fn frames_are_length_crc_and_bincode_payload() {
        let mut bytes = Vec::new();
        encode_frame(&TestRecord::Gone { key: "k".into() }, &mut bytes).unwrap();
        // Variant 1 (u32), then the string as a u64 length and its bytes.
        let payload = [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, b'k'];
        assert_eq!(&bytes[..4], &(payload.len() as u32).to_le_bytes());
        assert_eq!(&bytes[4..8], &crc32c::crc32c(&payload).to_le_bytes());
        assert_eq!(&bytes[8..], &payload);
    }

    #[test]
    fn scan_resynchronises_after_damage_in_the_middle() {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for n in 0..5 {
            starts.push(bytes.len());
            encode_frame(&put("k", n), &mut bytes).unwrap();
        }
        starts.push(bytes.len());
        let clean = scan_frames::<TestRecord>(&bytes);
        assert_eq!(clean.records.len(), 5);
        assert!(clean.skipped.is_empty() && clean.torn_tail);
        assert_eq!(clean.valid_end, bytes.len());
        let intact = bytes.clone();

        // A flipped payload byte in frame 1 and a wild length in frame 3.
        bytes[starts[1] + FRAME_HEADER_LEN + 2] ^= 0x40;
        bytes[starts[3] + 3] = 0x7f;
        let scan = scan_frames::<TestRecord>(&bytes);
        assert_eq!(scan.records, vec![put("k", 0), put("k", 2), put("k", 4)]);
        assert_eq!(
            scan.skipped,
            vec![starts[1]..starts[2], starts[3]..starts[4]]
        );
        assert_eq!(scan.recovered_after_damage, 2);
        assert_eq!(scan.valid_end, bytes.len());

        // Damage in the last frame too: frames 3 and 4 are a corrupt tail.
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let scan = scan_frames::<TestRecord>(&bytes);
        assert_eq!(scan.records, vec![put("k", 0), put("k", 2)]);
        assert_eq!(scan.skipped, vec![starts[1]..starts[2]]);
        assert_eq!(scan.valid_end, starts[3]);
        assert!(!scan.torn_tail);
        // A frame cut short is a torn tail.
        let scan = scan_frames::<TestRecord>(&intact[..starts[5] - 3]);
        assert_eq!(scan.records.len(), 4);
        assert_eq!(scan.valid_end, starts[4]);
        assert!(scan.torn_tail && scan.skipped.is_empty());
    }

    #[test]
    fn replays_appended_records_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, records) = TestLog::open(dir.path(), 1 << 20).unwrap();
            assert!(records.is_empty());
            log.append(&[put("a", 1), put("b", 2)]).unwrap();
            log.append(&[TestRecord::Gone { key: "a".into() }]).unwrap();
        }
        let (log, records) = TestLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            records,
            vec![
                put("a", 1),
                put("b", 2),
                TestRecord::Gone { key: "a".into() }
            ]
        );
        assert_eq!(
            log.path().file_name().unwrap(),
            "test-00000000000000000000.log"
        );
    }

    #[test]
    fn torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let (mut log, _) = TestLog::open(dir.path(), 1 << 20).unwrap();
            log.append(&[put("a", 1), put("a", 2)]).unwrap();
            log.path().to_path_buf()
        };
        let full = fs::metadata(&path).unwrap().len();
        // Cut the last frame short, as a crash mid-write would.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(full - 5)
            .unwrap();
        {
            let (mut log, records) = TestLog::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(records, vec![put("a", 1)]);
            assert!(fs::metadata(&path).unwrap().len() < full - 5);
            assert!(
                damaged_copies(dir.path()).is_empty(),
                "a torn tail is only cut"
            );
            log.append(&[put("a", 3)]).unwrap();
        }
        let (_, records) = TestLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(records, vec![put("a", 1), put("a", 3)]);
    }

    #[test]
    fn damage_in_the_middle_keeps_later_records_and_quarantines_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (path, frame_len) = {
            let (mut log, _) = TestLog::open(dir.path(), 1 << 20).unwrap();
            log.append(&[put("a", 1)]).unwrap();
            let frame_len = log.len() as usize;
            for n in 2..=10 {
                log.append(&[put("a", n)]).unwrap();
            }
            (log.path().to_path_buf(), frame_len)
        };
        let original = fs::read(&path).unwrap();
        // Every frame has the same length: flip bytes in the payload of frame 4
        // (value 5) and in the header of frame 7 (value 8).
        let mut bytes = original.clone();
        bytes[4 * frame_len + FRAME_HEADER_LEN + 3] ^= 0xff;
        bytes[7 * frame_len + 5] ^= 0x10;
        fs::write(&path, &bytes).unwrap();

        let expected: Vec<TestRecord> = [1, 2, 3, 4, 6, 7, 9, 10]
            .into_iter()
            .map(|n| put("a", n))
            .collect();
        {
            let (mut log, records) = TestLog::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(records, expected);
            // Rewritten into a new generation without the damaged frames.
            assert_eq!(log.generation(), 1);
            assert!(!path.exists());
            assert_eq!(log.len() as usize, original.len() - 2 * frame_len);
            log.append(&[put("a", 11)]).unwrap();
        }
        let copies = damaged_copies(dir.path());
        assert_eq!(copies.len(), 1);
        assert_eq!(fs::read(&copies[0]).unwrap(), bytes);
        let (_, records) = TestLog::open(dir.path(), 1 << 20).unwrap();
        let mut after = expected;
        after.push(put("a", 11));
        assert_eq!(records, after);
        // A clean open neither copies nor rewrites again.
        assert_eq!(damaged_copies(dir.path()).len(), 1);
    }

    #[test]
    fn corrupt_tail_is_copied_aside_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let (mut log, _) = TestLog::open(dir.path(), 1 << 20).unwrap();
            log.append(&[put("a", 1)]).unwrap();
            log.append(&[put("a", 2)]).unwrap();
            log.path().to_path_buf()
        };
        // A flipped byte in the last frame's payload.
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        fs::write(&path, &bytes).unwrap();
        let (_, records) = TestLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(records, vec![put("a", 1)]);
        assert_eq!(damaged_copies(dir.path()).len(), 1);

        // Garbage after the last frame.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9])
            .unwrap();
        drop(f);
        let (_, records) = TestLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(records, vec![put("a", 1)]);
        // Corrupt, not torn: the file was copied aside before the cut.
        assert_eq!(damaged_copies(dir.path()).len(), 2);
    }

    #[test]
    fn compaction_switches_to_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = TestLog::open(dir.path(), 256).unwrap();
        let mut n = 0;
        while !log.needs_compaction() {
            n += 1;
            log.append(&[put("a", n)]).unwrap();
        }
        assert!(n > 1);
        let before = log.len();
        let old_path = log.path().to_path_buf();
        log.rewrite(&[put("a", n)]).unwrap();
        assert!(log.len() < before);
        assert!(!old_path.exists());
        assert!(!log.needs_compaction());
        log.append(&[put("b", 7)]).unwrap();

        let (log, records) = TestLog::open(dir.path(), 256).unwrap();
        assert_eq!(records, vec![put("a", n), put("b", 7)]);
        assert_eq!(log.generation(), 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unfinished_compaction_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = TestLog::open(dir.path(), 1 << 20).unwrap();
            log.append(&[put("a", 1)]).unwrap();
        }
        // A crash after writing the temporary snapshot but before the rename.
        let tmp = dir.path().join(format!("{}.tmp", file_name("test", 1)));
        fs::write(&tmp, b"partial").unwrap();
        let (log, records) = TestLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(records, vec![put("a", 1)]);
        assert_eq!(log.generation(), 0);
        assert!(!tmp.exists());
    }

    #[test]
    fn a_compaction_failing_after_its_rename_loses_no_acknowledged_record() {
        testing::compaction_failing_after_its_rename_loses_nothing(put("a", 1), put("a", 2));
    }

    #[test]
    fn a_failed_log_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = TestLog::open(dir.path(), 1 << 20).unwrap();
        FAIL_DIR_SYNC_AFTER_RENAME.with(|f| f.set(true));
        assert!(log.rewrite(&[put("a", 1)]).is_err());
        FAIL_DIR_SYNC_AFTER_RENAME.with(|f| f.set(false));
        assert!(matches!(
            log.append(&[put("a", 2)]),
            Err(RecordLogError::Failed { .. })
        ));
    }
}
