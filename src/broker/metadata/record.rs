//! The records of the metadata log, modelled on KRaft's (Apache Kafka's
//! `metadata/src/main/resources/common/metadata/*Record.json`, KIP-500 / KIP-631), and the
//! frames that carry them in the single-node log's file.
//!
//! A record is a fact the controller decided; applying the records in log order to an
//! empty [`super::MetadataImage`] rebuilds the metadata. Field names follow Kafka's;
//! differences are said on each type. Variants and fields are only ever added at the end:
//! the encoding names a variant by its index.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::broker::record_log::LogRecord;

/// One change to the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// The first record of every log: the cluster the data dir belongs to.
    Cluster(ClusterRecord),
    RegisterBroker(RegisterBrokerRecord),
    Topic(TopicRecord),
    Partition(PartitionRecord),
    PartitionChange(PartitionChangeRecord),
    Config(ConfigRecord),
    ProducerIds(ProducerIdsRecord),
    RemoveTopic(RemoveTopicRecord),
}

/// Which cluster this metadata belongs to. Kafka keeps the cluster id in each log dir's
/// `meta.properties`; Strata records it once, at the start of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub cluster_id: String,
}

/// A broker (re)joining: Kafka's `RegisterBrokerRecord`. Its broker epoch is the offset
/// of this record (Kafka: the controller sets it to that offset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBrokerRecord {
    pub broker_id: i32,
    /// Fresh for every process start.
    pub incarnation_id: Uuid,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
}

/// One listener of a broker, as clients are told to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    /// The listener name (`PLAINTEXT`).
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Kafka's `SecurityProtocol` id (0: PLAINTEXT).
    pub security_protocol: i16,
}

/// A topic is created: Kafka's `TopicRecord`. Its partitions follow as
/// [`PartitionRecord`]s, its config overrides as [`ConfigRecord`]s, in the same batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub topic_id: Uuid,
}

/// A partition is created: Kafka's `PartitionRecord` (without the reassignment, directory
/// and ELR fields, which nothing here sets yet). Partitions of a topic are created in
/// order, `partition_id` = the topic's partition count before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub topic_id: Uuid,
    pub partition_id: u32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The leader's node id; -1 when there is none.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// A partition's leader, ISR or replicas change: Kafka's `PartitionChangeRecord` (`None`:
/// unchanged). Applying it bumps the partition epoch, and the leader epoch when the leader
/// changes. A single node never emits it; the cluster's controller will.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChangeRecord {
    pub topic_id: Uuid,
    pub partition_id: u32,
    pub leader: Option<i32>,
    pub isr: Option<Vec<i32>>,
    pub replicas: Option<Vec<i32>>,
}

/// What a config record applies to: Kafka's `ConfigResource` (type and name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    /// A topic, by name (Kafka's resource type 2).
    Topic(String),
    /// A broker (Kafka's type 4): `"<node id>"` for one broker, `""` for the cluster-wide
    /// default of every broker.
    Broker(String),
}

/// One config key of a resource set or removed: Kafka's `ConfigRecord` (`value: None`
/// removes the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub resource: ConfigResource,
    pub name: String,
    pub value: Option<String>,
}

/// A block of producer ids is handed to a broker: Kafka's `ProducerIdsRecord`. Every id
/// below `next_producer_id` belongs to a block given out before; the block of this record
/// ends just below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdsRecord {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub next_producer_id: i64,
}

/// A topic is deleted with its partitions and config overrides: Kafka's
/// `RemoveTopicRecord`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveTopicRecord {
    pub topic_id: Uuid,
}

/// One frame of the single-node metadata log file (see [`super::local_log`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataFrame {
    /// Part of a snapshot: records that rebuild the metadata as of just before
    /// `end_offset`. A file starts with every part of its snapshot (or with none).
    Snapshot {
        end_offset: u64,
        records: Vec<MetadataRecord>,
    },
    /// Records appended together, the first at `base_offset`: applied all or none (a
    /// frame is written whole or cut off as a torn tail).
    Batch {
        base_offset: u64,
        records: Vec<MetadataRecord>,
    },
}

impl LogRecord for MetadataFrame {
    const FILE_STEM: &'static str = "metadata";
    const VERSION: u16 = 1;
}
