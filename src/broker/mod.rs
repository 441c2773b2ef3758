//! Broker state: the topics this node hosts, their partition logs, and the persisted
//! metadata that names them.
//!
//! Invariants:
//! - A topic is visible to requests only after its metadata is durable (create), and its
//!   files are removed only after its removal is durable (delete). Metadata mutations are
//!   serialized by one lock; reads take a snapshot (`Arc<Topic>`) and never block on it
//!   for longer than a map lookup.
//! - Partition `p` of topic `t` lives in `<data_dir>/t-p/`.
//! - A `Topic` value is immutable; changing partitions or configs replaces the `Arc`.

mod admin;
pub mod broker_config;
pub mod metadata_store;
pub mod producer_ids;
pub mod record_log;
pub mod retention;
pub mod topic_config;
pub mod topic_name;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use strata_storage::{Flusher, Log, LogConfig, StorageError};
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::Config;
use metadata_store::{MetadataDocument, MetadataError, MetadataStore, TopicRecord};

/// One topic: its name, id, partition logs (index = partition number) and config overrides.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<Arc<Log>>,
    /// Per-topic overrides (Kafka config key -> value); absent keys take broker defaults.
    pub configs: BTreeMap<String, String>,
}

impl Topic {
    /// The log of partition `index`, if the topic has it.
    pub fn partition(&self, index: i32) -> Option<&Arc<Log>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    fn record(&self) -> TopicRecord {
        TopicRecord {
            name: self.name.clone(),
            id: self.id,
            partitions: self.partitions.len() as u32,
            configs: self.configs.clone(),
        }
    }
}

