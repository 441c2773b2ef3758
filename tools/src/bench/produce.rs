//! Producer workers: each owns one connection, batches records per partition like the Java
//! client (batch.size per partition, linger.ms, sticky partition for unkeyed records,
//! murmur2 for keyed ones, at most `max_in_flight` unanswered requests) and records the
//! send-to-ack latency of every record. In fixed-rate mode a record's latency counts from
//! the time it was due, not when it was sent, so a stalled broker cannot hide its delay
//! (no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_client::{RequestWriter, ResponseReader};
use tokio::sync::{mpsc, Semaphore};

use super::batch::{BatchBuilder, Compression};
use super::client::{connect, versions};
use super::report::{self, Counters};
use super::{BenchError, Result};

/// What one producer does.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub topic: String,
    pub partitions: i32,
    /// Value bytes per record.
    pub record_size: usize,
    /// 0, 1 or -1 (all).
    pub acks: i16,
    /// Largest batch per partition, header included (Kafka's batch.size).
    pub batch_bytes: usize,
    pub linger: Duration,
    pub compression: Compression,
    /// Keyed load over this many distinct keys; None: null keys, sticky partitioning.
    pub keys: Option<u64>,
    /// Records per second for this producer; None: as fast as acks allow.
    pub rate: Option<f64>,
    /// Records this producer sends; None: until `deadline`.
    pub records: Option<u64>,
    pub deadline: Option<Instant>,
    /// Put the due time (µs since the UNIX epoch) in each value's first 8 bytes.
    pub embed_timestamp: bool,
    pub max_in_flight: usize,
    pub producer_index: usize,
}

/// What one producer measured.
pub struct ProducerOutcome {
    pub histogram: Histogram<u64>,
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
}

/// Records of one batch in flight: partition and each record's due time (µs from t0).
struct SentBatch {
    partition: i32,
    due_us: Vec<u64>,
}

struct InFlight {
    correlation: i32,
    batches: Vec<SentBatch>,
}

struct OpenBatch {
    builder: BatchBuilder,
    due_us: Vec<u64>,
    opened: Option<Instant>,
}

/// Printable uppercase letters (like Kafka's ProducerPerformance payload), reused as the
/// source of every value.
fn payload_source() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'A' + (x % 26) as u8
        })
        .collect()
}

