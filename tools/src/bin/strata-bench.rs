//! `strata-bench`: load generator for Strata or any Kafka broker. See tools/BENCH.md.
//!
//! ```text
//! strata-bench baseline --data-dir /var/lib/strata
//! strata-bench produce --partitions 8 --record-size 1024 --acks 1 --duration 10 --compare-baseline
//! strata-bench consume --records 500000 --compare-baseline
//! strata-bench end-to-end --rate 5000 --acks all --duration 10
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use strata_tools::bench::batch::{BatchBuilder, Compression};
use strata_tools::bench::client::{connect, ensure_topic, partition_count};
use strata_tools::bench::consume::{run_consumer, ConsumeOptions, GroupState};
use strata_tools::bench::produce::{run_producer, ProduceOptions};
use strata_tools::bench::report::{self, Baseline, Counters, Latency, RunResult};
use strata_tools::bench::{baseline, BenchError, Result};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Produce,
    Consume,
    EndToEnd,
    Baseline,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "strata-bench",
    about = "Kafka-protocol load generator with HDR latency percentiles"
)]
struct Cli {
    #[arg(value_enum)]
    mode: Mode,
    /// Broker address (host:port).
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "strata-bench")]
    topic: String,
    #[arg(long, default_value_t = 1)]
    producers: usize,
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Partitions of the topic when the tool creates it (CreateTopics if missing).
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Value bytes per record.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Records in total (split across producers); consume: stop after this many.
    #[arg(long)]
    records: Option<u64>,
    /// Seconds to run (used when --records is not given; default 10).
    #[arg(long)]
    duration: Option<f64>,
    /// Fixed rate in records/s over all producers (latency mode).
    #[arg(long)]
    rate: Option<f64>,
    /// 0, 1 or all.
    #[arg(long, default_value = "1", value_parser = parse_acks)]
    acks: i16,
    /// Largest batch per partition in bytes (Kafka's batch.size).
    #[arg(long, default_value_t = 1 << 20)]
    batch_bytes: usize,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    #[arg(long, value_enum, default_value = "none")]
    compression: Compression,
    /// Keyed load over N distinct keys, partitioned by murmur2 like the Java client.
    #[arg(long)]
    keys: Option<u64>,
    /// Unanswered Produce requests per producer connection.
    #[arg(long, default_value_t = 5)]
    max_in_flight: usize,
    /// Consumer group (default: a new one per run).
    #[arg(long)]
    group: Option<String>,
    #[arg(long, default_value_t = 50 << 20)]
    fetch_max_bytes: i32,
    #[arg(long, default_value_t = 1 << 20)]
    partition_max_bytes: i32,
    #[arg(long, default_value_t = 500)]
    max_wait_ms: i32,
    /// Consume: stop once nothing arrived for this long after the first record.
    #[arg(long, default_value_t = 2000)]
    idle_ms: u64,
    /// Run the baseline in the same process first and print ratios to it.
    #[arg(long)]
    compare_baseline: bool,
    /// Directory for the baseline's scratch files (put it on the broker's data disk).
    #[arg(long, default_value = ".")]
    data_dir: PathBuf,
    /// Most bytes each baseline write test moves (it also stops after --duration, default
    /// 10 s, so that it measures the same sustained rate as the run it is compared with).
    #[arg(long, default_value_t = 64 << 30)]
    baseline_bytes: u64,
    /// Sample this broker process's VmRSS during the run.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 1.0)]
    progress_secs: f64,
    /// Print one JSON result object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_acks(s: &str) -> std::result::Result<i16, String> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        other => Err(format!("acks must be 0, 1 or all, not {other}")),
    }
}

impl Cli {
    fn deadline(&self, start: Instant) -> Option<Instant> {
        match (self.records, self.duration) {
            (Some(_), None) => None,
            (_, Some(d)) => Some(start + Duration::from_secs_f64(d)),
            (None, None) => Some(start + Duration::from_secs(10)),
        }
    }

