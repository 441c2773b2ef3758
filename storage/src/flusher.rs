//! Group commit. One [`Flusher`] per data directory (disk): a background thread that makes
//! every appended byte durable promptly. An append schedules its log; the thread takes all
//! scheduled logs at once and syncs each (`Log::sync`: one fdatasync per dirty file). Appends
//! that arrive while a round is running are covered by the next round, so one fdatasync
//! serves every append that was waiting for it, however many producers wait.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{JoinHandle, ThreadId};

use crate::log::Log;

/// Locks a mutex, ignoring poisoning (a panicking holder cannot leave these states
/// half-updated in a way later holders rely on).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Queue {
    pending: Vec<Arc<Log>>,
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
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: Option<ThreadId>,
}

impl Handle {
    fn stop(&self) {
        lock(&self.shared.queue).stopping = true;
        self.shared.wake.notify_all();
        if self.thread_id == Some(std::thread::current().id()) {
            // The last handle dropped on the flusher thread itself: it ends after its round.
            return;
        }
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
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

/// One flusher per data directory (disk): a background thread that group-commits fsyncs for
/// every log attached to it. Cloneable handle; the thread stops when the last handle drops
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
    /// Starts the flusher thread. If the OS refuses a thread, the flusher runs inline: every
    /// append then syncs in the appending thread (durable, just not group-committed).
    pub fn start() -> Flusher {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("strata-flusher".into())
            .spawn(move || run(&for_thread));
        let (thread, thread_id) = match thread {
            Ok(t) => {
                let id = t.thread().id();
                (Some(t), Some(id))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start flusher thread; appends will fsync inline");
                lock(&shared.queue).stopping = true;
                (None, None)
            }
        };
        Flusher {
            handle: Arc::new(Handle {
                shared,
                thread: Mutex::new(thread),
                thread_id,
            }),
        }
    }

    /// A flusher without a thread that never syncs on its own: attached logs become durable
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
                thread: Mutex::new(None),
                thread_id: None,
            }),
        }
    }

    /// Final flush of everything pending, then the thread ends. Appends after this sync
    /// inline.
    pub fn stop(&self) {
        self.handle.stop();
    }

    /// Queues `log` for the next round. `false` when the flusher is stopped (the caller must
    /// sync itself). A manual flusher accepts and drops it.
    pub(crate) fn schedule(&self, log: Arc<Log>) -> bool {
        let mut q = lock(&self.handle.shared.queue);
        if q.manual {
            return true;
        }
        if q.stopping {
            return false;
        }
        q.pending.push(log);
        drop(q);
        self.handle.shared.wake.notify_one();
        true
    }
}

fn run(shared: &Shared) {
    loop {
        let round = {
            let mut q = lock(&shared.queue);
            loop {
                if !q.pending.is_empty() {
                    break std::mem::take(&mut q.pending);
                }
                if q.stopping {
                    return;
                }
                q = shared.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
        };
        for log in round {
            log.run_scheduled_sync();
        }
    }
}
