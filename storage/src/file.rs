//! Every system call the log makes on its files goes through [`DataFile`] and the helpers
//! here, so one place decides how errors are named (file + byte offset) and a
//! fault-injecting implementation can be slotted in at this seam (`fault.rs`).
//!
//! Data is only ever read with `pread` (into pooled buffers for fetches, see [`read_pool`]):
//! a failed read is an error for that read alone, never a signal that stops the process (as
//! a media error on a memory-mapped page would), and a file cut by a truncation shows up as
//! a short read, never as a fault.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::descriptor_cache;
use crate::error::StorageError;
use crate::fault::{check, FileOp};

/// A file of the log (segment `.log`, `.index`, `.timeindex`). Writes append at the end
/// (O_APPEND); reads are positional (pread), so readers never move a cursor.
///
/// How the file gets a descriptor:
/// - the active segment's `.log` keeps its own ([`DataFile::open`]);
/// - a sealed segment's `.log` borrows one from the process-wide [`descriptor_cache`]
///   ([`DataFile::to_cached`]), so thousands of sealed segments cost at most
///   [`descriptor_cache::MAX_CACHED_DESCRIPTORS`] descriptors between them;
/// - index files are opened on demand ([`DataFile::open_on_demand`]): each operation opens
///   the file, acts and closes it. Index files are written only when a segment is sealed
///   or the log closes, and an fsync on a fresh descriptor still writes back the inode's
///   dirty pages (and, since Linux 4.16, reports a write-back error no descriptor has seen
///   yet); index files are derived data checked byte for byte at open anyway.
#[derive(Debug)]
pub(crate) struct DataFile {
    descriptor: Descriptor,
    path: PathBuf,
}

#[derive(Debug)]
enum Descriptor {
    /// Kept open for the file's life.
    Held(File),
    /// Opened for each operation.
    OnDemand,
    /// Borrowed from the descriptor cache under this key (unique to this `DataFile`).
    Cached(u64),
}

impl Drop for DataFile {
    fn drop(&mut self) {
        if let Descriptor::Cached(key) = self.descriptor {
            descriptor_cache::forget(key);
        }
    }
}

impl DataFile {
    /// Opens `path` for reading and appending, creating it if `create`.
    pub fn open(path: &Path, create: bool) -> Result<DataFile, StorageError> {
        let file = open_file(path, create).map_err(|e| StorageError::io("open", path, e))?;
        Ok(DataFile {
            descriptor: Descriptor::Held(file),
            path: path.to_path_buf(),
        })
    }

    /// Like [`DataFile::open`] (the file is opened once now, so a missing or unreadable file
    /// is an error here), but no descriptor is kept: every operation opens the file again.
    pub fn open_on_demand(path: &Path, create: bool) -> Result<DataFile, StorageError> {
        open_file(path, create).map_err(|e| StorageError::io("open", path, e))?;
        Ok(DataFile {
            descriptor: Descriptor::OnDemand,
            path: path.to_path_buf(),
        })
    }

    /// The same file reading through the descriptor cache; this one keeps its own
    /// descriptor (if any) until dropped.
    pub fn to_cached(&self) -> DataFile {
        DataFile {
            descriptor: Descriptor::Cached(descriptor_cache::new_key()),
            path: self.path.clone(),
        }
    }

    /// Whether this file keeps a descriptor of its own open.
    pub fn holds_descriptor(&self) -> bool {
        matches!(self.descriptor, Descriptor::Held(_))
    }

