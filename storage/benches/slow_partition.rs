//! One slow partition's effect on the others (issue 15): the acks=all latency of a log
//! (append one small batch, wait until durable) while another log on the same flusher has
//! every fdatasync delayed by 20 ms (a slow disk region, injected) and takes appends every
//! 0.2 ms (producers waiting on it), beside the same latency with that log idle, measured
//! in the same process.
//!
//! Run: `cargo bench -p strata-storage --bench slow_partition`
//!
//! Prints p50 / p99 of each case. A flusher thread that waited on the slow log's sync
//! instead of moving on would make the second case's p50 about the delay.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_storage::fault::{set_injector, FileOp};
use strata_storage::testing::simple_batch;
use strata_storage::{Flusher, Log, LogConfig};

const SLOW_SYNC: Duration = Duration::from_millis(20);
const SAMPLES: usize = 400;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// acks=all latencies of `log`: append one batch, wait until it is durable.
fn acks_all(rt: &tokio::runtime::Runtime, log: &Log) -> Vec<Duration> {
    let batch = simple_batch(1, 100, 1_700_000_000_000);
    let mut latencies: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            let info = log.append(&batch, 0).unwrap();
            rt.block_on(log.wait_durable(info.last_offset + 1)).unwrap();
            start.elapsed()
        })
        .collect();
    latencies.sort();
    latencies
}

fn report(case: &str, latencies: &[Duration]) -> Duration {
    let p50 = percentile(latencies, 0.5);
    println!(
        "{case:<44} p50 {:>8.3} ms   p99 {:>8.3} ms",
        p50.as_secs_f64() * 1e3,
        percentile(latencies, 0.99).as_secs_f64() * 1e3
    );
    p50
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names nothing here skips the run.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !"slow_partition".contains(f.as_str())) {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start();
    let open =
        |name: &str| Log::open(dir.path().join(name), LogConfig::default(), &flusher).map(Arc::new);
    let slow = open("slow-0").unwrap();
    let other = open("other-0").unwrap();

    acks_all(&rt, &other); // warm-up
    let idle = report("other log, slow log idle", &acks_all(&rt, &other));

    let slow_file = slow.dir().join("00000000000000000000.log");
    set_injector(Some(Arc::new(move |op, path: &Path| {
        if op == FileOp::Sync && path == slow_file {
            std::thread::sleep(SLOW_SYNC);
        }
        None
    })));
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (slow, stop) = (Arc::clone(&slow), Arc::clone(&stop));
        std::thread::spawn(move || {
            let batch = simple_batch(1, 100, 1_700_000_000_000);
            while !stop.load(Ordering::Relaxed) {
                slow.append(&batch, 0).unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    std::thread::sleep(SLOW_SYNC * 3);
    let slowed = report(
        "other log, slow log's fdatasync +20 ms",
        &acks_all(&rt, &other),
    );
    stop.store(true, Ordering::Relaxed);
    appender.join().unwrap();
    set_injector(None);
    println!(
        "p50 ratio (slow neighbour / idle neighbour): {:.2}x",
        slowed.as_secs_f64() / idle.as_secs_f64()
    );
}
