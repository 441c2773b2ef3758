//! `replay`: reads an offset or time range of a topic with Fetch and prints the records,
//! or re-publishes them to another topic with Produce.
//!
//! Ranges are half-open: records with `from <= offset < to`, where `to` is `--to-offset`,
//! the first offset at or after `--to-datetime`, or (by default) the log end offset when
//! the replay starts. `--count N` stops after N records in total. Partitions are replayed
//! one after another in partition order.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use bytes::Bytes;
use kafka_protocol::messages::{
    fetch_request::{FetchPartition, FetchTopic},
    produce_request::{PartitionProduceData, TopicProduceData},
    BrokerId, FetchRequest, ProduceRequest,
};
use serde_json::json;
use strata_storage::batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD};

use super::client::{topic_name, Cluster, TopicInfo};
use super::error::{Result, ToolError};
use super::output::{print_json, Table};
use super::records::{decode_batch, encode_batch, BatchRecord};
use crate::murmur2::partition_for_key;

/// How printed records look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line (see `RecordView::to_json`).
    Json,
    /// The value bytes as they are, each followed by a newline.
    Raw,
    /// One human-readable line per record.
    Text,
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy)]
pub enum From {
    Offset(i64),
    /// Milliseconds since the epoch.
    Time(i64),
}

/// Where a replay stops.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// The log end offset at the start of the replay.
    LogEnd,
    /// Exclusive offset.
    Offset(i64),
    /// Exclusive: stop at the first offset whose timestamp is >= this (ms).
    Time(i64),
    /// At most this many records in total.
    Count(u64),
}

/// Arguments of `replay`.
#[derive(Debug, Clone)]
pub struct ReplayArgs {
    pub topic: String,
    pub partition: Option<i32>,
    pub from: From,
    pub until: Until,
    pub format: Format,
    pub to_topic: Option<String>,
}

/// Fetch size per partition per request, raised when a single batch is larger.
const PARTITION_MAX_BYTES: i32 = 1 << 20;
/// Largest per-partition fetch size we grow to.
const PARTITION_MAX_BYTES_LIMIT: i32 = 64 << 20;
/// Empty fetches in a row below the end offset before giving up.
const MAX_EMPTY_FETCHES: u32 = 20;
/// Re-published records are sent in batches of at most this many records...
const PRODUCE_BATCH_RECORDS: usize = 500;
/// ...or this many value+key bytes.
const PRODUCE_BATCH_BYTES: usize = 512 << 10;

