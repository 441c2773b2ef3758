//! The partition applier: reacts to each applied metadata batch, on its own thread (never
//! the async runtime), by making the partition logs and the topic table match the image —
//! opening or creating the partitions of new topics and new partitions, applying changed
//! configs to open logs, closing and deleting the partitions of removed topics.
//!
//! Invariants:
//! - A topic is published in the table (visible to requests) only once every partition
//!   the image gives it is open; a grown topic is republished with its new partitions
//!   once all of them are open.
//! - A removed topic leaves the table before its files are deleted (`Log::delete`), and
//!   only after its removal is durable (the batch is applied only once committed).
//! - [`PartitionApplier::wait_applied`] returns once every batch up to an offset has been
//!   handled here: the admin thread answers a request only then.
//!
//! Staging: on a single node a creation is all or nothing, as before the metadata log: the
//! admin thread opens the new partitions first ([`Broker::stage_partitions`]), appends
//! the records only for the topics whose partitions all opened, and the applier adopts
//! the staged logs instead of opening them. A partition the applier finds no staged log
//! for (every partition at start-up; in a cluster, replicas created by another
//! controller) it opens or creates itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;

use strata_storage::{Log, LogConfig, StorageError};
use tracing::{error, info, warn};
use uuid::Uuid;

use super::metadata::controller::Planned;
use super::metadata::image::PartitionImage;
use super::metadata::{AppliedBatch, ConfigResource, MetadataImage, MetadataRecord};
use super::partition::Partition;
use super::{log_config_for, open_in_parallel, partition_dir, Broker, Topic, TopicError};

/// The applier's thread, its queue, the logs staged for it and how far it got.
#[derive(Debug)]
pub(crate) struct PartitionApplier {
    /// None once stopped: the thread ends when this and every clone are gone.
    sender: Arc<Mutex<Option<mpsc::Sender<AppliedBatch>>>>,
    receiver: Mutex<Option<mpsc::Receiver<AppliedBatch>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Logs opened by the admin thread for records about to be appended, by (topic id,
    /// partition).
    staged: Mutex<HashMap<(Uuid, u32), Arc<Log>>>,
    progress: Mutex<Progress>,
    progressed: Condvar,
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    /// Every batch below this offset is handled.
    applied: u64,
    stopped: bool,
}

impl PartitionApplier {
    /// An applier that has handled everything below `applied` (the image it starts from).
    pub(crate) fn new(applied: u64) -> PartitionApplier {
        let (sender, receiver) = mpsc::channel();
        PartitionApplier {
            sender: Arc::new(Mutex::new(Some(sender))),
            receiver: Mutex::new(Some(receiver)),
            thread: Mutex::new(None),
            staged: Mutex::default(),
            progress: Mutex::new(Progress {
                applied,
                stopped: false,
            }),
            progressed: Condvar::new(),
        }
    }

    /// What the metadata log calls with each applied batch: queues it for the thread.
    pub(crate) fn listener(&self) -> super::metadata::log::Listener {
        let sender = self.sender.clone();
        Box::new(move |batch| {
            if let Some(sender) = lock(&sender).as_ref() {
                let _ = sender.send(batch);
            }
        })
    }

    /// Starts the thread for `broker` (a weak reference: it does not keep the broker
    /// alive).
    pub(crate) fn start(&self, broker: Weak<Broker>) -> std::io::Result<()> {
        let Some(receiver) = lock(&self.receiver).take() else {
            return Ok(());
        };
        let thread = std::thread::Builder::new()
            .name("strata-applier".to_owned())
            .spawn(move || {
                while let Ok(batch) = receiver.recv() {
                    let Some(broker) = broker.upgrade() else {
                        break;
                    };
                    let end = batch.image.next_offset;
                    let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        broker.apply_to_partitions(&batch)
                    }));
                    if applied.is_err() {
                        error!(
                            offset = batch.base_offset,
                            "applying a metadata batch to the partitions panicked"
                        );
                    }
                    broker.applier.advance(end);
                }
            })?;
        *lock(&self.thread) = Some(thread);
        Ok(())
    }

    fn advance(&self, applied: u64) {
        let mut progress = lock(&self.progress);
        progress.applied = progress.applied.max(applied);
        drop(progress);
        self.progressed.notify_all();
    }

    /// Waits until every batch below `offset` is handled. False when the applier stopped
    /// first.
    pub(crate) fn wait_applied(&self, offset: u64) -> bool {
        let mut progress = lock(&self.progress);
        while progress.applied < offset && !progress.stopped {
            progress = self
                .progressed
                .wait(progress)
                .unwrap_or_else(|e| e.into_inner());
        }
        progress.applied >= offset
    }

    /// Lets the thread finish the batches already queued and waits for it. Must not be
    /// called from the applier thread.
    pub(crate) fn stop(&self) {
        drop(lock(&self.sender).take());
        if let Some(thread) = lock(&self.thread).take() {
            if thread.join().is_err() {
                error!("the applier thread panicked");
            }
        }
        lock(&self.progress).stopped = true;
        self.progressed.notify_all();
    }

    fn take_staged(&self, topic: Uuid, partition: u32) -> Option<Arc<Log>> {
        lock(&self.staged).remove(&(topic, partition))
    }
}

