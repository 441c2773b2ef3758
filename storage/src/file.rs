//! Every system call the log makes on its files goes through [`DataFile`] and the helpers
//! here, so one place decides how errors are named (file + byte offset) and a
//! fault-injecting implementation can later be slotted in at this seam.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::StorageError;
use crate::fault::{check, FileOp};

/// A file of the log (segment `.log`, `.index`, `.timeindex`). Writes append at the end
/// (O_APPEND); reads are positional (pread), so readers never move a cursor.
///
/// A `.log` keeps its descriptor open. Index files are opened on demand
/// ([`DataFile::open_on_demand`]): each operation opens the file, acts and closes it, so a
/// segment costs one descriptor, not three (10,000 partitions fit a 20,000-fd limit).
/// Index files are written only when a segment is sealed or the log closes, and an fsync
/// on a fresh descriptor still writes back the inode's dirty pages (and, since Linux 4.16,
/// reports a write-back error no descriptor has seen yet); index files are derived data
/// checked byte for byte at open anyway.
#[derive(Debug)]
pub(crate) struct DataFile {
    /// None for a file opened on demand.
    file: Option<File>,
    path: PathBuf,
}

impl DataFile {
    /// Opens `path` for reading and appending, creating it if `create`.
    pub fn open(path: &Path, create: bool) -> Result<DataFile, StorageError> {
        let file = open_file(path, create).map_err(|e| StorageError::io("open", path, e))?;
        Ok(DataFile {
            file: Some(file),
            path: path.to_path_buf(),
        })
    }

    /// Like [`DataFile::open`] (the file is opened once now, so a missing or unreadable file
    /// is an error here), but no descriptor is kept: every operation opens the file again.
    pub fn open_on_demand(path: &Path, create: bool) -> Result<DataFile, StorageError> {
        open_file(path, create).map_err(|e| StorageError::io("open", path, e))?;
        Ok(DataFile {
            file: None,
            path: path.to_path_buf(),
        })
    }

