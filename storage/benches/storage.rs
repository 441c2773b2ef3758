//! Storage benchmarks, each beside a raw baseline measured in the same process on the same
//! file system:
//!
//! - `append/*`: `Log::append` of one batch of 1 KiB records (16 KiB or 1 MiB), vs a plain
//!   `write` of the same bytes to a file in the same directory.
//! - `append_fsync/*`: append + wait until durable (group commit, one waiter), vs `write` +
//!   `fdatasync`.
//! - `read/*`: sequential reads of 1 MiB from the page cache: sealed segments (mmap, handed
//!   out without a copy), the same plus copying the bytes out (what a socket write costs),
//!   and the active segment (pread).
//! - `open/*`: opening a 256 MiB log after a clean close, and with nothing trusted.
//! - `group_commit/*`: N logs on one Flusher, one 16 KiB append to each, then wait for all to
//!   be durable; vs N files each written and fdatasync'd in turn.
//!
//! Run: `cargo bench -p strata-storage --bench storage -- --warm-up-time 1 --measurement-time 3`

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata_storage::testing::simple_batch;
use strata_storage::{Flusher, Log, LogConfig};

const RECORD_VALUE: usize = 1000; // ~1 KiB per record with key and framing

fn batch_bytes(total: usize) -> Vec<u8> {
    simple_batch(total / 1024, RECORD_VALUE, 1_700_000_000_000)
}

fn bench_config() -> LogConfig {
    LogConfig {
        segment_bytes: 32 << 20,
        max_message_bytes: 2 << 20,
        retention_ms: None,
        retention_bytes: Some(0), // apply_retention (outside timing) drops sealed segments
        ..LogConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Writes `iters` copies of `bytes` to a fresh file in `dir`, optionally fdatasync'ing each.
fn raw_write(dir: &Path, bytes: &[u8], iters: u64, sync: bool) -> Duration {
    let path = dir.join("raw-baseline");
    let mut f = File::create(&path).unwrap();
    let start = Instant::now();
    for _ in 0..iters {
        f.write_all(bytes).unwrap();
        if sync {
            f.sync_data().unwrap();
        }
    }
    let elapsed = start.elapsed();
    drop(f);
    std::fs::remove_file(&path).unwrap();
    elapsed
}

fn append(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    for (name, size) in [("16KiB", 16 << 10), ("1MiB", 1 << 20)] {
        let batch = batch_bytes(size);
        for fsync in [false, true] {
            let group = if fsync { "append_fsync" } else { "append" };
            let mut g = c.benchmark_group(group);
            g.throughput(Throughput::Bytes(batch.len() as u64));
            g.bench_function(BenchmarkId::new("raw", name), |b| {
                b.iter_custom(|iters| raw_write(tmp.path(), &batch, iters, fsync))
            });
            // "log": the append path alone (a manual flusher, no background fsync) for the
            // no-fsync group; "log_bg_flush": the broker's setup, where the flusher fsyncs
            // every append promptly in the background while appends continue.
            let variants: &[(&str, bool)] = if fsync {
                &[("log", false)]
            } else {
                &[("log", true), ("log_bg_flush", false)]
            };
            for &(label, manual) in variants {
                let flusher = if manual {
                    Flusher::manual()
                } else {
                    Flusher::start()
                };
                let log = Log::open(
                    tmp.path().join(format!("{group}-{label}-{name}-0")),
                    bench_config(),
                    &flusher,
                )
                .unwrap();
                g.bench_function(BenchmarkId::new(label, name), |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let info = log.append(&batch, 0).unwrap();
                            if fsync {
                                rt.block_on(log.wait_durable(info.last_offset + 1)).unwrap();
                            }
                        }
                        let elapsed = start.elapsed();
                        // Keep the disk footprint bounded, outside the timed part.
                        log.flush().unwrap();
                        log.apply_retention(0).unwrap();
                        elapsed
                    })
                });
                log.delete().unwrap();
                flusher.stop();
            }
            g.finish();
        }
    }
}

/// What validating a batch (header rules + CRC-32C over the whole batch) costs on its own.
fn validate(c: &mut Criterion) {
    let mut g = c.benchmark_group("validate");
    for (name, size) in [("16KiB", 16 << 10), ("1MiB", 1 << 20)] {
        let batch = batch_bytes(size);
        g.throughput(Throughput::Bytes(batch.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| strata_storage::batch::check_batch(std::hint::black_box(&batch)).unwrap())
        });
    }
    g.finish();
}