/// Runs one producer to completion (all its records acknowledged).
pub async fn run_producer(
    bootstrap: &str,
    opts: ProduceOptions,
    counters: Arc<Counters>,
) -> Result<ProducerOutcome> {
    let conn = connect(bootstrap).await?;
    let (writer, reader) = conn.into_split();
    let t0 = Instant::now();
    let wall_t0 = super::wall_micros();
    let sem = Arc::new(Semaphore::new(opts.max_in_flight.max(1)));
    let (tx, rx) = mpsc::unbounded_channel::<InFlight>();
    let acker = if opts.acks == 0 {
        None
    } else {
        Some(tokio::spawn(read_acks(
            reader,
            rx,
            sem.clone(),
            counters.clone(),
            t0,
            opts.record_size as u64,
        )))
    };
    let partitions = opts.partitions.max(1);
    let mut open: Vec<OpenBatch> = (0..partitions)
        .map(|_| OpenBatch {
            builder: BatchBuilder::new(0, opts.compression),
            due_us: Vec::new(),
            opened: None,
        })
        .collect();
    let keys: Vec<(Vec<u8>, i32)> = match opts.keys {
        Some(n) => (0..n.max(1))
            .map(|k| {
                let key = format!("key-{k}").into_bytes();
                let p = crate::murmur2::partition_for_key(&key, partitions);
                (key, p)
            })
            .collect(),
        None => Vec::new(),
    };
    let source = payload_source();
    let mut sender = Sender {
        writer,
        tx,
        sem,
        topic: TopicName(StrBytes::from_string(opts.topic.clone())),
        acks: opts.acks,
        t0,
        counters: counters.clone(),
        acks0_hist: report::histogram(),
        record_size: opts.record_size as u64,
    };
    let mut sticky = (opts.producer_index as i32) % partitions;
    let mut oldest_open: Option<Instant> = None;
    let mut i: u64 = 0;
    loop {
        if opts.records.is_some_and(|n| i >= n) {
            break;
        }
        if let Some(d) = opts.deadline {
            if (opts.rate.is_some() || i % 256 == 0) && Instant::now() >= d {
                break;
            }
        }
        let due_us = match opts.rate {
            Some(rate) => {
                let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if now < due {
                    let linger_at = oldest_open.map(|o| o + opts.linger);
                    if linger_at.is_some_and(|l| l <= now) {
                        let lingered = lingered_partitions(&open, now, opts.linger);
                        sender.send(&mut open, &lingered, true).await?;
                        oldest_open = oldest(&open);
                        continue;
                    }
                    let wake = linger_at.map_or(due, |l| l.min(due));
                    pace_until(wake).await;
                    continue;
                }
                (due - t0).as_micros() as u64
            }
            None => t0.elapsed().as_micros() as u64,
        };
        let (key, partition) = if keys.is_empty() {
            (None, sticky)
        } else {
            let (k, p) = &keys[(i % keys.len() as u64) as usize];
            (Some(k.as_slice()), *p)
        };
        let pi = partition as usize;
        let next_len = open[pi]
            .builder
            .next_record_len(key.map(<[u8]>::len), opts.record_size);
        if !open[pi].builder.is_empty() && open[pi].builder.len() + next_len > opts.batch_bytes {
            sender.send(&mut open, &[partition], true).await?;
            oldest_open = oldest(&open);
        }
        let ts_ms = ((wall_t0 + due_us) / 1000) as i64;
        let off = (i.wrapping_mul(7919) % (source.len() as u64 / 2)) as usize;
        let embed = opts.embed_timestamp;
        let wall_due = wall_t0 + due_us;
        let record_size = opts.record_size;
        let batch = &mut open[pi];
        batch.builder.push(ts_ms, key, record_size, |v| {
            fill(v, &source[off..]);
            if embed && v.len() >= 8 {
                v[..8].copy_from_slice(&wall_due.to_be_bytes());
            }
        });
        batch.due_us.push(due_us);
        if batch.opened.is_none() {
            let now = Instant::now();
            batch.opened = Some(now);
            oldest_open = Some(oldest_open.map_or(now, |o| o.min(now)));
        }
        i += 1;
        let full = batch.builder.len() + next_len > opts.batch_bytes;
        if full {
            sender.send(&mut open, &[partition], true).await?;
            oldest_open = oldest(&open);
            if keys.is_empty() {
                sticky = (sticky + 1) % partitions;
            }
        } else if let Some(o) = oldest_open {
            let now = Instant::now();
            if now >= o + opts.linger {
                let lingered = lingered_partitions(&open, now, opts.linger);
                // Lingered batches go only when a request slot is free (like the Java
                // client: with linger 0, batches grow while requests are in flight).
                if sender.send(&mut open, &lingered, false).await? {
                    oldest_open = oldest(&open);
                    if keys.is_empty() && lingered.contains(&sticky) {
                        sticky = (sticky + 1) % partitions;
                    }
                }
            }
        }
    }
    let rest: Vec<i32> = (0..partitions)
        .filter(|&p| !open[p as usize].builder.is_empty())
        .collect();
    sender.send(&mut open, &rest, true).await?;
    let Sender {
        writer,
        tx,
        acks0_hist,
        ..
    } = sender;
    drop(tx);
    match acker {
        Some(handle) => {
            let outcome = handle
                .await
                .map_err(|e| BenchError::Protocol(format!("ack reader failed: {e}")))??;
            drop(writer);
            Ok(outcome)
        }
        None => {
            let mut w = writer;
            w.flush().await?;
            let records = acks0_hist.len();
            Ok(ProducerOutcome {
                histogram: acks0_hist,
                records,
                bytes: records * opts.record_size as u64,
                errors: 0,
            })
        }
    }
}