    /// Runs `op` on the open descriptor, or on one opened for this call.
    fn with_file<R>(&self, op: impl FnOnce(&File) -> std::io::Result<R>) -> std::io::Result<R> {
        match &self.file {
            Some(file) => op(file),
            None => op(&open_file(&self.path, false)?),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current length of the file in bytes.
    pub fn len(&self) -> Result<u64, StorageError> {
        self.with_file(|f| f.metadata())
            .map(|m| m.len())
            .map_err(|e| StorageError::io("stat", &self.path, e))
    }

    /// Appends all of `bufs` with as few `writev` calls as the kernel allows. `position` is
    /// where the caller believes the end is (for error messages only).
    pub fn append_all(&self, bufs: &mut [IoSlice<'_>], position: u64) -> Result<(), StorageError> {
        let mut bufs = bufs;
        let mut written = 0u64;
        IoSlice::advance_slices(&mut bufs, 0); // drop leading empty slices
        while !bufs.is_empty() {
            let result = check(FileOp::Write, &self.path)
                .and_then(|()| self.with_file(|mut f| f.write_vectored(bufs)));
            match result {
                Ok(0) => {
                    return Err(StorageError::io_at(
                        "write",
                        &self.path,
                        position + written,
                        std::io::Error::new(std::io::ErrorKind::WriteZero, "wrote 0 bytes"),
                    ))
                }
                Ok(n) => {
                    written += n as u64;
                    IoSlice::advance_slices(&mut bufs, n);
                    IoSlice::advance_slices(&mut bufs, 0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(StorageError::io_at(
                        "write",
                        &self.path,
                        position + written,
                        e,
                    ))
                }
            }
        }
        Ok(())
    }

    /// Fills `buf` from byte `position`; a short file is an `UnexpectedEof` error.
    pub fn read_exact_at(&self, buf: &mut [u8], position: u64) -> Result<(), StorageError> {
        check(FileOp::Read, &self.path)
            .and_then(|()| self.with_file(|f| f.read_exact_at(buf, position)))
            .map_err(|e| StorageError::io_at("read", &self.path, position, e))
    }

    /// Reads up to `len` bytes from `position` (fewer only at end of file).
    pub fn read_up_to(&self, position: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            let result = check(FileOp::Read, &self.path).and_then(|()| {
                self.with_file(|f| f.read_at(&mut buf[filled..], position + filled as u64))
            });
            match result {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(StorageError::io_at(
                        "read",
                        &self.path,
                        position + filled as u64,
                        e,
                    ))
                }
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// Cuts the file to `len` bytes.
    pub fn truncate(&self, len: u64) -> Result<(), StorageError> {
        check(FileOp::Truncate, &self.path)
            .and_then(|()| self.with_file(|f| f.set_len(len)))
            .map_err(|e| StorageError::io_at("truncate", &self.path, len, e))
    }

    /// fdatasync: the file's data (and the size needed to read it) reach the disk.
    pub fn sync_data(&self) -> Result<(), StorageError> {
        check(FileOp::Sync, &self.path)
            .and_then(|()| self.with_file(|f| f.sync_data()))
            .map_err(|e| StorageError::io("fdatasync", &self.path, e))
    }

    /// Maps the first `len` bytes of the file read-only and hands them out as [`Bytes`],
    /// so reads of sealed segments are slices of the page cache with no copy.
    pub fn map(&self, len: u64) -> Result<Bytes, StorageError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let map_len = usize::try_from(len).map_err(|_| {
            StorageError::io(
                "mmap",
                &self.path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "file too large to map"),
            )
        })?;
        let map = check(FileOp::Map, &self.path)
            .and_then(|()| self.with_file(|f| map_readonly(f, map_len)))
            .map_err(|e| StorageError::io("mmap", &self.path, e))?;
        Ok(Bytes::from_owner(map))
    }
}

/// Opens `path` for reading and appending (after asking the fault seam).
fn open_file(path: &Path, create: bool) -> std::io::Result<File> {
    check(FileOp::Open, path)?;
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .open(path)
}

/// The one place the storage crate uses `unsafe`.
#[allow(unsafe_code)]
fn map_readonly(file: &File, len: usize) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: memmap2 requires that the mapped file is not modified or truncated while the
    // map lives, or readers could see changing bytes or fault (SIGBUS). The log maps only
    // sealed segments: every byte in 0..len was written and is never written again (only the
    // active segment is appended to; recovery truncation happens before any map is made),
    // and a segment is only deleted (unlinked), never truncated, after it is sealed. Unlinking
    // keeps the pages alive for existing maps. A process outside Strata truncating the file
    // would break this; the data directory belongs to the broker alone.
    unsafe { memmap2::MmapOptions::new().len(len).map(file) }
}

/// fsyncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = File::open(dir).map_err(|e| StorageError::io("open directory", dir, e))?;
    check(FileOp::SyncDir, dir)
        .and_then(|()| d.sync_all())
        .map_err(|e| StorageError::io("fsync directory", dir, e))
}

/// Replaces `dir/name` atomically with `contents`: write a temp file, fsync it, rename over
/// the target, fsync the directory. A crash leaves either the old or the new file.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    {
        check(FileOp::Open, &tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| StorageError::io("create", &tmp, e))?;
        check(FileOp::Write, &tmp)
            .and_then(|()| f.write_all(contents))
            .map_err(|e| StorageError::io_at("write", &tmp, 0, e))?;
        check(FileOp::Sync, &tmp)
            .and_then(|()| f.sync_all())
            .map_err(|e| StorageError::io("fsync", &tmp, e))?;
    }
    check(FileOp::Rename, &target)
        .and_then(|()| std::fs::rename(&tmp, &target))
        .map_err(|e| StorageError::io("rename", &tmp, e))?;
    sync_dir(dir)
}

/// Writes `dir/name` without any fsync: for files whose loss or tearing is detected by the
/// reader (the index digest sidecar, checked against what it describes).
pub(crate) fn write_unsynced(dir: &Path, name: &str, contents: &[u8]) -> Result<(), StorageError> {
    let path = dir.join(name);
    check(FileOp::Open, &path)
        .and_then(|()| check(FileOp::Write, &path))
        .and_then(|()| std::fs::write(&path, contents))
        .map_err(|e| StorageError::io("write", &path, e))
}

/// Renames `from` to `to` (replacing `to`); the caller fsyncs the directory.
pub(crate) fn rename(from: &Path, to: &Path) -> Result<(), StorageError> {
    check(FileOp::Rename, to)
        .and_then(|()| std::fs::rename(from, to))
        .map_err(|e| StorageError::io("rename", from, e))
}

/// Removes a file; a file already gone is not an error.
pub(crate) fn remove_file(path: &Path) -> Result<(), StorageError> {
    match check(FileOp::Remove, path).and_then(|()| std::fs::remove_file(path)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("remove", path, e)),
    }
}

/// Reads a whole small file; `Ok(None)` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("read", path, e)),
    }
}