fn read(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let flusher = Flusher::start();
    let config = LogConfig {
        segment_bytes: 64 << 20,
        max_message_bytes: 2 << 20,
        retention_ms: None,
        ..LogConfig::default()
    };
    let log = Log::open(tmp.path().join("read-0"), config, &flusher).unwrap();
    // 256 MiB of 16 KiB batches in sealed segments, then one active segment of 32 MiB.
    let batch = batch_bytes(16 << 10);
    while log.size_bytes() < 256 << 20 {
        log.append(&batch, 0).unwrap();
    }
    let sealed_end = log.log_end_offset();
    log.set_config(LogConfig {
        segment_ms: Some(0),
        ..log.config()
    });
    log.append(&batch, 1).unwrap(); // roll by segment.ms
    let active_start = log.log_end_offset() - 1;
    log.set_config(LogConfig {
        segment_bytes: 1 << 30,
        segment_ms: None,
        ..log.config()
    });
    while log.size_bytes() < (256 + 32) << 20 {
        log.append(&batch, 2).unwrap();
    }
    log.flush().unwrap();
    let end = log.log_end_offset();

    let mut g = c.benchmark_group("read");
    let max_bytes = 1 << 20;
    let sequential = |from: i64, to: i64, copy: bool| {
        let log = Arc::clone(&log);
        move |iters: u64| {
            let mut sink = Vec::with_capacity(2 << 20);
            let mut offset = from;
            let mut bytes = 0u64;
            let start = Instant::now();
            for _ in 0..iters {
                let r = log.read(offset, max_bytes, i64::MAX).unwrap();
                let records = r.records;
                bytes += records.len() as u64;
                if copy {
                    sink.clear();
                    sink.extend_from_slice(&records);
                }
                offset = next_offset_after(&records);
                if offset >= to {
                    offset = from;
                }
            }
            std::hint::black_box((bytes, sink.len()));
            start.elapsed()
        }
    };
    let per_read = (max_bytes / batch.len() * batch.len()) as u64;
    g.throughput(Throughput::Bytes(per_read));
    g.bench_function("sealed_mmap", |b| {
        b.iter_custom(sequential(0, sealed_end - 64 * 16, false))
    });
    g.bench_function("sealed_mmap_copied", |b| {
        b.iter_custom(sequential(0, sealed_end - 64 * 16, true))
    });
    g.bench_function("active_pread", |b| {
        b.iter_custom(sequential(active_start, end - 64 * 16, false))
    });
    g.finish();
    log.delete().unwrap();
}

/// Offset after the last batch of concatenated whole batches.
fn next_offset_after(mut records: &[u8]) -> i64 {
    let mut next = 0;
    while let Some(h) = strata_storage::batch::BatchHeader::parse(records) {
        next = h.next_offset();
        records = &records[h.size()..];
    }
    next
}

/// Opening a 256 MiB log (16 KiB batches, 64 MiB segments): after a clean close (header scan)
/// and with no checkpoint and no clean marker (every batch's CRC validated).
fn open(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("open-0");
    let config = LogConfig {
        segment_bytes: 64 << 20,
        retention_ms: None,
        ..LogConfig::default()
    };
    let flusher = Flusher::start();
    let log = Log::open(&dir, config.clone(), &flusher).unwrap();
    let batch = batch_bytes(16 << 10);
    while log.size_bytes() < 256 << 20 {
        log.append(&batch, 0).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let mut g = c.benchmark_group("open");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(256 << 20));
    g.bench_function("clean_256MiB", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let log = Log::open(&dir, config.clone(), &flusher).unwrap();
                total += start.elapsed();
                log.close().unwrap();
            }
            total
        })
    });
    g.bench_function("unclean_no_checkpoint_256MiB", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::fs::remove_file(dir.join(".clean-shutdown")).unwrap();
                std::fs::remove_file(dir.join("partition.checkpoint")).unwrap();
                let start = Instant::now();
                let log = Log::open(&dir, config.clone(), &flusher).unwrap();
                total += start.elapsed();
                log.close().unwrap();
            }
            total
        })
    });
    g.finish();
}

fn group_commit(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let batch = batch_bytes(16 << 10);
    let mut g = c.benchmark_group("group_commit");
    for n in [1usize, 8, 64] {
        g.throughput(Throughput::Elements(n as u64));
        let flusher = Flusher::start();
        let logs: Vec<Arc<Log>> = (0..n)
            .map(|i| {
                Log::open(
                    tmp.path().join(format!("gc{n}-{i}")),
                    bench_config(),
                    &flusher,
                )
                .unwrap()
            })
            .collect();
        g.bench_function(BenchmarkId::new("logs", n), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let ends: Vec<i64> = logs
                        .iter()
                        .map(|l| l.append(&batch, 0).unwrap().last_offset + 1)
                        .collect();
                    rt.block_on(async {
                        for (log, end) in logs.iter().zip(&ends) {
                            log.wait_durable(*end).await.unwrap();
                        }
                    });
                }
                let elapsed = start.elapsed();
                for log in &logs {
                    log.apply_retention(0).unwrap();
                }
                elapsed
            })
        });
        g.bench_function(BenchmarkId::new("raw_files", n), |b| {
            let mut files: Vec<File> = (0..n)
                .map(|i| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(tmp.path().join(format!("raw{n}-{i}")))
                        .unwrap()
                })
                .collect();
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    for f in &mut files {
                        f.write_all(&batch).unwrap();
                    }
                    for f in &files {
                        f.sync_data().unwrap();
                    }
                }
                let elapsed = start.elapsed();
                for f in &files {
                    f.set_len(0).unwrap();
                }
                elapsed
            })
        });
        for log in logs {
            log.delete().unwrap();
        }
        flusher.stop();
    }
    g.finish();
}

criterion_group!(benches, append, validate, read, open, group_commit);
criterion_main!(benches);