/// Waits until `at`. Tokio's timer has 1 ms resolution, which would send a record due in
/// 0.2 ms up to a millisecond late (and count that in its latency); the last stretch is
/// slept with the OS timer (tens of µs) on a blocking-pool thread, so no runtime worker
/// (ack readers, consumers) is held up.
async fn pace_until(at: Instant) {
    const TOKIO_TIMER_RESOLUTION: Duration = Duration::from_millis(1);
    let now = Instant::now();
    if at > now + TOKIO_TIMER_RESOLUTION {
        tokio::time::sleep_until((at - TOKIO_TIMER_RESOLUTION).into()).await;
    }
    let rest = at.saturating_duration_since(Instant::now());
    if !rest.is_zero() {
        // Err only if the runtime is shutting down: then there is nothing to pace.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

fn fill(v: &mut [u8], source: &[u8]) {
    let mut done = 0;
    while done < v.len() {
        let n = (v.len() - done).min(source.len());
        v[done..done + n].copy_from_slice(&source[..n]);
        done += n;
    }
}

fn oldest(open: &[OpenBatch]) -> Option<Instant> {
    open.iter().filter_map(|b| b.opened).min()
}

fn lingered_partitions(open: &[OpenBatch], now: Instant, linger: Duration) -> Vec<i32> {
    open.iter()
        .enumerate()
        .filter(|(_, b)| b.opened.is_some_and(|o| o + linger <= now))
        .map(|(p, _)| p as i32)
        .collect()
}

/// The write side of a producer connection.
struct Sender {
    writer: RequestWriter,
    tx: mpsc::UnboundedSender<InFlight>,
    sem: Arc<Semaphore>,
    topic: TopicName,
    acks: i16,
    t0: Instant,
    counters: Arc<Counters>,
    /// acks=0 has no response: latency is until the request is written.
    acks0_hist: Histogram<u64>,
    record_size: u64,
}

impl Sender {
    /// Sends the open batches of `partitions` in one Produce request. With `wait` false it
    /// sends only if a request slot is free and returns whether it sent.
    async fn send(
        &mut self,
        open: &mut [OpenBatch],
        partitions: &[i32],
        wait: bool,
    ) -> Result<bool> {
        let partitions: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|&p| !open[p as usize].builder.is_empty())
            .collect();
        if partitions.is_empty() {
            return Ok(false);
        }
        if self.acks != 0 {
            let permit = if wait {
                self.sem
                    .acquire()
                    .await
                    .map_err(|_| BenchError::Protocol("request slots closed".into()))?
            } else {
                match self.sem.try_acquire() {
                    Ok(p) => p,
                    Err(_) => return Ok(false),
                }
            };
            permit.forget(); // given back by the ack reader
        }
        let mut data = Vec::with_capacity(partitions.len());
        let mut sent = Vec::with_capacity(partitions.len());
        for &p in &partitions {
            let b = &mut open[p as usize];
            let bytes: Bytes = b.builder.finish()?;
            b.opened = None;
            data.push(
                PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(bytes)),
            );
            sent.push(SentBatch {
                partition: p,
                due_us: std::mem::take(&mut b.due_us),
            });
        }
        let request = ProduceRequest::default()
            .with_acks(self.acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(self.topic.clone())
                .with_partition_data(data)]);
        let corr = self.writer.queue(&request, versions::PRODUCE)?;
        if self.acks != 0 {
            // Queue before writing so the reader always knows the request it reads.
            self.tx
                .send(InFlight {
                    correlation: corr,
                    batches: sent,
                })
                .map_err(|_| BenchError::Protocol("ack reader stopped".into()))?;
            self.writer.flush().await?;
        } else {
            self.writer.flush().await?;
            let now_us = self.t0.elapsed().as_micros() as u64;
            let mut n = 0;
            for b in &sent {
                for &due in &b.due_us {
                    report::record(&mut self.acks0_hist, now_us.saturating_sub(due), 1);
                }
                n += b.due_us.len() as u64;
            }
            self.counters.add(n, n * self.record_size);
        }
        Ok(true)
    }
}

/// Reads Produce responses in order, records each record's latency, frees request slots.
async fn read_acks(
    mut reader: ResponseReader,
    mut rx: mpsc::UnboundedReceiver<InFlight>,
    sem: Arc<Semaphore>,
    counters: Arc<Counters>,
    t0: Instant,
    record_size: u64,
) -> Result<ProducerOutcome> {
    let mut histogram = report::histogram();
    let (mut records, mut errors) = (0u64, 0u64);
    while let Some(inflight) = rx.recv().await {
        let frame = reader.read_frame().await?;
        let now_us = t0.elapsed().as_micros() as u64;
        let response =
            reader.decode::<ProduceRequest>(frame, versions::PRODUCE, inflight.correlation)?;
        let mut ok = 0u64;
        for batch in &inflight.batches {
            let code = response
                .responses
                .iter()
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == batch.partition)
                .map_or(-1, |p| p.error_code);
            if code == 0 {
                for &due in &batch.due_us {
                    report::record(&mut histogram, now_us.saturating_sub(due), 1);
                }
                ok += batch.due_us.len() as u64;
            } else {
                errors += batch.due_us.len() as u64;
                counters.errors.fetch_add(
                    batch.due_us.len() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                tracing::warn!(partition = batch.partition, code, "produce failed");
            }
        }
        records += ok;
        counters.add(ok, ok * record_size);
        sem.add_permits(1);
    }
    Ok(ProducerOutcome {
        histogram,
        records,
        bytes: records * record_size,
        errors,
    })
}
