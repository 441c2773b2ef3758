//! The storage I/O pool: a fixed set of threads that run the broker's blocking storage
//! work — appends (with their rolls, snapshots and `flush.messages` fsyncs), reads of
//! segments, transaction markers, DeleteRecords — so that no tokio worker ever waits for a
//! disk (Kafka's `num.io.threads`; Redpanda and TiKV keep their reactors free the same
//! way).
//!
//! Jobs run in submission order as threads free up; a job's result comes back through a
//! future. A job that panics fails only its own future. The threads end when the pool is
//! dropped, after the jobs already queued.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::oneshot;
use tracing::error;

/// Why a job gave no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IoPoolError {
    #[error("the storage I/O job panicked")]
    Panicked,
    #[error("the storage I/O pool is stopped")]
    Stopped,
}

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    stopping: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Jobs run outside the lock, so a poisoned queue is still consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fixed pool of storage I/O threads. Cheap to share behind the broker.
pub struct IoPool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for IoPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoPool").finish_non_exhaustive()
    }
}

impl IoPool {
    /// Starts `threads` threads (at least one) named `strata-io-<n>`. If the OS refuses
    /// every thread, jobs run inline in the caller (blocking it, but never lost).
    pub fn start(threads: usize) -> IoPool {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let mut handles = Vec::with_capacity(threads.max(1));
        for i in 0..threads.max(1) {
            let for_thread = Arc::clone(&shared);
            match std::thread::Builder::new()
                .name(format!("strata-io-{i}"))
                .spawn(move || run(&for_thread))
            {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    error!(error = %e, started = handles.len(), "cannot start a storage I/O thread");
                    break;
                }
            }
        }
        if handles.is_empty() {
            error!("no storage I/O thread; storage work runs on the request threads");
            shared.lock().stopping = true;
        }
        IoPool {
            shared,
            threads: Mutex::new(handles),
        }
    }

    /// Runs `job` on a pool thread; the future resolves with its result. When the pool has
    /// no thread (stopped, or none could start), the job runs here, now.
    pub fn run<T, F>(&self, job: F) -> impl Future<Output = Result<T, IoPoolError>> + Send
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(job)).map_err(|_| IoPoolError::Panicked);
            // The caller may have given up waiting: nothing to do then.
            let _ = tx.send(result);
        });
        let inline = {
            let mut q = self.shared.lock();
            if q.stopping {
                Some(job)
            } else {
                q.jobs.push_back(job);
                None
            }
        };
        match inline {
            Some(job) => job(),
            None => self.shared.wake.notify_one(),
        }
        async move { rx.await.unwrap_or(Err(IoPoolError::Stopped)) }
    }

    /// Runs the jobs already queued, then ends the threads. Later jobs run inline.
    pub fn stop(&self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for thread in threads {
            if thread.join().is_err() {
                error!("storage I/O thread panicked");
            }
        }
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One pool thread: runs queued jobs until the pool stops and the queue is empty.
fn run(shared: &Shared) {
    loop {
        let job = {
            let mut q = shared.lock();
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.stopping {
                    return;
                }
                q = shared.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn jobs_run_off_the_caller_and_return_their_results() {
        let pool = IoPool::start(2);
        let caller = std::thread::current().id();
        let ran_on = pool.run(|| std::thread::current().id()).await.unwrap();
        assert_ne!(ran_on, caller);
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_only_its_own_future() {
        let pool = IoPool::start(1);
        let failed = pool.run(|| -> u8 { panic!("boom") }).await;
        assert_eq!(failed, Err(IoPoolError::Panicked));
        assert_eq!(pool.run(|| 1).await, Ok(1));
    }

    #[tokio::test]
    async fn a_slow_job_does_not_hold_the_others_while_threads_are_free() {
        let pool = IoPool::start(2);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let slow = pool.run(move || wait.recv_timeout(Duration::from_secs(30)).is_ok());
        // The second thread serves this one while the first is held.
        assert_eq!(pool.run(|| "fast").await, Ok("fast"));
        release.send(()).unwrap();
        assert_eq!(slow.await, Ok(true));
    }

    #[tokio::test]
    async fn stop_runs_what_is_queued_then_runs_later_jobs_inline() {
        let pool = IoPool::start(1);
        let done = Arc::new(AtomicUsize::new(0));
        let queued: Vec<_> = (0..10)
            .map(|_| {
                let done = done.clone();
                pool.run(move || done.fetch_add(1, Ordering::SeqCst))
            })
            .collect();
        pool.stop();
        assert_eq!(done.load(Ordering::SeqCst), 10);
        for job in queued {
            assert!(job.await.is_ok());
        }
        let caller = std::thread::current().id();
        assert_eq!(
            pool.run(move || std::thread::current().id() == caller)
                .await,
            Ok(true)
        );
    }
}
