//! The transaction coordinator: the state of every transactional id in memory, the
//! transaction log under it, and the effects of each decision (transaction markers into
//! partitions, commit/abort of transactional offsets in the group coordinator).
//!
//! Invariants:
//! - The state a request is answered from is durable: a new [`TxnMetadata`] is written
//!   and fsync'd to the transaction log before it becomes the current state in memory.
//! - At most one operation changes a transactional id at a time: it marks the entry
//!   `busy` while it writes; another request meanwhile gets CONCURRENT_TRANSACTIONS
//!   (clients retry it). TxnOffsetCommits in flight keep EndTxn, InitProducerId and the
//!   timeout from ending the transaction under them.
//! - A Prepare* state is durable before its first marker is written; the Complete* state
//!   is written only after every marker (partition logs fsync'd, group markers durable).
//!   After a crash, Prepare* transactions are completed again at start (a second marker
//!   is harmless), Ongoing ones stay open until their timeout aborts them.
//! - No transactional batch lands in a partition after the marker that ends its
//!   transaction there (Kafka's verification guard, KIP-890 part 1): Produce takes the
//!   partition's guard *before* checking here that the transaction is Ongoing and
//!   includes the partition ([`TxnCoordinator::verify_produce`]), and appends under the
//!   guard. Markers are written only after the transaction left Ongoing, so the marker
//!   comes after the check; appending it invalidates the guard, and the append, which
//!   checks the guard under the partition's append lock, lands either before the marker
//!   or not at all (INVALID_TXN_STATE). No lock of the coordinator is held across an
//!   append.
//! - Every mutating operation runs as its own task: a client that disconnects cannot
//!   leave an entry busy or a transaction half-ended.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use strata_storage::producer_state::VerificationGuard;
use strata_storage::Log;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use super::log::{self as txn_log, LiveStates, TxnLog, TxnLogError, TxnRecord};
use super::metadata::{EndPlan, ExpectedProducer, InitPlan, TxnError, TxnMetadata, TxnState};
use crate::broker::record_log::RecordLogError;
use crate::broker::{now_ms, Broker};
use crate::clock::MonotonicClock;
use crate::group::offsets::CommittedOffset;
use crate::group::GroupService;

/// The coordinator epoch written into markers. One node coordinates every transactional
/// id for the life of the data directory, so it never changes.
pub const COORDINATOR_EPOCH: i32 = 0;

/// Settings of the transaction coordinator (from the broker configuration).
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the largest timeout InitProducerId accepts.
    pub max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often timed-out
    /// transactions are looked for (and unfinished Prepare* states retried), in ms.
    pub cleanup_interval_ms: u64,
    /// `transactional.id.expiration.ms`: an idle id without a transaction is forgotten
    /// this long after its last change, in ms.
    pub id_expiration_ms: i64,
    /// The transaction log is compacted once larger than this many bytes (and than twice
    /// its size after the previous compaction).
    pub compact_threshold_bytes: u64,
    /// `id.max.bytes`: the longest transactional id InitProducerId accepts (INVALID_REQUEST).
    pub id_max_bytes: usize,
    /// `transaction.state.max.bytes`: the cost ([`TxnMetadata::cost`]) of every
    /// transactional id's state together; a new id, partition or group beyond it is
    /// refused with POLICY_VIOLATION.
    pub state_max_bytes: u64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 900_000,
            cleanup_interval_ms: 10_000,
            id_expiration_ms: 604_800_000,
            compact_threshold_bytes: 16 * 1024 * 1024,
            id_max_bytes: 1024,
            state_max_bytes: 128 * 1024 * 1024,
        }
    }
}

/// One transactional id in memory.
#[derive(Debug)]
struct Entry {
    /// The durable state, shared with the log writer's live map.
    meta: Arc<TxnMetadata>,
    /// An operation is writing a new state for this id.
    busy: bool,
    /// TxnOffsetCommits between their check and their durable group write.
    offset_commits: u32,
}

impl Entry {
    /// Whether the transaction may not be ended now.
    fn ending_blocked(&self) -> bool {
        self.busy || self.offset_commits > 0
    }
}

/// Every transactional id, and the producer ids that belong to them.
#[derive(Debug, Default)]
struct Table {
    by_id: HashMap<Arc<str>, Entry>,
    by_producer: HashMap<i64, Arc<str>>,
    /// Cost of every installed state ([`TxnMetadata::cost`]).
    bytes: u64,
}

