//! One partition this node hosts, between the API and its [`Log`]: the replication state
//! the metadata image gives it ([`PartitionImage`]: leader, leader epoch, replicas,
//! in-sync replicas) and its high watermark — what consumers may read and what an
//! acks=all producer waits for.
//!
//! Invariants:
//! - The state is replaced whole by the metadata applier ([`Partition::update`]), never
//!   edited in place: a reader sees one consistent state.
//! - The high watermark never exceeds the log end offset and never goes back. On a single
//!   node it is the log's durable offset: every in-sync replica (this node) has fsync'd
//!   what lies below it. With replication it becomes the smallest durable offset over the
//!   in-sync replicas; handlers read it only through this type.

use std::ops::Deref;
use std::sync::{Arc, RwLock};

use strata_storage::{Log, StorageError};
use tokio::sync::watch;

use super::metadata::image::PartitionImage;

/// This node's part in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes produce requests and answers fetches.
    Leader,
    /// Copies the leader's log (the cluster issues); clients get NOT_LEADER_OR_FOLLOWER.
    Follower,
}

/// A partition hosted here: its log and its replication state. Derefs to the log.
#[derive(Debug)]
pub struct Partition {
    log: Arc<Log>,
    /// This node's id: the state's leader tells the role.
    node_id: i32,
    state: RwLock<Arc<PartitionImage>>,
}

impl Partition {
    /// A partition over `log` in `state`, with the log's leader epoch set to the state's.
    pub fn new(
        log: Arc<Log>,
        node_id: i32,
        state: PartitionImage,
    ) -> Result<Partition, StorageError> {
        // Nothing is written when the log already has it (a single node's epoch 0): a
        // broker still starts on a full disk.
        if log.leader_epoch() != state.leader_epoch {
            log.set_leader_epoch(state.leader_epoch)?;
        }
        Ok(Partition {
            log,
            node_id,
            state: RwLock::new(Arc::new(state)),
        })
    }

    /// The partition's log.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// The current replication state.
    pub fn state(&self) -> Arc<PartitionImage> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn leader_epoch(&self) -> i32 {
        self.state().leader_epoch
    }

    pub fn role(&self) -> Role {
        if self.state().leader == self.node_id {
            Role::Leader
        } else {
            Role::Follower
        }
    }

    /// The leader epoch in which `offset` was (or, at the log end, will be) appended: the
    /// newest epoch starting at or below it; -1 if no epoch covers it.
    pub fn epoch_at(&self, offset: i64) -> i32 {
        if offset >= self.log.log_end_offset() {
            // The next append's (Kafka records the epoch when the leader takes over).
            return self.log.leader_epoch();
        }
        self.log
            .epoch_entries()
            .iter()
            .rev()
            .find(|e| e.start_offset <= offset)
            .map_or(-1, |e| e.epoch)
    }

    /// The high watermark (see the module doc).
    pub fn high_watermark(&self) -> i64 {
        self.log.durable_offset()
    }

    /// Changes of the high watermark: what acks=all producers and long-polling consumers
    /// wait on.
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.log.subscribe_durable()
    }

    /// Resolves once the high watermark reaches `offset` (an acks=all producer's wait), or
    /// with the error that keeps it from getting there (a failed fsync).
    pub async fn wait_high_watermark(&self, offset: i64) -> Result<(), StorageError> {
        self.log.wait_durable(offset).await
    }

    /// Adopts the metadata's new state (the applier). A new leader epoch is set on the log
    /// first, so every batch appended in it carries it.
    pub(crate) fn update(&self, state: PartitionImage) -> Result<(), StorageError> {
        if *self.state() == state {
            return Ok(());
        }
        if self.log.leader_epoch() != state.leader_epoch {
            self.log.set_leader_epoch(state.leader_epoch)?;
        }
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
        Ok(())
    }
}

impl Deref for Partition {
    type Target = Log;

    fn deref(&self) -> &Log {
        &self.log
    }
}

#[cfg(test)]
mod tests {
    use strata_storage::testing::{headers, simple_batch};
    use strata_storage::{Flusher, LogConfig};

    use super::*;

    fn state(leader: i32, leader_epoch: i32) -> PartitionImage {
        PartitionImage {
            leader,
            leader_epoch,
            partition_epoch: leader_epoch,
            replicas: vec![1, 2],
            isr: vec![1, 2],
        }
    }

    fn stamped_epochs(log: &Log) -> Vec<i32> {
        let read = log.read(0, 1 << 20, log.log_end_offset()).unwrap();
        headers(&read.records)
            .iter()
            .map(|h| h.partition_leader_epoch)
            .collect()
    }

    #[test]
    fn the_metadata_state_sets_role_epoch_and_what_appends_are_stamped_with() {
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::start();
        let log = Log::open(dir.path().join("t-0"), LogConfig::default(), &flusher).unwrap();
        let partition = Partition::new(log, 1, state(1, 0)).unwrap();
        assert_eq!(partition.role(), Role::Leader);
        assert_eq!(
            partition.epoch_at(0),
            0,
            "an empty log: the next append's epoch"
        );
        partition
            .append(&simple_batch(2, 10, 1_000), 1_000)
            .unwrap();

        partition.update(state(1, 3)).unwrap();
        assert_eq!(partition.leader_epoch(), 3);
        partition
            .append(&simple_batch(1, 10, 2_000), 2_000)
            .unwrap();
        partition.flush().unwrap();
        assert_eq!(stamped_epochs(&partition), vec![0, 3]);
        assert_eq!((partition.epoch_at(1), partition.epoch_at(2)), (0, 3));

        partition.update(state(2, 4)).unwrap();
        assert_eq!(partition.role(), Role::Follower, "another node leads");
        assert_eq!(partition.state().isr, vec![1, 2]);
    }

    #[test]
    fn the_high_watermark_is_what_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::start();
        let log = Log::open(dir.path().join("t-0"), LogConfig::default(), &flusher).unwrap();
        let partition = Partition::new(log, 1, state(1, 0)).unwrap();
        partition
            .append(&simple_batch(3, 10, 1_000), 1_000)
            .unwrap();
        partition.flush().unwrap();
        assert_eq!(partition.high_watermark(), 3);
        assert_eq!(*partition.subscribe_high_watermark().borrow(), 3);
    }
}
