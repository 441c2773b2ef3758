//! Producer ids for idempotent producers (InitProducerId): unique for the life of the data
//! directory, never reused after a restart or a crash.
//!
//! Ids are handed out from blocks of
//! [`PRODUCER_ID_BLOCK_SIZE`](super::metadata::controller::PRODUCER_ID_BLOCK_SIZE) that the
//! controller records in the metadata log (a `ProducerIdsRecord`) before any id of them
//! is given out, so after a restart allocation resumes above every id that may have been
//! used; a crash wastes at most the rest of two blocks. One block is kept ready ahead of
//! the one in use: taking an id from it asks the admin thread for the next block in the
//! background, so InitProducerId touches no disk and waits for nothing unless ids are
//! handed out faster than the admin thread records blocks (then the request waits,
//! asynchronously, for the block).
//!
//! Issued ids: ids are handed out in increasing order, so every id at or above the next
//! one to be handed out has certainly never been issued, by this run or an earlier one
//! (earlier runs stayed below the blocks recorded before this run's). Produce refuses
//! batches that carry such an id ([`ProducerIds::never_issued`], one atomic load): a
//! client cannot write first under the id the next InitProducerId will return and make
//! the real producer's first batch look like a retry. A block recorded ahead is not
//! issued: the next id to hand out stays in the block in use until it is exhausted. Ids
//! below that are accepted: those below this run's first block may have been issued
//! before a restart.
//!
//! Epochs (KIP-360): a producer that asks again with its id and current epoch gets the
//! epoch bumped; the same request repeated (its response was lost) gets the same answer;
//! any other epoch is INVALID_PRODUCER_EPOCH. Epochs are remembered in memory only, for
//! `producer.id.expiration.ms` after the producer's last InitProducerId, and for at most
//! [`MAX_REMEMBERED_PRODUCERS`] producers (beyond it the one idle longest is forgotten
//! first). An id this broker does not remember (after a restart, expired or forgotten)
//! gets a fresh id at epoch 0, which is what Kafka answers every non-transactional
//! producer. An exhausted epoch also moves to a fresh id. The retention loop drops expired
//! producers ([`ProducerIds::expire`]) from the front of a queue ordered by last use.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use tokio::sync::Notify;

/// Most producers whose epochs are remembered; beyond it the one idle longest is
/// forgotten (it gets a fresh id at epoch 0 if it asks to bump its epoch). About 100 bytes
/// each: 10 MB at the limit.
pub const MAX_REMEMBERED_PRODUCERS: usize = 100_000;

/// Why a producer id could not be handed out.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("cannot record a producer id block: {0}")]
    Unavailable(String),
    #[error("producer {producer_id} asked with epoch {given}, its current epoch is {current}")]
    InvalidEpoch {
        producer_id: i64,
        given: i16,
        current: i16,
    },
    #[error("every producer id has been used")]
    Exhausted,
}

impl ProducerIdError {
    /// The Kafka error code for this failure.
    pub fn error_code(&self) -> i16 {
        match self {
            ProducerIdError::InvalidEpoch { .. } => 47, // INVALID_PRODUCER_EPOCH
            _ => -1,                                    // UNKNOWN_SERVER_ERROR
        }
    }
}

/// A producer id and epoch handed to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdAndEpoch {
    pub producer_id: i64,
    pub epoch: i16,
}

/// What the broker remembers of a producer it handed an id to.
#[derive(Clone, Copy, Debug)]
struct Known {
    epoch: i16,
    /// The epoch the last bump started from (answers a repeated bump request).
    bumped_from: Option<i16>,
    /// When the producer last called InitProducerId (ms since the epoch).
    touched_ms: i64,
}

/// The ids and epochs, behind one short lock (no I/O under it).
#[derive(Debug, Default)]
struct State {
    /// The ids left in the block in use, next first.
    current: Range<i64>,
    /// Blocks recorded but not in use yet, in order.
    ahead: VecDeque<Range<i64>>,
    /// A block has been asked for and has not arrived (or failed) yet.
    requested: bool,
    /// Bumped when a block arrives or a request for one fails: what waiters wait for.
    events: u64,
    /// The last failed block request: (its event, why).
    last_failure: Option<(u64, String)>,
    known: HashMap<i64, Known>,
    /// (last use in ms, producer id) of every remembered producer, oldest first.
    by_age: BTreeSet<(i64, i64)>,
}

