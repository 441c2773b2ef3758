//! The metadata log as the controller and the brokers use it, behind a trait: one
//! implementation today ([`super::LocalMetadataLog`], a file on this node), a Raft log on
//! openraft in the cluster.
//!
//! The trait is the part of openraft's API the broker needs: `append` is
//! `Raft::client_write` (resolves once the entry is committed and applied to the state
//! machine, here the image), `read` is `RaftLogReader::try_get_log_entries` over committed
//! entries, `snapshot` is `RaftStateMachine::get_current_snapshot` after a build, and
//! applied batches reach the partition applier as `RaftStateMachine::apply` hands them
//! over. Offsets are Raft log indexes.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use super::image::{ApplyError, MetadataImage};
use super::record::MetadataRecord;
use crate::broker::record_log::RecordLogError;

/// Failures of the metadata log; each names the file or the offset concerned.
#[derive(Debug, thiserror::Error)]
pub enum MetadataLogError {
    #[error("metadata log: {0}")]
    Storage(#[from] RecordLogError),
    #[error("metadata log {path} is damaged at byte {at}: refusing to start rather than trust it; restore it from a backup")]
    Damaged { path: PathBuf, at: usize },
    #[error(
        "metadata log {path} does not replay: {reason}; refusing to start rather than trust it"
    )]
    Inconsistent { path: PathBuf, reason: String },
    #[error("metadata log {path} has no cluster record: it was never completely written")]
    Uninitialized { path: PathBuf },
    #[error("the batch does not apply to the metadata: {0}")]
    Refused(#[from] ApplyError),
    #[error("offset {from} is below the snapshot at {snapshot}: read the snapshot first")]
    Compacted { from: u64, snapshot: u64 },
    #[error("metadata I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the metadata log is closed")]
    Closed,
}

/// Resolves once an appended batch is committed and applied to the image, with the offset
/// just past its last record (the image's `next_offset` then). Awaitable, or waited for
/// with `blocking_recv` off the async runtime.
pub type Committed = oneshot::Receiver<Result<u64, MetadataLogError>>;

/// A committed batch as it was applied: what the partition applier reacts to.
#[derive(Debug, Clone)]
pub struct AppliedBatch {
    pub base_offset: u64,
    pub records: Arc<[MetadataRecord]>,
    /// The image with the batch applied.
    pub image: Arc<MetadataImage>,
}

/// The records that rebuild the image as of just before `end_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataSnapshot {
    pub end_offset: u64,
    pub records: Vec<MetadataRecord>,
}

/// The replicated (or, on one node, local) metadata log.
pub trait MetadataLog: Send + Sync {
    /// Appends `records` as one batch, applied all or none, after every batch appended
    /// before it. The single-node log writes and fsyncs on the calling thread before it
    /// returns (call it off the async runtime: the admin thread does); a Raft log
    /// replicates in the background.
    fn append(&self, records: Vec<MetadataRecord>) -> Committed;

    /// Up to `max` committed records from offset `from` on, each with its offset.
    /// `Compacted` when `from` is below the latest snapshot.
    fn read(&self, from: u64, max: usize) -> Result<Vec<(u64, MetadataRecord)>, MetadataLogError>;

    /// Takes a snapshot of the applied image now (dropping the records it covers) and
    /// returns it.
    fn snapshot(&self) -> Result<MetadataSnapshot, MetadataLogError>;

    /// The image as of the last applied batch, published to readers.
    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>>;

    /// Calls `listener` with every batch applied from now on, in order. It must not block
    /// (it runs while the log is held): hand the batch to another thread.
    fn set_listener(&self, listener: Listener);

    /// The current image.
    fn image(&self) -> Arc<MetadataImage> {
        self.subscribe().borrow().clone()
    }
}

/// Told of each applied batch (see [`MetadataLog::set_listener`]).
pub type Listener = Box<dyn Fn(AppliedBatch) + Send + Sync>;

/// Waits for `committed` on this thread (off the async runtime). A committed receiver
/// that is already resolved, as the single-node log's always is, never blocks.
pub fn wait_committed(mut committed: Committed) -> Result<u64, MetadataLogError> {
    match committed.try_recv() {
        Ok(result) => result,
        Err(oneshot::error::TryRecvError::Closed) => Err(MetadataLogError::Closed),
        Err(oneshot::error::TryRecvError::Empty) => committed
            .blocking_recv()
            .unwrap_or(Err(MetadataLogError::Closed)),
    }
}