impl Table {
    /// Installs `meta` as the current state of its id (keeping `busy`).
    fn install(&mut self, meta: Arc<TxnMetadata>) {
        let id = meta.transactional_id.clone();
        let pid = meta.producer_id;
        self.bytes += meta.cost();
        match self.by_id.get_mut(&*id) {
            Some(entry) => {
                if entry.meta.producer_id != pid {
                    self.by_producer.remove(&entry.meta.producer_id);
                }
                self.bytes -= entry.meta.cost();
                entry.meta = meta;
            }
            None => {
                self.by_id.insert(
                    id.clone(),
                    Entry {
                        meta,
                        busy: false,
                        offset_commits: 0,
                    },
                );
            }
        }
        self.by_producer.insert(pid, id);
    }

    fn remove(&mut self, id: &str) {
        if let Some(entry) = self.by_id.remove(id) {
            self.by_producer.remove(&entry.meta.producer_id);
            self.bytes -= entry.meta.cost();
        }
    }

    /// Refuses (StateFull) a change of `id`'s state to one costing `cost` that would
    /// grow the table past `max_bytes`; a change that does not grow it always passes.
    fn admit(&self, id: &str, cost: u64, max_bytes: u64) -> Result<(), TxnError> {
        let current = self.by_id.get(id).map_or(0, |e| e.meta.cost());
        let growth = cost.saturating_sub(current);
        if growth > 0 && self.bytes.saturating_add(growth) > max_bytes {
            debug!(
                transactional_id = id,
                growth, max_bytes, "refused: transaction.state.max.bytes reached"
            );
            return Err(TxnError::StateFull { max_bytes });
        }
        Ok(())
    }

    /// The transactional id that `producer_id` belongs to.
    fn producer(&self, producer_id: i64) -> Option<&Entry> {
        self.by_producer
            .get(&producer_id)
            .and_then(|id| self.by_id.get(id))
    }

    /// For a transaction of `producer_id` found open at start (in a partition, or as
    /// pending group offsets): None when an Ongoing or Prepare* state of that producer
    /// `covers` it (that state's own completion ends it); else whether to commit it, which
    /// only a CompleteCommit of that producer (in `epoch`, when known) says.
    fn orphan_outcome(
        &self,
        producer_id: i64,
        epoch: Option<i16>,
        covers: impl Fn(&TxnMetadata) -> bool,
    ) -> Option<bool> {
        let meta = self.producer(producer_id).map(|e| &e.meta);
        let open = |m: &TxnMetadata| m.state == TxnState::Ongoing || m.state.is_prepare();
        if meta.is_some_and(|m| open(m) && covers(m)) {
            return None;
        }
        Some(meta.is_some_and(|m| {
            m.state == TxnState::CompleteCommit && epoch.is_none_or(|e| e == m.producer_epoch)
        }))
    }
}

/// Records to make durable, and who waits for them.
struct WriteRequest {
    records: Vec<TxnRecord>,
    done: oneshot::Sender<Result<(), TxnError>>,
}

struct Inner {
    broker: Arc<Broker>,
    groups: GroupService,
    config: TxnConfig,
    table: RwLock<Table>,
    writes: mpsc::UnboundedSender<WriteRequest>,
    /// Transaction start and update times, and the timeout checks against them.
    clock: MonotonicClock,
}

/// A handle on the transaction coordinator; cheap to clone.
#[derive(Clone)]
pub struct TxnCoordinator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TxnCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnCoordinator")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Clears the busy mark of an id when an operation ends, however it ends.
struct BusyGuard {
    coordinator: TxnCoordinator,
    id: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Some(entry) = self
            .coordinator
            .write_table()
            .by_id
            .get_mut(self.id.as_str())
        {
            entry.busy = false;
        }
    }
}

/// Counts a TxnOffsetCommit in flight until it is dropped.
struct OffsetCommitGuard {
    coordinator: TxnCoordinator,
    id: String,
}

impl Drop for OffsetCommitGuard {
    fn drop(&mut self) {
        if let Some(entry) = self
            .coordinator
            .write_table()
            .by_id
            .get_mut(self.id.as_str())
        {
            entry.offset_commits = entry.offset_commits.saturating_sub(1);
        }
    }
}

/// One transaction as DescribeTransactions / ListTransactions show it.
pub type TxnDescription = Arc<TxnMetadata>;

