//! Group commit. One [`Flusher`] per data directory (disk): a few background threads that
//! make every appended byte durable promptly. An append schedules its log (at most once
//! until a thread picks it up); a thread takes the log and syncs it (`Log::sync`: one
//! fdatasync per dirty file, covering everything appended so far). Appends that arrive
//! while that fdatasync runs schedule the log again and are covered by the next one, so one
//! fdatasync serves every append that was waiting for it, however many producers wait.
//!
//! The threads ([`SYNC_THREADS`]) sync different logs at the same time: concurrent
//! fdatasyncs on one file system share journal commits, so many partitions cost far less
//! than the same fsyncs one after another. One log is never synced by two threads at once.

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
    loop {
        let log = {
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
                    break log;
                }
                if q.stopping {
                    return;
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
        };
        log.run_scheduled_sync();
    }
}
