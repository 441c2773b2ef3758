//! Broker state: the topics this node hosts, their partition logs, and the metadata log
//! that names them.
//!
//! Invariants:
//! - Which topics and partitions exist, their configs and the producer-id blocks are
//!   decided on the admin thread ([`admin_queue`]), one operation at a time, as records
//!   appended to the metadata log ([`metadata`]); an operation is answered once its
//!   records are durable and applied. No lock is held across that I/O.
//! - The partition applier ([`applier`]) makes the logs match each applied batch, on its
//!   own thread. A topic is visible to requests only after its records are durable and
//!   every one of its partitions is open (create), and its files are removed only after
//!   its removal is durable (delete). Reads take a snapshot (`Arc<Topic>`) and never wait
//!   longer than a map lookup.
//! - Partition `p` of topic `t` lives in `<data_dir>/t-p/`.
//! - A `Topic` value is immutable; changing partitions or configs replaces the `Arc`.
//! - The broker never holds more partitions than its cap ([`partition_limits`]).

mod admin;
pub(crate) mod admin_queue;
mod applier;
pub mod auto_create;
pub mod broker_config;
pub mod io_pool;
pub mod metadata;
pub mod mutation_quota;
pub mod partition;
pub mod partition_limits;
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
pub use admin::NewTopic;
use admin_queue::AdminQueue;
use applier::PartitionApplier;
use metadata::migration::MigrationError;
use metadata::{LocalMetadataLog, MetadataImage, MetadataLog, MetadataLogError, MetadataRecord};
use mutation_quota::MutationQuota;
use partition::Partition;
use partition_limits::{BrokerPartitionCap, CapSource};

/// One topic: its name, id, partition logs (index = partition number) and config overrides.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    /// Index = partition id.
    pub partitions: Vec<Arc<Partition>>,
    /// Per-topic overrides (Kafka config key -> value); absent keys take broker defaults.
    pub configs: BTreeMap<String, String>,
}

impl Topic {
    /// Partition `index`, if the topic has it.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// Kafka's message for a CreateTopics asking for more than
/// [`partition_limits::MAX_PARTITIONS_PER_REQUEST`] partitions in all.
pub const TOO_MANY_PARTITIONS_PER_REQUEST: &str =
    "Excessively large number of partitions per request.";
/// Kafka's message for any other request that would add more than that many.
pub const TOO_LARGE_BATCH: &str = "Unable to perform excessively large batch operation.";

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
    /// The request as a whole would add more partitions than one request may.
    #[error("{0}")]
    RequestTooLarge(&'static str),
    #[error(
        "Topic '{topic}' would have {requested} partitions, more than the {} one topic may have.",
        partition_limits::MAX_PARTITIONS_PER_TOPIC
    )]
    TopicPartitionCap { topic: String, requested: u64 },
    #[error("{}", broker_cap_message(*.adding, *.held, .cap))]
    BrokerPartitionCap {
        adding: u64,
        held: u64,
        cap: BrokerPartitionCap,
    },
    #[error(transparent)]
    Throttled(#[from] mutation_quota::QuotaExceeded),
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
    #[error("not created: {0}")]
    Aborted(String),
    #[error("cannot remove stale partition directory {path}: {source}")]
    StaleDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The metadata write of a whole request failed (the message of its error).
    #[error("cannot persist topic metadata: {0}")]
    Unpersisted(String),
    #[error("the broker's admin thread stopped before answering")]
    AdminUnavailable,
}

impl TopicError {
    /// The Kafka error code for this failure.
    pub fn error_code(&self) -> i16 {
        use kafka_protocol::error::ResponseError as Code;
        let code = match self {
            TopicError::InvalidName(e) => return e.error_code(),
            TopicError::InvalidConfig { code, .. } => return *code,
            TopicError::Collides { .. } => Code::InvalidTopicException,
            TopicError::AlreadyExists(_) => Code::TopicAlreadyExists,
            TopicError::Unknown(_) => Code::UnknownTopicOrPartition,
            TopicError::InvalidPartitions(_) | TopicError::TopicPartitionCap { .. } => {
                Code::InvalidPartitions
            }
            TopicError::RequestTooLarge(_) | TopicError::BrokerPartitionCap { .. } => {
                Code::PolicyViolation
            }
            TopicError::Throttled(_) => Code::ThrottlingQuotaExceeded,
            TopicError::Storage(_) | TopicError::Aborted(_) | TopicError::StaleDir { .. } => {
                Code::KafkaStorageError
            }
            TopicError::Unpersisted(_) | TopicError::AdminUnavailable => Code::UnknownServerError,
        };
        code.code()
    }
}

