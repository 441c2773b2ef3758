//! Typed errors. Every storage error names the file (whose parent is the partition
//! directory) and, where one applies, the byte offset inside that file.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Kafka error code OFFSET_OUT_OF_RANGE.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
/// Kafka error code CORRUPT_MESSAGE.
pub const CORRUPT_MESSAGE: i16 = 2;
/// Kafka error code MESSAGE_TOO_LARGE.
pub const MESSAGE_TOO_LARGE: i16 = 10;
/// Kafka error code INVALID_TIMESTAMP.
pub const INVALID_TIMESTAMP: i16 = 32;
/// Kafka error code UNSUPPORTED_FOR_MESSAGE_FORMAT.
pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
/// Kafka error code OUT_OF_ORDER_SEQUENCE_NUMBER.
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
/// Kafka error code INVALID_PRODUCER_EPOCH.
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
/// Kafka error code INVALID_TXN_STATE.
pub const INVALID_TXN_STATE: i16 = 48;
/// Kafka error code TRANSACTION_COORDINATOR_FENCED.
pub const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
/// Kafka error code KAFKA_STORAGE_ERROR.
pub const KAFKA_STORAGE_ERROR: i16 = 56;
/// Kafka error code INVALID_RECORD.
pub const INVALID_RECORD: i16 = 87;
/// Kafka error code FENCED_LEADER_EPOCH.
pub const FENCED_LEADER_EPOCH: i16 = 74;
/// Kafka error code UNKNOWN_SERVER_ERROR (what Kafka answers for its internal
/// `UnexpectedAppendOffsetException`).
pub const UNKNOWN_SERVER_ERROR: i16 = -1;

/// Optional byte position, displayed as ` at byte N` when present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At(pub Option<u64>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(position) => write!(f, " at byte {position}"),
            None => Ok(()),
        }
    }
}

/// I/O and corruption errors of the on-disk log.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A system call on a file or directory failed.
    #[error("{op} {}{at}: {source}", .path.display())]
    Io {
        /// What was being done ("write", "fdatasync", ...).
        op: &'static str,
        /// The file or directory; its parent is the partition directory.
        path: PathBuf,
        /// Byte offset inside the file, when the operation had one.
        at: At,
        source: io::Error,
    },
    /// Bytes on disk that do not form what they must (a torn or corrupt batch, an
    /// unreadable checkpoint).
    #[error("corrupt data in {} at byte {position}: {reason}", .path.display())]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// A read or delete named an offset outside `[log_start_offset, log_end_offset]`.
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}] of {}", .dir.display())]
    OffsetOutOfRange {
        dir: PathBuf,
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// An earlier write or fsync failed; the log refuses all further appends and durability
    /// waits, because it can no longer know what reached the disk.
    #[error("log {} is offline after an earlier failure: {cause}", .dir.display())]
    Offline { dir: PathBuf, cause: String },
    /// The log was closed (clean shutdown or deletion).
    #[error("log {} is closed", .dir.display())]
    Closed { dir: PathBuf },
    /// A leader epoch older than one the log already holds (epochs never go back).
    #[error("leader epoch {epoch} of {} is older than its latest epoch {latest}", .dir.display())]
    FencedLeaderEpoch {
        dir: PathBuf,
        epoch: i32,
        latest: i32,
    },
}

impl StorageError {
    /// The Kafka error code a client should see for this error.
    pub fn error_code(&self) -> i16 {
        match self {
            StorageError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
            StorageError::FencedLeaderEpoch { .. } => FENCED_LEADER_EPOCH,
            _ => KAFKA_STORAGE_ERROR,
        }
    }

    /// Whether a system call failed for want of space (ENOSPC, or EDQUOT: a quota): the
    /// disk is full and nothing was lost; the same call succeeds once space returns.
    pub fn is_no_space(&self) -> bool {
        matches!(self, StorageError::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            at: At(None),
            source,
        }
    }

    pub(crate) fn io_at(
        op: &'static str,
        path: impl Into<PathBuf>,
        position: u64,
        source: io::Error,
    ) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            at: At(Some(position)),
            source,
        }
    }
}

