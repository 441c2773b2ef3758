//! Append throughput with idempotent-producer checks on vs off: the same batches appended
//! to a log, once without a producer id (no checks) and once stamped with producer ids and
//! consecutive sequences (duplicate and sequence checks, state updates, and the producer
//! snapshot written at every segment roll). Batches are prepared outside the timed part
//! (stamping them means recomputing their CRC, which is the producer's work, not the
//! broker's). A manual flusher keeps background fsyncs out of the numbers.
//!
//! - `off`: producer id -1.
//! - `on_1`: one producer (what a partition usually sees).
//! - `on_1000`: 1000 producers taking turns (state lookups miss the cache more).
//! - `append_idempotence_interleaved`: off and on_1 timed in the same windows; prints the
//!   throughput ratio on/off.
//!
//! Logs live on /dev/shm when present (less noise from other I/O on a shared machine).
//!
//! Run: `cargo bench -p strata-storage --bench idempotence -- --warm-up-time 1 --measurement-time 3`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata_storage::testing::{simple_batch, with_producer};
use strata_storage::{Flusher, Log, LogConfig};

/// Batches prepared per untimed round.
const CHUNK: u64 = 2048;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 32 << 20,
        retention_ms: None,
        retention_bytes: Some(0), // apply_retention (outside timing) drops sealed segments
        ..LogConfig::default()
    }
}

fn append(c: &mut Criterion) {
    let tmp = bench_dir();
    // (name, records per batch, value bytes per record)
    for (name, count, value_len) in [("16KiB", 16, 1000), ("1KiB", 10, 80)] {
        let base = simple_batch(count, value_len, 1_700_000_000_000);
        let mut g = c.benchmark_group("append_idempotence");
        g.throughput(Throughput::Bytes(base.len() as u64));
        for (label, producers) in [("off", 0i64), ("on_1", 1), ("on_1000", 1000)] {
            let flusher = Flusher::manual();
            let log = Log::open(
                tmp.path().join(format!("{label}-{name}-0")),
                config(),
                &flusher,
            )
            .unwrap();
            let mut sequences = vec![0i32; producers.max(1) as usize];
            let mut turn = 0usize;
            g.bench_function(BenchmarkId::new(label, name), |b| {
                b.iter_custom(|iters| {
                    let mut elapsed = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(CHUNK);
                        left -= n;
                        let batches: Vec<Vec<u8>> = (0..n)
                            .map(|_| {
                                if producers == 0 {
                                    return base.clone();
                                }
                                let p = turn % producers as usize;
                                turn += 1;
                                let seq = sequences[p];
                                sequences[p] += count as i32;
                                with_producer(base.clone(), p as i64, 0, seq)
                            })
                            .collect();
                        let start = Instant::now();
                        for batch in &batches {
                            log.append(batch, 0).unwrap();
                        }
                        elapsed += start.elapsed();
                        log.flush().unwrap();
                        log.apply_retention(0).unwrap();
                    }
                    elapsed
                })
            });
            log.delete().unwrap();
            flusher.stop();
        }
        g.finish();
    }
}

/// Both variants in the same time windows: each round appends a chunk without producer ids
/// to one log and the same chunk stamped for one producer to another, alternating which
/// goes first, timing each. Criterion reports the idempotent appends; the throughput ratio
/// (time off / time on, over exactly the same windows, so load from other processes hits
/// both alike) is printed at the end.
fn interleaved(c: &mut Criterion) {
    let tmp = bench_dir();
    for (name, count, value_len) in [("16KiB", 16, 1000), ("1KiB", 10, 80)] {
        let base = simple_batch(count, value_len, 1_700_000_000_000);
        let mut g = c.benchmark_group("append_idempotence_interleaved");
        g.throughput(Throughput::Bytes(base.len() as u64));
        let flusher = Flusher::manual();
        let off = Log::open(
            tmp.path().join(format!("i-off-{name}-0")),
            config(),
            &flusher,
        )
        .unwrap();
        let on = Log::open(
            tmp.path().join(format!("i-on-{name}-0")),
            config(),
            &flusher,
        )
        .unwrap();
        let mut sequence = 0i32;
        let (mut total_off, mut total_on) = (Duration::ZERO, Duration::ZERO);
        let mut round = 0u64;
        g.bench_function(BenchmarkId::new("on_1", name), |b| {
            b.iter_custom(|iters| {
                let mut elapsed_on = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    left -= n;
                    let plain: Vec<Vec<u8>> = (0..n).map(|_| base.clone()).collect();
                    let stamped: Vec<Vec<u8>> = (0..n)
                        .map(|_| {
                            let seq = sequence;
                            sequence += count as i32;
                            with_producer(base.clone(), 1, 0, seq)
                        })
                        .collect();
                    round += 1;
                    let time = |log: &Log, batches: &[Vec<u8>]| {
                        let start = Instant::now();
                        for batch in batches {
                            log.append(batch, 0).unwrap();
                        }
                        start.elapsed()
                    };
                    let (t_off, t_on) = if round % 2 == 0 {
                        let t_off = time(&off, &plain);
                        (t_off, time(&on, &stamped))
                    } else {
                        let t_on = time(&on, &stamped);
                        (time(&off, &plain), t_on)
                    };
                    total_off += t_off;
                    total_on += t_on;
                    elapsed_on += t_on;
                    for log in [&off, &on] {
                        log.flush().unwrap();
                        log.apply_retention(0).unwrap();
                    }
                }
                elapsed_on
            })
        });
        g.finish();
        println!(
            "append_idempotence_interleaved/{name}: throughput on/off = {:.3} ({:?} off, {:?} on)",
            total_off.as_secs_f64() / total_on.as_secs_f64(),
            total_off,
            total_on
        );
        off.delete().unwrap();
        on.delete().unwrap();
        flusher.stop();
    }
}

/// A temporary directory on tmpfs when there is one (less noise from other I/O on the
/// machine; the append path is memory work either way), else in the default temp dir.
fn bench_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

criterion_group!(benches, append, interleaved);
criterion_main!(benches);
