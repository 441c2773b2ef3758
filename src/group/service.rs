//! The async driver of the group coordinator.
//!
//! One task (the *actor*) owns the [`GroupCoordinator`] state machine and its
//! timers: requests reach it as closures over a channel, it stamps them with a
//! request id and the wall-clock time, and carries out the effects the state
//! machine returns (answering waiting requests, arming and disarming timers).
//!
//! A second task (the *offset writer*) owns the committed-offsets log: every
//! commit waiting when it wakes goes into one append and one fsync (group
//! commit), and only then into the in-memory [`OffsetTable`] that OffsetFetch
//! reads, so a fetched offset is always durable. It compacts the log when it
//! has grown past its bound. Group membership records
//! ([`Effect::StoreGroup`]) go through the same writer; the answers they hold
//! back are sent once the record is durable, and the outcome goes back to the
//! state machine as a job on the actor. At start, stored groups are loaded
//! before any request is served.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use super::coordinator::{
    CoordinatorConfig, GroupCoordinator, GroupDescription, GroupListing, SubscribedTopics,
};
use super::events::{
    Effect, Heartbeat, JoinGroup, JoinResult, LeaveResult, LeavingMember, RequestId, Response,
    SyncGroup, SyncResult, TimerKey,
};
use super::limits::GroupLimits;
use super::metadata::GroupState;
use super::offsets::{
    CommittedOffset, GroupActivity, OffsetLog, OffsetLogError, OffsetRecord, OffsetTable,
    StoredGroup,
};
use crate::broker::record_log::RecordLogError;
use crate::clock::MonotonicClock;

/// Settings of the group service.
#[derive(Debug, Clone)]
pub struct GroupServiceConfig {
    pub coordinator: CoordinatorConfig,
    /// `offsets.retention.minutes` in ms: offsets of an empty group live this long.
    pub offsets_retention_ms: i64,
    /// How often expired offsets are looked for (ms).
    pub retention_check_interval_ms: u64,
    /// The offsets log is compacted once larger than this many bytes (and than
    /// twice its size after the previous compaction).
    pub compact_threshold_bytes: u64,
}

impl Default for GroupServiceConfig {
    fn default() -> Self {
        GroupServiceConfig {
            coordinator: CoordinatorConfig::default(),
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_check_interval_ms: 600_000,
            compact_threshold_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Wall-clock time in ms since the Unix epoch: for timestamps stored with offsets and
/// compared with them (offset retention), never for timers.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

type Job = Box<dyn FnOnce(&mut Actor) + Send>;

/// A batch of records to make durable.
struct WriteRequest {
    records: Vec<OffsetRecord>,
    /// Cost of the offsets these records add, reserved in [`OffsetUsage`] when they
    /// were admitted; released once they are applied (or failed).
    reserved: u64,
    done: oneshot::Sender<Result<(), ResponseError>>,
}

/// What the committed and pending offsets cost (see `group::limits`), for
/// `group.state.max.bytes`: the offsets table's cost after the last applied write,
/// and the cost of writes admitted but not applied yet.
#[derive(Debug, Default)]
struct OffsetUsage {
    applied: AtomicU64,
    reserved: AtomicU64,
}

impl OffsetUsage {
    fn total(&self) -> u64 {
        self.applied
            .load(Ordering::Relaxed)
            .saturating_add(self.reserved.load(Ordering::Relaxed))
    }

    fn release(&self, bytes: u64) {
        if bytes > 0 {
            self.reserved.fetch_sub(bytes, Ordering::Relaxed);
        }
    }
}

/// A handle on the running group coordinator; cheap to clone.
#[derive(Clone, Debug)]
pub struct GroupService {
    jobs: mpsc::UnboundedSender<Job>,
    writes: mpsc::UnboundedSender<WriteRequest>,
    table: Arc<RwLock<OffsetTable>>,
    limits: Arc<GroupLimits>,
}

/// State owned by the actor task.
struct Actor {
    coordinator: GroupCoordinator,
    /// The offset writer's queue (group membership records go there too).
    writes: mpsc::UnboundedSender<WriteRequest>,
    /// The actor's own queue, for completions of group stores (weak, so the
    /// actor stops once every [`GroupService`] handle is gone).
    jobs: mpsc::WeakUnboundedSender<Job>,
    pending: HashMap<RequestId, oneshot::Sender<Response>>,
    timers: TimerQueue,
    /// The coordinator's `now`, for every step and timer (sessions, rebalances).
    clock: MonotonicClock,
    next_request: RequestId,
    /// The offsets' cost, shared with the offset writer.
    usage: Arc<OffsetUsage>,
}

/// Armed timers by key, ordered by deadline.
#[derive(Default)]
struct TimerQueue {
    by_key: HashMap<TimerKey, u64>,
    by_deadline: BTreeSet<(u64, TimerKey)>,
}

impl TimerQueue {
    fn set(&mut self, key: TimerKey, deadline: u64) {
        self.cancel(&key);
        self.by_deadline.insert((deadline, key.clone()));
        self.by_key.insert(key, deadline);
    }

    fn cancel(&mut self, key: &TimerKey) {
        if let Some(deadline) = self.by_key.remove(key) {
            self.by_deadline.remove(&(deadline, key.clone()));
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        self.by_deadline.first().map(|(d, _)| *d)
    }

    fn pop_due(&mut self, now: u64) -> Option<TimerKey> {
        let (deadline, _) = self.by_deadline.first()?;
        if *deadline > now {
            return None;
        }
        let (_, key) = self.by_deadline.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }
}

impl Actor {
    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Respond { request, response } => match self.pending.remove(&request) {
                    // The requester may be gone (connection closed): nothing to do.
                    Some(reply) => {
                        let _ = reply.send(response);
                    }
                    None => debug!(request, "answer for a request no longer waiting"),
                },
                Effect::SetTimer { key, deadline_ms } => self.timers.set(key, deadline_ms),
                Effect::CancelTimer { key } => self.timers.cancel(&key),
                Effect::StoreGroup {
                    group_id,
                    generation_id,
                    metadata,
                    then,
                } => self.store_group(group_id, generation_id, metadata, then),
            }
        }
    }

    /// Writes the group's membership record (fsync'd with the next offsets
    /// batch), then delivers the held answers and reports the outcome to the
    /// state machine on the actor.
    fn store_group(
        &mut self,
        group_id: Arc<str>,
        generation_id: i32,
        metadata: StoredGroup,
        then: Vec<(RequestId, Response)>,
    ) {
        let held: Vec<(oneshot::Sender<Response>, Response)> = then
            .into_iter()
            .filter_map(|(request, response)| {
                self.pending.remove(&request).map(|reply| (reply, response))
            })
            .collect();
        let written = enqueue_write(
            &self.writes,
            vec![OffsetRecord::GroupMetadata {
                group: group_id.clone(),
                metadata: Some(metadata),
            }],
        );
        let jobs = self.jobs.clone();
        tokio::spawn(async move {
            let result = written.await;
            if let Err(e) = result {
                warn!(group = %group_id, generation = generation_id, error = ?e,
                    "could not store the group's membership");
            }
            for (reply, response) in held {
                let response = match result {
                    Ok(()) => response,
                    Err(e) => response.failed(e),
                };
                let _ = reply.send(response);
            }
            if let Some(jobs) = jobs.upgrade() {
                let _ = jobs.send(Box::new(move |actor: &mut Actor| {
                    let effects = actor.coordinator.group_stored(
                        actor.clock.now_unsigned_ms(),
                        &group_id,
                        generation_id,
                        result,
                    );
                    actor.apply(effects);
                }));
            }
        });
    }

    fn fire_due_timers(&mut self) {
        let now = self.clock.now_unsigned_ms();
        while let Some(key) = self.timers.pop_due(now) {
            let effects = self.coordinator.on_timer(now, &key);
            self.apply(effects);
        }
    }
}

impl GroupService {
    /// Opens (replays) the committed-offsets log under `<state_dir>/offsets` and
    /// starts the coordinator tasks; they stop when `shutdown` turns true.
    pub async fn start(
        config: GroupServiceConfig,
        state_dir: &Path,
        shutdown: watch::Receiver<bool>,
    ) -> Result<GroupService, OffsetLogError> {
        let dir = state_dir.join("offsets");
        let threshold = config.compact_threshold_bytes;
        let opened = tokio::task::spawn_blocking(move || OffsetLog::open(&dir, threshold))
            .await
            .map_err(|e| {
                OffsetLogError(RecordLogError::Io {
                    path: state_dir.join("offsets"),
                    source: std::io::Error::other(e.to_string()),
                })
            })?;
        let (log, records) = opened?;
        let replayed = records.len();
        let mut table = OffsetTable::default();
        for record in records {
            table.apply(record);
        }
        info!(path = %log.path().display(), records = replayed, offsets = table.len(),
            pending_txn_offsets = table.pending_len(), groups = table.group_metadata().len(),
            offsets_cost = table.bytes(), "replayed committed offsets and group membership");
        let mut coordinator = GroupCoordinator::new(config.coordinator.clone());
        // Groups with stored membership come back Stable (members' sessions
        // start now) or Empty; their timers are armed below. They share their
        // ids and byte fields with the table's records. What an older log holds
        // beyond today's limits is loaded as it is (see `GroupCoordinator`).
        let clock = MonotonicClock::start();
        let loaded_at = clock.now_unsigned_ms();
        let mut load_effects = Vec::new();
        for (group, stored) in table.group_metadata() {
            load_effects.extend(coordinator.load_group(loaded_at, group, stored));
            debug!(
                group = %group,
                generation = stored.generation_id,
                members = stored.members.len(),
                "loaded group membership"
            );
        }
        for group in table.group_ids() {
            // Time 0: a group known only from its offsets has been empty since
            // before they were committed, so their commit time rules expiry.
            coordinator.ensure_group(group, 0);
        }
        let usage = Arc::new(OffsetUsage::default());
        usage.applied.store(table.bytes(), Ordering::Relaxed);
        let state = coordinator.membership_bytes().saturating_add(table.bytes());
        if state > config.coordinator.limits.state_max_bytes {
            warn!(state_bytes = state, max = config.coordinator.limits.state_max_bytes,
                "the stored groups and offsets exceed group.state.max.bytes: no group can grow until some expire or are deleted");
        }
        let table = Arc::new(RwLock::new(table));
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        let (writes, writes_rx) = mpsc::unbounded_channel();
        let service = GroupService {
            jobs,
            writes,
            table: table.clone(),
            limits: Arc::new(config.coordinator.limits.clone()),
        };
        let mut actor = Actor {
            coordinator,
            writes: service.writes.clone(),
            jobs: service.jobs.downgrade(),
            pending: HashMap::new(),
            timers: TimerQueue::default(),
            clock,
            next_request: 0,
            usage: usage.clone(),
        };
        actor.apply(load_effects);
        tokio::spawn(run_actor(actor, jobs_rx, shutdown, service.clone(), config));
        tokio::spawn(run_offset_writer(log, table, usage, writes_rx));
        Ok(service)
    }