impl State {
    fn remember(&mut self, producer_id: i64, known: Known, limit: usize) -> bool {
        let mut evicted = false;
        if let Some(old) = self.known.insert(producer_id, known) {
            self.by_age.remove(&(old.touched_ms, producer_id));
        } else if self.known.len() > limit {
            if let Some((_, oldest)) = self.by_age.pop_first() {
                self.known.remove(&oldest);
                evicted = true;
            }
        }
        self.by_age.insert((known.touched_ms, producer_id));
        evicted
    }

    fn forget(&mut self, producer_id: i64) {
        if let Some(old) = self.known.remove(&producer_id) {
            self.by_age.remove(&(old.touched_ms, producer_id));
        }
    }

    /// The next id, or None when no block is left.
    fn take_id(&mut self) -> Option<i64> {
        if self.current.is_empty() {
            self.current = self.ahead.pop_front()?;
        }
        let id = self.current.start;
        self.current.start += 1;
        Some(id)
    }
}

/// One attempt's outcome.
enum Step<T> {
    Done(T),
    /// No id left: wait for the event after `seen`.
    Wait {
        seen: u64,
    },
}

/// Hands out producer ids and tracks their epochs. Cheap to share behind the broker.
pub struct ProducerIds {
    expiration_ms: u64,
    max_remembered: usize,
    state: Mutex<State>,
    /// For blocking waiters.
    changed: Condvar,
    /// For async waiters.
    changed_async: Notify,
    /// The next id to hand out, readable without the lock: no id at or above it has ever
    /// been handed out. Stored (under the lock) before an id is returned, so a producer
    /// can never use its id before this covers it.
    unissued_from: AtomicI64,
    /// Asks the controller for the next block (never blocks; the block arrives through
    /// [`ProducerIds::add_block`] or the request fails through
    /// [`ProducerIds::block_failed`]).
    request_block: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Producers forgotten because of [`MAX_REMEMBERED_PRODUCERS`].
    evicted: AtomicU64,
}

impl std::fmt::Debug for ProducerIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerIds")
            .field("unissued_from", &self.unissued_from)
            .finish_non_exhaustive()
    }
}

impl ProducerIds {
    /// An allocator with no block yet: no id below `next_unrecorded` (the first id of no
    /// recorded block) is ever handed out. `expiration_ms` is `producer.id.expiration.ms`.
    pub fn new(next_unrecorded: i64, expiration_ms: u64) -> ProducerIds {
        ProducerIds::with_limit(next_unrecorded, expiration_ms, MAX_REMEMBERED_PRODUCERS)
    }

    /// [`ProducerIds::new`] remembering at most `max_remembered` producers.
    pub fn with_limit(
        next_unrecorded: i64,
        expiration_ms: u64,
        max_remembered: usize,
    ) -> ProducerIds {
        ProducerIds {
            expiration_ms,
            max_remembered,
            state: Mutex::new(State {
                current: next_unrecorded..next_unrecorded,
                ..State::default()
            }),
            changed: Condvar::new(),
            changed_async: Notify::new(),
            unissued_from: AtomicI64::new(next_unrecorded),
            request_block: OnceLock::new(),
            evicted: AtomicU64::new(0),
        }
    }

    /// Sets how blocks are asked for (once; later calls are ignored).
    pub fn set_block_source(&self, request: Box<dyn Fn() + Send + Sync>) {
        let _ = self.request_block.set(request);
    }

    /// A block the controller recorded for this broker, after every block before it.
    pub fn add_block(&self, block: Range<i64>) {
        let mut s = self.lock();
        s.ahead.push_back(block);
        s.requested = false;
        s.events += 1;
        drop(s);
        self.changed.notify_all();
        self.changed_async.notify_waiters();
    }

