//! Open descriptors for sealed segments' `.log` files: a small, process-wide cache.
//!
//! Sealed segments are read with `pread`, which needs a descriptor, but a broker may hold
//! thousands of partitions with thousands of segments each, far more than the open-file
//! limit allows. So a sealed segment keeps no descriptor of its own: a read borrows one
//! from this cache, which opens the file on a miss and keeps at most
//! [`MAX_CACHED_DESCRIPTORS`] files open, closing the least recently used. The bound is
//! process-wide because the limit it protects (RLIMIT_NOFILE) is: one cache serves every
//! data directory.
//!
//! A borrowed descriptor is an `Arc<File>`: a reader keeps it until its read returns even if
//! the entry is evicted meanwhile, so at any moment the cache holds at most
//! [`MAX_CACHED_DESCRIPTORS`] descriptors plus one per read in progress.
//!
//! Entries are keyed by a number unique to one `DataFile` (never by path): a segment file
//! deleted and created again under the same name (truncation, then new appends) is a new
//! key, so no reader ever reaches the old inode through the cache. A `DataFile` removes its
//! entry when dropped, which closes the descriptor of a deleted segment.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Most descriptors the cache keeps open (readers in progress may hold a few more).
pub const MAX_CACHED_DESCRIPTORS: usize = 32;

struct Entry {
    key: u64,
    file: Arc<File>,
    /// Value of `Cache::clock` at the last use.
    used: u64,
}

struct Cache {
    /// At most `MAX_CACHED_DESCRIPTORS`; searched linearly (it is small).
    entries: Vec<Entry>,
    clock: u64,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    entries: Vec::new(),
    clock: 0,
});
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

fn cache() -> MutexGuard<'static, Cache> {
    // The cache holds plain handles: a panic while it was locked leaves nothing torn.
    CACHE.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cache {
    fn get(&mut self, key: u64) -> Option<Arc<File>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.iter_mut().find(|e| e.key == key).map(|e| {
            e.used = clock;
            Arc::clone(&e.file)
        })
    }
}

/// A key no other file has.
pub(crate) fn new_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

/// The descriptor cached under `key`, or the result of `open` (then cached, evicting the
/// least recently used entry when full). The file is opened without the cache's lock held.
pub(crate) fn get_or_open(
    key: u64,
    open: impl FnOnce() -> io::Result<File>,
) -> io::Result<Arc<File>> {
    if let Some(file) = cache().get(key) {
        return Ok(file);
    }
    let opened = Arc::new(open()?);
    let mut cache = cache();
    if let Some(file) = cache.get(key) {
        // Another reader opened it meanwhile; ours closes when dropped.
        return Ok(file);
    }
    if cache.entries.len() >= MAX_CACHED_DESCRIPTORS {
        if let Some(oldest) = (0..cache.entries.len()).min_by_key(|&i| cache.entries[i].used) {
            cache.entries.swap_remove(oldest);
        }
    }
    let used = cache.clock;
    cache.entries.push(Entry {
        key,
        file: Arc::clone(&opened),
        used,
    });
    Ok(opened)
}

/// Closes the descriptor cached under `key`, if any (readers holding it keep it until they
/// drop it).
pub(crate) fn forget(key: u64) {
    let mut cache = cache();
    if let Some(i) = cache.entries.iter().position(|e| e.key == key) {
        cache.entries.swap_remove(i);
    }
}

/// Descriptors the cache holds now.
#[cfg(test)]
pub(crate) fn cached() -> usize {
    cache().entries.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_the_bound_and_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let keys: Vec<u64> = (0..MAX_CACHED_DESCRIPTORS + 10)
            .map(|_| new_key())
            .collect();
        let opens = std::sync::atomic::AtomicUsize::new(0);
        let open = || {
            opens.fetch_add(1, Ordering::SeqCst);
            File::open(&path)
        };
        for &key in &keys {
            get_or_open(key, open).unwrap();
            // Keep the first key hot: it must survive every eviction.
            get_or_open(keys[0], || panic!("the hot entry was evicted")).unwrap();
            assert!(cached() <= MAX_CACHED_DESCRIPTORS);
        }
        assert_eq!(opens.load(Ordering::SeqCst), keys.len());
        // An evicted key opens again; a forgotten one too.
        get_or_open(keys[1], open).unwrap();
        assert_eq!(opens.load(Ordering::SeqCst), keys.len() + 1);
        for &key in &keys {
            forget(key);
        }
        // Other tests may use the cache at the same time: only our keys are checked.
        get_or_open(keys[0], open).unwrap();
        assert_eq!(opens.load(Ordering::SeqCst), keys.len() + 2);
        forget(keys[0]);
    }
}