    /// What clients can make the coordinator hold.
    pub fn limits(&self) -> &GroupLimits {
        &self.limits
    }

    /// Queues `f` to run on the actor now (so requests keep their arrival
    /// order) and returns a future of its result.
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Actor) -> R + Send + 'static,
    ) -> impl Future<Output = Result<R, ResponseError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |actor| {
            let _ = tx.send(f(actor));
        });
        let sent = self.jobs.send(job).is_ok();
        async move {
            if !sent {
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            rx.await.map_err(|_| ResponseError::CoordinatorNotAvailable)
        }
    }

    /// Queues a request for the state machine and returns a future of its
    /// answer, which may come at once or when the group moves on (JoinGroup,
    /// SyncGroup).
    fn request(
        &self,
        f: impl FnOnce(&mut GroupCoordinator, u64, RequestId) -> Vec<Effect> + Send + 'static,
    ) -> impl Future<Output = Result<Response, ResponseError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |actor| {
            actor.next_request += 1;
            let id = actor.next_request;
            actor.pending.insert(id, tx);
            let effects = f(&mut actor.coordinator, actor.clock.now_unsigned_ms(), id);
            actor.apply(effects);
        });
        let sent = self.jobs.send(job).is_ok();
        async move {
            if !sent {
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            rx.await.map_err(|_| ResponseError::CoordinatorNotAvailable)
        }
    }

    pub fn join(&self, join: JoinGroup) -> impl Future<Output = JoinResult> + Send + 'static {
        let member_id = join.member_id.clone();
        let answer = self.request(move |c, now, id| c.join(now, id, join));
        async move {
            match answer.await {
                Ok(Response::Join(result)) => result,
                Ok(other) => unexpected(
                    other,
                    JoinResult::error(&member_id, ResponseError::UnknownServerError),
                ),
                Err(e) => JoinResult::error(&member_id, e),
            }
        }
    }

    pub fn sync(&self, sync: SyncGroup) -> impl Future<Output = SyncResult> + Send + 'static {
        let answer = self.request(move |c, now, id| c.sync(now, id, sync));
        async move {
            match answer.await {
                Ok(Response::Sync(result)) => result,
                Ok(other) => {
                    unexpected(other, SyncResult::error(ResponseError::UnknownServerError))
                }
                Err(e) => SyncResult::error(e),
            }
        }
    }

    pub fn heartbeat(
        &self,
        heartbeat: Heartbeat,
    ) -> impl Future<Output = Option<ResponseError>> + Send + 'static {
        let answer = self.request(move |c, now, id| c.heartbeat(now, id, heartbeat));
        async move {
            match answer.await {
                Ok(Response::Heartbeat(error)) => error,
                Ok(other) => unexpected(other, Some(ResponseError::UnknownServerError)),
                Err(e) => Some(e),
            }
        }
    }

    pub fn leave(
        &self,
        group_id: String,
        members: Vec<LeavingMember>,
    ) -> impl Future<Output = LeaveResult> + Send + 'static {
        let answer = self.request(move |c, now, id| c.leave(now, id, &group_id, members));
        async move {
            let failed = |error| LeaveResult {
                error: Some(error),
                members: Vec::new(),
            };
            match answer.await {
                Ok(Response::Leave(result)) => result,
                Ok(other) => unexpected(other, failed(ResponseError::UnknownServerError)),
                Err(e) => failed(e),
            }
        }
    }

    /// Checks the group id, what the offsets would cost (`group.state.max.bytes`:
    /// INVALID_COMMIT_OFFSET_SIZE) and the committer's membership, then makes the
    /// offsets durable; resolves once they are fsync'd, so a success survives a
    /// crash. Commits and [`GroupService::barrier`]s are ordered as they were called.
    pub fn commit_offsets(
        &self,
        group_id: String,
        member_id: String,
        group_instance_id: Option<String>,
        generation_id: i32,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> impl Future<Output = Result<(), ResponseError>> + Send + 'static {
        let jobs = self.jobs.clone();
        let table = self.table.clone();
        let queued = self.call(move |actor| {
            let growth = admit_offsets(actor, &table, &group_id, None, &offsets)?;
            let (checked, effects) = actor.coordinator.validate_offset_commit(
                actor.clock.now_unsigned_ms(),
                &group_id,
                &member_id,
                group_instance_id.as_deref(),
                generation_id,
            );
            actor.apply(effects);
            let group = checked?;
            let records = offsets
                .into_iter()
                .map(|(topic, partition, offset)| OffsetRecord::Commit {
                    group: group.clone(),
                    topic,
                    partition,
                    offset,
                })
                .collect();
            let written = enqueue_charged(&actor.writes, records, growth, &actor.usage);
            Ok((group, written))
        });
        async move {
            let (group, written) = queued.await??;
            written.await?;
            // An empty group may have been forgotten while the write was in flight.
            let _ = jobs.send(Box::new(move |actor: &mut Actor| {
                actor
                    .coordinator
                    .ensure_group(&group, actor.clock.now_unsigned_ms())
            }));
            Ok(())
        }
    }

    /// TxnOffsetCommit: checks the group membership like OffsetCommit when
    /// `member` is given (v3+: member id, group instance id, generation;
    /// generation -1 and an empty member id skip their checks, see
    /// [`GroupCoordinator::validate_txn_offset_commit`]), then makes the offsets
    /// durable (fsync'd) as *pending* for (`group`, `producer_id`). They stay
    /// invisible to [`GroupService::committed`] until
    /// [`GroupService::complete_txn`] commits them; a later call for the same
    /// partition in the same transaction replaces the pending value. Pending
    /// offsets survive a restart (replayed from the offsets log).
    pub fn commit_txn_offsets(
        &self,
        group: String,
        producer_id: i64,
        producer_epoch: i16,
        member: Option<(String, Option<String>, i32)>,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> impl Future<Output = Result<(), ResponseError>> + Send + 'static {
        let table = self.table.clone();
        let queued = self.call(move |actor| {
            let growth = admit_offsets(actor, &table, &group, Some(producer_id), &offsets)?;
            let group = actor.coordinator.validate_txn_offset_commit(
                actor.clock.now_unsigned_ms(),
                &group,
                member
                    .as_ref()
                    .map(|(m, i, g)| (m.as_str(), i.as_deref(), *g)),
            )?;
            let records = offsets
                .into_iter()
                .map(|(topic, partition, offset)| OffsetRecord::TxnCommit {
                    group: group.clone(),
                    producer_id,
                    producer_epoch,
                    topic,
                    partition,
                    offset,
                })
                .collect();
            Ok(enqueue_charged(
                &actor.writes,
                records,
                growth,
                &actor.usage,
            ))
        });
        async move { queued.await??.await }
    }

    /// The transaction marker for `group`: `commit` turns the pending offsets
    /// of `producer_id` into committed offsets, abort drops them. The marker
    /// record is fsync'd before this resolves, so the decision survives a
    /// crash. Idempotent: with nothing pending (a marker re-sent after a
    /// restart, or a group deleted meanwhile) it changes nothing and is Ok.
    /// Ordered after every offset write queued before it.
    pub fn complete_txn(
        &self,
        group: Arc<str>,
        producer_id: i64,
        commit: bool,
    ) -> impl Future<Output = Result<(), ResponseError>> + Send + 'static {
        let writes = self.writes.clone();
        let jobs = self.jobs.clone();
        let queued = self.call(move |actor| {
            // The coordinator's id when it has the group, so the table shares it.
            let group = actor.coordinator.group_key(&group).unwrap_or(group);
            let written = enqueue_write(
                &writes,
                vec![OffsetRecord::TxnMarker {
                    group: group.clone(),
                    producer_id,
                    commit,
                }],
            );
            (group, written)
        });
        async move {
            let (group_id, written) = queued.await?;
            written.await?;
            if commit {
                // The group may have been forgotten while only pending offsets
                // were known; committed offsets make it a (possibly Empty) group.
                let _ = jobs.send(Box::new(move |actor: &mut Actor| {
                    actor
                        .coordinator
                        .ensure_group(&group_id, actor.clock.now_unsigned_ms())
                }));
            }
            Ok(())
        }
    }

    /// Whether a transaction holds a pending offset for this partition of the
    /// group (OffsetFetch `require_stable` then answers UNSTABLE_OFFSET_COMMIT).
    pub fn has_pending_txn_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .has_pending(group_id, topic, partition)
    }

    /// Resolves once every offset write queued before this call is durable
    /// and visible to [`GroupService::committed`] (OffsetFetch waits on it, so
    /// a client reads its own earlier commits).
    pub fn barrier(&self) -> impl Future<Output = Result<(), ResponseError>> + Send + 'static {
        let writes = self.writes.clone();
        let queued = self.call(move |_| enqueue_write(&writes, Vec::new()));
        async move { queued.await?.await }
    }

    /// The committed offset of one partition, if any.
    pub fn committed(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
    ) -> Option<CommittedOffset> {
        self.table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(group_id, topic, partition)
            .cloned()
    }

    /// Every (group, producer id) with transactional offsets still pending (no marker
    /// has decided them yet).
    pub fn pending_txn_offsets(&self) -> Vec<(Arc<str>, i64)> {
        let table = self
            .table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table
            .group_ids()
            .flat_map(|group| {
                table
                    .pending(group)
                    .into_iter()
                    .flat_map(|txns| txns.keys().map(|pid| (group.clone(), *pid)))
            })
            .collect()
    }

    /// Every committed offset of a group, as (topic, partition, offset).
    pub fn committed_all(&self, group_id: &str) -> Vec<(String, i32, CommittedOffset)> {
        let table = self
            .table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table
            .group(group_id)
            .map(|offsets| {
                offsets
                    .iter()
                    .map(|((t, p), o)| (t.clone(), *p, o.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn describe(
        &self,
        group_ids: Vec<String>,
    ) -> impl Future<Output = Result<Vec<GroupDescription>, ResponseError>> + Send + 'static {
        self.call(move |actor| {
            group_ids
                .iter()
                .map(|g| actor.coordinator.describe(g))
                .collect()
        })
    }

    pub fn list(
        &self,
    ) -> impl Future<Output = Result<Vec<GroupListing>, ResponseError>> + Send + 'static {
        self.call(|actor| actor.coordinator.list())
    }

    /// DeleteGroups for one group: the group and, durably, all its offsets.
    pub fn delete_group(
        &self,
        group_id: String,
    ) -> impl Future<Output = Result<(), ResponseError>> + Send + 'static {
        let writes = self.writes.clone();
        let queued = self.call(move |actor| {
            let key = actor.coordinator.group_key(&group_id);
            let (result, effects) = actor
                .coordinator
                .delete_group(actor.clock.now_unsigned_ms(), &group_id);
            actor.apply(effects);
            result?;
            let group = key.unwrap_or_else(|| Arc::from(group_id));
            Ok(enqueue_write(
                &writes,
                vec![OffsetRecord::GroupDeleted { group }],
            ))
        });
        async move { queued.await??.await }
    }

    /// After a topic is deleted: removes, durably, every group's committed and pending
    /// offsets of its partitions, as Kafka's coordinator does, so a topic created again
    /// under the same name does not inherit offsets of the old log. Offset writes queued
    /// before this call are durable first (a barrier), so a commit accepted before the
    /// deletion is removed too; commits after it are refused for the unknown partition.
    pub fn delete_topic_offsets(
        &self,
        topic: String,
    ) -> impl Future<Output = Result<(), ResponseError>> + Send + 'static {
        let barrier = self.barrier();
        let writes = self.writes.clone();
        let table = self.table.clone();
        async move {
            barrier.await?;
            let tombstones = table
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .topic_tombstones(&topic);
            if tombstones.is_empty() {
                return Ok(());
            }
            enqueue_write(&writes, tombstones).await
        }
    }

    /// At start, before any request is served and before the transaction coordinator
    /// decides pending offsets: removes, durably, every group's committed and pending
    /// offsets of each topic for which `exists` is false. DeleteTopics removes them itself
    /// ([`GroupService::delete_topic_offsets`]), but a crash after the topic's removal is
    /// durable and before its tombstones are leaves them behind, and a topic created again
    /// under the name would hand them to its groups. Pending offsets go outright (Kafka's
    /// removeOffsets), so no marker later commits them. Offsets are only ever committed
    /// for existing topics, so a missing topic is a deleted one. Resolves to (topic,
    /// number of groups that had its offsets), per topic removed, once durable.
    pub fn forget_deleted_topics(
        &self,
        exists: impl Fn(&str) -> bool,
    ) -> impl Future<Output = Result<Vec<(String, usize)>, ResponseError>> + Send + 'static {
        let (removed, tombstones) = {
            let table = self
                .table
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut removed = Vec::new();
            let mut tombstones = Vec::new();
            for topic in table.topics().into_iter().filter(|t| !exists(t)) {
                let records = table.topic_tombstones(topic);
                let groups: BTreeSet<&str> = records
                    .iter()
                    .filter_map(|r| match r {
                        OffsetRecord::Delete { group, .. } => Some(&**group),
                        _ => None,
                    })
                    .collect();
                removed.push((topic.to_owned(), groups.len()));
                tombstones.extend(records);
            }
            (removed, tombstones)
        };
        let written = (!tombstones.is_empty()).then(|| enqueue_write(&self.writes, tombstones));
        async move {
            if let Some(written) = written {
                written.await?;
            }
            for (topic, groups) in &removed {
                info!(%topic, groups, "removed the group offsets of a topic deleted before the restart");
            }
            Ok(removed)
        }
    }

    /// OffsetDelete: deletes the offsets of partitions the group does not consume.
    /// Resolves to one error (or none) per requested partition, in order.
    pub fn delete_offsets(
        &self,
        group_id: String,
        partitions: Vec<(String, i32)>,
    ) -> impl Future<Output = Result<Vec<Option<ResponseError>>, ResponseError>> + Send + 'static
    {
        let writes = self.writes.clone();
        let table = self.table.clone();
        let queued = self.call(move |actor| {
            let guard: SubscribedTopics = actor.coordinator.offset_delete_guard(&group_id)?;
            let table = table
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut errors = Vec::with_capacity(partitions.len());
            let mut records = Vec::new();
            for (topic, partition) in partitions {
                if guard.contains(&topic) {
                    errors.push(Some(ResponseError::GroupSubscribedToTopic));
                    continue;
                }
                errors.push(None);
                if table.get(&group_id, &topic, partition).is_some() {
                    if let Some(group) = table.group_key(&group_id) {
                        records.push(OffsetRecord::Delete {
                            group: group.clone(),
                            topic,
                            partition,
                        });
                    }
                }
            }
            Ok((errors, enqueue_write(&writes, records)))
        });
        async move {
            let (errors, written) = queued.await??;
            written.await?;
            Ok(errors)
        }
    }
}