/// What a refusal by the broker-wide cap tells the client (and the operator).
fn broker_cap_message(adding: u64, held: u64, cap: &BrokerPartitionCap) -> String {
    let (limit, source) = cap.limit();
    match source {
        CapSource::Configured => format!(
            "Cannot add {adding} partition(s): this broker holds {held} of the {limit} it may \
             hold (max.broker.partitions)."
        ),
        CapSource::OpenFiles => format!(
            "Cannot add {adding} partition(s): this broker holds {held} and its open-file limit \
             (RLIMIT_NOFILE) of {} lets it reopen at most {limit} ({} descriptor per partition, \
             {} kept for connections and its own files). Raise the limit (ulimit -n, \
             LimitNOFILE=) and restart the broker.",
            cap.open_file_limit.unwrap_or(u64::MAX),
            partition_limits::FDS_PER_PARTITION,
            cap.reserved_fds
        ),
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
    #[error("cannot create the state dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metadata(#[from] MigrationError),
    #[error("cannot record this broker's registration: {0}")]
    Registration(MetadataLogError),
    #[error("cannot open partition {topic}-{partition}: {source}")]
    OpenPartition {
        topic: String,
        partition: u32,
        source: StorageError,
    },
    #[error(
        "cannot open partition {topic}-{partition}: {source}. The data dir holds {partitions} \
         partitions and the open-file limit (RLIMIT_NOFILE) is {limit}: raise it (ulimit -n, \
         LimitNOFILE=) to at least {needed}"
    )]
    OpenFileLimit {
        topic: String,
        partition: u32,
        source: StorageError,
        partitions: u64,
        limit: u64,
        needed: u64,
    },
    #[error("cannot start the admin thread: {0}")]
    AdminThread(std::io::Error),
    #[error("cannot start the applier thread: {0}")]
    ApplierThread(std::io::Error),
    #[error("--cluster-id {given} differs from the cluster id {stored} stored in the data dir")]
    ClusterIdMismatch { given: String, stored: String },
}

/// The topics by name and id, and what creation checks against: the names by their
/// collision key (Kafka's `.`/`_` rule) and the partition count.
#[derive(Default)]
struct TopicTable {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, String>,
    /// Partitions of every topic.
    partitions: u64,
}

impl TopicTable {
    /// Adds `topic`, or replaces the topic of the same name.
    fn insert(&mut self, topic: Arc<Topic>) {
        self.remove(&topic.name);
        self.partitions += topic.partitions.len() as u64;
        self.by_id.insert(topic.id, topic.name.clone());
        self.by_name.insert(topic.name.clone(), topic);
    }

    fn remove_by_id(&mut self, id: &Uuid) -> Option<Arc<Topic>> {
        let name = self.by_id.get(id)?.clone();
        self.remove(&name)
    }

