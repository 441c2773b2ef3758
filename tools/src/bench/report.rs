//! Counters, HDR latency histograms, periodic progress lines and the result object.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Live totals shared by the workers and the progress printer.
#[derive(Default, Debug)]
pub struct Counters {
    /// Records completed (acknowledged, or consumed).
    pub records: AtomicU64,
    /// Record value bytes completed.
    pub bytes: AtomicU64,
    /// Failed records (error codes, timeouts).
    pub errors: AtomicU64,
}

impl Counters {
    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A latency histogram in microseconds, 1 µs to 10 minutes at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // Constant bounds that satisfy hdrhistogram's rules (low >= 1, high >= 2*low,
    // sigfig <= 5): this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// Records `value_us` `count` times, clamping into the histogram's range.
pub fn record(h: &mut Histogram<u64>, value_us: u64, count: u64) {
    let v = value_us.clamp(1, h.high());
    let _ = h.record_n(v, count);
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        })
    }
}

/// Resident memory of the broker process sampled during the run (KiB).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RssSummary {
    pub pid: u32,
    pub start_kib: u64,
    pub peak_kib: u64,
    pub end_kib: u64,
}

/// The machine's ceiling measured by `baseline`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Baseline {
    /// Loopback socket -> append to a file, no sync (page cache), bytes/s.
    pub socket_to_file_bytes_per_s: f64,
    /// The same with fdatasync after every batch-bytes chunk, bytes/s.
    pub socket_to_file_fdatasync_bytes_per_s: f64,
    /// File -> loopback socket -> reader, bytes/s.
    pub file_to_socket_bytes_per_s: f64,
    /// Bytes one record takes on the wire inside a batch (converts rates to records/s).
    pub wire_bytes_per_record: f64,
    /// Bytes the no-sync write test moved (the read test reads them back).
    pub bytes_moved: u64,
}

/// One run's result (`--json` prints this).
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub mode: String,
    pub records: u64,
    pub record_bytes: u64,
    pub elapsed_s: f64,
    pub records_per_s: f64,
    /// Record value MiB/s (as Kafka's perf tools count).
    pub mib_per_s: f64,
    pub errors: u64,
    /// Produce: send-to-ack per record. Consume: per fetch request. End-to-end: embedded
    /// send timestamp to consumer receipt.
    pub latency: Option<Latency>,
    pub broker_rss: Option<RssSummary>,
    pub baseline: Option<Baseline>,
    /// This run's byte rate over the baseline's matching rate.
    pub ratios: BTreeMap<String, f64>,
    pub settings: BTreeMap<String, String>,
}

impl RunResult {
    pub fn new(mode: &str, records: u64, record_bytes: u64, elapsed: Duration) -> RunResult {
        let secs = elapsed.as_secs_f64().max(1e-9);
        RunResult {
            mode: mode.to_string(),
            records,
            record_bytes,
            elapsed_s: secs,
            records_per_s: records as f64 / secs,
            mib_per_s: record_bytes as f64 / secs / (1024.0 * 1024.0),
            errors: 0,
            latency: None,
            broker_rss: None,
            baseline: None,
            ratios: BTreeMap::new(),
            settings: BTreeMap::new(),
        }
    }

    /// Human-readable lines.
    pub fn print_text(&self) {
        println!(
            "{}: {} records in {:.2} s = {:.0} records/s, {:.1} MiB/s, {} errors",
            self.mode,
            self.records,
            self.elapsed_s,
            self.records_per_s,
            self.mib_per_s,
            self.errors
        );
        if let Some(l) = &self.latency {
            println!(
                "  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (mean {:.3}, n={})",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms, l.count
            );
        }
        if let Some(b) = &self.baseline {
            let mb = |v: f64| v / (1024.0 * 1024.0);
            println!(
                "  baseline MiB/s: socket->file {:.1}  socket->file+fdatasync {:.1}  file->socket {:.1}  ({:.0} wire bytes/record)",
                mb(b.socket_to_file_bytes_per_s),
                mb(b.socket_to_file_fdatasync_bytes_per_s),
                mb(b.file_to_socket_bytes_per_s),
                b.wire_bytes_per_record
            );
        }
        for (k, v) in &self.ratios {
            println!("  ratio {k}: {v:.2}");
        }
        if let Some(r) = &self.broker_rss {
            println!(
                "  broker pid {} RSS MiB: start {:.1}  peak {:.1}  end {:.1}",
                r.pid,
                r.start_kib as f64 / 1024.0,
                r.peak_kib as f64 / 1024.0,
                r.end_kib as f64 / 1024.0
            );
        }
    }
}

/// Prints a progress line to stderr every `interval` until `stop` turns true; samples the
/// broker's RSS at each tick when `pid` is given. Returns the RSS samples' summary.
pub async fn progress(
    counters: Arc<Counters>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    pid: Option<u32>,
    quiet: bool,
) -> Option<RssSummary> {
    let start = Instant::now();
    let mut rss = pid.map(|pid| {
        let now = super::rss_kib(pid).unwrap_or(0);
        RssSummary {
            pid,
            start_kib: now,
            peak_kib: now,
            end_kib: now,
        }
    });
    let mut last_records = 0u64;
    let mut last_bytes = 0u64;
    let mut last = start;
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        let stopped = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.changed() => true,
        };
        if let Some(r) = rss.as_mut() {
            if let Some(now) = super::rss_kib(r.pid) {
                r.peak_kib = r.peak_kib.max(now);
                r.end_kib = now;
            }
        }
        if stopped || *stop.borrow() {
            return rss;
        }
        let records = counters.records.load(Ordering::Relaxed);
        let bytes = counters.bytes.load(Ordering::Relaxed);
        let dt = last.elapsed().as_secs_f64().max(1e-9);
        if !quiet {
            let rss_text = rss
                .as_ref()
                .map(|r| format!("  broker RSS {:.1} MiB", r.end_kib as f64 / 1024.0))
                .unwrap_or_default();
            eprintln!(
                "{:7.1} s  {:10.0} records/s  {:8.1} MiB/s  total {:>11}  errors {}{}",
                start.elapsed().as_secs_f64(),
                (records - last_records) as f64 / dt,
                (bytes - last_bytes) as f64 / dt / (1024.0 * 1024.0),
                records,
                counters.errors.load(Ordering::Relaxed),
                rss_text
            );
        }
        last_records = records;
        last_bytes = bytes;
        last = Instant::now();
    }
}