/// On the actor: the cost committing `offsets` for `group_id` adds (as pending
/// offsets of `producer_id` with one), if it fits `group.state.max.bytes` (with the
/// group itself when new); else INVALID_COMMIT_OFFSET_SIZE. INVALID_GROUP_ID first for
/// a group id that does not fit `id.max.bytes`. Nothing is kept when refused.
fn admit_offsets(
    actor: &mut Actor,
    table: &RwLock<OffsetTable>,
    group_id: &str,
    producer_id: Option<i64>,
    offsets: &[(String, i32, CommittedOffset)],
) -> Result<u64, ResponseError> {
    actor.coordinator.config().limits.check_group_id(group_id)?;
    let growth = table
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .commit_growth(group_id, producer_id, offsets);
    actor.coordinator.admit_offsets(group_id, growth)?;
    Ok(growth)
}

/// Queues `records` for the offset writer (an empty list is a barrier) and
/// returns a future of their durability.
fn enqueue_write(
    writes: &mpsc::UnboundedSender<WriteRequest>,
    records: Vec<OffsetRecord>,
) -> impl Future<Output = Result<(), ResponseError>> + Send + 'static {
    send(writes, records, 0).1
}

/// [`enqueue_write`] of records whose offsets cost `reserved`, which stays charged
/// to `usage` until the writer has applied them.
fn enqueue_charged(
    writes: &mpsc::UnboundedSender<WriteRequest>,
    records: Vec<OffsetRecord>,
    reserved: u64,
    usage: &OffsetUsage,
) -> impl Future<Output = Result<(), ResponseError>> + Send + 'static {
    usage.reserved.fetch_add(reserved, Ordering::Relaxed);
    let (sent, written) = send(writes, records, reserved);
    if !sent {
        usage.release(reserved);
    }
    written
}

