//! The admin thread: topic creation, partition creation, topic deletion and
//! auto-creation run here, one job at a time, in the order they were submitted.
//!
//! They open and remove partition directories and fsync the metadata, which takes from
//! milliseconds to seconds; on the async workers that would stall every connection served
//! by the same worker. A request handler submits its job from the connection's read loop
//! (so one connection's admin requests run in arrival order) and answers when the job's
//! result arrives. Being one thread, the queue also serializes every change to which
//! topics and partitions exist: a job sees the state every earlier job left.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock, Weak};
use std::thread::{JoinHandle, ThreadId};

use tracing::error;

use super::Broker;

/// A job for the admin thread.
pub(crate) type AdminJob = Box<dyn FnOnce(&Broker) + Send + 'static>;

/// The queue of admin jobs and the thread that runs them.
#[derive(Debug)]
pub(crate) struct AdminQueue {
    /// None once stopped.
    sender: Mutex<Option<mpsc::Sender<AdminJob>>>,
    /// Taken by the thread when it starts.
    receiver: Mutex<Option<mpsc::Receiver<AdminJob>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: OnceLock<ThreadId>,
}

impl AdminQueue {
    /// A queue whose jobs wait until [`AdminQueue::start`].
    pub(crate) fn new() -> AdminQueue {
        let (sender, receiver) = mpsc::channel::<AdminJob>();
        AdminQueue {
            sender: Mutex::new(Some(sender)),
            receiver: Mutex::new(Some(receiver)),
            thread: Mutex::new(None),
            thread_id: OnceLock::new(),
        }
    }

    /// Starts the admin thread for `broker` (a weak reference: the thread does not keep
    /// the broker alive; it stops when the broker is dropped or `stop` is called).
    pub(crate) fn start(&self, broker: Weak<Broker>) -> std::io::Result<()> {
        let Some(receiver) = lock(&self.receiver).take() else {
            return Ok(()); // already started
        };
        let thread = std::thread::Builder::new()
            .name("strata-admin".to_owned())
            .spawn(move || run(&broker, &receiver))?;
        let _ = self.thread_id.set(thread.thread().id());
        *lock(&self.thread) = Some(thread);
        Ok(())
    }

    /// Queues `job` behind every job submitted before it. Gives the job back when the
    /// queue has stopped (the broker is closing).
    pub(crate) fn submit(&self, job: AdminJob) -> Result<(), AdminJob> {
        let sender = lock(&self.sender);
        match sender.as_ref() {
            Some(sender) => sender.send(job).map_err(|mpsc::SendError(job)| job),
            None => Err(job),
        }
    }

    /// Whether the calling thread is the admin thread (a job must not wait for a job).
    pub(crate) fn is_admin_thread(&self) -> bool {
        self.thread_id.get() == Some(&std::thread::current().id())
    }

    /// Closes the queue, lets the thread finish the jobs already queued, and waits for it.
    /// Must not be called from the admin thread.
    pub(crate) fn stop(&self) {
        drop(lock(&self.sender).take());
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                error!("the admin thread panicked");
            }
        }
    }
}

/// The admin thread's loop: each job in turn until the queue closes or the broker is gone.
/// A job that panics is logged and dropped (its caller sees its reply channel close).
fn run(broker: &Weak<Broker>, jobs: &mpsc::Receiver<AdminJob>) {
    while let Ok(job) = jobs.recv() {
        let Some(broker) = broker.upgrade() else {
            break;
        };
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&broker)));
        if ran.is_err() {
            error!("an admin job panicked; its request gets an error");
        }
    }
}

/// Locks one of the queue's slots; each is a plain value a panic cannot leave torn.
fn lock<T>(slot: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use crate::api::describe_configs::fixture::TestBroker;

    /// Jobs run one at a time in submission order; a job that panics does not stop the
    /// ones after it; stopping finishes the jobs already queued.
    #[test]
    fn jobs_run_in_order_survive_a_panic_and_finish_before_stop() {
        let t = TestBroker::open();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut answers = Vec::new();
        for i in 0..20 {
            let seen = seen.clone();
            answers.push(t.broker.submit_admin(move |_| {
                assert!(i != 7, "job 7 panics");
                seen.lock().unwrap().push(i);
                i
            }));
        }
        t.broker.admin_queue.stop();
        let got: Vec<i32> = answers
            .into_iter()
            .filter_map(|a| a.blocking_recv().ok())
            .collect();
        let want: Vec<i32> = (0..20).filter(|i| *i != 7).collect();
        assert_eq!(got, want);
        assert_eq!(*seen.lock().unwrap(), want);
    }
}