    /// The controller could not record the block asked for: the requests waiting for it
    /// fail; the next request asks again.
    pub fn block_failed(&self, why: String) {
        let mut s = self.lock();
        s.requested = false;
        s.events += 1;
        s.last_failure = Some((s.events, why));
        drop(s);
        self.changed.notify_all();
        self.changed_async.notify_waiters();
    }

    /// Whether `producer_id` has certainly never been handed out by InitProducerId (by
    /// this run or, since ids only grow across restarts, any earlier one). Lock-free: the
    /// produce path calls it for every idempotent batch.
    pub fn never_issued(&self, producer_id: i64) -> bool {
        producer_id >= self.unissued_from.load(Ordering::Acquire)
    }

    /// InitProducerId for a producer without a transactional id. `current` is the id and
    /// epoch the client already has (v3+; `None` for a new producer). Waits only when no
    /// block is left.
    pub async fn init(
        &self,
        current: Option<ProducerIdAndEpoch>,
        now_ms: i64,
    ) -> Result<ProducerIdAndEpoch, ProducerIdError> {
        self.waiting(|ids, s| ids.init_step(s, current, now_ms))
            .await
    }

    /// [`ProducerIds::init`] when it needs no wait: None when no block is left (one is
    /// asked for).
    pub fn try_init(
        &self,
        current: Option<ProducerIdAndEpoch>,
        now_ms: i64,
    ) -> Option<Result<ProducerIdAndEpoch, ProducerIdError>> {
        match self.attempt(|ids, s| ids.init_step(s, current, now_ms)) {
            Step::Done(result) => Some(result),
            Step::Wait { .. } => None,
        }
    }

    /// [`ProducerIds::init`] waiting on this thread (tests, blocking contexts).
    pub fn init_blocking(
        &self,
        current: Option<ProducerIdAndEpoch>,
        now_ms: i64,
    ) -> Result<ProducerIdAndEpoch, ProducerIdError> {
        self.blocking(|ids, s| ids.init_step(s, current, now_ms))
    }

    /// A fresh producer id for a transactional id (the transaction coordinator tracks its
    /// epochs itself, durably, so the id is not remembered here). Waits, asynchronously,
    /// only when no block is left (see the module doc).
    pub async fn allocate_transactional(&self) -> Result<i64, ProducerIdError> {
        self.waiting(Self::transactional_step).await
    }

    /// [`ProducerIds::allocate_transactional`] waiting on this thread (tests, blocking
    /// contexts).
    pub fn allocate_transactional_blocking(&self) -> Result<i64, ProducerIdError> {
        self.blocking(Self::transactional_step)
    }

    fn transactional_step(&self, s: &mut State) -> Step<Result<i64, ProducerIdError>> {
        match self.take_id(s) {
            Some(id) => Step::Done(Ok(id)),
            None => Step::Wait { seen: s.events },
        }
    }

    /// Forgets producers idle for `producer.id.expiration.ms`, oldest first; returns how
    /// many. Called by the retention loop.
    pub fn expire(&self, now_ms: i64) -> usize {
        let limit = i64::try_from(self.expiration_ms).unwrap_or(i64::MAX);
        let mut s = self.lock();
        let mut expired = 0;
        while let Some(&(touched_ms, producer_id)) = s.by_age.first() {
            if now_ms.saturating_sub(touched_ms) < limit {
                break;
            }
            s.by_age.pop_first();
            s.known.remove(&producer_id);
            expired += 1;
        }
        expired
    }

    /// Producers whose epochs are remembered.
    pub fn remembered(&self) -> usize {
        self.lock().known.len()
    }