/// Sends one write request: whether it was queued, and a future of its durability.
fn send(
    writes: &mpsc::UnboundedSender<WriteRequest>,
    records: Vec<OffsetRecord>,
    reserved: u64,
) -> (
    bool,
    impl Future<Output = Result<(), ResponseError>> + Send + 'static,
) {
    let (done, wait) = oneshot::channel();
    let sent = writes
        .send(WriteRequest {
            records,
            reserved,
            done,
        })
        .is_ok();
    (sent, async move {
        if !sent {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        wait.await
            .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
    })
}

fn unexpected<T>(response: Response, fallback: T) -> T {
    error!(
        ?response,
        "coordinator answered with the wrong kind of response"
    );
    fallback
}

/// The actor loop: jobs, timers and the periodic offset expiry.
async fn run_actor(
    mut actor: Actor,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    mut shutdown: watch::Receiver<bool>,
    service: GroupService,
    config: GroupServiceConfig,
) {
    let period = Duration::from_millis(config.retention_check_interval_ms.max(1));
    let mut expiry = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let sleep = actor
            .timers
            .next_deadline()
            .map(|d| Duration::from_millis(d.saturating_sub(actor.clock.now_unsigned_ms())));
        tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => {
                    actor.coordinator.set_offsets_bytes(actor.usage.total());
                    job(&mut actor)
                }
                None => break,
            },
            _ = async {
                match sleep {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => actor.fire_due_timers(),
            _ = expiry.tick() => expire_offsets(&mut actor, &service, config.offsets_retention_ms),
            _ = stopped(&mut shutdown) => break,
        }
    }
    debug!("group coordinator stopped");
}