impl TxnCoordinator {
    /// Replays the transaction log under `<state_dir>/transactions`, completes the
    /// transactions a crash left in Prepare*, and starts the background tasks (log
    /// writer; timeouts and expiry every `cleanup_interval_ms`) until `shutdown`.
    pub async fn start(
        config: TxnConfig,
        broker: Arc<Broker>,
        groups: GroupService,
        shutdown: watch::Receiver<bool>,
    ) -> Result<TxnCoordinator, TxnLogError> {
        let dir = log_dir(broker.state_dir());
        let threshold = config.compact_threshold_bytes;
        let open_dir = dir.clone();
        let opened = tokio::task::spawn_blocking(move || TxnLog::open(&open_dir, threshold))
            .await
            .map_err(|e| {
                TxnLogError(RecordLogError::Io {
                    path: dir.clone(),
                    source: std::io::Error::other(e.to_string()),
                })
            })?;
        let (log, records) = opened?;
        let live = txn_log::replay(&records);
        let replayed = records.len();
        drop(records);
        let mut table = Table::default();
        for meta in live.values() {
            table.install(meta.clone());
        }
        info!(path = %log.path().display(), records = replayed, transactional_ids = live.len(),
            state_bytes = table.bytes, "replayed the transaction log");
        if table.bytes > config.state_max_bytes {
            warn!(state_bytes = table.bytes, max = config.state_max_bytes,
                "the stored transactional ids exceed transaction.state.max.bytes: no new id, partition or group is accepted until some expire");
        }
        let (writes, writes_rx) = mpsc::unbounded_channel();
        let coordinator = TxnCoordinator {
            inner: Arc::new(Inner {
                broker,
                groups,
                config,
                table: RwLock::new(table),
                writes,
                clock: MonotonicClock::start(),
            }),
        };
        tokio::spawn(run_writer(log, live, writes_rx));
        coordinator.end_orphaned_transactions();
        coordinator.end_orphaned_group_offsets();
        let unfinished: Vec<Arc<str>> = coordinator
            .read_table()
            .by_id
            .values()
            .filter(|e| e.meta.state.is_prepare())
            .map(|e| e.meta.transactional_id.clone())
            .collect();
        for id in unfinished {
            info!(transactional_id = %id, "completing a transaction decided before the restart");
            coordinator.spawn_completion(id);
        }
        tokio::spawn(run_cleanup(coordinator.clone(), shutdown));
        Ok(coordinator)
    }

    /// At start, before any request: ends every transaction open in a partition that the
    /// transaction log does not account for (no Ongoing / Prepare* state of that producer
    /// naming the partition). Only a damaged or lost transaction log leaves such a one, and
    /// nothing else would ever end it: its partition's last stable offset would be held
    /// back forever. It gets a commit marker if the log says that producer's transaction,
    /// in that epoch, was committed, else an abort marker (nothing durable says commit).
    fn end_orphaned_transactions(&self) {
        let now = self.now_ms();
        for topic in self.inner.broker.topics() {
            for (index, log) in topic.partitions.iter().enumerate() {
                for open in log.open_transactions() {
                    let partition = (topic.name.clone(), index as i32);
                    let outcome = self.read_table().orphan_outcome(
                        open.producer_id,
                        Some(open.producer_epoch),
                        |m| m.partitions.contains(&partition),
                    );
                    let Some(commit) = outcome else {
                        continue;
                    };
                    let marker = strata_storage::TxnMarker {
                        producer_id: open.producer_id,
                        producer_epoch: open.producer_epoch,
                        coordinator_epoch: COORDINATOR_EPOCH,
                        commit,
                    };
                    match log.append_marker(&marker, now) {
                        Ok(info) => {
                            warn!(topic = %topic.name, partition = index, producer_id = open.producer_id,
                                first_offset = open.first_offset, marker_offset = info.last_offset, commit,
                                "ended a transaction the transaction log does not know (damaged or lost log?)");
                        }
                        Err(e) => {
                            error!(topic = %topic.name, partition = index, producer_id = open.producer_id,
                                error = %e, "cannot end an orphaned transaction; its partition's last stable offset stays held");
                        }
                    }
                }
            }
        }
    }

