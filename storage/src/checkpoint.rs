//! The partition checkpoint and the clean-shutdown marker, both in the partition directory.
//!
//! `partition.checkpoint` is a small text file, replaced atomically (temp file, fsync,
//! rename, fsync directory):
//!
//! ```text
//! strata-partition-checkpoint 1
//! log_start_offset <i64>
//! recovery_point <i64>
//! crc32c <u32>
//! ```
//!
//! `crc32c` is the CRC-32C of the lines above it (newlines included), in decimal, so a
//! flipped digit is detected rather than believed; files written before it existed have no
//! such line and are still read.
//!
//! `log_start_offset` is the first offset a reader may see (moved by retention and
//! DeleteRecords). `recovery_point` is an offset below which every byte was fsync'd: after an
//! unclean shutdown, segments wholly below it are trusted and the rest are re-validated.
//!
//! `.clean-shutdown` exists only between a clean `Log::close` and the next `Log::open`.
//!
//! `partition.truncation` exists only while a truncation (`Log::truncate_to`,
//! `Log::truncate_fully_and_start_at`) is in progress: written durably before the first
//! file is touched, removed durably after the last. `Log::open` finds it after a crash in
//! between and completes the truncation, so a reopened log is always on one side of it.
//!
//! ```text
//! strata-partition-truncation 1
//! to <i64>            (or: fully <i64>)
//! crc32c <u32>
//! ```

use std::path::Path;

use crate::error::StorageError;
use crate::file;

pub(crate) const CHECKPOINT_FILE: &str = "partition.checkpoint";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
pub(crate) const TRUNCATION_FILE: &str = "partition.truncation";
const MAGIC_LINE: &str = "strata-partition-checkpoint 1";
const TRUNCATION_MAGIC_LINE: &str = "strata-partition-truncation 1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub log_start_offset: i64,
    pub recovery_point: i64,
}

impl Checkpoint {
    fn encode(&self) -> String {
        let body = format!(
            "{MAGIC_LINE}\nlog_start_offset {}\nrecovery_point {}\n",
            self.log_start_offset, self.recovery_point
        );
        let crc = crc32c::crc32c(body.as_bytes());
        format!("{body}crc32c {crc}\n")
    }

    fn decode(text: &str) -> Option<Checkpoint> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC_LINE {
            return None;
        }
        let field = |line: Option<&str>, name: &str| -> Option<i64> {
            let (key, value) = line?.split_once(' ')?;
            if key != name {
                return None;
            }
            value.parse().ok()
        };
        let log_start_offset = field(lines.next(), "log_start_offset")?;
        let recovery_point = field(lines.next(), "recovery_point")?;
        if let Some(line) = lines.next() {
            let crc = field(Some(line), "crc32c")?;
            let covered = text.find("\ncrc32c ")? + 1;
            if i64::from(crc32c::crc32c(&text.as_bytes()[..covered])) != crc {
                return None;
            }
        }
        if lines.next().is_some() || log_start_offset < 0 || recovery_point < 0 {
            return None;
        }
        Some(Checkpoint {
            log_start_offset,
            recovery_point,
        })
    }
}

/// Reads the checkpoint; `Ok(None)` when absent. An unreadable one is an error naming the
/// file (the log refuses to guess its start offset).
pub(crate) fn read(dir: &Path) -> Result<Option<Checkpoint>, StorageError> {
    let path = dir.join(CHECKPOINT_FILE);
    let Some(bytes) = file::read_optional(&path)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    Checkpoint::decode(&text)
        .map(Some)
        .ok_or_else(|| StorageError::Corrupt {
            path,
            position: 0,
            reason: "not a valid partition checkpoint".into(),
        })
}

/// Writes the checkpoint atomically and durably.
pub(crate) fn write(dir: &Path, checkpoint: &Checkpoint) -> Result<(), StorageError> {
    file::write_atomic(&dir.join(CHECKPOINT_FILE), checkpoint.encode().as_bytes())
}

/// Whether the previous run ended with a clean shutdown.
pub(crate) fn was_clean(dir: &Path) -> bool {
    dir.join(CLEAN_SHUTDOWN_FILE).exists()
}

/// Writes the clean-shutdown marker durably.
pub(crate) fn mark_clean(dir: &Path) -> Result<(), StorageError> {
    file::write_atomic(&dir.join(CLEAN_SHUTDOWN_FILE), b"")
}

/// Removes the marker durably, so a crash from now on is seen as unclean.
pub(crate) fn clear_clean(dir: &Path) -> Result<(), StorageError> {
    file::remove_file(&dir.join(CLEAN_SHUTDOWN_FILE))?;
    file::sync_dir(dir)
}