/// Resolves once `shutdown` is true (never, if its sender is gone without saying so).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Deletes offsets of empty groups past retention, then forgets empty groups
/// that have no offsets left.
fn expire_offsets(actor: &mut Actor, service: &GroupService, retention_ms: i64) {
    let now = wall_ms() as i64;
    let tombstones = {
        let table = service
            .table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let coordinator = &actor.coordinator;
        table.expired(now, retention_ms, |group| {
            match coordinator.group_state(group) {
                Some((GroupState::Empty, since)) => GroupActivity::EmptySince(Some(since as i64)),
                Some(_) => GroupActivity::Active,
                None => GroupActivity::EmptySince(None),
            }
        })
    };
    let table = service.table.clone();
    let forget_empty = move |actor: &mut Actor| {
        let table = table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let empty: Vec<String> = actor
            .coordinator
            .list()
            .into_iter()
            .filter(|g| g.state == GroupState::Empty && !table.has_group(&g.group_id))
            .map(|g| g.group_id)
            .collect();
        for group in empty {
            if let Some(group) = actor.coordinator.remove_group_if_empty(&group) {
                debug!(group = %group, "forgot empty group without offsets");
                // Drop its stored membership too (harmless if it had none);
                // ordered after any store of the group queued before.
                let tombstone = enqueue_write(
                    &actor.writes,
                    vec![OffsetRecord::GroupMetadata {
                        group,
                        metadata: None,
                    }],
                );
                tokio::spawn(async move {
                    if let Err(e) = tombstone.await {
                        warn!(error = ?e, "could not write a group tombstone");
                    }
                });
            }
        }
    };
    if tombstones.is_empty() {
        forget_empty(actor);
        return;
    }
    info!(
        count = tombstones.len(),
        "expiring committed offsets of empty groups"
    );
    let written = enqueue_write(&service.writes, tombstones);
    let jobs = service.jobs.clone();
    tokio::spawn(async move {
        if written.await.is_err() {
            warn!("could not write expired offsets; will retry at the next check");
            return;
        }
        let _ = jobs.send(Box::new(forget_empty));
    });
}