    /// At start, before any request: decides the pending transactional offsets of every
    /// group that no Ongoing / Prepare* transaction of their producer accounts for (only a
    /// damaged or lost transaction log leaves such; a `require_stable` OffsetFetch of those
    /// partitions would answer UNSTABLE_OFFSET_COMMIT forever). Commit if the log records
    /// that producer's transaction as committed, else abort.
    fn end_orphaned_group_offsets(&self) {
        for (group, producer_id) in self.inner.groups.pending_txn_offsets() {
            let outcome = self
                .read_table()
                .orphan_outcome(producer_id, None, |m| m.groups.contains(&*group));
            let Some(commit) = outcome else {
                continue;
            };
            warn!(group = %group, producer_id, commit,
                "deciding transactional offsets the transaction log does not know (damaged or lost log?)");
            // The job is queued on the group coordinator now, ahead of any request.
            let decided = self
                .inner
                .groups
                .complete_txn(group.clone(), producer_id, commit);
            tokio::spawn(async move {
                if let Err(e) = decided.await {
                    error!(group = %group, producer_id, error = %e,
                        "cannot decide orphaned transactional offsets; they stay pending");
                }
            });
        }
    }

    fn read_table(&self) -> RwLockReadGuard<'_, Table> {
        self.inner
            .table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_table(&self) -> RwLockWriteGuard<'_, Table> {
        self.inner
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks `id` busy (the caller checked it was not) and returns the guard that clears it.
    fn mark_busy(&self, table: &mut Table, id: &str) -> BusyGuard {
        if let Some(entry) = table.by_id.get_mut(id) {
            entry.busy = true;
        }
        BusyGuard {
            coordinator: self.clone(),
            id: id.to_string(),
        }
    }