/// `replay`.
pub async fn replay(
    cluster: &mut Cluster,
    args: &ReplayArgs,
    json_out: bool,
    out: &mut impl Write,
) -> Result<()> {
    let info = cluster.topic(&args.topic).await?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) => {
            if !info.partitions.contains_key(&p) {
                return Err(ToolError::UnknownPartition {
                    topic: args.topic.clone(),
                    partition: p,
                });
            }
            vec![p]
        }
        None => info.partitions.keys().copied().collect(),
    };
    let mut leaders = BTreeMap::new();
    leaders.insert(args.topic.clone(), info.clone());
    let keys: Vec<(String, i32)> = partitions
        .iter()
        .map(|p| (args.topic.clone(), *p))
        .collect();
    let bounds = cluster.offset_bounds(&keys, &leaders).await?;
    let from_time = match args.from {
        From::Time(ts) => Some(cluster.list_offsets(&keys, ts, &leaders).await?),
        From::Offset(_) => None,
    };
    let until_time = match args.until {
        Until::Time(ts) => Some(cluster.list_offsets(&keys, ts, &leaders).await?),
        _ => None,
    };
    // (partition, start, end) with start <= end.
    let mut ranges = Vec::new();
    for key in &keys {
        let (log_start, log_end) = bounds.get(key).copied().unwrap_or((0, 0));
        let start = match args.from {
            From::Offset(n) => n.max(log_start),
            From::Time(_) => from_time
                .as_ref()
                .and_then(|m| m.get(key).copied().flatten())
                .unwrap_or(log_end),
        };
        let end = match args.until {
            Until::Offset(n) => n.min(log_end),
            Until::Time(_) => until_time
                .as_ref()
                .and_then(|m| m.get(key).copied().flatten())
                .unwrap_or(log_end),
            Until::LogEnd | Until::Count(_) => log_end,
        };
        let start = start.min(log_end);
        ranges.push((key.1, start, end.max(start)));
    }
    let mut remaining = match args.until {
        Until::Count(n) => n,
        _ => u64::MAX,
    };
    let span: u64 = ranges.iter().map(|(_, s, e)| (e - s) as u64).sum();
    // The bar counts offsets covered, or records emitted when --count bounds the replay.
    let count_bound = span > remaining;
    let bar = if std::io::stdout().is_terminal() && span > 0 {
        let bar = indicatif::ProgressBar::new(span.min(remaining));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} records {per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        Some(bar)
    } else {
        None
    };

    let mut sink = match &args.to_topic {
        Some(target) => {
            let target_info = cluster.topic(target).await?;
            Sink::Publish(Publisher::new(target.clone(), target_info))
        }
        None => Sink::Print(args.format),
    };
    let mut emitted = 0u64;
    for (partition, start, end) in ranges {
        if remaining == 0 {
            break;
        }
        let leader = info.partitions.get(&partition).copied().unwrap_or(-1);
        let mut offset = start;
        let mut max_bytes = PARTITION_MAX_BYTES;
        let mut empty = 0u32;
        while offset < end && remaining > 0 {
            let records = fetch(cluster, leader, &args.topic, partition, offset, max_bytes).await?;
            let before = offset;
            let mut complete = 0usize;
            let mut pos = 0usize;
            while records.len() - pos >= LOG_OVERHEAD && offset < end && remaining > 0 {
                let length = i32::from_be_bytes([
                    records[pos + 8],
                    records[pos + 9],
                    records[pos + 10],
                    records[pos + 11],
                ]);
                let size = LOG_OVERHEAD + length.max(0) as usize;
                if length < 0 || pos + size > records.len() || size < HEADER_LEN {
                    break; // partial batch at the end of the response
                }
                let batch = records.slice(pos..pos + size);
                pos += size;
                complete += 1;
                let header = BatchHeader::parse(&batch).ok_or_else(|| ToolError::Decode {
                    context: format!("{}:{partition}", args.topic),
                    reason: "short batch".to_string(),
                })?;
                if header.magic != 2 {
                    return Err(ToolError::Decode {
                        context: format!(
                            "{}:{partition} at offset {}",
                            args.topic, header.base_offset
                        ),
                        reason: format!(
                            "message format v{} (only RecordBatch v2 is supported)",
                            header.magic
                        ),
                    });
                }
                if header.next_offset() <= offset {
                    continue;
                }
                if !header.is_control() {
                    let (_, records) =
                        decode_batch(&batch).map_err(|reason| ToolError::Decode {
                            context: format!(
                                "{}:{partition} batch at offset {}",
                                args.topic, header.base_offset
                            ),
                            reason,
                        })?;
                    for record in records {
                        if record.offset < offset || record.offset >= end || remaining == 0 {
                            continue;
                        }
                        sink.emit(cluster, &args.topic, partition, record, bar.as_ref(), out)
                            .await?;
                        remaining -= 1;
                        emitted += 1;
                        if let (Some(bar), true) = (&bar, count_bound) {
                            bar.inc(1);
                        }
                    }
                }
                offset = if remaining == 0 {
                    offset
                } else {
                    header.next_offset().min(end)
                };
            }
            if let (Some(bar), false) = (&bar, count_bound) {
                bar.inc((offset - before).max(0) as u64);
            }
            if offset == before && remaining > 0 {
                if complete == 0 && !records.is_empty() && max_bytes < PARTITION_MAX_BYTES_LIMIT {
                    max_bytes *= 2;
                    continue;
                }
                empty += 1;
                if empty >= MAX_EMPTY_FETCHES {
                    return Err(ToolError::Decode {
                        context: format!("{}:{partition}", args.topic),
                        reason: format!(
                            "the broker returned no records at offset {offset} (end {end}) {empty} times"
                        ),
                    });
                }
            } else {
                empty = 0;
            }
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match sink {
        Sink::Print(_) => {
            out.flush()?;
            tracing::info!(records = emitted, "replayed");
            Ok(())
        }
        Sink::Publish(mut publisher) => {
            publisher.flush_all(cluster).await?;
            publisher.report(json_out, out)
        }
    }
}

/// One Fetch of one partition from `offset`; returns the records bytes.
async fn fetch(
    cluster: &mut Cluster,
    leader: i32,
    topic: &str,
    partition: i32,
    offset: i64,
    partition_max_bytes: i32,
) -> Result<Bytes> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(partition_max_bytes.saturating_mul(2))
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(partition_max_bytes)])]);
    let (response, _) = cluster.node(leader).await?.send(&request).await?;
    ToolError::check(response.error_code, || {
        format!("fetching {topic}:{partition}")
    })?;
    let data = response
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| ToolError::Decode {
            context: format!("{topic}:{partition}"),
            reason: "fetch response without the partition".to_string(),
        })?;
    if data.error_code == 1 {
        return Err(ToolError::Usage(format!(
            "offset {offset} of {topic}:{partition} is out of range (log start {}, high watermark {})",
            data.log_start_offset, data.high_watermark
        )));
    }
    ToolError::check(data.error_code, || {
        format!("fetching {topic}:{partition} at offset {offset}")
    })?;
    Ok(data.records.unwrap_or_default())
}

