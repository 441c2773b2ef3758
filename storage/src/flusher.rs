//! Group commit. One [`Flusher`] per data directory (disk): a few background threads that
//! make every appended byte durable promptly. An append schedules its log (at most once
//! until a thread picks it up); a thread takes the log and syncs it (`Log::sync`: one
//! fdatasync per dirty file, covering everything appended so far). Appends that arrive
//! while that fdatasync runs schedule the log again and are covered by the next one, so one
//! fdatasync serves every append that was waiting for it, however many producers wait.
//!
//! The threads ([`SYNC_THREADS`]) sync different logs at the same time: concurrent
//! fdatasyncs on one file system share journal commits, so many partitions cost far less
//! than the same fsyncs one after another.
//!
//! One log is never synced by two threads at once, and a slow log holds at most one
//! thread: a thread that takes a log another thread is syncing does not wait for it (that
//! would park every free thread on one slow disk file while other partitions' appends
//! wait); it marks the log for another pass and takes the next log. The thread syncing the
//! log queues it again when its sync ends, and that pass covers every append made
//! meanwhile.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crate::log::Log;

/// Threads per flusher, hence the most fdatasyncs in flight on one disk.
pub const SYNC_THREADS: usize = 8;

/// How long after a sync that could not write (a full disk) the flusher tries again.
pub const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Locks a mutex, ignoring poisoning (a panicking holder cannot leave these states
/// half-updated in a way later holders rely on).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Arc<Log>>,
    /// Logs a thread is syncing now, each with whether it was scheduled again meanwhile
    /// (another pass is due once this one ends). At most one entry per thread.
    syncing: Vec<(Arc<Log>, bool)>,
    /// Logs whose last sync could not write, and when to sync them again. Weak: a log
    /// deleted meanwhile is not kept alive for its retry.
    retries: Vec<(Instant, Weak<Log>)>,
    stopping: bool,
    /// No background syncs at all: logs become durable only through `Log::flush` (or
    /// `flush.messages` / `flush.ms`). Benchmarks use it to time the append path alone.
    manual: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

struct Handle {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    thread_ids: Vec<ThreadId>,
}

impl Handle {
    fn stop(&self) {
        lock(&self.shared.queue).stopping = true;
        self.shared.wake.notify_all();
        if self.thread_ids.contains(&std::thread::current().id()) {
            // The last handle dropped on a flusher thread itself (it held the last reference
            // to a log): the threads end on their own once the queue is empty.
            return;
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("flusher thread panicked");
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One flusher per data directory (disk): background threads that group-commit fsyncs for
/// every log attached to it. Cloneable handle; the threads stop when the last handle drops
/// (logs hold one) or on [`Flusher::stop`].
#[derive(Clone)]
pub struct Flusher {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher").finish_non_exhaustive()
    }
}

impl Flusher {
    /// Starts the flusher threads. If the OS refuses every thread, the flusher runs inline:
    /// each append then syncs in the appending thread (durable, just not group-committed).
    pub fn start() -> Flusher {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let mut threads = Vec::with_capacity(SYNC_THREADS);
        for i in 0..SYNC_THREADS {
            let for_thread = Arc::clone(&shared);
            match std::thread::Builder::new()
                .name(format!("strata-flusher-{i}"))
                .spawn(move || run(&for_thread))
            {
                Ok(t) => threads.push(t),
                Err(e) => {
                    tracing::error!(error = %e, started = threads.len(), "cannot start a flusher thread");
                    break;
                }
            }
        }
        if threads.is_empty() {
            tracing::error!("no flusher thread; appends will fsync inline");
            lock(&shared.queue).stopping = true;
        }
        let thread_ids = threads.iter().map(|t| t.thread().id()).collect();
        Flusher {
            handle: Arc::new(Handle {
                shared,
                threads: Mutex::new(threads),
                thread_ids,
            }),
        }
    }

    /// A flusher without threads that never syncs on its own: attached logs become durable
    /// only through `Log::flush`, `Log::close` or `flush.messages` / `flush.ms`. Not for the
    /// broker (its high watermark would stall); benchmarks use it to time the append path
    /// without background fsyncs competing for the disk.
    #[doc(hidden)]
    pub fn manual() -> Flusher {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                manual: true,
                ..Queue::default()
            }),
            wake: Condvar::new(),
        });
        Flusher {
            handle: Arc::new(Handle {
                shared,
                threads: Mutex::new(Vec::new()),
                thread_ids: Vec::new(),
            }),
        }
    }

    /// Final flush of everything pending, then the threads end. Appends after this sync
    /// inline.
    pub fn stop(&self) {
        self.handle.stop();
    }

    /// Queues `log` for another sync after [`RETRY_DELAY`] (its last sync could not write).
    /// Nothing happens on a stopped or manual flusher: the log's next append or its close
    /// syncs again.
    pub(crate) fn schedule_retry(&self, log: Weak<Log>) {
        let mut q = lock(&self.handle.shared.queue);
        if q.manual || q.stopping || q.retries.iter().any(|(_, l)| l.ptr_eq(&log)) {
            return;
        }
        q.retries.push((Instant::now() + RETRY_DELAY, log));
        drop(q);
        self.handle.shared.wake.notify_one();
    }

    /// Queues `log` for a sync. `false` when the flusher is stopped (the caller must sync
    /// itself). A manual flusher accepts and drops it.
    pub(crate) fn schedule(&self, log: Arc<Log>) -> bool {
        let mut q = lock(&self.handle.shared.queue);
        if q.manual {
            return true;
        }
        if q.stopping {
            return false;
        }
        q.pending.push_back(log);
        drop(q);
        self.handle.shared.wake.notify_one();
        true
    }
}