    fn settings(&self) -> std::collections::BTreeMap<String, String> {
        let mut s = std::collections::BTreeMap::new();
        s.insert("bootstrap".into(), self.bootstrap.clone());
        s.insert("topic".into(), self.topic.clone());
        s.insert("partitions".into(), self.partitions.to_string());
        s.insert("producers".into(), self.producers.to_string());
        s.insert("consumers".into(), self.consumers.to_string());
        s.insert("record_size".into(), self.record_size.to_string());
        s.insert("acks".into(), self.acks.to_string());
        s.insert("batch_bytes".into(), self.batch_bytes.to_string());
        s.insert("linger_ms".into(), self.linger_ms.to_string());
        s.insert(
            "compression".into(),
            format!("{:?}", self.compression).to_lowercase(),
        );
        if let Some(k) = self.keys {
            s.insert("keys".into(), k.to_string());
        }
        if let Some(r) = self.rate {
            s.insert("rate".into(), r.to_string());
        }
        s
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata-bench: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(result) => {
            if cli.json {
                match serde_json::to_string(&result) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("strata-bench: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                result.print_text();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strata-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<RunResult> {
    if cli.record_size < 8 && cli.mode == Mode::EndToEnd {
        return Err(BenchError::Usage(
            "end-to-end needs --record-size >= 8 for the timestamp".into(),
        ));
    }
    if cli.batch_bytes < 128 {
        return Err(BenchError::Usage("--batch-bytes must be >= 128".into()));
    }
    let baseline = if cli.compare_baseline || cli.mode == Mode::Baseline {
        Some(run_baseline(cli).await?)
    } else {
        None
    };
    let mut result = match cli.mode {
        Mode::Baseline => {
            let b = baseline.clone().unwrap_or_default();
            let mut r = RunResult::new("baseline", 0, 0, Duration::from_secs(0));
            r.records_per_s = b.socket_to_file_bytes_per_s / b.wire_bytes_per_record;
            r.mib_per_s = b.socket_to_file_bytes_per_s / (1024.0 * 1024.0);
            r
        }
        Mode::Produce => produce(cli).await?,
        Mode::Consume => consume(cli).await?,
        Mode::EndToEnd => end_to_end(cli).await?,
    };
    if let Some(b) = &baseline {
        let wire = result.records_per_s * b.wire_bytes_per_record;
        match cli.mode {
            Mode::Produce => {
                result.ratios.insert(
                    "produce_vs_socket_to_file".into(),
                    wire / b.socket_to_file_bytes_per_s,
                );
                result.ratios.insert(
                    "produce_vs_socket_to_file_fdatasync".into(),
                    wire / b.socket_to_file_fdatasync_bytes_per_s,
                );
            }
            Mode::Consume => {
                result.ratios.insert(
                    "consume_vs_file_to_socket".into(),
                    wire / b.file_to_socket_bytes_per_s,
                );
            }
            _ => {}
        }
    }
    result.baseline = baseline;
    result.settings = cli.settings();
    Ok(result)
}

/// One full batch of the run's records: the unit the baseline sends and syncs.
fn sample_batch(cli: &Cli) -> Result<(bytes::Bytes, f64)> {
    let mut b = BatchBuilder::new(cli.batch_bytes, cli.compression);
    let key = cli.keys.map(|_| b"key-12345".to_vec());
    loop {
        let next = b.next_record_len(key.as_ref().map(Vec::len), cli.record_size);
        if !b.is_empty() && b.len() + next > cli.batch_bytes {
            break;
        }
        b.push(0, key.as_deref(), cli.record_size, |v| {
            for (i, x) in v.iter_mut().enumerate() {
                *x = b'A' + (i % 26) as u8;
            }
        });
    }
    let count = b.count();
    let bytes = b.finish()?;
    let per_record = bytes.len() as f64 / f64::from(count.max(1));
    Ok((bytes, per_record))
}

async fn run_baseline(cli: &Cli) -> Result<Baseline> {
    let (chunk, per_record) = sample_batch(cli)?;
    let dir = cli.data_dir.clone();
    let total = cli.baseline_bytes;
    let duration = Duration::from_secs_f64(cli.duration.unwrap_or(10.0));
    if !cli.json {
        eprintln!(
            "baseline: up to {} MiB or {:.1} s through loopback into {}",
            total >> 20,
            duration.as_secs_f64(),
            dir.display()
        );
    }
    tokio::task::spawn_blocking(move || {
        baseline::measure(&dir, &chunk, total, duration, per_record)
    })
    .await
    .map_err(|e| BenchError::Protocol(format!("baseline task failed: {e}")))?
}

fn spawn_progress(
    cli: &Cli,
    counters: &Arc<Counters>,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Option<report::RssSummary>>,
) {
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(report::progress(
        counters.clone(),
        Duration::from_secs_f64(cli.progress_secs.max(0.05)),
        rx,
        cli.broker_pid,
        false,
    ));
    (tx, handle)
}

async fn topic_partitions(cli: &Cli) -> Result<i32> {
    let mut conn = connect(&cli.bootstrap).await?;
    ensure_topic(&mut conn, &cli.topic, cli.partitions).await
}

/// Starts the producers; returns their handles.
fn start_producers(
    cli: &Cli,
    partitions: i32,
    counters: &Arc<Counters>,
    embed: bool,
    start: Instant,
) -> Vec<tokio::task::JoinHandle<Result<strata_tools::bench::produce::ProducerOutcome>>> {
    let n = cli.producers.max(1);
    (0..n)
        .map(|i| {
            let records = cli
                .records
                .map(|total| total / n as u64 + u64::from((i as u64) < total % n as u64));
            let opts = ProduceOptions {
                topic: cli.topic.clone(),
                partitions,
                record_size: cli.record_size,
                acks: cli.acks,
                batch_bytes: cli.batch_bytes,
                linger: Duration::from_millis(cli.linger_ms),
                compression: cli.compression,
                keys: cli.keys,
                rate: cli.rate.map(|r| r / n as f64),
                records,
                deadline: cli.deadline(start),
                embed_timestamp: embed,
                max_in_flight: cli.max_in_flight,
                producer_index: i,
            };
            let bootstrap = cli.bootstrap.clone();
            let counters = counters.clone();
            tokio::spawn(async move { run_producer(&bootstrap, opts, counters).await })
        })
        .collect()
}

struct Produced {
    records: u64,
    bytes: u64,
    errors: u64,
    histogram: hdrhistogram::Histogram<u64>,
}

async fn join_producers(
    handles: Vec<tokio::task::JoinHandle<Result<strata_tools::bench::produce::ProducerOutcome>>>,
) -> Result<Produced> {
    let mut out = Produced {
        records: 0,
        bytes: 0,
        errors: 0,
        histogram: report::histogram(),
    };
    for h in handles {
        let o = h
            .await
            .map_err(|e| BenchError::Protocol(format!("producer task failed: {e}")))??;
        out.records += o.records;
        out.bytes += o.bytes;
        out.errors += o.errors;
        let _ = out.histogram.add(&o.histogram);
    }
    Ok(out)
}

async fn produce(cli: &Cli) -> Result<RunResult> {
    let partitions = topic_partitions(cli).await?;
    let counters = Arc::new(Counters::default());
    let (stop, progress) = spawn_progress(cli, &counters);
    let start = Instant::now();
    let handles = start_producers(cli, partitions, &counters, false, start);
    let produced = join_producers(handles).await;
    let elapsed = start.elapsed();
    let _ = stop.send(true);
    let rss = progress.await.ok().flatten();
    let produced = produced?;
    let mut r = RunResult::new("produce", produced.records, produced.bytes, elapsed);
    r.errors = produced.errors;
    r.latency = Latency::from_histogram(&produced.histogram);
    r.broker_rss = rss;
    Ok(r)
}

fn group_id(cli: &Cli) -> String {
    cli.group.clone().unwrap_or_else(|| {
        format!(
            "strata-bench-{}-{}",
            std::process::id(),
            strata_tools::bench::wall_micros()
        )
    })
}

struct Consumers {
    handles: Vec<tokio::task::JoinHandle<Result<strata_tools::bench::consume::ConsumerOutcome>>>,
    state: Arc<GroupState>,
    stop: watch::Sender<bool>,
}

fn start_consumers(
    cli: &Cli,
    partitions: i32,
    counters: &Arc<Counters>,
    end_to_end: bool,
) -> Consumers {
    let n = cli.consumers.max(1);
    let state = GroupState::new(n);
    let (stop, stop_rx) = watch::channel(false);
    let opts = ConsumeOptions {
        topic: cli.topic.clone(),
        group: group_id(cli),
        record_size: cli.record_size,
        fetch_max_bytes: cli.fetch_max_bytes,
        partition_max_bytes: cli.partition_max_bytes,
        max_wait_ms: cli.max_wait_ms,
        end_to_end,
        start_at_latest: end_to_end,
    };
    let handles = (0..n)
        .map(|i| {
            let bootstrap = cli.bootstrap.clone();
            let opts = opts.clone();
            let state = state.clone();
            let counters = counters.clone();
            let stop_rx = stop_rx.clone();
            tokio::spawn(async move {
                run_consumer(&bootstrap, opts, partitions, i, state, counters, stop_rx).await
            })
        })
        .collect();
    Consumers {
        handles,
        state,
        stop,
    }
}

struct Consumed {
    records: u64,
    errors: u64,
    fetch: hdrhistogram::Histogram<u64>,
    delivery: hdrhistogram::Histogram<u64>,
}

async fn join_consumers(c: Consumers) -> Result<Consumed> {
    let _ = c.stop.send(true);
    let mut out = Consumed {
        records: 0,
        errors: 0,
        fetch: report::histogram(),
        delivery: report::histogram(),
    };
    for h in c.handles {
        let o = h
            .await
            .map_err(|e| BenchError::Protocol(format!("consumer task failed: {e}")))??;
        out.records += o.records;
        out.errors += o.errors;
        let _ = out.fetch.add(&o.fetch_latency);
        let _ = out.delivery.add(&o.delivery_latency);
    }
    Ok(out)
}

async fn consume(cli: &Cli) -> Result<RunResult> {
    let partitions = {
        let mut conn = connect(&cli.bootstrap).await?;
        partition_count(&mut conn, &cli.topic)
            .await?
            .ok_or_else(|| BenchError::Usage(format!("topic {} does not exist", cli.topic)))?
    };
    let counters = Arc::new(Counters::default());
    let (stop, progress) = spawn_progress(cli, &counters);
    let consumers = start_consumers(cli, partitions, &counters, false);
    // The clock starts once the group has its assignment, so join time is not counted.
    let joined = Instant::now();
    while consumers.state.total_assigned() < partitions as usize {
        if joined.elapsed() > Duration::from_secs(60) {
            return Err(BenchError::Protocol(
                "group did not assign every partition".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = Instant::now();
    let base = counters.records.load(Ordering::Relaxed);
    let deadline = cli.deadline(start);
    let idle = Duration::from_millis(cli.idle_ms);
    let (mut last_seen, mut last_change) = (base, start);
    let mut end = start;
    loop {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = Instant::now();
        let seen = counters.records.load(Ordering::Relaxed);
        if seen != last_seen {
            last_seen = seen;
            last_change = now;
            end = now;
        }
        if cli.records.is_some_and(|n| seen - base >= n) {
            end = now;
            break;
        }
        if deadline.is_some_and(|d| now >= d) && cli.duration.is_some() {
            // The rate is over the time the counted records took to arrive: a topic
            // drained before the deadline is not charged for the wait after its last
            // record (that idle time used to count, understating the rate).
            if seen == base {
                end = now;
            }
            break;
        }
        if seen > base && now - last_change >= idle {
            break; // drained: `end` is the time of the last record
        }
        if seen == base && now - start >= idle * 5 && cli.records.is_none() {
            break; // nothing to consume
        }
    }
    let consumed = join_consumers(consumers).await;
    let _ = stop.send(true);
    let rss = progress.await.ok().flatten();
    let consumed = consumed?;
    // Records that arrived by `end` (a fetch still in flight at the deadline is not
    // counted); with --records, the target.
    let records = match cli.records {
        Some(n) => {
            let all = counters.records.load(Ordering::Relaxed) - base;
            all.min(n).max(consumed.records.min(n))
        }
        None => last_seen - base,
    };
    let mut r = RunResult::new(
        "consume",
        records,
        records * cli.record_size as u64,
        end - start,
    );
    r.errors = consumed.errors;
    r.latency = Latency::from_histogram(&consumed.fetch);
    r.broker_rss = rss;
    Ok(r)
}

async fn end_to_end(cli: &Cli) -> Result<RunResult> {
    let partitions = topic_partitions(cli).await?;
    let counters = Arc::new(Counters::default());
    let consumer_counters = Arc::new(Counters::default());
    let consumers = start_consumers(cli, partitions, &consumer_counters, true);
    let joined = Instant::now();
    while consumers.state.total_assigned() < partitions as usize {
        if joined.elapsed() > Duration::from_secs(60) {
            return Err(BenchError::Protocol(
                "group did not assign every partition".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the consumers' first (empty) long polls start before the load does.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (stop, progress) = spawn_progress(cli, &consumer_counters);
    let start = Instant::now();
    let paced = Cli {
        rate: Some(cli.rate.unwrap_or(5000.0)),
        ..cli.clone()
    };
    let handles = start_producers(&paced, partitions, &counters, true, start);
    let produced = join_producers(handles).await?;
    // Wait for the consumers to receive everything that was acknowledged.
    let drain = Instant::now();
    while consumer_counters.records.load(Ordering::Relaxed) < produced.records
        && drain.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    let consumed = join_consumers(consumers).await?;
    let _ = stop.send(true);
    let rss = progress.await.ok().flatten();
    let mut r = RunResult::new(
        "end-to-end",
        consumed.records,
        consumed.records * cli.record_size as u64,
        elapsed,
    );
    r.errors = produced.errors + consumed.errors;
    r.latency = Latency::from_histogram(&consumed.delivery);
    r.broker_rss = rss;
    if let Some(ack) = Latency::from_histogram(&produced.histogram) {
        r.ratios.insert("produce_ack_p99_ms".into(), ack.p99_ms);
    }
    r.ratios.insert(
        "records_consumed_per_produced".into(),
        consumed.records as f64 / produced.records.max(1) as f64,
    );
    Ok(r)
}
