//! Per-log settings, named after Kafka's topic configs.

/// Per-log settings; each field documents the Kafka topic config it mirrors. Cheap to clone.
/// Applied live through `Log::set_config`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: the active segment rolls before an append would take it past this
    /// many bytes. Default 1 GiB.
    pub segment_bytes: u64,
    /// `segment.ms`: a non-empty active segment older than this (milliseconds since its
    /// first append) rolls at the next append. Default 7 days.
    pub segment_ms: Option<u64>,
    /// `segment.index.bytes`: the offset index holds at most this many bytes (8 per entry),
    /// the time index at most this many (12 per entry); a full index rolls the segment.
    /// Default 10 MiB.
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`: bytes of log between two index entries. Default 4096.
    pub index_interval_bytes: u64,
    /// `max.message.bytes`: the largest batch accepted, in bytes. Default 1_048_588.
    pub max_message_bytes: u64,
    /// `retention.ms`: sealed segments whose newest timestamp is older than this are
    /// deleted. `None` = keep forever. Default 7 days.
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: oldest sealed segments are deleted while the partition is larger
    /// than this. `None` = unbounded (the default).
    pub retention_bytes: Option<u64>,
    /// `message.timestamp.type`. Default `CreateTime`.
    pub timestamp_type: TimestampType,
    /// `flush.messages`: an append that leaves this many messages not yet fsync'd flushes
    /// synchronously before it returns. `None` = never forced (the flusher still makes every
    /// append durable promptly).
    pub flush_messages: Option<u64>,
    /// `flush.ms`: an append that finds data older than this many milliseconds not yet
    /// fsync'd flushes synchronously before it returns. `None` = never forced.
    pub flush_ms: Option<u64>,
}

/// Seven days in milliseconds, Kafka's default for `segment.ms` and `retention.ms`.
pub const SEVEN_DAYS_MS: u64 = 7 * 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(SEVEN_DAYS_MS),
            segment_index_bytes: 10 << 20,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            retention_ms: Some(SEVEN_DAYS_MS),
            retention_bytes: None,
            timestamp_type: TimestampType::CreateTime,
            flush_messages: None,
            flush_ms: None,
        }
    }
}

/// `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    CreateTime,
    /// The broker stamps each batch with its append time (and recomputes the CRC).
    LogAppendTime,
}