    /// Producers forgotten early because the map was full.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    fn init_step(
        &self,
        s: &mut State,
        current: Option<ProducerIdAndEpoch>,
        now_ms: i64,
    ) -> Step<Result<ProducerIdAndEpoch, ProducerIdError>> {
        let limit = i64::try_from(self.expiration_ms).unwrap_or(i64::MAX);
        if let Some(cur) = current {
            if let Some(known) = s.known.get(&cur.producer_id).copied() {
                if now_ms.saturating_sub(known.touched_ms) >= limit {
                    s.forget(cur.producer_id);
                } else {
                    let answer = if cur.epoch == known.epoch && known.epoch < i16::MAX - 1 {
                        Some(Known {
                            epoch: known.epoch + 1,
                            bumped_from: Some(known.epoch),
                            touched_ms: now_ms,
                        })
                    } else if known.bumped_from == Some(cur.epoch) {
                        Some(Known {
                            touched_ms: now_ms,
                            ..known
                        })
                    } else if cur.epoch != known.epoch {
                        return Step::Done(Err(ProducerIdError::InvalidEpoch {
                            producer_id: cur.producer_id,
                            given: cur.epoch,
                            current: known.epoch,
                        }));
                    } else {
                        None // the epoch is exhausted: a fresh id below
                    };
                    if let Some(next) = answer {
                        self.remember(s, cur.producer_id, next);
                        return Step::Done(Ok(ProducerIdAndEpoch {
                            producer_id: cur.producer_id,
                            epoch: next.epoch,
                        }));
                    }
                }
            }
        }
        let Some(producer_id) = self.take_id(s) else {
            return Step::Wait { seen: s.events };
        };
        self.remember(
            s,
            producer_id,
            Known {
                epoch: 0,
                bumped_from: None,
                touched_ms: now_ms,
            },
        );
        Step::Done(Ok(ProducerIdAndEpoch {
            producer_id,
            epoch: 0,
        }))
    }

    fn remember(&self, s: &mut State, producer_id: i64, known: Known) {
        if s.remember(producer_id, known, self.max_remembered) {
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn take_id(&self, s: &mut State) -> Option<i64> {
        let id = s.take_id()?;
        self.unissued_from.store(s.current.start, Ordering::Release);
        Some(id)
    }

    /// Runs `step` under the lock; asks for a block (after unlocking) when none is ready
    /// ahead of the one in use and none is asked for.
    fn attempt<T>(&self, step: impl FnOnce(&Self, &mut State) -> Step<T>) -> Step<T> {
        let mut s = self.lock();
        let outcome = step(self, &mut s);
        let ask = s.ahead.is_empty() && !s.requested && self.request_block.get().is_some();
        if ask {
            s.requested = true;
        }
        drop(s);
        if ask {
            if let Some(request) = self.request_block.get() {
                request();
            }
        }
        outcome
    }

    /// Runs `step` until it is done, waiting asynchronously between attempts (for a block
    /// to arrive or its request to fail).
    async fn waiting<T>(
        &self,
        step: impl Fn(&Self, &mut State) -> Step<Result<T, ProducerIdError>>,
    ) -> Result<T, ProducerIdError> {
        loop {
            // Created before looking, so a block arriving in between is not missed.
            // (tokio's `notify_waiters` wakes every `Notified` created before it.)
            let changed = self.changed_async.notified();
            match self.attempt(&step) {
                Step::Done(result) => return result,
                Step::Wait { seen } => {
                    changed.await;
                    self.failure_since(seen)?;
                }
            }
        }
    }

    /// Runs `step` until it is done, waiting on this thread between attempts.
    fn blocking<T>(
        &self,
        step: impl Fn(&Self, &mut State) -> Step<Result<T, ProducerIdError>>,
    ) -> Result<T, ProducerIdError> {
        loop {
            match self.attempt(&step) {
                Step::Done(result) => return result,
                Step::Wait { seen } => {
                    let mut s = self.lock();
                    while s.events == seen {
                        s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
                    }
                    drop(s);
                    self.failure_since(seen)?;
                }
            }
        }
    }

    /// Err when a block request failed after event `seen`.
    fn failure_since(&self, seen: u64) -> Result<(), ProducerIdError> {
        match &self.lock().last_failure {
            Some((event, why)) if *event > seen => Err(ProducerIdError::Unavailable(why.clone())),
            _ => Ok(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock completes without panicking, so a poisoned lock
        // still holds a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Weak};

    use super::*;
    use crate::broker::metadata::controller::PRODUCER_ID_BLOCK_SIZE as BLOCK;

    const DAY: u64 = 86_400_000;

    /// An allocator whose blocks come from a counter at once (what the admin thread does,
    /// without the log); `asked` counts the requests.
    fn allocator(
        start: i64,
        expiration_ms: u64,
        limit: usize,
    ) -> (Arc<ProducerIds>, Arc<AtomicU64>) {
        let ids = Arc::new(ProducerIds::with_limit(start, expiration_ms, limit));
        let asked = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicI64::new(start));
        let weak: Weak<ProducerIds> = Arc::downgrade(&ids);
        let count = asked.clone();
        ids.set_block_source(Box::new(move || {
            count.fetch_add(1, Ordering::Relaxed);
            let start = next.fetch_add(BLOCK, Ordering::Relaxed);
            if let Some(ids) = weak.upgrade() {
                ids.add_block(start..start + BLOCK);
            }
        }));
        (ids, asked)
    }

    #[test]
    fn a_block_is_always_ready_ahead_and_ids_follow_each_other() {
        let (ids, asked) = allocator(5000, DAY, 10);
        for want in 5000..(5000 + 3 * BLOCK + 7) {
            assert_eq!(ids.init_blocking(None, 0).unwrap().producer_id, want);
        }
        // The first block, then one ahead of each block taken into use.
        assert_eq!(asked.load(Ordering::Relaxed), 5);
        assert_eq!(
            ids.allocate_transactional_blocking().unwrap(),
            5000 + 3 * BLOCK + 7
        );
    }

    #[test]
    fn a_request_waits_for_a_block_only_when_none_is_left() {
        let ids = Arc::new(ProducerIds::new(0, DAY));
        let asked = Arc::new(AtomicU64::new(0));
        let count = asked.clone();
        ids.set_block_source(Box::new(move || {
            count.fetch_add(1, Ordering::Relaxed);
        }));
        let waiter = {
            let ids = ids.clone();
            std::thread::spawn(move || ids.init_blocking(None, 0))
        };
        while asked.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        assert!(
            ids.never_issued(0),
            "no id is issued before its block arrives"
        );
        ids.add_block(0..2);
        assert_eq!(waiter.join().unwrap().unwrap().producer_id, 0);
        assert_eq!(ids.allocate_transactional_blocking().unwrap(), 1);
        // The next block fails to be recorded: the waiter gets the error (failures are
        // repeated until it has seen one: it may start waiting after the first).
        let waiter = {
            let ids = ids.clone();
            std::thread::spawn(move || ids.allocate_transactional_blocking())
        };
        while !waiter.is_finished() {
            ids.block_failed("disk full".into());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let err = waiter.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(err.error_code(), -1);
    }

    #[tokio::test]
    async fn async_waiters_get_the_block_when_it_arrives() {
        let ids = Arc::new(ProducerIds::new(100, DAY));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        ids.set_block_source(Box::new(move || {
            let _ = tx.send(());
        }));
        let waiting = tokio::spawn({
            let ids = ids.clone();
            async move { ids.init(None, 0).await }
        });
        rx.recv().await.unwrap();
        ids.add_block(100..1100);
        assert_eq!(waiting.await.unwrap().unwrap().producer_id, 100);
    }

    /// The transaction coordinator asks from async code: waiting for a block must not hold
    /// the thread. Here the block comes from another task on the same single-threaded
    /// runtime, which a waiter blocking its thread would never let run.
    #[tokio::test]
    async fn a_transactional_id_waits_for_its_block_without_blocking_the_runtime() {
        let ids = Arc::new(ProducerIds::new(100, DAY));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        ids.set_block_source(Box::new(move || {
            let _ = tx.send(());
        }));
        let giver = tokio::spawn({
            let ids = ids.clone();
            async move {
                rx.recv().await.unwrap();
                ids.add_block(100..1100);
            }
        });
        assert_eq!(ids.allocate_transactional().await.unwrap(), 100);
        giver.await.unwrap();
    }

    #[test]
    fn epoch_bump_retry_and_fencing() {
        let (ids, _) = allocator(0, DAY, 10);
        let first = ids.init_blocking(None, 0).unwrap();
        let bumped = ids.init_blocking(Some(first), 1).unwrap();
        assert_eq!(bumped.producer_id, first.producer_id);
        assert_eq!(bumped.epoch, 1);
        // The same request again (lost response): the same answer.
        assert_eq!(ids.init_blocking(Some(first), 2).unwrap(), bumped);
        // An epoch that was never current here.
        let stale = ProducerIdAndEpoch {
            producer_id: first.producer_id,
            epoch: 7,
        };
        assert_eq!(
            ids.init_blocking(Some(stale), 3).unwrap_err().error_code(),
            47
        );
        // Unknown (e.g. issued before a restart): a fresh id.
        let unknown = ProducerIdAndEpoch {
            producer_id: 999_999,
            epoch: 4,
        };
        let fresh = ids.init_blocking(Some(unknown), 4).unwrap();
        assert_ne!(fresh.producer_id, 999_999);
        assert_eq!(fresh.epoch, 0);
    }

    #[test]
    fn exhausted_epoch_moves_to_a_new_id_and_idle_ids_are_forgotten() {
        let (ids, _) = allocator(0, 1000, 10);
        let mut cur = ids.init_blocking(None, 0).unwrap();
        for _ in 0..(i16::MAX - 1) {
            cur = ids.init_blocking(Some(cur), 0).unwrap();
        }
        assert_eq!(cur.epoch, i16::MAX - 1);
        let next = ids.init_blocking(Some(cur), 0).unwrap();
        assert_ne!(next.producer_id, cur.producer_id);
        assert_eq!(next.epoch, 0);
        // Expired: asking with the right epoch gets a fresh id rather than a bump, even
        // before the retention loop drops it.
        let later = ids.init_blocking(Some(next), 5_000).unwrap();
        assert_ne!(later.producer_id, next.producer_id);
        assert_eq!(later.epoch, 0);
    }

    #[test]
    fn the_retention_loop_expires_oldest_first_and_the_map_is_bounded() {
        let (ids, _) = allocator(0, 1000, 3);
        let a = ids.init_blocking(None, 0).unwrap();
        let b = ids.init_blocking(None, 100).unwrap();
        let c = ids.init_blocking(None, 200).unwrap();
        // Touching `a` makes it the youngest.
        let a = ids.init_blocking(Some(a), 300).unwrap();
        assert_eq!(ids.expire(1_150), 1, "b expired");
        assert_eq!(ids.remembered(), 2);
        // Full at three: a fifth producer makes the one idle longest (c) forgotten.
        let _d = ids.init_blocking(None, 400).unwrap();
        let _e = ids.init_blocking(None, 500).unwrap();
        assert_eq!(ids.remembered(), 3);
        assert_eq!(ids.evicted(), 1);
        let a_bumped = ids.init_blocking(Some(a), 600).unwrap();
        assert_eq!((a_bumped.producer_id, a_bumped.epoch), (a.producer_id, 2));
        let c_again = ids.init_blocking(Some(c), 600).unwrap();
        assert_ne!(c_again.producer_id, c.producer_id, "c was forgotten");
        assert_eq!(ids.remembered(), 3);
        assert_eq!(ids.expire(i64::MAX), 3);
        assert_eq!(ids.remembered(), 0);
        let _ = b;
    }

    #[test]
    fn only_ids_at_or_above_the_next_one_are_never_issued() {
        let (ids, _) = allocator(BLOCK, DAY, 10);
        assert!(ids.never_issued(BLOCK), "nothing handed out yet");
        assert!(!ids.never_issued(BLOCK - 1), "may be from before a restart");
        let first = ids.init_blocking(None, 0).unwrap().producer_id;
        let txn = ids.allocate_transactional_blocking().unwrap();
        assert!(!ids.never_issued(first) && !ids.never_issued(txn));
        // The block recorded ahead is not issued.
        assert!(ids.never_issued(txn + 1) && ids.never_issued(2 * BLOCK + 5));
        assert!(ids.never_issued(i64::MAX));
    }
}