/// Why an append was refused. Each variant maps 1:1 to a Kafka error code; positions are
/// byte offsets inside the produced records (the bytes passed to `Log::append`).
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Bad CRC, bad length, truncated batch. Kafka CORRUPT_MESSAGE (2).
    #[error("corrupt record batch for {} at byte {position} of the request: {reason}", .dir.display())]
    CorruptMessage {
        dir: PathBuf,
        position: usize,
        reason: String,
    },
    /// A batch is larger than `max.message.bytes`. Kafka MESSAGE_TOO_LARGE (10).
    #[error("record batch of {size} bytes for {} exceeds max.message.bytes {max}", .dir.display())]
    MessageTooLarge { dir: PathBuf, size: u64, max: u64 },
    /// A structurally sound batch that breaks a rule (count != lastOffsetDelta + 1, no
    /// records, control batch from a client, transactional batch without a producer id).
    /// Kafka INVALID_RECORD (87).
    #[error("invalid record batch for {} at byte {position} of the request: {reason}", .dir.display())]
    InvalidRecord {
        dir: PathBuf,
        position: usize,
        reason: String,
    },
    /// Magic byte other than 2. Kafka UNSUPPORTED_FOR_MESSAGE_FORMAT (43).
    #[error("record batch for {} at byte {position} of the request has magic {magic}; only 2 is supported", .dir.display())]
    UnsupportedForMessageFormat {
        dir: PathBuf,
        position: usize,
        magic: i8,
    },
    /// A timestamp below -1 (Kafka's NO_TIMESTAMP). Kafka INVALID_TIMESTAMP (32).
    #[error("record batch for {} at byte {position} of the request has invalid max timestamp {timestamp}", .dir.display())]
    InvalidTimestamp {
        dir: PathBuf,
        position: usize,
        timestamp: i64,
    },
    /// An idempotent producer's batch does not follow its last one in this partition (a
    /// gap or reordering), or a new epoch does not start at sequence 0. Kafka
    /// OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    #[error("out of order sequence for producer {producer_id} epoch {epoch} in {}: batch at byte {position} of the request starts at sequence {sequence}, last appended sequence {last_sequence}", .dir.display())]
    OutOfOrderSequence {
        dir: PathBuf,
        position: usize,
        producer_id: i64,
        epoch: i16,
        sequence: i32,
        /// The producer's last sequence in its current epoch; -1 for a new epoch.
        last_sequence: i32,
    },
    /// A batch from an epoch older than the producer's current one in this partition.
    /// Kafka INVALID_PRODUCER_EPOCH (47).
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current} in {} (batch at byte {position} of the request)", .dir.display())]
    InvalidProducerEpoch {
        dir: PathBuf,
        position: usize,
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// A non-transactional batch from a producer that has an open transaction in this
    /// partition. Kafka INVALID_TXN_STATE (48).
    #[error("non-transactional batch from producer {producer_id} at byte {position} of the request for {}, which has an open transaction there", .dir.display())]
    InvalidTxnState {
        dir: PathBuf,
        position: usize,
        producer_id: i64,
    },
    /// A transactional batch verified against the transaction coordinator before a marker
    /// of its producer was appended here, and arriving after it: the transaction it was
    /// verified for has ended in this partition. Kafka INVALID_TXN_STATE (48).
    #[error("transactional batch from producer {producer_id} for {}: a transaction marker of the producer was appended after the batch was verified", .dir.display())]
    TxnVerificationLost { dir: PathBuf, producer_id: i64 },
    /// A transaction marker from a coordinator epoch older than the one that wrote the
    /// producer's last marker here. Kafka TRANSACTION_COORDINATOR_FENCED (52).
    #[error("marker for producer {producer_id} in {} from coordinator epoch {coordinator_epoch}, older than {current}", .dir.display())]
    TransactionCoordinatorFenced {
        dir: PathBuf,
        producer_id: i64,
        coordinator_epoch: i32,
        current: i32,
    },
    /// A follower append whose batches do not continue the log where it ends (or each
    /// other): the replica fetcher must truncate or fetch from the right offset. Kafka's
    /// `UnexpectedAppendOffsetException` (UNKNOWN_SERVER_ERROR on the wire).
    #[error("replicated batch at byte {position} for {} starts at offset {found}, expected {expected}", .dir.display())]
    UnexpectedAppendOffset {
        dir: PathBuf,
        position: usize,
        expected: i64,
        found: i64,
    },
    /// The disk failed, or the log is offline or closed. Kafka KAFKA_STORAGE_ERROR (56).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl AppendError {
    /// The Kafka error code a producer should see for this error.
    pub fn error_code(&self) -> i16 {
        match self {
            AppendError::CorruptMessage { .. } => CORRUPT_MESSAGE,
            AppendError::MessageTooLarge { .. } => MESSAGE_TOO_LARGE,
            AppendError::InvalidRecord { .. } => INVALID_RECORD,
            AppendError::UnsupportedForMessageFormat { .. } => UNSUPPORTED_FOR_MESSAGE_FORMAT,
            AppendError::InvalidTimestamp { .. } => INVALID_TIMESTAMP,
            AppendError::OutOfOrderSequence { .. } => OUT_OF_ORDER_SEQUENCE_NUMBER,
            AppendError::InvalidProducerEpoch { .. } => INVALID_PRODUCER_EPOCH,
            AppendError::InvalidTxnState { .. } | AppendError::TxnVerificationLost { .. } => {
                INVALID_TXN_STATE
            }
            AppendError::TransactionCoordinatorFenced { .. } => TRANSACTION_COORDINATOR_FENCED,
            AppendError::UnexpectedAppendOffset { .. } => UNKNOWN_SERVER_ERROR,
            AppendError::Storage(e) => e.error_code(),
        }
    }
}

/// Why a sync stopped before making everything durable.
#[derive(Debug)]
pub(crate) enum SyncFailure {
    /// A write or a file creation was refused (a full disk): everything written before is
    /// intact, nothing is durable that was not, and a later sync (the flusher retries)
    /// continues where this one stopped.
    Retry(StorageError),
    /// An fsync failed: the kernel may have dropped dirty pages, so no later fsync could
    /// prove they reached the disk. The log goes offline.
    Fatal(StorageError),
}