/// One flusher thread: sync scheduled logs (and due retries) until stopped and nothing is
/// pending.
fn run(shared: &Shared) {
    while let Some(log) = next_log(shared) {
        log.run_scheduled_sync();
        finish(shared, log);
    }
}

/// Waits for the next log to sync and marks it as being synced by this thread; `None` once
/// the flusher is stopping and nothing is pending. A log another thread is syncing is not
/// returned: it is marked for another pass (see [`finish`]) and the thread moves on.
fn next_log(shared: &Shared) -> Option<Arc<Log>> {
    let mut q = lock(&shared.queue);
    loop {
        let now = Instant::now();
        if q.retries.iter().any(|(at, _)| *at <= now) {
            let (due, later) = std::mem::take(&mut q.retries)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            q.retries = later;
            let due: Vec<(Instant, Weak<Log>)> = due;
            q.pending
                .extend(due.into_iter().filter_map(|(_, log)| log.upgrade()));
        }
        if let Some(log) = q.pending.pop_front() {
            match q.syncing.iter_mut().find(|(l, _)| Arc::ptr_eq(l, &log)) {
                Some((_, again)) => *again = true,
                None => {
                    q.syncing.push((Arc::clone(&log), false));
                    return Some(log);
                }
            }
            continue;
        }
        if q.stopping {
            return None;
        }
        q = match q.retries.iter().map(|(at, _)| *at).min() {
            Some(at) => {
                let wait = at.saturating_duration_since(now);
                shared
                    .wake
                    .wait_timeout(q, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => shared.wake.wait(q).unwrap_or_else(PoisonError::into_inner),
        };
    }
}

/// Ends this thread's sync of `log`; if it was scheduled again meanwhile, queues it at the
/// back (behind logs that waited while it synced) for the pass that covers those appends.
fn finish(shared: &Shared, log: Arc<Log>) {
    let mut q = lock(&shared.queue);
    let Some(i) = q.syncing.iter().position(|(l, _)| Arc::ptr_eq(l, &log)) else {
        return;
    };
    let (_, again) = q.syncing.swap_remove(i);
    if again {
        q.pending.push_back(log);
        drop(q);
        shared.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::config::LogConfig;
    use crate::fault::{set_injector, FileOp};
    use crate::log::tests::faults::SERIAL;
    use crate::testing::simple_batch;

    /// Far longer than anything here takes; only a bound on waiting for what must happen.
    const PATIENCE: Duration = Duration::from_secs(60);

    /// Holds every fdatasync of one file until released (or dropped: a failing test must
    /// not leave flusher threads blocked), counting them.
    struct HeldSyncs {
        state: Arc<(Mutex<(usize, bool)>, Condvar)>,
    }

    impl HeldSyncs {
        fn install(file: std::path::PathBuf) -> HeldSyncs {
            let state = Arc::new((Mutex::new((0usize, false)), Condvar::new()));
            let seen = Arc::clone(&state);
            set_injector(Some(Arc::new(move |op, path: &Path| {
                if op == FileOp::Sync && path == file {
                    let (m, cv) = &*seen;
                    let mut s = lock(m);
                    s.0 += 1;
                    cv.notify_all();
                    while !s.1 {
                        s = cv.wait(s).unwrap_or_else(PoisonError::into_inner);
                    }
                }
                None
            })));
            HeldSyncs { state }
        }

        /// Waits until at least `n` fdatasyncs of the file have started.
        fn wait_started(&self, n: usize) {
            let (m, cv) = &*self.state;
            let s = lock(m);
            let (s, timeout) = cv
                .wait_timeout_while(s, PATIENCE, |s| s.0 < n)
                .unwrap_or_else(PoisonError::into_inner);
            assert!(!timeout.timed_out(), "only {} fdatasyncs started", s.0);
        }

        fn started(&self) -> usize {
            lock(&self.state.0).0
        }

        fn release(&self) {
            let (m, cv) = &*self.state;
            lock(m).1 = true;
            cv.notify_all();
        }
    }

    impl Drop for HeldSyncs {
        fn drop(&mut self) {
            self.release();
            set_injector(None);
        }
    }

    /// Waits until no log is waiting in the queue for a thread (each was taken by one).
    fn wait_taken(flusher: &Flusher) {
        let deadline = Instant::now() + PATIENCE;
        while !lock(&flusher.handle.shared.queue).pending.is_empty() {
            assert!(Instant::now() < deadline, "a queued log was never taken");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Issue 15: one partition whose fdatasync hangs (a slow or failing disk region) holds
    /// one flusher thread, not all of them. While the slow log's first sync is held and
    /// every other thread has been offered it again (each append re-queues it), another
    /// log's acks=all appends still become durable; once released, one more pass of the
    /// slow log covers every append made while it was held.
    #[test]
    fn a_slow_log_holds_one_flusher_thread_and_the_others_sync_other_logs() {
        let _serial = lock(&SERIAL);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::start();
        let slow = Log::open(dir.path().join("slow-0"), LogConfig::default(), &flusher).unwrap();
        let other = Log::open(dir.path().join("other-0"), LogConfig::default(), &flusher).unwrap();
        let held = HeldSyncs::install(slow.dir().join("00000000000000000000.log"));

        slow.append(&simple_batch(1, 10, 0), 0).unwrap();
        held.wait_started(1);
        // Every other thread takes the slow log once: before the fix each of them then
        // waited on its sync lock, leaving no thread for any other log.
        for _ in 1..SYNC_THREADS {
            slow.append(&simple_batch(1, 10, 0), 0).unwrap();
            wait_taken(&flusher);
        }

        for round in 0..3 {
            let info = other.append(&simple_batch(2, 10, 0), 0).unwrap();
            let durable = rt.block_on(async {
                tokio::time::timeout(PATIENCE, other.wait_durable(info.last_offset + 1)).await
            });
            assert!(
                matches!(durable, Ok(Ok(()))),
                "round {round}: the other log never became durable while the slow one was held"
            );
        }
        assert_eq!(
            slow.durable_offset(),
            0,
            "the slow log's first sync is still held"
        );
        assert_eq!(
            held.started(),
            1,
            "no second fdatasync of the slow log meanwhile"
        );

        held.release();
        let end = slow.log_end_offset();
        rt.block_on(slow.wait_durable(end)).unwrap();
        assert_eq!(
            held.started(),
            2,
            "one more pass covered every append made while the first sync was held"
        );
    }
}