    /// Makes `records` durable (fsync'd) in the transaction log.
    fn persist(
        &self,
        records: Vec<TxnRecord>,
    ) -> impl Future<Output = Result<(), TxnError>> + Send + 'static {
        let (done, wait) = oneshot::channel();
        let sent = self
            .inner
            .writes
            .send(WriteRequest { records, done })
            .is_ok();
        async move {
            if !sent {
                return Err(TxnError::CoordinatorNotAvailable);
            }
            wait.await.unwrap_or(Err(TxnError::CoordinatorNotAvailable))
        }
    }

    /// Persists `meta`, then installs it as the current state (one copy, shared by
    /// the log writer and the table).
    async fn transition(&self, meta: TxnMetadata) -> Result<(), TxnError> {
        let meta = Arc::new(meta);
        self.persist(vec![TxnRecord::State(meta.clone())]).await?;
        self.write_table().install(meta);
        Ok(())
    }

    /// Runs `op` as its own task, so it completes even if the request's connection goes.
    async fn detached<T: Send + 'static>(
        &self,
        op: impl Future<Output = Result<T, TxnError>> + Send + 'static,
    ) -> Result<T, TxnError> {
        match tokio::spawn(op).await {
            Ok(result) => result,
            Err(e) => {
                error!(error = %e, "transaction coordinator task failed");
                Err(TxnError::CoordinatorNotAvailable)
            }
        }
    }

    /// InitProducerId with a transactional id: the producer id and the bumped epoch.
    /// An ongoing transaction is aborted first (fencing its producer).
    pub async fn init_producer_id(
        &self,
        transactional_id: String,
        timeout_ms: i32,
        expected: Option<ExpectedProducer>,
    ) -> Result<(i64, i16), TxnError> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest("empty transactional id"));
        }
        if transactional_id.len() > self.inner.config.id_max_bytes {
            return Err(TxnError::InvalidRequest(
                "transactional id longer than id.max.bytes",
            ));
        }
        let max_ms = self.inner.config.max_timeout_ms;
        if timeout_ms <= 0 || timeout_ms > max_ms {
            return Err(TxnError::InvalidTransactionTimeout { timeout_ms, max_ms });
        }
        let this = self.clone();
        self.detached(async move {
            this.init_inner(transactional_id, timeout_ms, expected)
                .await
        })
        .await
    }

    async fn init_inner(
        &self,
        id: String,
        timeout_ms: i32,
        expected: Option<ExpectedProducer>,
    ) -> Result<(i64, i16), TxnError> {
        let known = self.read_table().by_id.contains_key(id.as_str());
        if !known {
            let fresh = |producer_id| {
                TxnMetadata::new(
                    Arc::from(id.as_str()),
                    producer_id,
                    timeout_ms,
                    self.now_ms(),
                )
            };
            let max_bytes = self.inner.config.state_max_bytes;
            // Checked before a producer id is spent on it.
            self.read_table().admit(&id, fresh(-1).cost(), max_bytes)?;
            // Allocated outside the table lock: it may write the producer-id block file.
            let producer_id = self.allocate_producer_id().await?;
            let mut table = self.write_table();
            if !table.by_id.contains_key(id.as_str()) {
                let meta = fresh(producer_id);
                table.admit(&id, meta.cost(), max_bytes)?;
                table.install(Arc::new(meta));
            }
        }
        loop {
            let (plan, current, guard) = {
                let mut table = self.write_table();
                let Some(entry) = table.by_id.get(id.as_str()) else {
                    return Err(TxnError::CoordinatorNotAvailable);
                };
                let plan = entry.meta.plan_init(
                    entry.ending_blocked(),
                    expected,
                    timeout_ms,
                    self.now_ms(),
                )?;
                let current = entry.meta.clone();
                let guard = self.mark_busy(&mut table, &id);
                (plan, current, guard)
            };
            let next = match plan {
                InitPlan::Ready(next) => next,
                InitPlan::NeedNewProducerId { record_last_epoch } => {
                    let producer_id = self.allocate_producer_id().await?;
                    current.rotated(producer_id, timeout_ms, record_last_epoch, self.now_ms())
                }
                InitPlan::AbortFirst(abort) => {
                    info!(transactional_id = %id, producer_id = abort.producer_id,
                        epoch = abort.producer_epoch,
                        "InitProducerId aborts the ongoing transaction of the previous instance");
                    self.transition(abort.clone()).await?;
                    self.complete(abort).await?;
                    drop(guard);
                    continue;
                }
            };
            self.transition(next.clone()).await?;
            drop(guard);
            debug!(transactional_id = %id, producer_id = next.producer_id,
                epoch = next.producer_epoch, "InitProducerId");
            return Ok((next.producer_id, next.producer_epoch));
        }
    }

    async fn allocate_producer_id(&self) -> Result<i64, TxnError> {
        self.inner
            .broker
            .producer_ids()
            .allocate_transactional()
            .await
            .map_err(|e| {
                error!(error = %e, "cannot allocate a producer id for a transactional id");
                TxnError::CoordinatorNotAvailable
            })
    }

    /// AddPartitionsToTxn: the partitions join the producer's transaction (starting it).
    pub async fn add_partitions(
        &self,
        transactional_id: String,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), TxnError> {
        let this = self.clone();
        self.detached(async move {
            this.add_inner(&transactional_id, |m, busy, now| {
                m.plan_add_partitions(busy, producer_id, epoch, &partitions, now)
            })
            .await
        })
        .await
    }

    /// AddOffsetsToTxn: the group's offsets join the producer's transaction.
    pub async fn add_offsets(
        &self,
        transactional_id: String,
        producer_id: i64,
        epoch: i16,
        group: String,
    ) -> Result<(), TxnError> {
        let this = self.clone();
        self.detached(async move {
            this.add_inner(&transactional_id, |m, busy, now| {
                m.plan_add_group(busy, producer_id, epoch, &group, now)
            })
            .await
        })
        .await
    }

    async fn add_inner(
        &self,
        id: &str,
        plan: impl FnOnce(&TxnMetadata, bool, i64) -> Result<Option<TxnMetadata>, TxnError>,
    ) -> Result<(), TxnError> {
        if id.is_empty() {
            return Err(TxnError::InvalidRequest("empty transactional id"));
        }
        let (next, guard) = {
            let mut table = self.write_table();
            let Some(entry) = table.by_id.get(id) else {
                return Err(TxnError::InvalidProducerIdMapping {
                    given: -1,
                    current: -1,
                });
            };
            let Some(next) = plan(&entry.meta, entry.busy, self.now_ms())? else {
                return Ok(());
            };
            table.admit(id, next.cost(), self.inner.config.state_max_bytes)?;
            let guard = self.mark_busy(&mut table, id);
            (next, guard)
        };
        self.transition(next).await?;
        drop(guard);
        Ok(())
    }

    /// TxnOffsetCommit: checks the producer and that the group is in its transaction, then
    /// writes the offsets as pending in the group coordinator (durable when Ok).
    #[allow(clippy::too_many_arguments)]
    pub async fn txn_offset_commit(
        &self,
        transactional_id: String,
        group: String,
        producer_id: i64,
        epoch: i16,
        member: Option<(String, Option<String>, i32)>,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<(), ResponseError> {
        let guard = {
            let mut table = self.write_table();
            let Some(entry) = table.by_id.get_mut(transactional_id.as_str()) else {
                return Err(ResponseError::InvalidProducerIdMapping);
            };
            entry
                .meta
                .check_offset_commit(entry.busy, producer_id, epoch, &group)
                .map_err(|e| {
                    debug!(transactional_id, group, error = %e, "TxnOffsetCommit refused");
                    e.response_error()
                })?;
            entry.offset_commits += 1;
            OffsetCommitGuard {
                coordinator: self.clone(),
                id: transactional_id,
            }
        };
        let write =
            self.inner
                .groups
                .commit_txn_offsets(group, producer_id, epoch, member, offsets);
        // A task of its own: the guard keeps the transaction from ending until the pending
        // offsets are durable, whether or not the client waits.
        match tokio::spawn(async move {
            let result = write.await;
            drop(guard);
            result
        })
        .await
        {
            Ok(result) => result,
            Err(_) => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// EndTxn: commits or aborts the producer's transaction. Answers once the outcome is
    /// written everywhere (Complete*), or, if a marker cannot be written now, once the
    /// decision is durable (Prepare*; the cleanup task finishes it).
    pub async fn end_txn(
        &self,
        transactional_id: String,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest("empty transactional id"));
        }
        let this = self.clone();
        self.detached(async move {
            let (prepare, guard) = {
                let mut table = this.write_table();
                let Some(entry) = table.by_id.get(transactional_id.as_str()) else {
                    return Err(TxnError::InvalidProducerIdMapping {
                        given: producer_id,
                        current: -1,
                    });
                };
                let plan = entry.meta.plan_end(
                    entry.ending_blocked(),
                    producer_id,
                    epoch,
                    commit,
                    this.now_ms(),
                )?;
                let EndPlan::Prepare(prepare) = plan else {
                    return Ok(());
                };
                let guard = this.mark_busy(&mut table, &transactional_id);
                (prepare, guard)
            };
            this.transition(prepare.clone()).await?;
            if let Err(e) = this.complete(prepare).await {
                warn!(transactional_id, error = %e,
                    "transaction decided but not yet completed; will retry");
            }
            drop(guard);
            Ok(())
        })
        .await
    }

    /// Writes the markers of a Prepare* state into every partition and group of the
    /// transaction, then makes the Complete* state durable and current. The caller holds
    /// the id busy.
    async fn complete(&self, prepare: TxnMetadata) -> Result<(), TxnError> {
        let commit = prepare.state == TxnState::PrepareCommit;
        self.write_markers(&prepare, commit).await?;
        for group in &prepare.groups {
            self.inner
                .groups
                .complete_txn(Arc::from(group.as_str()), prepare.producer_id, commit)
                .await
                .map_err(|e| {
                    warn!(group, transactional_id = %prepare.transactional_id, error = %e,
                        "cannot complete the transaction's offsets");
                    TxnError::CoordinatorNotAvailable
                })?;
        }
        let done = prepare.completed(self.now_ms());
        self.transition(done).await?;
        debug!(transactional_id = %prepare.transactional_id, commit,
            partitions = prepare.partitions.len(), groups = prepare.groups.len(),
            "transaction completed");
        Ok(())
    }

    async fn write_markers(&self, prepare: &TxnMetadata, commit: bool) -> Result<(), TxnError> {
        let marker = strata_storage::TxnMarker {
            producer_id: prepare.producer_id,
            producer_epoch: prepare.producer_epoch,
            coordinator_epoch: COORDINATOR_EPOCH,
            commit,
        };
        // The appends run on the storage I/O pool, not on an async worker.
        let broker = self.inner.broker.clone();
        let partitions = prepare.partitions.clone();
        let transactional_id = prepare.transactional_id.clone();
        let appended = self.inner.broker.io().run(move || {
            let mut waits = Vec::with_capacity(partitions.len());
            // A partition that cannot take its marker now is retried later, but the others
            // still get theirs: one failing log must not hold back every other partition's
            // last stable offset.
            let mut failed = false;
            for (topic, partition) in &partitions {
                let log = broker
                    .topic(topic)
                    .and_then(|t| t.partition(*partition).cloned());
                let Some(log) = log else {
                    // Deleted with its data: nothing left to mark.
                    warn!(topic, partition, transactional_id = %transactional_id,
                        "partition of a transaction no longer exists; no marker written");
                    continue;
                };
                match log.append_marker(&marker, now_ms()) {
                    Ok(info) => waits.push((log, info.last_offset + 1)),
                    Err(e @ strata_storage::AppendError::InvalidProducerEpoch { .. }) => {
                        // A newer epoch already wrote here: that one ended this transaction.
                        warn!(topic, partition, error = %e, "marker refused; skipped");
                    }
                    Err(e) => {
                        warn!(topic, partition, error = %e, "cannot write a transaction marker");
                        failed = true;
                    }
                }
            }
            (waits, failed)
        });
        let (waits, mut failed) = appended.await.map_err(|e| {
            error!(error = %e, "writing transaction markers failed on the storage I/O pool");
            TxnError::CoordinatorNotAvailable
        })?;
        for (log, offset) in waits {
            if let Err(e) = log.wait_high_watermark(offset).await {
                warn!(dir = %log.dir().display(), error = %e, "transaction marker not durable");
                failed = true;
            }
        }
        if failed {
            return Err(TxnError::CoordinatorNotAvailable);
        }
        Ok(())
    }

    /// Completes `id`'s Prepare* state in a task of its own (after a restart, or when an
    /// earlier attempt failed). Does nothing if the id is busy or not in Prepare*.
    fn spawn_completion(&self, id: Arc<str>) {
        let prepare_and_guard = {
            let mut table = self.write_table();
            match table.by_id.get(&*id) {
                Some(entry) if entry.meta.state.is_prepare() && !entry.busy => {
                    let prepare = TxnMetadata::clone(&entry.meta);
                    Some((prepare, self.mark_busy(&mut table, &id)))
                }
                _ => None,
            }
        };
        let Some((prepare, guard)) = prepare_and_guard else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.complete(prepare).await {
                warn!(transactional_id = %id, error = %e, "cannot complete transaction yet; will retry");
            }
            drop(guard);
        });
    }

    /// Aborts `id`'s transaction if it is Ongoing and older than its timeout, fencing its
    /// producer (the abort runs in a task of its own).
    fn spawn_timeout_abort(&self, id: Arc<str>, now: i64) {
        let plan = {
            let mut table = self.write_table();
            let abort = match table.by_id.get(&*id) {
                Some(entry) if !entry.ending_blocked() => entry.meta.plan_timeout_abort(now),
                _ => None,
            };
            abort.map(|abort| (abort, self.mark_busy(&mut table, &id)))
        };
        let Some((abort, guard)) = plan else {
            return;
        };
        info!(transactional_id = %id, producer_id = abort.producer_id,
            timeout_ms = abort.timeout_ms, "aborting a transaction that outlived its timeout");
        let this = self.clone();
        tokio::spawn(async move {
            let result = match this.transition(abort.clone()).await {
                Ok(()) => this.complete(abort).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                warn!(transactional_id = %id, error = %e, "cannot abort timed-out transaction yet; will retry");
            }
            drop(guard);
        });
    }

    /// One round of the cleanup task: timed-out transactions are aborted, unfinished
    /// Prepare* states completed, expired idle transactional ids forgotten.
    pub(crate) fn cleanup(&self, now: i64) {
        let (timed_out, unfinished, expired) = {
            let table = self.read_table();
            let mut timed_out = Vec::new();
            let mut unfinished = Vec::new();
            let mut expired = Vec::new();
            for (id, entry) in &table.by_id {
                if entry.ending_blocked() {
                    continue;
                }
                if entry.meta.state.is_prepare() {
                    unfinished.push(id.clone());
                } else if entry.meta.plan_timeout_abort(now).is_some() {
                    timed_out.push(id.clone());
                } else if entry
                    .meta
                    .is_expired(now, self.inner.config.id_expiration_ms)
                {
                    expired.push(id.clone());
                }
            }
            (timed_out, unfinished, expired)
        };
        for id in timed_out {
            self.spawn_timeout_abort(id, now);
        }
        for id in unfinished {
            self.spawn_completion(id);
        }
        if !expired.is_empty() {
            let mut records = Vec::new();
            {
                let mut table = self.write_table();
                for id in expired {
                    // Checked again under the write lock: it may have been used meanwhile.
                    let still = table.by_id.get(&*id).is_some_and(|e| {
                        !e.ending_blocked()
                            && e.meta.is_expired(now, self.inner.config.id_expiration_ms)
                    });
                    if still {
                        table.remove(&id);
                        records.push(TxnRecord::Removed {
                            transactional_id: id,
                        });
                    }
                }
            }
            if !records.is_empty() {
                info!(
                    count = records.len(),
                    "forgetting expired transactional ids"
                );
                let written = self.persist(records);
                tokio::spawn(async move {
                    if let Err(e) = written.await {
                        // Harmless: they are forgotten in memory and come back (idle) after a
                        // restart, to expire again.
                        warn!(error = %e, "cannot record expired transactional ids");
                    }
                });
            }
        }
    }

    /// Produce check for a batch with the transactional bit, for `log` (partition
    /// `partition` of `topic`): Ok only if `producer_id`'s transaction is Ongoing with this
    /// epoch and includes the partition (no transactional write can land outside a
    /// transaction the coordinator knows, so no transaction hangs). Errors: an older epoch
    /// is INVALID_PRODUCER_EPOCH (Produce's code for a fenced producer), anything else
    /// INVALID_TXN_STATE.
    ///
    /// Returns the partition's guard taken before the check: append the batch with
    /// `Log::append_verified_batch` under it, and it lands before the marker that ends the
    /// transaction in that partition or is refused (see the module doc). A producer the
    /// check refuses outright takes no guard, so strangers leave no state in partitions.
    pub fn verify_produce(
        &self,
        log: &Log,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<VerificationGuard, ResponseError> {
        self.check_produce(producer_id, producer_epoch, topic, partition)?;
        let guard = log.start_txn_verification(producer_id, now_ms());
        self.check_produce(producer_id, producer_epoch, topic, partition)?;
        Ok(guard)
    }

    /// The coordinator's half of [`TxnCoordinator::verify_produce`]: one short read of the
    /// table.
    fn check_produce(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), ResponseError> {
        let table = self.read_table();
        let Some(entry) = table.producer(producer_id) else {
            debug!(
                producer_id,
                topic, partition, "transactional batch from a producer id without a transaction"
            );
            return Err(ResponseError::InvalidTxnState);
        };
        entry
            .meta
            .check_produce(producer_epoch, topic, partition)
            .map_err(|e| {
                debug!(producer_id, producer_epoch, topic, partition, error = %e,
                    "transactional batch refused");
                e.response_error()
            })
    }

    /// The states of these transactional ids (None for an unknown id).
    pub fn describe(&self, ids: &[String]) -> Vec<Option<TxnDescription>> {
        let table = self.read_table();
        ids.iter()
            .map(|id| table.by_id.get(id.as_str()).map(|e| e.meta.clone()))
            .collect()
    }

    /// Every known transactional id's state, ordered by id.
    pub fn list(&self) -> Vec<TxnDescription> {
        let table = self.read_table();
        let sorted: BTreeMap<&Arc<str>, &Entry> = table.by_id.iter().collect();
        sorted.into_values().map(|e| e.meta.clone()).collect()
    }

    /// The coordinator's `now` (ms): monotonic, so the transaction timeout is measured
    /// by elapsed time, whatever the wall clock does (see [`MonotonicClock`]).
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// The longest transactional id InitProducerId accepts (`id.max.bytes`).
    pub fn id_max_bytes(&self) -> usize {
        self.inner.config.id_max_bytes
    }
}

