//! What transactions cost the storage layer on the paths fetch and the coordinator use:
//!
//! - `txn_lso/open_N`: `Log::last_stable_offset` with N open transactions (fetch calls it
//!   for every partition of every request).
//! - `txn_aborted/query`: `Log::aborted_transactions(from, from + 1000)` in a log holding
//!   2,000 aborted transactions over ~40 segments, `from` spread over the whole log (what a
//!   `read_committed` fetch asks).
//! - `txn_marker/append`: `Log::append_marker` (commit) for a producer with an open
//!   transaction, including re-opening it with a one-record transactional batch (both
//!   timed; batches prepared outside the timing).
//!
//! A manual flusher keeps background fsyncs out; logs live on /dev/shm when present.
//!
//! Run: `cargo bench -p strata-storage --bench transactions -- --warm-up-time 1 --measurement-time 3`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use strata_storage::testing::{simple_batch, txn_batch};
use strata_storage::{Flusher, Log, LogConfig, TxnMarker};

/// Batch pairs prepared per untimed round.
const CHUNK: u64 = 2048;

fn bench_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

fn marker(producer_id: i64, commit: bool) -> TxnMarker {
    TxnMarker {
        producer_id,
        producer_epoch: 0,
        coordinator_epoch: 0,
        commit,
    }
}

fn lso(c: &mut Criterion) {
    let tmp = bench_dir();
    let mut g = c.benchmark_group("txn_lso");
    for open in [0i64, 1, 1000] {
        let flusher = Flusher::manual();
        let log = Log::open(
            tmp.path().join(format!("lso-{open}")),
            LogConfig::default(),
            &flusher,
        )
        .unwrap();
        for pid in 0..open {
            log.append(&txn_batch(1, pid, 0, 0, 1), 0).unwrap();
        }
        log.append(&simple_batch(1, 8, 1), 0).unwrap();
        log.flush().unwrap();
        g.bench_function(BenchmarkId::new("open", open), |b| {
            b.iter(|| std::hint::black_box(log.last_stable_offset()))
        });
    }
    g.finish();
}

fn aborted(c: &mut Criterion) {
    let tmp = bench_dir();
    let flusher = Flusher::manual();
    let config = LogConfig {
        segment_bytes: 64 << 10,
        ..LogConfig::default()
    };
    let log = Log::open(tmp.path().join("aborted-0"), config, &flusher).unwrap();
    for i in 0..2000 {
        let pid = i % 4;
        log.append(&txn_batch(2, pid, 0, (i / 4) as i32 * 2, 1), 0)
            .unwrap();
        log.append(&simple_batch(4, 200, 1), 0).unwrap();
        log.append_marker(&marker(pid, false), 0).unwrap();
    }
    log.flush().unwrap();
    let end = log.log_end_offset();
    let mut from = 0i64;
    let mut g = c.benchmark_group("txn_aborted");
    g.bench_function("query", |b| {
        b.iter(|| {
            from = (from + 7919) % end;
            std::hint::black_box(log.aborted_transactions(from, from + 1000))
        })
    });
    g.finish();
}

fn markers(c: &mut Criterion) {
    let tmp = bench_dir();
    let flusher = Flusher::manual();
    let config = LogConfig {
        segment_bytes: 32 << 20,
        retention_bytes: Some(0), // apply_retention (outside timing) drops sealed segments
        ..LogConfig::default()
    };
    let log = Log::open(tmp.path().join("marker-0"), config, &flusher).unwrap();
    let mut seq = 0i32;
    let mut g = c.benchmark_group("txn_marker");
    g.bench_function("append", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                left -= n;
                let batches: Vec<Vec<u8>> = (0..n)
                    .map(|_| {
                        seq += 1;
                        txn_batch(1, 1, 0, seq - 1, 1)
                    })
                    .collect();
                let start = Instant::now();
                for batch in &batches {
                    log.append(batch, 0).unwrap();
                    log.append_marker(&marker(1, true), 0).unwrap();
                }
                elapsed += start.elapsed();
                log.flush().unwrap();
                log.apply_retention(0).unwrap();
            }
            elapsed
        })
    });
    g.finish();
}

criterion_group!(benches, lso, aborted, markers);
criterion_main!(benches);
