//! The metadata of the cluster — brokers, topics, partitions, configs and producer-id
//! blocks — as records in one append-only log, applied in order to an immutable image
//! (KRaft's design, KIP-500 / KIP-631).
//!
//! - [`record`]: the records (Kafka's `TopicRecord`, `PartitionRecord`, ...).
//! - [`image`]: the image the records build, published to readers as an `Arc` through a
//!   watch channel.
//! - [`log`]: the log behind a trait ([`MetadataLog`]): append a batch and wait until it is
//!   committed and applied, read committed records, take a snapshot.
//! - [`local_log`]: the single-node log, a file in `<data_dir>/_strata/metadata/`.
//! - [`migration`]: the first start after an upgrade turns `topics.bin`,
//!   `broker_configs.bin` and `producer_ids` into the log's first batch.
//! - [`controller`]: the decisions (request + image → records and answers), without I/O.
//!
//! Who writes: only the admin thread (`broker::admin_queue`), one operation at a time,
//! plus the start-up (migration, this node's registration). Who reacts: the partition
//! applier (`broker::applier`) opens, creates and deletes partition logs as batches are
//! applied, on its own thread.

pub mod controller;
pub mod image;
pub mod local_log;
pub mod log;
pub mod migration;
pub mod record;

pub use image::{ApplyError, MetadataImage, PartitionImage, TopicImage};
pub use local_log::LocalMetadataLog;
pub use log::{
    wait_committed, AppliedBatch, Committed, MetadataLog, MetadataLogError, MetadataSnapshot,
};
pub use record::{ConfigResource, MetadataRecord};
