//! `strata-bench`: a Kafka-protocol load generator with HDR latency percentiles.
//!
//! It speaks the Kafka wire protocol through a lean built-in client (`client`) on the
//! `kafka-protocol` crate and builds RecordBatch v2 itself (`batch`), so it runs against
//! Strata or any single-node Kafka broker and is not the bottleneck of what it measures.
//! Modes: produce (`produce`), consume in a group (`consume`), end-to-end (both at once,
//! producers embed a send timestamp), and `baseline`: the machine's own socket-to-file and
//! file-to-socket ceiling, which the other modes are reported against as ratios.

pub mod baseline;
pub mod batch;
pub mod client;
pub mod consume;
pub mod produce;
pub mod report;

/// Why a benchmark run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Client(#[from] strata_client::Error),
    #[error("cannot encode or decode {what}: {message}")]
    Codec { what: &'static str, message: String },
    #[error("{api} failed with Kafka error code {code}{detail}")]
    Broker {
        api: &'static str,
        code: i16,
        detail: String,
    },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("invalid option: {0}")]
    Usage(String),
}

/// Result of the benchmark's fallible steps.
pub type Result<T> = std::result::Result<T, BenchError>;

/// Microseconds since the UNIX epoch from the wall clock: the timestamp producers embed in
/// end-to-end values (producer and consumer run on the same host, so clocks agree).
pub fn wall_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the UNIX epoch (record timestamps).
pub fn wall_millis() -> i64 {
    (wall_micros() / 1000) as i64
}

/// Resident set size of process `pid` in KiB (`VmRSS` in /proc/PID/status), if readable.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