/// A truncation in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Truncation {
    /// `Log::truncate_to(offset)`.
    To(i64),
    /// `Log::truncate_fully_and_start_at(offset)`.
    Fully(i64),
}

impl Truncation {
    fn encode(self) -> String {
        let body = match self {
            Truncation::To(offset) => format!("{TRUNCATION_MAGIC_LINE}\nto {offset}\n"),
            Truncation::Fully(offset) => format!("{TRUNCATION_MAGIC_LINE}\nfully {offset}\n"),
        };
        let crc = crc32c::crc32c(body.as_bytes());
        format!("{body}crc32c {crc}\n")
    }

    fn decode(text: &str) -> Option<Truncation> {
        let covered = text.find("\ncrc32c ")? + 1;
        let (body, crc_line) = text.split_at(covered);
        let crc: u32 = crc_line.strip_prefix("crc32c ")?.trim_end().parse().ok()?;
        if crc32c::crc32c(body.as_bytes()) != crc || !crc_line.ends_with('\n') {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != TRUNCATION_MAGIC_LINE {
            return None;
        }
        let (kind, offset) = lines.next()?.split_once(' ')?;
        let offset: i64 = offset.parse().ok()?;
        if lines.next().is_some() || offset < 0 {
            return None;
        }
        match kind {
            "to" => Some(Truncation::To(offset)),
            "fully" => Some(Truncation::Fully(offset)),
            _ => None,
        }
    }
}

/// Records durably that `truncation` is about to start.
pub(crate) fn begin_truncation(dir: &Path, truncation: Truncation) -> Result<(), StorageError> {
    file::write_atomic(&dir.join(TRUNCATION_FILE), truncation.encode().as_bytes())
}

/// Removes the record of a finished truncation, durably (a log may append again only once
/// a crash can no longer make the next open repeat the truncation).
pub(crate) fn end_truncation(dir: &Path) -> Result<(), StorageError> {
    file::remove_file(&dir.join(TRUNCATION_FILE))?;
    file::sync_dir(dir)
}

/// The truncation a crash interrupted, if any. A damaged record (only the disk damages a
/// file replaced atomically) is reported and ignored: the log is then left as the crash
/// left it, which recovery has made consistent.
pub(crate) fn pending_truncation(dir: &Path) -> Result<Option<Truncation>, StorageError> {
    let path = dir.join(TRUNCATION_FILE);
    let Some(bytes) = file::read_optional(&path)? else {
        return Ok(None);
    };
    let decoded = Truncation::decode(&String::from_utf8_lossy(&bytes));
    if decoded.is_none() {
        tracing::warn!(file = %path.display(), "ignoring a damaged truncation record");
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let c = Checkpoint {
            log_start_offset: 42,
            recovery_point: 1000,
        };
        write(dir.path(), &c).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(c));
        std::fs::write(
            dir.path().join(CHECKPOINT_FILE),
            "strata-partition-checkpoint 1\nlog_start_offset x\n",
        )
        .unwrap();
        assert!(read(dir.path()).is_err());
    }

    #[test]
    fn a_flipped_digit_is_detected_and_files_without_a_crc_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoint {
            log_start_offset: 42,
            recovery_point: 1000,
        };
        write(dir.path(), &c).unwrap();
        let path = dir.path().join(CHECKPOINT_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\ncrc32c "));
        std::fs::write(
            &path,
            text.replace("log_start_offset 42", "log_start_offset 92"),
        )
        .unwrap();
        assert!(read(dir.path()).is_err(), "a changed digit is not believed");
        std::fs::write(
            &path,
            "strata-partition-checkpoint 1\nlog_start_offset 42\nrecovery_point 1000\n",
        )
        .unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(c));
    }

    #[test]
    fn truncation_record_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(pending_truncation(dir.path()).unwrap(), None);
        for t in [
            Truncation::To(0),
            Truncation::To(77),
            Truncation::Fully(1 << 40),
        ] {
            begin_truncation(dir.path(), t).unwrap();
            assert_eq!(pending_truncation(dir.path()).unwrap(), Some(t));
        }
        let path = dir.path().join(TRUNCATION_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        for i in 0..text.len() {
            let mut bad = text.clone().into_bytes();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            assert_eq!(pending_truncation(dir.path()).unwrap(), None, "byte {i}");
            std::fs::write(&path, &text.as_bytes()[..i]).unwrap();
            assert_eq!(pending_truncation(dir.path()).unwrap(), None, "cut at {i}");
        }
        end_truncation(dir.path()).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn clean_marker() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!was_clean(dir.path()));
        mark_clean(dir.path()).unwrap();
        assert!(was_clean(dir.path()));
        clear_clean(dir.path()).unwrap();
        assert!(!was_clean(dir.path()));
    }
}