/// Why a topic operation failed; each maps to one Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("{0}")]
    InvalidName(#[from] topic_name::TopicNameError),
    #[error("Topic '{name}' collides with existing topic '{existing}'")]
    Collides { name: String, existing: String },
    #[error("Topic '{0}' already exists.")]
    AlreadyExists(String),
    #[error("This server does not host topic '{0}'.")]
    Unknown(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{message}")]
    InvalidConfig { code: i16, message: String },
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot remove stale partition directory {path}: {source}")]
    StaleDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot persist topic metadata: {0}")]
    Metadata(#[from] MetadataError),
}

impl TopicError {
    /// The Kafka error code for this failure.
    pub fn error_code(&self) -> i16 {
        match self {
            TopicError::InvalidName(e) => e.error_code(),
            TopicError::Collides { .. } => 17, // INVALID_TOPIC_EXCEPTION
            TopicError::AlreadyExists(_) => 36, // TOPIC_ALREADY_EXISTS
            TopicError::Unknown(_) => 3,       // UNKNOWN_TOPIC_OR_PARTITION
            TopicError::InvalidPartitions(_) => 37, // INVALID_PARTITIONS
            TopicError::InvalidConfig { code, .. } => *code,
            TopicError::Storage(_) | TopicError::StaleDir { .. } => 56, // KAFKA_STORAGE_ERROR
            TopicError::Metadata(_) => -1,                              // UNKNOWN_SERVER_ERROR
        }
    }
}

/// Failures opening the broker at start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("cannot open partition {topic}-{partition}: {source}")]
    OpenPartition {
        topic: String,
        partition: u32,
        source: StorageError,
    },
    #[error(transparent)]
    ProducerIds(#[from] producer_ids::ProducerIdError),
    #[error("--cluster-id {given} differs from the cluster id {stored} stored in the data dir")]
    ClusterIdMismatch { given: String, stored: String },
}

#[derive(Default)]
struct TopicTable {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, String>,
}

/// The broker's shared state, handed to every request handler as `Arc<Broker>`.
pub struct Broker {
    config: Config,
    advertised_host: String,
    advertised_port: i32,
    cluster_id: String,
    /// Dynamic broker configs and the broker-wide log settings they make with the static
    /// ones.
    broker_configs: broker_config::BrokerConfigs,
    flusher: Flusher,
    store: MetadataStore,
    /// InitProducerId: producer ids and epochs for idempotent producers.
    producer_ids: producer_ids::ProducerIds,
    topics: RwLock<TopicTable>,
    /// Serializes metadata mutations (create/delete/alter) and their document writes.
    admin: Mutex<()>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("node_id", &self.config.node_id)
            .field("cluster_id", &self.cluster_id)
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

/// Broker-wide log settings from the command line (topic overrides apply on top).
pub fn default_log_config(config: &Config) -> LogConfig {
    LogConfig {
        segment_bytes: config.default_segment_bytes,
        retention_ms: u64::try_from(config.default_retention_ms).ok(),
        retention_bytes: u64::try_from(config.default_retention_bytes).ok(),
        ..LogConfig::default()
    }
}

impl Broker {
    /// Opens (or initialises) the data dir and every partition listed in the metadata.
    /// `bound` is the listener's actual address (port 0 resolved), used for advertising.
    /// Blocking: call from a blocking context.
    pub fn open(config: Config, bound: SocketAddr) -> Result<Arc<Broker>, BrokerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| BrokerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let store = MetadataStore::open(&config.data_dir)?;
        let doc = match store.load()? {
            Some(doc) => {
                if let Some(given) = &config.cluster_id {
                    if *given != doc.cluster_id {
                        return Err(BrokerError::ClusterIdMismatch {
                            given: given.clone(),
                            stored: doc.cluster_id,
                        });
                    }
                }
                doc
            }
            None => {
                let cluster_id = config
                    .cluster_id
                    .clone()
                    .unwrap_or_else(|| Uuid::new_v4().simple().to_string());
                let doc = MetadataDocument::new(cluster_id);
                store.save(&doc)?;
                doc
            }
        };
        let broker_configs = broker_config::BrokerConfigs::open(store.dir(), &config)?;
        let producer_ids =
            producer_ids::ProducerIds::open(store.dir(), config.producer_id_expiration_ms)?;
        let default_log_config = broker_configs.log_config();
        let flusher = Flusher::start();
        let mut table = TopicTable::default();
        let log_configs: Vec<LogConfig> = doc
            .topics
            .iter()
            .map(|record| {
                log_config_for(&default_log_config, &record.configs).unwrap_or_else(|e| {
                    warn!(topic = %record.name, error = %e,
                          "stored topic config no longer valid; using broker defaults");
                    default_log_config.clone()
                })
            })
            .collect();
        let mut opened =
            open_partitions(&config.data_dir, &doc.topics, &log_configs, &flusher)?.into_iter();
        for record in &doc.topics {
            let partitions: Vec<Arc<Log>> =
                opened.by_ref().take(record.partitions as usize).collect();
            table.by_id.insert(record.id, record.name.clone());
            table.by_name.insert(
                record.name.clone(),
                Arc::new(Topic {
                    name: record.name.clone(),
                    id: record.id,
                    partitions,
                    configs: record.configs.clone(),
                }),
            );
        }
        remove_orphan_partition_dirs(&config.data_dir, &table);
        let advertised_host = config
            .advertised_host
            .clone()
            .unwrap_or_else(|| advertised_ip(bound));
        let advertised_port = i32::from(config.advertised_port.unwrap_or(bound.port()));
        info!(topics = table.by_name.len(), cluster_id = %doc.cluster_id,
              data_dir = %config.data_dir.display(), "broker state loaded");
        Ok(Arc::new(Broker {
            advertised_host,
            advertised_port,
            cluster_id: doc.cluster_id,
            broker_configs,
            flusher,
            store,
            producer_ids,
            topics: RwLock::new(table),
            admin: Mutex::new(()),
            config,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }
    pub fn advertised_host(&self) -> &str {
        &self.advertised_host
    }
    pub fn advertised_port(&self) -> i32 {
        self.advertised_port
    }
    /// Broker-wide log settings (static and dynamic broker configs); a topic's overrides
    /// apply on top of these.
    pub fn default_log_config(&self) -> LogConfig {
        self.broker_configs.log_config()
    }
    /// The flusher shared by every log in the data dir (for other broker-owned logs).
    pub fn flusher(&self) -> &Flusher {
        &self.flusher
    }
    /// The producer id allocator (InitProducerId).
    pub fn producer_ids(&self) -> &producer_ids::ProducerIds {
        &self.producer_ids
    }
    /// `<data_dir>/_strata`: the broker's own state directory.
    pub fn state_dir(&self) -> &Path {
        self.store.dir()
    }

    /// The topic named `name`, if it exists.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.read_table().by_name.get(name).cloned()
    }

    /// The topic whose id is `id`, if it exists.
    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        let table = self.read_table();
        table
            .by_id
            .get(&id)
            .and_then(|name| table.by_name.get(name))
            .cloned()
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.read_table().by_name.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The topic, created with the default partition count when it does not exist and
    /// auto-creation is enabled. `Ok(None)`: unknown and not created.
    pub fn topic_or_auto_create(&self, name: &str) -> Result<Option<Arc<Topic>>, TopicError> {
        if let Some(topic) = self.topic(name) {
            return Ok(Some(topic));
        }
        if !self.config.auto_create_topics {
            return Ok(None);
        }
        match self.create_topic(name, self.config.num_partitions, BTreeMap::new()) {
            Ok(topic) => {
                info!(
                    topic = name,
                    partitions = topic.partitions.len(),
                    "auto-created topic"
                );
                Ok(Some(topic))
            }
            Err(TopicError::AlreadyExists(_)) => Ok(self.topic(name)),
            Err(e) => Err(e),
        }
    }

    /// Checks everything `create_topic` would check, without creating anything
    /// (CreateTopics validate_only). Returns the resulting log config.
    pub fn validate_new_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<LogConfig, TopicError> {
        topic_name::validate_topic_name(name)?;
        {
            let table = self.read_table();
            if table.by_name.contains_key(name) {
                return Err(TopicError::AlreadyExists(name.to_string()));
            }
            if topic_name::has_collision_chars(name) {
                if let Some(existing) = table
                    .by_name
                    .keys()
                    .find(|t| topic_name::topic_names_collide(t, name))
                {
                    return Err(TopicError::Collides {
                        name: name.to_string(),
                        existing: existing.clone(),
                    });
                }
            }
        }
        if partitions < 1 {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions must be larger than 0, got {partitions}."
            )));
        }
        log_config_for(&self.default_log_config(), configs)
    }

    /// Creates a topic with `partitions` partitions and the given config overrides;
    /// durable when this returns Ok. Blocking (file I/O).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, TopicError> {
        let _guard = self.lock_admin();
        let log_config = self.validate_new_topic(name, partitions, &configs)?;
        let logs = self.open_new_partitions(name, 0..partitions as u32, &log_config)?;
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions: logs,
            configs,
        });
        let mut doc = self.document();
        doc.topics.push(topic.record());
        if let Err(e) = self.store.save(&doc) {
            discard_logs(&topic.partitions);
            return Err(e.into());
        }
        let mut table = self.write_table();
        table.by_id.insert(topic.id, topic.name.clone());
        table.by_name.insert(topic.name.clone(), topic.clone());
        Ok(topic)
    }

    /// Deletes a topic: its removal is made durable first, then its files are removed.
    /// Returns the deleted topic. Blocking (file I/O).
    pub fn delete_topic(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        let _guard = self.lock_admin();
        let topic = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let mut doc = self.document();
        doc.topics.retain(|t| t.name != name);
        self.store.save(&doc)?;
        {
            let mut table = self.write_table();
            table.by_name.remove(name);
            table.by_id.remove(&topic.id);
        }
        for (p, log) in topic.partitions.iter().enumerate() {
            if let Err(e) = log.delete() {
                warn!(topic = name, partition = p, error = %e,
                      "could not remove partition files; removed at next start");
            }
        }
        info!(topic = name, "deleted topic");
        Ok(topic)
    }

    /// Grows a topic to `new_total` partitions (CreatePartitions). With `validate_only`
    /// nothing changes. Blocking (file I/O).
    pub fn add_partitions(
        &self,
        name: &str,
        new_total: i32,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        let _guard = self.lock_admin();
        let topic = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let current = topic.partitions.len() as i32;
        if new_total <= current {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than or equal to the requested {new_total}."
            )));
        }
        if validate_only {
            return Ok(topic);
        }
        let log_config = log_config_for(&self.default_log_config(), &topic.configs)?;
        let mut partitions = topic.partitions.clone();
        let added =
            self.open_new_partitions(name, current as u32..new_total as u32, &log_config)?;
        partitions.extend(added.iter().cloned());
        let updated = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions,
            configs: topic.configs.clone(),
        });
        if let Err(e) = self.replace_topic(updated.clone()) {
            discard_logs(&added);
            return Err(e);
        }
        Ok(updated)
    }

    /// Clean shutdown of the storage: closes every log (flush + clean marker), then stops
    /// the flusher. Blocking. Requests must have stopped.
    pub fn close(&self) {
        // Closing is mostly fsyncs (flush, checkpoint, clean marker): on several threads,
        // like opening.
        let topics = self.topics();
        let jobs: Vec<(&Topic, usize)> = topics
            .iter()
            .flat_map(|t| (0..t.partitions.len()).map(move |p| (&**t, p)))
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..OPEN_THREADS.min(jobs.len()) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(topic, p)) = jobs.get(i) else {
                        break;
                    };
                    if let Err(e) = topic.partitions[p].close() {
                        warn!(topic = %topic.name, partition = p, error = %e,
                              "closing partition failed");
                    }
                });
            }
        });
        self.flusher.stop();
        info!("storage closed cleanly");
    }

    /// Persists a changed topic (same name and id) and publishes it. Caller holds `admin`.
    fn replace_topic(&self, updated: Arc<Topic>) -> Result<(), TopicError> {
        let mut doc = self.document();
        for record in &mut doc.topics {
            if record.name == updated.name {
                *record = updated.record();
            }
        }
        self.store.save(&doc)?;
        self.write_table()
            .by_name
            .insert(updated.name.clone(), updated);
        Ok(())
    }

    fn open_new_partitions(
        &self,
        name: &str,
        range: std::ops::Range<u32>,
        log_config: &LogConfig,
    ) -> Result<Vec<Arc<Log>>, TopicError> {
        let partitions: Vec<u32> = range.collect();
        let (logs, error) = open_in_parallel(partitions.len(), |i| {
            let dir = partition_dir(&self.config.data_dir, name, partitions[i]);
            // A directory here is a leftover of an unfinished create or delete (the
            // metadata, which is authoritative, does not list it): start empty.
            if dir.exists() {
                if let Err(source) = std::fs::remove_dir_all(&dir) {
                    return Err(TopicError::StaleDir { path: dir, source });
                }
            }
            Log::open(dir, log_config.clone(), &self.flusher).map_err(TopicError::from)
        });
        if let Some(e) = error {
            discard_logs(&logs);
            return Err(e);
        }
        Ok(logs)
    }

    fn document(&self) -> MetadataDocument {
        let mut doc = MetadataDocument::new(self.cluster_id.clone());
        doc.topics = self.topics().iter().map(|t| t.record()).collect();
        doc
    }

    fn read_table(&self) -> std::sync::RwLockReadGuard<'_, TopicTable> {
        // A panic while holding the lock cannot leave the table half-updated (every
        // write is a single insert/remove), so a poisoned lock is still consistent.
        self.topics.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, TopicTable> {
        self.topics.write().unwrap_or_else(|e| e.into_inner())
    }
    fn lock_admin(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `<data_dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// The log config of a topic: broker defaults overridden by the topic's config map.
fn log_config_for(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig, TopicError> {
    topic_config::to_log_config(defaults, overrides).map_err(|e| TopicError::InvalidConfig {
        code: e.error_code(),
        message: e.to_string(),
    })
}

fn discard_logs(logs: &[Arc<Log>]) {
    for log in logs {
        if let Err(e) = log.delete() {
            warn!(dir = %log.dir().display(), error = %e, "could not remove partition files");
        }
    }
}

fn advertised_ip(bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        bound.ip().to_string()
    }
}

/// Removes partition directories the metadata does not list: leftovers of a delete whose
/// file removal was interrupted, or of a create that never became durable.
fn remove_orphan_partition_dirs(data_dir: &Path, table: &TopicTable) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.ends_with(strata_storage::DELETED_DIR_SUFFIX) && entry.path().is_dir() {
            info!(dir = %entry.path().display(), "removing a partition left by an unfinished deletion");
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                warn!(dir = %entry.path().display(), error = %e, "could not remove");
            }
            continue;
        }
        let Some((topic, partition)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(partition) = partition.parse::<usize>() else {
            continue;
        };
        if !entry.path().is_dir() || topic_name::validate_topic_name(topic).is_err() {
            continue;
        }
        let known = table
            .by_name
            .get(topic)
            .is_some_and(|t| partition < t.partitions.len());
        if !known {
            warn!(dir = %entry.path().display(), "removing partition directory not in metadata");
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                warn!(dir = %entry.path().display(), error = %e, "could not remove");
            }
        }
    }
}

/// Threads opening partitions at start-up: each open is mostly fsyncs (checkpoint, clean
/// marker, directory), which the file system can merge when several run at once.
const OPEN_THREADS: usize = 8;

/// Opens every partition of `topics` (in order: topic by topic, partition by partition)
/// on up to [`OPEN_THREADS`] threads; the first failure is returned.
fn open_partitions(
    data_dir: &Path,
    topics: &[TopicRecord],
    log_configs: &[LogConfig],
    flusher: &Flusher,
) -> Result<Vec<Arc<Log>>, BrokerError> {
    let jobs: Vec<(usize, u32)> = topics
        .iter()
        .enumerate()
        .flat_map(|(t, record)| (0..record.partitions).map(move |p| (t, p)))
        .collect();
    let (logs, error) = open_in_parallel(jobs.len(), |i| {
        let (t, p) = jobs[i];
        let record = &topics[t];
        let dir = partition_dir(data_dir, &record.name, p);
        Log::open(dir, log_configs[t].clone(), flusher).map_err(|source| {
            BrokerError::OpenPartition {
                topic: record.name.clone(),
                partition: p,
                source,
            }
        })
    });
    match error {
        Some(e) => Err(e),
        None => Ok(logs),
    }
}

/// A partition's open outcome.
type LogResult<E> = Result<Arc<Log>, E>;

/// Runs `open(0..count)` on up to [`OPEN_THREADS`] threads. Returns the logs opened, in
/// index order, and the first error by index; after a failure no further index is
/// started (the logs returned are then only those that were opened).
fn open_in_parallel<E: Send>(
    count: usize,
    open: impl Fn(usize) -> LogResult<E> + Sync,
) -> (Vec<Arc<Log>>, Option<E>) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    // One slot per index; None when not started (after another failed).
    let results: Vec<Mutex<Option<LogResult<E>>>> = (0..count).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..OPEN_THREADS.min(count) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || failed.load(Ordering::Relaxed) {
                    break;
                }
                let result = open(i);
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            });
        }
    });
    let mut logs = Vec::with_capacity(count);
    let mut first_error = None;
    for slot in results {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(log)) => logs.push(log),
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            None => {} // not started after a failure
        }
    }
    (logs, first_error)
}

/// Wall-clock time in milliseconds since the Unix epoch (Kafka timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