enum Sink {
    Print(Format),
    Publish(Publisher),
}

impl Sink {
    async fn emit(
        &mut self,
        cluster: &mut Cluster,
        topic: &str,
        partition: i32,
        record: BatchRecord,
        bar: Option<&indicatif::ProgressBar>,
        out: &mut impl Write,
    ) -> Result<()> {
        match self {
            // With a progress bar on the terminal, each record is written and flushed while
            // the bar is hidden, so the two never interleave.
            Sink::Print(format) => match bar {
                Some(bar) => bar.suspend(|| {
                    print_record(*format, topic, partition, &record, out)?;
                    out.flush()?;
                    Ok(())
                }),
                None => print_record(*format, topic, partition, &record, out),
            },
            Sink::Publish(p) => p.add(cluster, partition, record).await,
        }
    }
}

fn print_record(
    format: Format,
    topic: &str,
    partition: i32,
    r: &BatchRecord,
    out: &mut impl Write,
) -> Result<()> {
    if format == Format::Raw {
        out.write_all(r.value.as_deref().unwrap_or_default())?;
        out.write_all(b"\n")?;
        return Ok(());
    }
    let view = r.view(Some(topic), Some(partition));
    match format {
        Format::Json => print_json(out, &view.to_json()),
        _ => {
            writeln!(out, "{}", view.to_text())?;
            Ok(())
        }
    }
}

/// Re-publishes records to a target topic: keyed records go to the Java default
/// partitioner's partition (murmur2), records without a key keep their source partition
/// number modulo the target's partition count.
struct Publisher {
    topic: String,
    info: TopicInfo,
    /// target partition -> (records waiting, their key+value bytes).
    pending: BTreeMap<i32, (Vec<BatchRecord>, usize)>,
    /// target partition -> records written.
    written: BTreeMap<i32, u64>,
}

impl Publisher {
    fn new(topic: String, info: TopicInfo) -> Publisher {
        Publisher {
            topic,
            info,
            pending: BTreeMap::new(),
            written: BTreeMap::new(),
        }
    }

    fn partition_count(&self) -> i32 {
        self.info.partitions.len().max(1) as i32
    }

    async fn add(
        &mut self,
        cluster: &mut Cluster,
        source_partition: i32,
        record: BatchRecord,
    ) -> Result<()> {
        let n = self.partition_count();
        let target = match &record.key {
            Some(k) => partition_for_key(k, n),
            None => source_partition.rem_euclid(n),
        };
        let size = record.key.as_ref().map_or(0, |k| k.len())
            + record.value.as_ref().map_or(0, |v| v.len());
        let entry = self.pending.entry(target).or_default();
        entry.0.push(record);
        entry.1 += size;
        if entry.0.len() >= PRODUCE_BATCH_RECORDS || entry.1 >= PRODUCE_BATCH_BYTES {
            self.flush(cluster, target).await?;
        }
        Ok(())
    }

    async fn flush_all(&mut self, cluster: &mut Cluster) -> Result<()> {
        let targets: Vec<i32> = self.pending.keys().copied().collect();
        for t in targets {
            self.flush(cluster, t).await?;
        }
        Ok(())
    }

    /// Produces the pending records of `partition` as one batch, acks=all.
    async fn flush(&mut self, cluster: &mut Cluster, partition: i32) -> Result<()> {
        let Some((records, _)) = self.pending.remove(&partition) else {
            return Ok(());
        };
        if records.is_empty() {
            return Ok(());
        }
        // One uncompressed CreateTime batch keeping each record's timestamp, key, value and
        // headers (repeated header keys included).
        let batch = encode_batch(&records);
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&self.topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        let leader = self.info.partitions.get(&partition).copied().unwrap_or(-1);
        let (response, _) = cluster.node(leader).await?.send(&request).await?;
        for t in response.responses {
            for p in t.partition_responses {
                ToolError::check(p.error_code, || {
                    format!("producing to {}:{}", self.topic, p.index)
                })?;
            }
        }
        *self.written.entry(partition).or_default() += records.len() as u64;
        Ok(())
    }

    fn report(&self, json_out: bool, out: &mut impl Write) -> Result<()> {
        let total: u64 = self.written.values().sum();
        if json_out {
            return print_json(
                out,
                &json!({"topic": self.topic, "records": total, "partitions": self.written}),
            );
        }
        let mut table = Table::new(&["TOPIC", "PARTITION", "RECORDS"]);
        for (p, n) in &self.written {
            table.row(vec![self.topic.clone(), p.to_string(), n.to_string()]);
        }
        table.print(out)?;
        writeln!(out, "\nRe-published {total} record(s) to '{}'.", self.topic)?;
        Ok(())
    }
}