fn lock<T>(slot: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every value behind these locks is replaced whole; a panic cannot leave one torn.
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// A topic the applier makes match the image.
struct Reconcile {
    id: Uuid,
    name: String,
    configs: BTreeMap<String, String>,
    log_config: LogConfig,
    /// Its partitions open now (index = partition).
    open: Vec<Arc<Partition>>,
    /// Every partition's replication state in the image (index = partition).
    states: Vec<PartitionImage>,
    /// Its partition count in the image.
    wanted: u32,
}

/// A partition that could not be opened.
pub(crate) struct OpenFailure {
    pub topic: String,
    pub partition: u32,
    pub error: StorageError,
}

impl Broker {
    /// Makes the partitions match one applied batch (the applier thread).
    fn apply_to_partitions(&self, batch: &AppliedBatch) {
        let image = &batch.image;
        let mut touched: Vec<Uuid> = Vec::new();
        let mut seen = HashSet::new();
        let mut removed = Vec::new();
        let mut broker_configs = false;
        let mut touch = |id: Uuid| {
            if seen.insert(id) {
                touched.push(id);
            }
        };
        for record in batch.records.iter() {
            match record {
                MetadataRecord::Topic(r) => touch(r.topic_id),
                MetadataRecord::Partition(r) => touch(r.topic_id),
                MetadataRecord::PartitionChange(r) => touch(r.topic_id),
                MetadataRecord::RemoveTopic(r) => removed.push(r.topic_id),
                MetadataRecord::Config(r) => match &r.resource {
                    ConfigResource::Topic(name) => {
                        if let Some(topic) = image.topics.by_name(name) {
                            touch(topic.id);
                        }
                    }
                    ConfigResource::Broker(_) => broker_configs = true,
                },
                MetadataRecord::Cluster(_)
                | MetadataRecord::RegisterBroker(_)
                | MetadataRecord::ProducerIds(_) => {}
            }
        }
        for id in removed {
            self.remove_partitions(id);
        }
        if broker_configs {
            self.apply_broker_configs(image);
        }
        let failures = self.reconcile(image, &touched);
        for failure in failures {
            error!(topic = %failure.topic, partition = failure.partition, error = %failure.error,
                   "cannot open a partition the metadata lists; its topic is not served");
        }
    }

    /// Opens every partition of `image` (the start-up). Returns every partition that could
    /// not be opened.
    pub(crate) fn load_partitions(&self, image: &MetadataImage) -> Vec<OpenFailure> {
        let ids: Vec<Uuid> = image.topics.iter().map(|t| t.id).collect();
        self.reconcile(image, &ids)
    }

    /// Makes the topics `ids` of the table match `image`: opens the partitions they lack
    /// (staged ones first), applies changed configs, publishes each topic whose partitions
    /// are all open.
    fn reconcile(&self, image: &MetadataImage, ids: &[Uuid]) -> Vec<OpenFailure> {
        let defaults = self.default_log_config();
        let mut topics: Vec<Reconcile> = Vec::new();
        for id in ids {
            let Some(topic) = image.topics.get(id) else {
                continue; // removed by the same batch
            };
            let configs = image.configs.topic(&topic.name);
            let log_config = log_config_for(&defaults, &configs).unwrap_or_else(|e| {
                warn!(topic = %topic.name, error = %e,
                      "stored topic config no longer valid; using broker defaults");
                defaults.clone()
            });
            let current = self.topic_by_id(*id);
            let open = current
                .as_ref()
                .map_or_else(Vec::new, |t| t.partitions.clone());
            if current.as_ref().is_some_and(|t| t.configs != configs) {
                for log in &open {
                    log.set_config(log_config.clone());
                }
            }
            let states = topic.partitions.clone();
            for (partition, state) in open.iter().zip(&states) {
                if let Err(e) = partition.update(state.clone()) {
                    // The log keeps its old epoch (a checkpoint write failed).
                    error!(topic = %topic.name, error = %e,
                           "cannot adopt a partition's new leader epoch");
                }
            }
            topics.push(Reconcile {
                id: *id,
                name: topic.name.clone(),
                configs,
                log_config,
                open,
                states,
                wanted: topic.partitions.len() as u32,
            });
        }
        // Staged logs are adopted; the rest are opened on several threads.
        let mut missing: Vec<(usize, u32)> = Vec::new();
        let mut adopted: Vec<BTreeMap<u32, Arc<Log>>> =
            topics.iter().map(|_| BTreeMap::new()).collect();
        for (t, topic) in topics.iter().enumerate() {
            for p in topic.open.len() as u32..topic.wanted {
                match self.applier.take_staged(topic.id, p) {
                    Some(log) => {
                        log.set_config(topic.log_config.clone());
                        adopted[t].insert(p, log);
                    }
                    None => missing.push((t, p)),
                }
            }
        }
        let data_dir = &self.config.data_dir;
        let outcomes = open_in_parallel(missing.len(), |i| {
            let (t, p) = missing[i];
            let topic = &topics[t];
            Log::open(
                partition_dir(data_dir, &topic.name, p),
                topic.log_config.clone(),
                &self.flusher,
            )
        });
        let mut failures = Vec::new();
        let mut failed = vec![false; topics.len()];
        for (&(t, p), outcome) in missing.iter().zip(outcomes) {
            match outcome {
                Some(Ok(log)) => {
                    adopted[t].insert(p, log);
                }
                Some(Err(error)) => {
                    failed[t] = true;
                    failures.push(OpenFailure {
                        topic: topics[t].name.clone(),
                        partition: p,
                        error,
                    });
                }
                None => failed[t] = true,
            }
        }
        let mut published = Vec::new();
        for ((topic, mut new), failed) in topics.into_iter().zip(adopted).zip(failed) {
            if failed {
                // Not published: close what was opened for it (nothing is deleted).
                for log in new.values() {
                    if let Err(e) = log.close() {
                        warn!(topic = %topic.name, error = %e, "closing a partition failed");
                    }
                }
                continue;
            }
            let open_count = topic.open.len();
            let mut partitions = topic.open;
            let mut wrapped = true;
            for p in partitions.len() as u32..topic.wanted {
                let (Some(log), Some(state)) = (new.remove(&p), topic.states.get(p as usize))
                else {
                    wrapped = false;
                    break;
                };
                match Partition::new(log.clone(), self.node_id(), state.clone()) {
                    Ok(partition) => partitions.push(Arc::new(partition)),
                    Err(error) => {
                        failures.push(OpenFailure {
                            topic: topic.name.clone(),
                            partition: p,
                            error,
                        });
                        new.insert(p, log);
                        wrapped = false;
                        break;
                    }
                }
            }
            if !wrapped {
                // Not published: close what was opened for it (nothing is deleted).
                let opened = partitions[open_count..].iter().map(|p| p.log().clone());
                for log in opened.chain(new.into_values()) {
                    if let Err(e) = log.close() {
                        warn!(topic = %topic.name, error = %e, "closing a partition failed");
                    }
                }
                continue;
            }
            published.push(Arc::new(Topic {
                name: topic.name,
                id: topic.id,
                partitions,
                configs: topic.configs,
            }));
        }
        let mut table = self.write_table();
        for topic in published {
            table.insert(topic);
        }
        failures
    }

    /// Takes topic `id` out of the table, then closes and deletes its partitions.
    fn remove_partitions(&self, id: Uuid) {
        let Some(topic) = self.write_table().remove_by_id(&id) else {
            return;
        };
        for (p, log) in topic.partitions.iter().enumerate() {
            if let Err(e) = log.delete() {
                warn!(topic = %topic.name, partition = p, error = %e,
                      "could not remove partition files; removed at next start");
            }
        }
        info!(topic = %topic.name, "deleted topic");
    }

    /// The dynamic broker configs of `image` become the broker-wide defaults, applied live
    /// to every partition (topic overrides on top).
    fn apply_broker_configs(&self, image: &MetadataImage) {
        self.broker_configs.apply_image(image);
        let defaults = self.default_log_config();
        for topic in self.topics() {
            match log_config_for(&defaults, &topic.configs) {
                Ok(config) => {
                    for log in &topic.partitions {
                        log.set_config(config.clone());
                    }
                }
                Err(e) => warn!(topic = %topic.name, error = %e,
                                "topic config does not combine with the new broker defaults"),
            }
        }
    }

    /// Opens partitions `first..end` of every planned topic, all in parallel, before their
    /// records are appended; one outcome per plan. A topic's partitions are staged only if
    /// all of them open: otherwise the ones that did are removed again, and so are the
    /// directories of the ones that failed half-way (a failure stops the request's
    /// remaining opens; their topics fail too). The admin thread.
    pub(crate) fn stage_partitions(&self, planned: &[Planned]) -> Vec<Result<(), TopicError>> {
        let jobs: Vec<(usize, u32)> = planned
            .iter()
            .enumerate()
            .flat_map(|(t, plan)| (plan.first..plan.end).map(move |p| (t, p)))
            .collect();
        let data_dir = &self.config.data_dir;
        let outcomes = open_in_parallel(jobs.len(), |i| {
            let (t, p) = jobs[i];
            let plan = &planned[t];
            let dir = partition_dir(data_dir, &plan.name, p);
            // A directory here is a leftover of an unfinished create or delete (the
            // metadata, which is authoritative, does not list it): start empty.
            if dir.exists() {
                if let Err(source) = std::fs::remove_dir_all(&dir) {
                    return Err(TopicError::StaleDir { path: dir, source });
                }
            }
            Log::open(dir, plan.log_config.clone(), &self.flusher).map_err(TopicError::from)
        });
        let mut opened: Vec<Vec<(u32, Arc<Log>)>> = planned.iter().map(|_| Vec::new()).collect();
        let mut errors: Vec<Option<TopicError>> = planned.iter().map(|_| None).collect();
        let mut incomplete = vec![false; planned.len()];
        let mut failed_dirs: Vec<PathBuf> = Vec::new();
        let mut first_failure: Option<String> = None;
        for (&(t, p), outcome) in jobs.iter().zip(outcomes) {
            match outcome {
                Some(Ok(log)) => opened[t].push((p, log)),
                Some(Err(e)) => {
                    let dir = partition_dir(data_dir, &planned[t].name, p);
                    first_failure.get_or_insert_with(|| format!("{}: {e}", dir.display()));
                    failed_dirs.push(dir);
                    errors[t].get_or_insert(e);
                }
                None => incomplete[t] = true,
            }
        }
        let mut staged = lock(&self.applier.staged);
        let outcomes = planned
            .iter()
            .zip(opened)
            .zip(errors.into_iter().zip(incomplete))
            .map(
                |((plan, logs), (error, incomplete))| match (error, incomplete) {
                    (None, false) => {
                        for (p, log) in logs {
                            staged.insert((plan.id, p), log);
                        }
                        Ok(())
                    }
                    (error, _) => {
                        discard_logs(logs.iter().map(|(_, log)| log));
                        Err(error.unwrap_or_else(|| {
                            TopicError::Aborted(format!(
                                "another partition of the same request failed: {}",
                                first_failure.as_deref().unwrap_or("unknown error")
                            ))
                        }))
                    }
                },
            )
            .collect();
        drop(staged);
        // After the logs above are closed, so their descriptors are free again.
        for dir in failed_dirs {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!(dir = %dir.display(), error = %e,
                                "could not remove the directory of a failed creation; \
                                 removed at next start"),
            }
        }
        outcomes
    }

    /// Removes the staged logs of `planned` that the applier did not adopt (their records
    /// were not appended). The admin thread.
    pub(crate) fn discard_staged(&self, planned: &[Planned]) {
        let logs: Vec<Arc<Log>> = {
            let mut staged = lock(&self.applier.staged);
            planned
                .iter()
                .flat_map(|plan| (plan.first..plan.end).map(move |p| (plan.id, p)))
                .filter_map(|key| staged.remove(&key))
                .collect()
        };
        discard_logs(logs.iter());
    }
}

/// Closes and removes the partitions of a topic that is not created after all.
fn discard_logs<'a>(logs: impl Iterator<Item = &'a Arc<Log>>) {
    for log in logs {
        if let Err(e) = log.delete() {
            warn!(dir = %log.dir().display(), error = %e, "could not remove partition files");
        }
    }
}
