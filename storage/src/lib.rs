//! strata-storage: the on-disk log of one partition, in Kafka's own file format.
//!
//! A partition is a directory of segments (`<base offset, 20 digits>.log` of RecordBatch v2
//! bytes, plus `.index` and `.timeindex`), a `partition.checkpoint` (log start offset and
//! recovery point) and, between a clean close and the next open, a `.clean-shutdown`
//! marker. See each module for its file format:
//!
//! - [`batch`]: RecordBatch v2 header layout and validation
//! - [`records`]: every record of a produced batch validated, compressed ones inflated as
//!   a bounded stream
//! - `segment`, `index`: segment files and the sparse offset / time indexes
//! - `file`, `descriptor_cache`: every system call on a file (reads are `pread`, never
//!   maps), the one atomic-replace helper, and the bounded descriptors of sealed segments
//! - `recovery`: opening a directory, validating and truncating after a crash
//! - `retention`, `checkpoint`: deleting old segments, persisting offsets
//! - `leader_epoch`: the leader-epoch cache (`leader-epoch-checkpoint`); `log/replicate.rs`
//!   and `log/truncate.rs`: the follower's append and truncation replication will call
//! - [`producer_state`]: idempotent-producer state, its checks and snapshots
//! - `txn`: transactions — markers, open transactions, the last stable offset, `.txnindex`
//! - [`Flusher`]: group-committed fsync for every log on one disk
//! - [`Log`]: the public API tying them together

pub mod batch;
mod checkpoint;
mod config;
mod descriptor_cache;
mod error;
#[doc(hidden)]
pub mod fault;
mod file;
mod flusher;
mod index;
mod leader_epoch;
mod log;
pub mod producer_state;
pub mod records;
mod recovery;
mod retention;
mod segment;
#[doc(hidden)]
pub mod testing;
mod txn;

pub use config::{LogConfig, TimestampType};
pub use descriptor_cache::MAX_CACHED_DESCRIPTORS;
pub use error::{AppendError, StorageError};
pub use file::{create_dir_durable, sync_dir, write_atomic};
pub use flusher::Flusher;
pub use leader_epoch::{EpochEntry, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
pub use log::{AppendInfo, Log, ReadResult, RetentionOutcome, TimestampOffset, DELETED_DIR_SUFFIX};
pub use txn::{AbortedTxn, OpenTxn, TxnMarker};