    /// Runs `op` on the file's descriptor: its own, the cached one, or one opened for this
    /// call.
    fn with_file<R>(&self, op: impl FnOnce(&File) -> std::io::Result<R>) -> std::io::Result<R> {
        match &self.descriptor {
            Descriptor::Held(file) => op(file),
            Descriptor::OnDemand => op(&open_file(&self.path, false)?),
            Descriptor::Cached(key) => {
                let file = descriptor_cache::get_or_open(*key, || open_file(&self.path, false))?;
                op(&file)
            }
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

    /// Like [`DataFile::read_up_to`], into a buffer reused from earlier reads (see
    /// [`read_pool`]), handed out as `Bytes` that give the buffer back when dropped. For
    /// the fetch path, which reads up to a partition's fetch size per request.
    pub fn read_shared(&self, position: u64, len: usize) -> Result<Bytes, StorageError> {
        let mut buf = read_pool::take(len);
        let mut filled = 0;
        while filled < len {
            let result = check(FileOp::Read, &self.path).and_then(|()| {
                self.with_file(|f| f.read_at(&mut buf[filled..len], position + filled as u64))
            });
            match result {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    read_pool::give_back(buf);
                    return Err(StorageError::io_at(
                        "read",
                        &self.path,
                        position + filled as u64,
                        e,
                    ));
                }
            }
        }
        Ok(read_pool::into_bytes(buf, filled))
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

/// fsyncs a directory so that entries created, renamed or removed in it are durable
/// (POSIX makes a new or renamed name durable only through its directory).
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = File::open(dir).map_err(|e| StorageError::io("open directory", dir, e))?;
    check(FileOp::SyncDir, dir)
        .and_then(|()| d.sync_all())
        .map_err(|e| StorageError::io("fsync directory", dir, e))
}

/// Creates `dir` and any missing parents, durably: after it returns, a crash cannot lose
/// the new directories (the parent of each one created is fsync'd). An existing directory
/// costs one `stat`.
pub fn create_dir_durable(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .collect();
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create directory", dir, e))?;
    for created in missing.iter().rev() {
        match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// Replaces the file at `path` atomically and durably with `contents`: writes
/// `<path>.tmp`, fsyncs it, renames it over `path`, fsyncs the directory (POSIX makes a
/// rename durable only through its directory). A crash at any moment leaves either the old
/// or the new file whole (and possibly a stray `<path>.tmp`, which the caller may remove at
/// start); once this returns Ok the new content survives a crash. Callers serialize writes
/// of the same path. The one atomic-replace helper of the storage crate, public for the
/// broker's own files.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), StorageError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
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
    check(FileOp::Rename, path)
        .and_then(|()| std::fs::rename(&tmp, path))
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

/// Bytes of fetch reads handed out and not yet dropped (see [`read_pool`]).
pub(crate) fn read_bytes_outstanding() -> usize {
    read_pool::outstanding()
}

/// Reusable read buffers for [`DataFile::read_shared`].
///
/// Each fetch needs a buffer of up to the partition's fetch size
/// (1 MiB by default). A fresh one per read costs a zeroing pass, and glibc hands freed
/// blocks of that size back to the kernel, so the next read page-faults every page in
/// again: together about a third of the broker's CPU while serving a consumer. Buffers
/// are given back when the last `Bytes` of a read is dropped (after the response is
/// written) and reused as they are: a reused buffer is already initialised, so it is read
/// into without zeroing. At most `MAX_BUFFERS` buffers of at most `MAX_BUFFER_BYTES` are
/// kept (`MAX_BUFFERS * MAX_BUFFER_BYTES` of memory at most).
mod read_pool {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use bytes::Bytes;

    pub(super) const MAX_BUFFERS: usize = 16;
    pub(super) const MAX_BUFFER_BYTES: usize = 2 << 20;

    static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    /// Bytes of reads handed out (as `Bytes`) and not yet dropped, pooled or not.
    static OUTSTANDING: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn outstanding() -> usize {
        OUTSTANDING.load(Ordering::Relaxed)
    }

    fn pool() -> std::sync::MutexGuard<'static, Vec<Vec<u8>>> {
        // The pool holds plain buffers: a panic while it was locked leaves nothing torn.
        POOL.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer of at least `len` initialised bytes: the smallest pooled one that fits,
    /// else a new zeroed one.
    pub(super) fn take(len: usize) -> Vec<u8> {
        let reused = {
            let mut pool = pool();
            let best = pool
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= len)
                .min_by_key(|(_, b)| b.len())
                .map(|(i, _)| i);
            best.map(|i| pool.swap_remove(i))
        };
        reused.unwrap_or_else(|| vec![0u8; len])
    }

    /// Returns `buf` to the pool if it is small enough and the pool has room.
    pub(super) fn give_back(buf: Vec<u8>) {
        if buf.len() > MAX_BUFFER_BYTES || buf.is_empty() {
            return;
        }
        let mut pool = pool();
        if pool.len() < MAX_BUFFERS {
            pool.push(buf);
        }
    }

    /// The first `len` bytes of `buf`, as `Bytes` that return `buf` to the pool on drop.
    pub(super) fn into_bytes(buf: Vec<u8>, len: usize) -> Bytes {
        if len == 0 {
            give_back(buf);
            return Bytes::new();
        }
        OUTSTANDING.fetch_add(len, Ordering::Relaxed);
        Bytes::from_owner(Pooled { buf, len })
    }

    struct Pooled {
        buf: Vec<u8>,
        len: usize,
    }

    impl AsRef<[u8]> for Pooled {
        fn as_ref(&self) -> &[u8] {
            &self.buf[..self.len]
        }
    }

    impl Drop for Pooled {
        fn drop(&mut self) {
            OUTSTANDING.fetch_sub(self.len, Ordering::Relaxed);
            give_back(std::mem::take(&mut self.buf));
        }
    }

    #[cfg(test)]
    pub(super) fn pooled() -> usize {
        pool().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `write_atomic`: the temp file is written and fsync'd, renamed over the target, then
    /// the directory is fsync'd, in that order; a failure before the rename leaves the old
    /// content whole.
    #[test]
    fn write_atomic_syncs_the_file_then_renames_then_syncs_the_directory() {
        use std::sync::{Arc, Mutex};

        use crate::fault::set_injector;
        use crate::log::tests::faults::SERIAL;

        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("meta.json");
        let tmp = dir.path().join("meta.json.tmp");
        write_atomic(&target, b"old").unwrap();
        let ops: Arc<Mutex<Vec<(FileOp, PathBuf)>>> = Arc::default();
        let (seen, under) = (Arc::clone(&ops), dir.path().to_path_buf());
        set_injector(Some(Arc::new(move |op, path: &Path| {
            if path.starts_with(&under) {
                seen.lock().unwrap().push((op, path.to_path_buf()));
            }
            None
        })));
        write_atomic(&target, b"new").unwrap();
        let under = dir.path().to_path_buf();
        set_injector(Some(Arc::new(move |op, path: &Path| {
            (op == FileOp::Rename && path.starts_with(&under))
                .then(|| std::io::Error::from_raw_os_error(5))
        })));
        let failed = write_atomic(&target, b"lost");
        set_injector(None);
        let ops = ops.lock().unwrap().clone();
        assert_eq!(
            ops,
            vec![
                (FileOp::Open, tmp.clone()),
                (FileOp::Write, tmp.clone()),
                (FileOp::Sync, tmp),
                (FileOp::Rename, target.clone()),
                (FileOp::SyncDir, dir.path().to_path_buf()),
            ]
        );
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn shared_reads_reuse_buffers_without_leaking_old_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let a = DataFile::open(&dir.path().join("a.log"), true).unwrap();
        a.append_all(&mut [IoSlice::new(&[b'a'; 3000])], 0).unwrap();
        let b = DataFile::open(&dir.path().join("b.log"), true).unwrap();
        b.append_all(&mut [IoSlice::new(b"0123456789")], 0).unwrap();
        for _ in 0..3 {
            let first = a.read_shared(0, 3000).unwrap();
            assert_eq!(&first[..], &[b'a'; 3000][..]);
            let middle = a.read_shared(1000, 500).unwrap();
            assert_eq!(middle.len(), 500);
            drop(first);
            drop(middle);
            // Shorter than asked at end of file; a reused, larger buffer shows only what
            // this read filled.
            let short = b.read_shared(4, 500).unwrap();
            assert_eq!(&short[..], b"456789");
            let clone = short.clone();
            drop(short);
            assert_eq!(&clone[..], b"456789");
            assert!(b.read_shared(10, 100).unwrap().is_empty());
        }
        assert!(read_pool::pooled() <= read_pool::MAX_BUFFERS);
    }
}