    fn remove(&mut self, name: &str) -> Option<Arc<Topic>> {
        let topic = self.by_name.remove(name)?;
        self.partitions -= topic.partitions.len() as u64;
        self.by_id.remove(&topic.id);
        Some(topic)
    }
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
    /// `<data_dir>/_strata`.
    state_dir: PathBuf,
    /// Topics, partitions, configs and producer-id blocks: appended by the admin thread.
    metadata: LocalMetadataLog,
    /// Makes the partition logs and `topics` match each applied metadata batch.
    applier: PartitionApplier,
    /// InitProducerId: producer ids and epochs for idempotent producers.
    producer_ids: producer_ids::ProducerIds,
    /// The topics as the applier published them.
    topics: RwLock<TopicTable>,
    /// Runs every metadata change: the controller's decisions, one at a time.
    admin_queue: AdminQueue,
    /// KIP-599: partitions created and deleted per second.
    mutation_quota: MutationQuota,
    /// Most partitions this broker may hold.
    partition_cap: BrokerPartitionCap,
    /// Topics queued for auto-creation.
    auto_creation: Mutex<auto_create::AutoCreation>,
    /// Threads for the request path's blocking storage work (`num.io.threads`).
    io: io_pool::IoPool,
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
    /// Opens (or initialises) the data dir and every partition listed in the metadata: on
    /// the first start after an upgrade, migrates the broker state files to the metadata
    /// log first. `bound` is the listener's actual address (port 0 resolved), used for
    /// advertising. Blocking: call from a blocking context.
    pub fn open(config: Config, bound: SocketAddr) -> Result<Arc<Broker>, BrokerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| BrokerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let state_dir = config.data_dir.join(STATE_DIR);
        std::fs::create_dir_all(&state_dir).map_err(|source| BrokerError::StateDir {
            path: state_dir.clone(),
            source,
        })?;
        let metadata = metadata::migration::open_metadata_log(&state_dir, config.node_id, || {
            config
                .cluster_id
                .clone()
                .unwrap_or_else(|| Uuid::new_v4().simple().to_string())
        })?;
        let image = metadata.image();
        let cluster_id = image.cluster_id.clone().unwrap_or_default();
        if let Some(given) = &config.cluster_id {
            if *given != cluster_id {
                return Err(BrokerError::ClusterIdMismatch {
                    given: given.clone(),
                    stored: cluster_id,
                });
            }
        }
        let broker_configs = broker_config::BrokerConfigs::new(&config);
        broker_configs.apply_image(&image);
        let producer_ids = producer_ids::ProducerIds::new(
            image.next_producer_id,
            config.producer_id_expiration_ms,
        );
        let partition_cap = BrokerPartitionCap::new(
            u64::from(config.max_broker_partitions),
            partition_limits::open_file_limit(),
            u64::from(config.max_connections),
        );
        let advertised_host = config
            .advertised_host
            .clone()
            .unwrap_or_else(|| advertised_ip(bound));
        let advertised_port = i32::from(config.advertised_port.unwrap_or(bound.port()));
        let broker = Arc::new(Broker {
            advertised_host,
            advertised_port,
            cluster_id,
            broker_configs,
            flusher: Flusher::start(),
            state_dir,
            applier: PartitionApplier::new(image.next_offset),
            metadata,
            producer_ids,
            topics: RwLock::new(TopicTable::default()),
            admin_queue: AdminQueue::new(),
            mutation_quota: MutationQuota::new(config.controller_mutation_rate),
            partition_cap,
            auto_creation: Mutex::default(),
            io: io_pool::IoPool::start(config.num_io_threads as usize),
            config,
        });
        if let Err(e) = broker.load(&image) {
            broker.flusher.stop();
            return Err(e);
        }
        broker.metadata.set_listener(broker.applier.listener());
        broker
            .applier
            .start(Arc::downgrade(&broker))
            .map_err(BrokerError::ApplierThread)?;
        broker.register()?;
        broker
            .admin_queue
            .start(Arc::downgrade(&broker))
            .map_err(BrokerError::AdminThread)?;
        Ok(broker)
    }

    /// Opens every partition of `image` and removes partition directories it does not
    /// list. Blocking.
    fn load(&self, image: &MetadataImage) -> Result<(), BrokerError> {
        let failures = self.load_partitions(image);
        if let Some(failure) = failures.into_iter().next() {
            let partitions = image.topics.partition_count();
            return Err(match self.partition_cap.open_file_limit {
                Some(limit) if out_of_descriptors(&failure.error) => BrokerError::OpenFileLimit {
                    topic: failure.topic,
                    partition: failure.partition,
                    source: failure.error,
                    partitions,
                    limit,
                    needed: partitions * partition_limits::FDS_PER_PARTITION
                        + self.partition_cap.reserved_fds,
                },
                _ => BrokerError::OpenPartition {
                    topic: failure.topic,
                    partition: failure.partition,
                    source: failure.error,
                },
            });
        }
        let table = self.read_table();
        remove_orphan_partition_dirs(&self.config.data_dir, &table);
        let (cap, source) = self.partition_cap.limit();
        if table.partitions > cap {
            warn!(partitions = table.partitions, cap, ?source,
                  open_file_limit = ?self.partition_cap.open_file_limit,
                  "the data dir holds more partitions than this broker may; creations are refused");
        }
        info!(topics = table.by_name.len(), partitions = table.partitions, partition_cap = cap,
              cap_source = ?source, open_file_limit = ?self.partition_cap.open_file_limit,
              cluster_id = %self.cluster_id, data_dir = %self.config.data_dir.display(),
              "broker state loaded");
        Ok(())
    }

    /// Records this node's registration with the first producer-id block of this run (one
    /// append), and lets InitProducerId ask the admin thread for the next blocks.
    fn register(self: &Arc<Broker>) -> Result<(), BrokerError> {
        let image = self.metadata.image();
        // The registration's offset is this run's broker epoch.
        let epoch = i64::try_from(image.next_offset).unwrap_or(i64::MAX);
        let mut records = vec![MetadataRecord::RegisterBroker(
            metadata::record::RegisterBrokerRecord {
                broker_id: self.node_id(),
                incarnation_id: Uuid::new_v4(),
                endpoints: vec![metadata::record::BrokerEndpoint {
                    name: "PLAINTEXT".to_owned(),
                    host: self.advertised_host.clone(),
                    port: u16::try_from(self.advertised_port).unwrap_or(0),
                    security_protocol: 0,
                }],
                rack: None,
            },
        )];
        let block = metadata::controller::producer_id_block(&image, self.node_id(), epoch);
        if let Some((_, record)) = &block {
            records.push(record.clone());
        }
        self.commit(records).map_err(BrokerError::Registration)?;
        match block {
            Some((range, _)) => self.producer_ids.add_block(range),
            None => warn!("every producer id has been used: InitProducerId will fail"),
        }
        let broker = Arc::downgrade(self);
        self.producer_ids.set_block_source(Box::new(move || {
            if let Some(broker) = broker.upgrade() {
                broker.request_producer_id_block();
            }
        }));
        Ok(())
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
    /// The storage I/O threads: blocking storage work of the request path runs there,
    /// never on the async workers.
    pub fn io(&self) -> &io_pool::IoPool {
        &self.io
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
        &self.state_dir
    }
    /// The metadata log.
    pub fn metadata_log(&self) -> &dyn MetadataLog {
        &self.metadata
    }
    /// The metadata as of the last applied batch.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }
    /// Most partitions this broker may hold, and where that cap comes from.
    pub fn partition_cap(&self) -> BrokerPartitionCap {
        self.partition_cap
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

    /// How long until the controller mutation quota admits strict mutations again (zero
    /// when it does now): a response's `throttle_time_ms`.
    pub fn mutation_throttle_time(&self) -> std::time::Duration {
        self.mutation_quota.throttle_time(std::time::Instant::now())
    }

    /// Partitions of every topic.
    pub fn partition_count(&self) -> u64 {
        self.read_table().partitions
    }

    /// Runs `job` on the admin thread after every job submitted before it; the receiver
    /// gets its result (or closes if the job panicked). Never blocks.
    pub(crate) fn submit_admin<R, F>(&self, job: F) -> tokio::sync::oneshot::Receiver<R>
    where
        R: Send + 'static,
        F: FnOnce(&Broker) -> R + Send + 'static,
    {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: admin_queue::AdminJob = Box::new(move |broker| {
            let _ = reply.send(job(broker));
        });
        if let Err(job) = self.admin_queue.submit(job) {
            // The broker is closing and no request is being served: run it here.
            job(self);
        }
        result
    }

    /// Like [`Broker::submit_admin`], waiting for the result on this thread. Blocking: for
    /// tests and blocking contexts, never for request handlers.
    pub(crate) fn run_admin<R, F>(&self, job: F) -> Result<R, TopicError>
    where
        R: Send + 'static,
        F: FnOnce(&Broker) -> R + Send + 'static,
    {
        if self.admin_queue.is_admin_thread() {
            return Ok(job(self));
        }
        let (reply, result) = std::sync::mpsc::sync_channel(1);
        let job: admin_queue::AdminJob = Box::new(move |broker| {
            let _ = reply.send(job(broker));
        });
        if let Err(job) = self.admin_queue.submit(job) {
            job(self);
        }
        result.recv().map_err(|_| TopicError::AdminUnavailable)
    }

    /// Clean shutdown of the storage: finishes the queued admin jobs and the batches they
    /// applied, closes every log (flush + clean marker), then stops the flusher. Blocking.
    /// Requests must have stopped.
    pub fn close(&self) {
        self.admin_queue.stop();
        self.applier.stop();
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

    /// Appends `records` to the metadata log and waits until the applier has handled
    /// them; returns the offset after them. Blocking: the admin thread (and the start-up).
    fn commit(&self, records: Vec<MetadataRecord>) -> Result<u64, MetadataLogError> {
        let end = metadata::wait_committed(self.metadata.append(records))?;
        if !self.applier.wait_applied(end) {
            return Err(MetadataLogError::Closed);
        }
        Ok(end)
    }

    fn read_table(&self) -> std::sync::RwLockReadGuard<'_, TopicTable> {
        // A panic while holding the lock cannot leave the table half-updated (every
        // write is a single insert/remove), so a poisoned lock is still consistent.
        self.topics.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, TopicTable> {
        self.topics.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Name of the broker's own directory under the data dir. Partition directories end in
/// `-<digits>`, so this never collides with one.
pub const STATE_DIR: &str = "_strata";

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

/// Whether `error` is the process (EMFILE) or the system (ENFILE) running out of file
/// descriptors.
fn out_of_descriptors(error: &StorageError) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(error, StorageError::Io { source, .. }
        if matches!(source.raw_os_error(), Some(EMFILE | ENFILE)))
}

/// A partition's open outcome.
type LogResult<E> = Result<Arc<Log>, E>;

/// Runs `open(0..count)` on up to [`OPEN_THREADS`] threads. Returns each index's outcome,
/// in index order: None for an index not started because an earlier one failed (after a
/// failure no further index is started). `count` is never a client's number: callers
/// check it against the partition caps first.
fn open_in_parallel<E: Send>(
    count: usize,
    open: impl Fn(usize) -> LogResult<E> + Sync,
) -> Vec<Option<LogResult<E>>> {
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
    results
        .into_iter()
        .map(|slot| slot.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

/// Wall-clock time in milliseconds since the Unix epoch (Kafka timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