/// The cleanup loop: every `cleanup_interval_ms` until shutdown.
async fn run_cleanup(coordinator: TxnCoordinator, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(coordinator.inner.config.cleanup_interval_ms.max(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => coordinator.cleanup(coordinator.now_ms()),
            _ = crate::server::shutdown::requested(&mut shutdown) => break,
        }
    }
    debug!("transaction cleanup stopped");
}

/// The log writer: every write waiting when it wakes goes into one append and one fsync.
/// It keeps the durable state of every id (`live`), from which it compacts the log.
async fn run_writer(
    log: TxnLog,
    live: LiveStates,
    mut writes: mpsc::UnboundedReceiver<WriteRequest>,
) {
    let state = Arc::new(std::sync::Mutex::new((log, live)));
    while let Some(first) = writes.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = writes.try_recv() {
            batch.push(more);
        }
        let records: Vec<TxnRecord> = batch
            .iter_mut()
            .flat_map(|w| std::mem::take(&mut w.records))
            .collect();
        let shared = state.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
            let (log, live) = &mut *guard;
            log.append(&records)?;
            for record in &records {
                txn_log::apply(live, record);
            }
            if log.needs_compaction() {
                if let Err(e) = log.rewrite(&txn_log::snapshot(live)) {
                    warn!(error = %e, "transaction log compaction failed; will retry");
                }
            }
            Ok::<(), TxnLogError>(())
        })
        .await;
        let result = match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                error!(error = %e, "cannot write the transaction log");
                Err(TxnError::CoordinatorNotAvailable)
            }
            Err(e) => {
                error!(error = %e, "transaction log writer task failed");
                Err(TxnError::CoordinatorNotAvailable)
            }
        };
        for w in batch {
            let _ = w.done.send(result.clone());
        }
    }
    debug!("transaction log writer stopped");
}

/// The directory of the transaction log under the broker's state directory.
pub fn log_dir(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("transactions")
}
