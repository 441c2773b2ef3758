//! How many partitions one request, one topic and the whole broker may have, and the
//! open-file limit that bounds the last.
//!
//! Every partition holds one file descriptor while the broker runs (its active segment's
//! `.log`; index files are opened on use, sealed segments are mapped). A broker that
//! created more partitions than its open-file limit (RLIMIT_NOFILE) allows could not
//! reopen them at the next start, nor write its shutdown checkpoints. So the broker-wide
//! cap is the smaller of `max.broker.partitions` and what the limit leaves after a reserve
//! for connections and the broker's own files. The process raises its soft limit to the
//! hard one at start ([`raise_open_file_limit`]), as Kafka's packaging asks operators to.
//!
//! The caps are checked before anything is allocated for a request: no buffer is ever
//! sized from a partition count a client sent.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Most partitions one CreateTopics, CreatePartitions or auto-creation batch may add:
/// Kafka's controller limit (`MAX_PARTITIONS_PER_BATCH`), answered like Kafka with
/// POLICY_VIOLATION.
pub const MAX_PARTITIONS_PER_REQUEST: u64 = 10_000;

/// Most partitions one topic may have (INVALID_PARTITIONS beyond it): as many as one
/// request may create, so no topic needs more than one request's worth.
pub const MAX_PARTITIONS_PER_TOPIC: u64 = 10_000;

/// File descriptors one partition holds while the broker runs (its active `.log`).
pub const FDS_PER_PARTITION: u64 = 1;

/// Descriptors kept for the broker's own use: standard streams, the listener, the
/// runtime, the offsets and transaction logs, and files opened for a moment while
/// partitions are opened, synced and closed (8 opening threads and 8 sync threads, a few
/// files each).
pub const RESERVED_FDS: u64 = 128;

/// Share of the open-file limit kept for client connections (one descriptor each) when
/// `max.connections` allows more.
pub const CONNECTION_SHARE: u64 = 4;

/// The process's soft open-file limit (RLIMIT_NOFILE); None when unlimited.
pub fn open_file_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// Raises the soft open-file limit to the hard one. Returns the soft limit before and
/// after (None: unlimited).
pub fn raise_open_file_limit() -> std::io::Result<(Option<u64>, Option<u64>)> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return Ok((limit.current, limit.current));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )?;
    Ok((limit.current, getrlimit(Resource::Nofile).current))
}

/// The broker-wide partition cap and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerPartitionCap {
    /// `max.broker.partitions`.
    pub configured: u64,
    /// The soft open-file limit when the broker started (None: unlimited).
    pub open_file_limit: Option<u64>,
    /// Descriptors kept for connections and the broker's own files.
    pub reserved_fds: u64,
}

/// Which cap a creation would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapSource {
    /// `max.broker.partitions`.
    Configured,
    /// The open-file limit.
    OpenFiles,
}

impl BrokerPartitionCap {
    /// The cap for a broker with `max.broker.partitions` = `configured`, the given
    /// open-file limit and `max.connections`.
    pub fn new(configured: u64, open_file_limit: Option<u64>, max_connections: u64) -> Self {
        let connections =
            open_file_limit.map_or(0, |limit| max_connections.min(limit / CONNECTION_SHARE));
        BrokerPartitionCap {
            configured,
            open_file_limit,
            reserved_fds: RESERVED_FDS + connections,
        }
    }

    /// Partitions the open-file limit leaves room for (None: unlimited).
    pub fn by_open_files(&self) -> Option<u64> {
        self.open_file_limit
            .map(|limit| limit.saturating_sub(self.reserved_fds) / FDS_PER_PARTITION)
    }

    /// The cap: the smaller of the two, and which one it is.
    pub fn limit(&self) -> (u64, CapSource) {
        match self.by_open_files() {
            Some(by_fds) if by_fds < self.configured => (by_fds, CapSource::OpenFiles),
            _ => (self.configured, CapSource::Configured),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_cap_binds_and_connections_get_a_share() {
        // 256 descriptors: 128 reserved, 64 for connections, 64 partitions.
        let low = BrokerPartitionCap::new(100_000, Some(256), u64::from(u32::MAX));
        assert_eq!(low.limit(), (64, CapSource::OpenFiles));
        // max.connections below the share reserves only that many.
        let few = BrokerPartitionCap::new(100_000, Some(256), 8);
        assert_eq!(few.limit(), (120, CapSource::OpenFiles));
        // A limit smaller than the reserve allows nothing, without underflow.
        let tiny = BrokerPartitionCap::new(100_000, Some(100), 10);
        assert_eq!(tiny.limit(), (0, CapSource::OpenFiles));
        let high = BrokerPartitionCap::new(100_000, Some(1 << 20), u64::from(u32::MAX));
        assert_eq!(high.limit(), (100_000, CapSource::Configured));
        let unlimited = BrokerPartitionCap::new(50, None, 10);
        assert_eq!(unlimited.limit(), (50, CapSource::Configured));
    }

    #[test]
    fn raising_the_soft_limit_reaches_the_hard_one() {
        let (_, after) = raise_open_file_limit().unwrap();
        assert_eq!(after, getrlimit(Resource::Nofile).maximum);
        assert_eq!(open_file_limit(), after);
    }
}