/// The offset writer loop: batches concurrent writes into one fsync.
async fn run_offset_writer(
    log: OffsetLog,
    table: Arc<RwLock<OffsetTable>>,
    usage: Arc<OffsetUsage>,
    mut writes: mpsc::UnboundedReceiver<WriteRequest>,
) {
    let log = Arc::new(Mutex::new(log));
    while let Some(first) = writes.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = writes.try_recv() {
            batch.push(more);
        }
        let reserved: u64 = batch.iter().map(|w| w.reserved).sum();
        let records: Vec<OffsetRecord> = batch
            .iter_mut()
            .flat_map(|w| std::mem::take(&mut w.records))
            .collect();
        if records.is_empty() {
            // Only barriers: everything queued before them is already durable.
            for w in batch {
                let _ = w.done.send(Ok(()));
            }
            continue;
        }
        let (log_ref, table_ref, usage_ref) = (log.clone(), table.clone(), usage.clone());
        let appended = tokio::task::spawn_blocking(move || {
            let mut log = log_ref.lock().unwrap_or_else(|p| p.into_inner());
            log.append(&records)?;
            let mut table = table_ref.write().unwrap_or_else(|p| p.into_inner());
            for record in records {
                table.apply(record);
            }
            usage_ref.applied.store(table.bytes(), Ordering::Relaxed);
            Ok::<bool, OffsetLogError>(log.needs_compaction())
        })
        .await;
        usage.release(reserved);
        let compact = match appended {
            Ok(Ok(compact)) => {
                for w in batch {
                    let _ = w.done.send(Ok(()));
                }
                compact
            }
            Ok(Err(e)) => {
                error!(error = %e, "cannot write committed offsets");
                for w in batch {
                    let _ = w.done.send(Err(ResponseError::CoordinatorNotAvailable));
                }
                false
            }
            Err(e) => {
                error!(error = %e, "offset writer task failed");
                for w in batch {
                    let _ = w.done.send(Err(ResponseError::CoordinatorNotAvailable));
                }
                false
            }
        };
        if compact {
            let (log_ref, table_ref) = (log.clone(), table.clone());
            let compacted = tokio::task::spawn_blocking(move || {
                let mut log = log_ref.lock().unwrap_or_else(|p| p.into_inner());
                let snapshot = table_ref
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .snapshot();
                log.rewrite(&snapshot)
            })
            .await;
            match compacted {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "offsets log compaction failed; will retry"),
                Err(e) => warn!(error = %e, "offsets log compaction task failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(n: i64) -> CommittedOffset {
        CommittedOffset {
            offset: n,
            leader_epoch: -1,
            metadata: Some(format!("meta{n}")),
            commit_timestamp_ms: wall_ms() as i64,
        }
    }

    #[tokio::test]
    async fn commits_are_durable_and_replayed_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(false);
        let service = GroupService::start(GroupServiceConfig::default(), dir.path(), rx)
            .await
            .unwrap();
        let commits = (0..20).map(|i| {
            let service = service.clone();
            async move {
                service
                    .commit_offsets(
                        "g".into(),
                        String::new(),
                        None,
                        -1,
                        vec![("t".into(), i, offset(i as i64))],
                    )
                    .await
            }
        });
        for result in futures::future::join_all(commits).await {
            assert_eq!(result, Ok(()));
        }
        let seven = service.committed("g", "t", 7).unwrap();
        assert_eq!(
            (seven.offset, seven.metadata.as_deref()),
            (7, Some("meta7"))
        );
        let listed = service.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, GroupState::Empty);
        tx.send(true).unwrap();

        let (_tx2, rx2) = watch::channel(false);
        let again = GroupService::start(GroupServiceConfig::default(), dir.path(), rx2)
            .await
            .unwrap();
        assert_eq!(again.committed_all("g").len(), 20);
        assert_eq!(
            again.committed("g", "t", 3).and_then(|o| o.metadata),
            Some("meta3".to_string())
        );
        assert_eq!(again.list().await.unwrap()[0].group_id, "g");
        again.delete_group("g".into()).await.unwrap();
        assert!(again.committed_all("g").is_empty());
        assert_eq!(
            again.delete_group("g".into()).await,
            Err(ResponseError::GroupIdNotFound)
        );
    }

    #[tokio::test]
    async fn a_fetch_after_a_commit_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(false);
        let service = GroupService::start(GroupServiceConfig::default(), dir.path(), rx)
            .await
            .unwrap();
        for n in 0..50 {
            // Queued in this order, as a connection's requests are; not awaited.
            let commit = service.commit_offsets(
                "g".into(),
                String::new(),
                None,
                -1,
                vec![("t".into(), 0, offset(n))],
            );
            let barrier = service.barrier();
            barrier.await.unwrap();
            assert_eq!(service.committed("g", "t", 0).map(|o| o.offset), Some(n));
            commit.await.unwrap();
        }
    }

    #[tokio::test]
    async fn offsets_of_empty_groups_expire() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(false);
        let config = GroupServiceConfig {
            offsets_retention_ms: 0,
            retention_check_interval_ms: 1,
            ..GroupServiceConfig::default()
        };
        let service = GroupService::start(config, dir.path(), rx).await.unwrap();
        service
            .commit_offsets(
                "g".into(),
                String::new(),
                None,
                -1,
                vec![("t".into(), 0, offset(1))],
            )
            .await
            .unwrap();
        // Expiry runs every millisecond on the actor; give it a few rounds.
        let mut rounds = 0;
        while service.committed("g", "t", 0).is_some() || !service.list().await.unwrap().is_empty()
        {
            rounds += 1;
            assert!(rounds < 10_000, "offsets never expired");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn start(dir: &Path, config: GroupServiceConfig) -> (GroupService, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let service = GroupService::start(config, dir, rx).await.unwrap();
        (service, tx)
    }

    fn stop(tx: watch::Sender<bool>) {
        tx.send(true).unwrap();
    }

    fn offsets_of(service: &GroupService, group: &str) -> Vec<(i32, i64)> {
        service
            .committed_all(group)
            .into_iter()
            .map(|(_, p, o)| (p, o.offset))
            .collect()
    }

    #[tokio::test]
    async fn txn_offsets_are_invisible_until_commit_and_abort_drops_them() {
        let dir = tempfile::tempdir().unwrap();
        let (service, _tx) = start(dir.path(), GroupServiceConfig::default()).await;
        service
            .commit_offsets(
                "g".into(),
                String::new(),
                None,
                -1,
                vec![("t".into(), 0, offset(1))],
            )
            .await
            .unwrap();
        service
            .commit_txn_offsets("g".into(), 7, 0, None, vec![("t".into(), 0, offset(5))])
            .await
            .unwrap();
        service
            .commit_txn_offsets(
                "g".into(),
                7,
                0,
                Some((String::new(), None, -1)),
                vec![("t".into(), 0, offset(6)), ("t".into(), 1, offset(9))],
            )
            .await
            .unwrap();
        service
            .commit_txn_offsets("g".into(), 8, 0, None, vec![("t".into(), 2, offset(3))])
            .await
            .unwrap();
        service.barrier().await.unwrap();
        assert_eq!(offsets_of(&service, "g"), vec![(0, 1)]);
        assert!(service.has_pending_txn_offset("g", "t", 0));
        assert!(service.has_pending_txn_offset("g", "t", 2));
        assert!(!service.has_pending_txn_offset("g", "t", 3));

        service.complete_txn("g".into(), 7, true).await.unwrap();
        assert_eq!(offsets_of(&service, "g"), vec![(0, 6), (1, 9)]);
        assert!(!service.has_pending_txn_offset("g", "t", 0));
        service.complete_txn("g".into(), 8, false).await.unwrap();
        assert_eq!(offsets_of(&service, "g"), vec![(0, 6), (1, 9)]);
        assert!(!service.has_pending_txn_offset("g", "t", 2));
        // Idempotent: nothing pending any more.
        service.complete_txn("g".into(), 8, true).await.unwrap();
        service
            .complete_txn("unknown".into(), 1, true)
            .await
            .unwrap();
        assert_eq!(offsets_of(&service, "g"), vec![(0, 6), (1, 9)]);
        assert!(service.committed_all("unknown").is_empty());
    }

    #[tokio::test]
    async fn txn_offset_commit_checks_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let (service, _tx) = start(dir.path(), GroupServiceConfig::default()).await;
        let result = service
            .commit_txn_offsets(
                "g".into(),
                7,
                0,
                Some(("someone".into(), None, -1)),
                vec![("t".into(), 0, offset(5))],
            )
            .await;
        assert_eq!(result, Err(ResponseError::UnknownMemberId));
        let result = service
            .commit_txn_offsets(
                "g".into(),
                7,
                0,
                Some((String::new(), None, 3)),
                vec![("t".into(), 0, offset(5))],
            )
            .await;
        assert_eq!(result, Err(ResponseError::IllegalGeneration));
        service.barrier().await.unwrap();
        assert!(!service.has_pending_txn_offset("g", "t", 0));
    }

    #[tokio::test]
    async fn pending_txn_offsets_survive_a_restart_and_a_later_marker_decides_them() {
        let dir = tempfile::tempdir().unwrap();
        let (service, tx) = start(dir.path(), GroupServiceConfig::default()).await;
        service
            .commit_txn_offsets("g".into(), 7, 2, None, vec![("t".into(), 0, offset(5))])
            .await
            .unwrap();
        service
            .commit_txn_offsets("g".into(), 8, 0, None, vec![("t".into(), 1, offset(6))])
            .await
            .unwrap();
        stop(tx);

        let (again, tx) = start(dir.path(), GroupServiceConfig::default()).await;
        assert!(again.has_pending_txn_offset("g", "t", 0));
        assert!(again.has_pending_txn_offset("g", "t", 1));
        assert!(again.committed_all("g").is_empty());
        // A group known only from pending offsets is listed.
        assert_eq!(again.list().await.unwrap()[0].group_id, "g");
        again.complete_txn("g".into(), 7, true).await.unwrap();
        again.complete_txn("g".into(), 8, false).await.unwrap();
        assert_eq!(offsets_of(&again, "g"), vec![(0, 5)]);
        stop(tx);

        let (third, _tx) = start(dir.path(), GroupServiceConfig::default()).await;
        assert_eq!(offsets_of(&third, "g"), vec![(0, 5)]);
        assert!(!third.has_pending_txn_offset("g", "t", 0));
        assert!(!third.has_pending_txn_offset("g", "t", 1));
    }

    /// The state a crash between DeleteTopics' durable removal of "gone" and the durable
    /// removal of its offsets leaves: the start-up sweep removes committed and pending
    /// offsets of "gone" only, durably, and a marker deciding a swept transaction later
    /// commits only what is left of it.
    #[tokio::test]
    async fn offsets_of_topics_that_no_longer_exist_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (service, tx) = start(dir.path(), GroupServiceConfig::default()).await;
        let commit = |group: &str, topic: &str, partition: i32, n: i64| {
            service.commit_offsets(
                group.into(),
                String::new(),
                None,
                -1,
                vec![(topic.into(), partition, offset(n))],
            )
        };
        commit("g1", "gone", 0, 1).await.unwrap();
        commit("g1", "kept", 0, 2).await.unwrap();
        service
            .commit_txn_offsets(
                "g2".into(),
                7,
                0,
                None,
                vec![("gone".into(), 0, offset(3)), ("kept".into(), 1, offset(4))],
            )
            .await
            .unwrap();
        service
            .commit_txn_offsets("g3".into(), 8, 0, None, vec![("gone".into(), 1, offset(5))])
            .await
            .unwrap();
        stop(tx);

        let (again, tx) = start(dir.path(), GroupServiceConfig::default()).await;
        assert!(again.has_pending_txn_offset("g3", "gone", 1));
        let removed = again
            .forget_deleted_topics(|topic| topic != "gone")
            .await
            .unwrap();
        assert_eq!(removed, vec![("gone".to_string(), 3)]);
        assert!(again.committed("g1", "gone", 0).is_none());
        assert_eq!(again.committed("g1", "kept", 0).map(|o| o.offset), Some(2));
        assert!(!again.has_pending_txn_offset("g2", "gone", 0));
        assert!(again.has_pending_txn_offset("g2", "kept", 1));
        assert!(!again.has_pending_txn_offset("g3", "gone", 1));
        assert_eq!(again.pending_txn_offsets(), vec![(Arc::from("g2"), 7)]);
        // The transactions' markers come after the sweep: only what is left is decided.
        again.complete_txn("g2".into(), 7, true).await.unwrap();
        again.complete_txn("g3".into(), 8, true).await.unwrap();
        assert_eq!(offsets_of(&again, "g2"), vec![(1, 4)]);
        assert!(again.committed("g2", "gone", 0).is_none());
        assert!(again.committed_all("g3").is_empty());
        assert!(again
            .forget_deleted_topics(|topic| topic != "gone")
            .await
            .unwrap()
            .is_empty());
        stop(tx);

        // Durable: without a sweep (the topic could exist again) nothing comes back.
        let (third, _tx) = start(dir.path(), GroupServiceConfig::default()).await;
        assert!(third.committed("g1", "gone", 0).is_none());
        assert_eq!(third.committed("g1", "kept", 0).map(|o| o.offset), Some(2));
        assert!(third.committed("g2", "gone", 0).is_none());
        assert_eq!(offsets_of(&third, "g2"), vec![(1, 4)]);
        assert!(third.committed_all("g3").is_empty());
        assert!(third.pending_txn_offsets().is_empty());
    }

    #[tokio::test]
    async fn compaction_keeps_pending_txn_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let config = GroupServiceConfig {
            compact_threshold_bytes: 512,
            ..GroupServiceConfig::default()
        };
        let (service, tx) = start(dir.path(), config.clone()).await;
        service
            .commit_txn_offsets("g".into(), 7, 0, None, vec![("t".into(), 0, offset(5))])
            .await
            .unwrap();
        // Decided transactions and plain commits until the log compacted a few times.
        for n in 0..100 {
            service
                .commit_txn_offsets("g".into(), 8, 0, None, vec![("t".into(), 1, offset(n))])
                .await
                .unwrap();
            service
                .complete_txn("g".into(), 8, n % 2 == 0)
                .await
                .unwrap();
        }
        let logs: Vec<_> = std::fs::read_dir(dir.path().join("offsets"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(logs.len(), 1);
        assert_ne!(
            logs[0], "offsets-00000000000000000000.log",
            "never compacted"
        );
        stop(tx);

        let (again, _tx) = start(dir.path(), config).await;
        assert_eq!(offsets_of(&again, "g"), vec![(1, 98)]);
        assert!(again.has_pending_txn_offset("g", "t", 0));
        assert!(!again.has_pending_txn_offset("g", "t", 1));
        again.complete_txn("g".into(), 7, true).await.unwrap();
        assert_eq!(offsets_of(&again, "g"), vec![(0, 5), (1, 98)]);
    }

    #[tokio::test]
    async fn deleting_a_group_drops_its_pending_txn_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let (service, _tx) = start(dir.path(), GroupServiceConfig::default()).await;
        service
            .commit_txn_offsets("g".into(), 7, 0, None, vec![("t".into(), 0, offset(5))])
            .await
            .unwrap();
        service.delete_group("g".into()).await.unwrap();
        assert!(!service.has_pending_txn_offset("g", "t", 0));
        service.complete_txn("g".into(), 7, true).await.unwrap();
        assert!(service.committed_all("g").is_empty());
    }

    #[tokio::test]
    async fn a_damaged_frame_in_the_middle_loses_only_its_own_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (service, tx) = start(dir.path(), GroupServiceConfig::default()).await;
        // One frame per commit: each is awaited before the next.
        for p in 0..20 {
            service
                .commit_offsets(
                    "g".into(),
                    String::new(),
                    None,
                    -1,
                    vec![("t".into(), p, offset(100 + p as i64))],
                )
                .await
                .unwrap();
        }
        stop(tx);
        let offsets_dir = dir.path().join("offsets");
        let log = offsets_dir.join("offsets-00000000000000000000.log");
        let mut bytes = std::fs::read(&log).unwrap();
        // Find frame 10 by walking the length fields, then flip payload bytes.
        let mut pos = 0;
        for _ in 0..10 {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            pos += 8 + len;
        }
        for b in &mut bytes[pos + 12..pos + 16] {
            *b ^= 0x5a;
        }
        std::fs::write(&log, &bytes).unwrap();

        let (again, _tx) = start(dir.path(), GroupServiceConfig::default()).await;
        let expected: Vec<(i32, i64)> = (0..20)
            .filter(|p| *p != 10)
            .map(|p| (p, 100 + p as i64))
            .collect();
        assert_eq!(offsets_of(&again, "g"), expected);
        let copies: Vec<Vec<u8>> = std::fs::read_dir(&offsets_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".log.damaged-"))
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        assert_eq!(copies, vec![bytes]);
        // The broker keeps committing into the rewritten log.
        again
            .commit_offsets(
                "g".into(),
                String::new(),
                None,
                -1,
                vec![("t".into(), 10, offset(7))],
            )
            .await
            .unwrap();
        assert_eq!(again.committed("g", "t", 10).map(|o| o.offset), Some(7));
    }

    // ---- Durable membership across restarts ----

    fn join_request(member_id: &str, session_timeout_ms: i32) -> JoinGroup {
        JoinGroup {
            group_id: "g".into(),
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), bytes::Bytes::from_static(b"sub"))],
            require_known_member_id: false,
            supports_skip_assignment: true,
        }
    }

    /// `n` members join "g" together and sync; returns their ids (the leader's
    /// first) and the generation.
    async fn stable_group(service: &GroupService, n: usize, session: i32) -> (Vec<String>, i32) {
        let joins: Vec<_> = (0..n)
            .map(|_| service.join(join_request("", session)))
            .collect();
        let results = futures::future::join_all(joins).await;
        let generation = results[0].generation_id;
        let leader = results[0].leader_id.clone();
        for r in &results {
            assert_eq!((r.error, r.generation_id), (None, generation));
        }
        let mut ids: Vec<String> = results.into_iter().map(|r| r.member_id).collect();
        ids.sort_by_key(|id| *id != leader);
        let sync = |member: &str, assignments: Vec<(String, bytes::Bytes)>| {
            service.sync(SyncGroup {
                group_id: "g".into(),
                generation_id: generation,
                member_id: member.into(),
                group_instance_id: None,
                protocol_type: None,
                protocol_name: None,
                assignments,
            })
        };
        let mut syncs: Vec<_> = ids.iter().skip(1).map(|id| sync(id, Vec::new())).collect();
        let assignments = ids
            .iter()
            .map(|id| (id.clone(), bytes::Bytes::from(format!("to-{id}"))))
            .collect();
        syncs.push(sync(&ids[0], assignments));
        for result in futures::future::join_all(syncs).await {
            assert_eq!(result.error, None);
        }
        (ids, generation)
    }

    fn heartbeat(
        service: &GroupService,
        member: &str,
        generation: i32,
    ) -> impl Future<Output = Option<ResponseError>> {
        service.heartbeat(Heartbeat {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
        })
    }

    #[tokio::test]
    async fn members_keep_their_generation_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (service, tx) = start(dir.path(), GroupServiceConfig::default()).await;
        let (ids, generation) = stable_group(&service, 2, 10_000).await;
        stop(tx);

        let (again, _tx) = start(dir.path(), GroupServiceConfig::default()).await;
        for id in &ids {
            assert_eq!(
                heartbeat(&again, id, generation).await,
                None,
                "no rebalance"
            );
            again
                .commit_offsets(
                    "g".into(),
                    id.clone(),
                    None,
                    generation,
                    vec![("t".into(), 0, offset(3))],
                )
                .await
                .expect("the member is known after the restart");
            again
                .commit_txn_offsets(
                    "g".into(),
                    7,
                    0,
                    Some((id.clone(), None, generation)),
                    vec![("t".into(), 1, offset(4))],
                )
                .await
                .expect("TxnOffsetCommit knows the member too");
        }
        let described = again.describe(vec!["g".into()]).await.unwrap();
        assert_eq!(described[0].state, GroupState::Stable);
        assert_eq!(described[0].protocol, "range");
        let mut members: Vec<(String, bytes::Bytes)> = described[0]
            .members
            .iter()
            .map(|m| (m.member_id.clone(), m.assignment.clone()))
            .collect();
        members.sort();
        let mut expected: Vec<(String, bytes::Bytes)> = ids
            .iter()
            .map(|id| (id.clone(), bytes::Bytes::from(format!("to-{id}"))))
            .collect();
        expected.sort();
        assert_eq!(members, expected);
    }

    /// Paused time: the session runs on tokio's clock, so the 50 ms steps below cost no
    /// real time and a loaded machine cannot make the 1 s session flake.
    #[tokio::test(start_paused = true)]
    async fn a_member_that_does_not_come_back_expires_and_the_rest_rebalance() {
        let dir = tempfile::tempdir().unwrap();
        let (service, tx) = start(dir.path(), GroupServiceConfig::default()).await;
        // The smallest session the default config allows (1 s).
        let (ids, generation) = stable_group(&service, 2, 1_000).await;
        stop(tx);

        let (again, _tx) = start(dir.path(), GroupServiceConfig::default()).await;
        // ids[0] heartbeats, ids[1] stays silent until its session (started
        // at the load) expires and the group rebalances.
        let mut rounds = 0;
        loop {
            match heartbeat(&again, &ids[0], generation).await {
                None => {}
                Some(ResponseError::RebalanceInProgress) => break,
                Some(other) => panic!("unexpected heartbeat error {other:?}"),
            }
            rounds += 1;
            assert!(rounds < 600, "the silent member never expired");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rejoined = again.join(join_request(&ids[0], 1_000)).await;
        assert_eq!(rejoined.error, None);
        assert_eq!(rejoined.generation_id, generation + 1);
        assert_eq!(rejoined.members.len(), 1);
        assert_eq!(
            heartbeat(&again, &ids[1], generation).await,
            Some(ResponseError::UnknownMemberId)
        );
    }

    /// Issue 15: sessions expire on the coordinator's monotonic clock (tokio's, paused
    /// here), not the wall clock, which an NTP step can move by hours. With time stopped
    /// and advanced by hand: a member that heartbeats every 300 ms stays, the silent one
    /// is still a member at 900 ms and is evicted once its 1 s session has passed.
    #[tokio::test(start_paused = true)]
    async fn a_silent_members_session_expires_on_the_monotonic_clock() {
        let dir = tempfile::tempdir().unwrap();
        let (service, _tx) = start(dir.path(), GroupServiceConfig::default()).await;
        let (ids, generation) = stable_group(&service, 2, 1_000).await;
        for _ in 0..3 {
            tokio::time::advance(Duration::from_millis(300)).await;
            assert_eq!(heartbeat(&service, &ids[0], generation).await, None);
        }
        tokio::time::advance(Duration::from_millis(300)).await;
        let mut answers = Vec::new();
        for _ in 0..10 {
            let answer = heartbeat(&service, &ids[0], generation).await;
            answers.push(answer);
            if answer == Some(ResponseError::RebalanceInProgress) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            answers.last(),
            Some(&Some(ResponseError::RebalanceInProgress)),
            "the silent member's session ended 200 ms ago: {answers:?}"
        );
        let rejoined = service.join(join_request(&ids[0], 1_000)).await;
        assert_eq!(rejoined.generation_id, generation + 1);
        assert_eq!(rejoined.members.len(), 1);
    }

    #[tokio::test]
    async fn an_empty_group_stays_empty_with_its_offsets_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (service, tx) = start(dir.path(), GroupServiceConfig::default()).await;
        let (ids, generation) = stable_group(&service, 1, 10_000).await;
        service
            .commit_offsets(
                "g".into(),
                ids[0].clone(),
                None,
                generation,
                vec![("t".into(), 0, offset(9))],
            )
            .await
            .unwrap();
        let left = service
            .leave(
                "g".into(),
                vec![LeavingMember {
                    member_id: ids[0].clone(),
                    group_instance_id: None,
                }],
            )
            .await;
        assert_eq!(left.members[0].1, None);
        // The Empty record is queued before this barrier.
        service.barrier().await.unwrap();
        stop(tx);

        let (again, _tx) = start(dir.path(), GroupServiceConfig::default()).await;
        let listed = again.list().await.unwrap();
        assert_eq!(
            (listed[0].group_id.as_str(), listed[0].state),
            ("g", GroupState::Empty)
        );
        assert_eq!(offsets_of(&again, "g"), vec![(0, 9)]);
        assert_eq!(
            heartbeat(&again, &ids[0], generation).await,
            Some(ResponseError::UnknownMemberId)
        );
        let (_, next) = stable_group(&again, 1, 10_000).await;
        assert_eq!(next, generation + 2, "the generation count goes on");
    }

    #[tokio::test]
    async fn compaction_keeps_the_latest_group_record() {
        let dir = tempfile::tempdir().unwrap();
        let config = GroupServiceConfig {
            compact_threshold_bytes: 512,
            coordinator: CoordinatorConfig {
                initial_rebalance_delay_ms: 0,
                ..CoordinatorConfig::default()
            },
            ..GroupServiceConfig::default()
        };
        let (service, tx) = start(dir.path(), config.clone()).await;
        // Generations come and go: a Stable and an Empty record each.
        for _ in 0..10 {
            let (ids, _) = stable_group(&service, 1, 10_000).await;
            service
                .leave(
                    "g".into(),
                    vec![LeavingMember {
                        member_id: ids[0].clone(),
                        group_instance_id: None,
                    }],
                )
                .await;
        }
        let (ids, generation) = stable_group(&service, 2, 10_000).await;
        service.barrier().await.unwrap();
        let logs: Vec<_> = std::fs::read_dir(dir.path().join("offsets"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(logs.len(), 1);
        assert_ne!(
            logs[0], "offsets-00000000000000000000.log",
            "never compacted"
        );
        stop(tx);

        let (again, _tx) = start(dir.path(), config).await;
        for id in &ids {
            assert_eq!(heartbeat(&again, id, generation).await, None);
        }
        let described = again.describe(vec!["g".into()]).await.unwrap();
        assert_eq!(described[0].members.len(), 2);
    }
}
