//! Gives memory freed by closed connections back to the operating system.
//!
//! glibc's allocator keeps freed memory in its arenas (one per worker thread): after
//! 2,000 connections closed, ~120 MiB stayed resident, and more after every further round.
//! Two things give it back, on glibc only:
//!
//! - `configure_allocator`, at start: a fixed trim threshold (128 KiB, glibc's initial
//!   value), so free space at the top of a thread's heap is returned as it is freed.
//!   glibc otherwise raises the threshold up to 64 MiB after a large block is freed and
//!   `malloc_trim` never trims those heaps' tops. The threshold for allocating straight
//!   from the kernel is then fixed too, at 1 MiB (request bodies from 64 KiB up are
//!   pooled anyway). An operator's own `GLIBC_TUNABLES` malloc settings win.
//! - `release_free_memory`: `malloc_trim(0)` returns every free page inside the heaps. The
//!   accept loop counts closed connections and trims, off the async workers, at most once
//!   a second: when `TRIM_AFTER_CLOSED` connections closed since the last trim (and at the
//!   next tick again, so the tail of a burst — later closes, and the response writers
//!   that end after their connection is counted — is not left for later), or
//!   `TRIM_EVERY` after any closed.

use std::time::{Duration, Instant};

/// Closed connections after which memory is trimmed at the next tick.
const TRIM_AFTER_CLOSED: usize = 256;

/// Longest time memory freed by a closed connection stays unreturned.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// How often the accept loop asks whether a trim is due.
pub const TICK: Duration = Duration::from_secs(1);

/// When to trim, from the connections closed since the last trim.
#[derive(Debug)]
pub struct TrimSchedule {
    closed_since_trim: usize,
    last_trim: Instant,
    /// The last trim followed a burst of closes: trim the rest of it at the next tick.
    in_burst: bool,
}

impl TrimSchedule {
    pub fn new() -> TrimSchedule {
        TrimSchedule {
            closed_since_trim: 0,
            last_trim: Instant::now(),
            in_burst: false,
        }
    }

    pub fn connection_closed(&mut self) {
        self.closed_since_trim += 1;
    }

    /// True (and the schedule restarts) when a trim is due at `now`.
    pub fn due(&mut self, now: Instant) -> bool {
        let burst = self.closed_since_trim >= TRIM_AFTER_CLOSED;
        // After a burst, trim once more at the next tick even if nothing else closed: a
        // connection is counted when its reader ends, and its response writer task (and
        // what it holds) is freed only after that.
        let due = burst
            || self.in_burst
            || (self.closed_since_trim > 0 && now.duration_since(self.last_trim) >= TRIM_EVERY);
        if due {
            self.closed_since_trim = 0;
            self.last_trim = now;
        }
        self.in_burst = burst;
        due
    }
}

impl Default for TrimSchedule {
    fn default() -> Self {
        Self::new()
    }
}

/// Top-of-heap free space above this is returned to the kernel as it is freed.
const TRIM_THRESHOLD: i32 = 128 * 1024;

/// Allocations from this size up are mapped from the kernel directly.
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Fixes glibc's trim and mmap thresholds (see the module doc), unless the operator set
/// malloc tunables.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn configure_allocator() {
    let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
    if tuned {
        return;
    }
    // SAFETY: mallopt only sets allocator parameters (under the allocator's own lock);
    // both values are in the range glibc documents for them.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Nothing to configure on this platform.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure_allocator() {}

/// Returns the allocator's free pages to the kernel (blocking: call off the async workers).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: malloc_trim has no precondition: it takes each arena's lock and madvises
    // pages that hold no allocation; live allocations are untouched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns the allocator's free pages to the kernel (nothing to do on this platform).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_many_closes_or_a_while_after_any() {
        let start = Instant::now();
        let mut schedule = TrimSchedule::new();
        assert!(!schedule.due(start + TRIM_EVERY * 2), "nothing closed");
        schedule.connection_closed();
        assert!(!schedule.due(start + TICK));
        assert!(schedule.due(start + TRIM_EVERY * 3));
        for _ in 0..TRIM_AFTER_CLOSED {
            schedule.connection_closed();
        }
        assert!(schedule.due(start + TRIM_EVERY * 3 + TICK));
        // The tail of the burst is trimmed at the next tick, then the schedule is back
        // to every TRIM_EVERY.
        schedule.connection_closed();
        assert!(schedule.due(start + TRIM_EVERY * 3 + TICK * 2));
        schedule.connection_closed();
        assert!(!schedule.due(start + TRIM_EVERY * 3 + TICK * 3));
        // A burst is trimmed again at the next tick even when nothing else closed.
        for _ in 0..TRIM_AFTER_CLOSED {
            schedule.connection_closed();
        }
        assert!(schedule.due(start + TRIM_EVERY * 3 + TICK * 4));
        assert!(schedule.due(start + TRIM_EVERY * 3 + TICK * 5));
        assert!(!schedule.due(start + TRIM_EVERY * 3 + TICK * 6));
        release_free_memory();
    }
}
