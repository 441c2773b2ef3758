//! Consumer workers in one consumer group: FindCoordinator, JoinGroup/SyncGroup with the
//! standard "consumer" protocol (range assignor, computed by the leader), committed or
//! earliest start offsets, then Fetch in a loop while a heartbeat task watches for
//! rebalances. Consume mode records each fetch's latency; end-to-end mode records, per
//! record, the time since the send timestamp the producer embedded in the value.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, FetchRequest, FindCoordinatorRequest,
    GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, ListOffsetsRequest,
    OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::sync::watch;

use super::batch::batches;
use super::client::{connect, versions, Connection};
use super::report::{self, Counters};
use super::{BenchError, Result};

const MEMBER_ID_REQUIRED: i16 = 79;
const REBALANCE_IN_PROGRESS: i16 = 27;
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// What one consumer does.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub topic: String,
    pub group: String,
    /// Value bytes per record (for MiB/s; values are not otherwise inspected).
    pub record_size: usize,
    pub fetch_max_bytes: i32,
    pub partition_max_bytes: i32,
    pub max_wait_ms: i32,
    /// Read the producer's timestamp from each value and record delivery latency.
    pub end_to_end: bool,
    /// Without a committed offset, start at the log end (Kafka's auto.offset.reset=latest)
    /// instead of the earliest offset.
    pub start_at_latest: bool,
}

/// What one consumer measured.
pub struct ConsumerOutcome {
    /// Per Fetch request, µs.
    pub fetch_latency: Histogram<u64>,
    /// Per record, embedded timestamp to receipt, µs (end-to-end mode).
    pub delivery_latency: Histogram<u64>,
    pub records: u64,
    pub errors: u64,
}

/// Shared state of the consumers of one run.
pub struct GroupState {
    /// Partitions each consumer currently owns.
    pub assigned: Vec<AtomicUsize>,
}

impl GroupState {
    pub fn new(consumers: usize) -> Arc<GroupState> {
        Arc::new(GroupState {
            assigned: (0..consumers).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    /// Partitions owned by all consumers together.
    pub fn total_assigned(&self) -> usize {
        self.assigned
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }
}

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn broker_err(api: &'static str, code: i16) -> BenchError {
    BenchError::Broker {
        api,
        code,
        detail: String::new(),
    }
}

/// The coordinator's address for `group`.
async fn find_coordinator(bootstrap: &str, group: &str) -> Result<String> {
    let mut conn = connect(bootstrap).await?;
    for _ in 0..50 {
        let response = conn
            .call(
                &FindCoordinatorRequest::default()
                    .with_key(name(group))
                    .with_key_type(0),
                versions::FIND_COORDINATOR,
            )
            .await?;
        match response.error_code {
            0 => return Ok(format!("{}:{}", response.host.as_str(), response.port)),
            // COORDINATOR_NOT_AVAILABLE while the offsets topic is created
            15 | 14 => tokio::time::sleep(Duration::from_millis(100)).await,
            code => return Err(broker_err("FindCoordinator", code)),
        }
    }
    Err(broker_err("FindCoordinator", 15))
}

/// A member of the group, with its generation.
struct Membership {
    member_id: String,
    generation: i32,
    partitions: Vec<i32>,
}

fn subscription(topic: &str) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![name(topic)])
        .encode(&mut buf, 0)
        .map_err(|e| BenchError::Codec {
            what: "subscription",
            message: format!("{e:#}"),
        })?;
    Ok(buf.freeze())
}

/// Kafka's range assignor for one topic: members sorted by id get contiguous ranges,
/// the first `partitions % members` one partition more.
pub fn range_assign(members: &[String], partitions: i32) -> BTreeMap<String, Vec<i32>> {
    let mut sorted: Vec<&String> = members.iter().collect();
    sorted.sort();
    let n = sorted.len().max(1) as i32;
    let (per, extra) = (partitions / n, partitions % n);
    let mut out = BTreeMap::new();
    let mut next = 0;
    for (i, m) in sorted.into_iter().enumerate() {
        let count = per + i32::from((i as i32) < extra);
        out.insert(m.clone(), (next..next + count).collect());
        next += count;
    }
    out
}

fn encode_assignment(topic: &str, partitions: Vec<i32>) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![TopicPartition::default()
            .with_topic(TopicName(name(topic)))
            .with_partitions(partitions)])
        .encode(&mut buf, 0)
        .map_err(|e| BenchError::Codec {
            what: "assignment",
            message: format!("{e:#}"),
        })?;
    Ok(buf.freeze())
}

fn decode_assignment(mut bytes: Bytes, topic: &str) -> Result<Vec<i32>> {
    if bytes.len() < 2 {
        return Ok(Vec::new()); // an empty assignment
    }
    let version = bytes.get_i16().clamp(0, 3);
    let a =
        ConsumerProtocolAssignment::decode(&mut bytes, version).map_err(|e| BenchError::Codec {
            what: "assignment",
            message: format!("{e:#}"),
        })?;
    Ok(a.assigned_partitions
        .into_iter()
        .filter(|t| t.topic.0.as_str() == topic)
        .flat_map(|t| t.partitions)
        .collect())
}

/// Joins (or rejoins) the group and returns the member's partitions.
async fn join(
    conn: &mut Connection,
    opts: &ConsumeOptions,
    partition_count: i32,
    member_id: &str,
) -> Result<Membership> {
    let mut member_id = member_id.to_string();
    let metadata = subscription(&opts.topic)?;
    loop {
        let response = conn
            .call(
                &JoinGroupRequest::default()
                    .with_group_id(GroupId(name(&opts.group)))
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(30_000)
                    .with_member_id(name(&member_id))
                    .with_protocol_type(StrBytes::from_static_str("consumer"))
                    .with_protocols(vec![JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str("range"))
                        .with_metadata(metadata.clone())]),
                versions::JOIN_GROUP,
            )
            .await?;
        match response.error_code {
            0 => {}
            MEMBER_ID_REQUIRED => {
                member_id = response.member_id.as_str().to_string();
                continue;
            }
            REBALANCE_IN_PROGRESS => continue,
            code => return Err(broker_err("JoinGroup", code)),
        }
        member_id = response.member_id.as_str().to_string();
        let generation = response.generation_id;
        let mut assignments = Vec::new();
        if response.leader.as_str() == member_id {
            let members: Vec<String> = response
                .members
                .iter()
                .map(|m| m.member_id.as_str().to_string())
                .collect();
            for (member, parts) in range_assign(&members, partition_count) {
                assignments.push(
                    SyncGroupRequestAssignment::default()
                        .with_member_id(name(&member))
                        .with_assignment(encode_assignment(&opts.topic, parts)?),
                );
            }
        }
        let sync = conn
            .call(
                &SyncGroupRequest::default()
                    .with_group_id(GroupId(name(&opts.group)))
                    .with_generation_id(generation)
                    .with_member_id(name(&member_id))
                    .with_assignments(assignments),
                versions::SYNC_GROUP,
            )
            .await?;
        match sync.error_code {
            0 => {}
            REBALANCE_IN_PROGRESS => continue,
            code => return Err(broker_err("SyncGroup", code)),
        }
        let partitions = decode_assignment(sync.assignment, &opts.topic)?;
        return Ok(Membership {
            member_id,
            generation,
            partitions,
        });
    }
}

/// Heartbeats every second until a rebalance is announced (sets `rebalance`) or `stop`.
async fn heartbeat(
    coordinator: String,
    group: String,
    member_id: String,
    generation: i32,
    rebalance: Arc<AtomicBool>,
) -> Result<()> {
    let mut conn = connect(&coordinator).await?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let response = conn
            .call(
                &HeartbeatRequest::default()
                    .with_group_id(GroupId(name(&group)))
                    .with_generation_id(generation)
                    .with_member_id(name(&member_id)),
                versions::HEARTBEAT,
            )
            .await?;
        if response.error_code != 0 {
            rebalance.store(true, Ordering::Release);
            return Ok(());
        }
    }
}

/// Starting positions: committed offsets, else the earliest offset.
async fn positions(
    coord: &mut Connection,
    data: &mut Connection,
    opts: &ConsumeOptions,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>> {
    let topic = TopicName(name(&opts.topic));
    let committed = coord
        .call(
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(name(&opts.group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(topic.clone())
                    .with_partition_indexes(partitions.to_vec())])),
            versions::OFFSET_FETCH,
        )
        .await?;
    let mut out = BTreeMap::new();
    for t in &committed.topics {
        for p in &t.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                out.insert(p.partition_index, p.committed_offset);
            }
        }
    }
    let missing: Vec<i32> = partitions
        .iter()
        .copied()
        .filter(|p| !out.contains_key(p))
        .collect();
    if !missing.is_empty() {
        let at = if opts.start_at_latest {
            LATEST
        } else {
            EARLIEST
        };
        for (p, o) in list_offsets(data, &topic, &missing, at).await? {
            out.insert(p, o);
        }
    }
    Ok(out)
}

/// ListOffsets timestamps meaning "log start" and "log end".
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

async fn list_offsets(
    conn: &mut Connection,
    topic: &TopicName,
    partitions: &[i32],
    at: i64,
) -> Result<Vec<(i32, i64)>> {
    let response = conn
        .call(
            &ListOffsetsRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic.clone())
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|&p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(p)
                                    .with_current_leader_epoch(-1)
                                    .with_timestamp(at)
                            })
                            .collect(),
                    )]),
            versions::LIST_OFFSETS,
        )
        .await?;
    let mut out = Vec::new();
    for t in response.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                return Err(broker_err("ListOffsets", p.error_code));
            }
            out.push((p.partition_index, p.offset));
        }
    }
    Ok(out)
}

async fn commit(
    coord: &mut Connection,
    opts: &ConsumeOptions,
    m: &Membership,
    pos: &BTreeMap<i32, i64>,
) -> Result<()> {
    if pos.is_empty() {
        return Ok(());
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(name(&opts.group)))
        .with_generation_id_or_member_epoch(m.generation)
        .with_member_id(name(&m.member_id))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(name(&opts.topic)))
            .with_partitions(
                pos.iter()
                    .map(|(&p, &o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                            .with_committed_leader_epoch(-1)
                    })
                    .collect(),
            )]);
    // A commit refused because the generation moved on is not fatal for a benchmark.
    let response = coord.call(&request, versions::OFFSET_COMMIT).await?;
    for t in response.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                tracing::debug!(
                    partition = p.partition_index,
                    code = p.error_code,
                    "commit refused"
                );
            }
        }
    }
    Ok(())
}

/// Runs one group member until `stop` turns true.
#[allow(clippy::too_many_arguments)]
pub async fn run_consumer(
    bootstrap: &str,
    opts: ConsumeOptions,
    partition_count: i32,
    index: usize,
    group_state: Arc<GroupState>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> Result<ConsumerOutcome> {
    let coordinator = find_coordinator(bootstrap, &opts.group).await?;
    let mut coord = connect(&coordinator).await?;
    let mut data = connect(bootstrap).await?;
    let mut fetch_latency = report::histogram();
    let mut delivery_latency = report::histogram();
    let (mut records, mut errors) = (0u64, 0u64);
    let mut member_id = String::new();
    'generation: loop {
        if *stop.borrow() {
            break;
        }
        let m = join(&mut coord, &opts, partition_count, &member_id).await?;
        member_id = m.member_id.clone();
        let rebalance = Arc::new(AtomicBool::new(false));
        let hb = tokio::spawn(heartbeat(
            coordinator.clone(),
            opts.group.clone(),
            m.member_id.clone(),
            m.generation,
            rebalance.clone(),
        ));
        let _hb = AbortOnDrop(hb);
        let mut pos = positions(&mut coord, &mut data, &opts, &m.partitions).await?;
        group_state.assigned[index].store(m.partitions.len(), Ordering::Relaxed);
        let topic = TopicName(name(&opts.topic));
        loop {
            if *stop.borrow() {
                commit(&mut coord, &opts, &m, &pos).await?;
                break 'generation;
            }
            if rebalance.load(Ordering::Acquire) {
                commit(&mut coord, &opts, &m, &pos).await?;
                group_state.assigned[index].store(0, Ordering::Relaxed);
                continue 'generation;
            }
            if pos.is_empty() {
                // Nothing assigned: wait for a rebalance or the end.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let request = FetchRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_max_wait_ms(opts.max_wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(opts.fetch_max_bytes)
                .with_isolation_level(0)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic.clone())
                    .with_partitions(
                        pos.iter()
                            .map(|(&p, &o)| {
                                FetchPartition::default()
                                    .with_partition(p)
                                    .with_current_leader_epoch(-1)
                                    .with_fetch_offset(o)
                                    .with_log_start_offset(-1)
                                    .with_partition_max_bytes(opts.partition_max_bytes)
                            })
                            .collect(),
                    )]);
            let sent = Instant::now();
            let response = data.call(&request, versions::FETCH).await?;
            report::record(&mut fetch_latency, sent.elapsed().as_micros() as u64, 1);
            if response.error_code != 0 {
                return Err(broker_err("Fetch", response.error_code));
            }
            let now_wall = super::wall_micros();
            let mut got = 0u64;
            for t in response.responses {
                for p in t.partitions {
                    let Some(position) = pos.get(&p.partition_index).copied() else {
                        continue;
                    };
                    match p.error_code {
                        0 => {}
                        OFFSET_OUT_OF_RANGE => {
                            let e = list_offsets(&mut data, &topic, &[p.partition_index], EARLIEST)
                                .await?;
                            for (pi, o) in e {
                                pos.insert(pi, o);
                            }
                            continue;
                        }
                        code => {
                            errors += 1;
                            tracing::warn!(partition = p.partition_index, code, "fetch error");
                            continue;
                        }
                    }
                    let Some(set) = p.records else { continue };
                    let mut next = position;
                    for b in batches(&set) {
                        if b.last_offset < next {
                            continue;
                        }
                        let first = b.base_offset.max(next);
                        got += (b.last_offset - first + 1) as u64;
                        if opts.end_to_end {
                            b.for_each_value_prefix(|v| {
                                if v.len() == 8 {
                                    let mut ts = [0u8; 8];
                                    ts.copy_from_slice(v);
                                    let sent = u64::from_be_bytes(ts);
                                    report::record(
                                        &mut delivery_latency,
                                        now_wall.saturating_sub(sent),
                                        1,
                                    );
                                }
                            })?;
                        }
                        next = b.last_offset + 1;
                    }
                    pos.insert(p.partition_index, next);
                }
            }
            records += got;
            counters.add(got, got * opts.record_size as u64);
        }
    }
    if !member_id.is_empty() {
        let _ = coord
            .call(
                &LeaveGroupRequest::default()
                    .with_group_id(GroupId(name(&opts.group)))
                    .with_member_id(name(&member_id)),
                versions::LEAVE_GROUP,
            )
            .await;
    }
    group_state.assigned[index].store(0, Ordering::Relaxed);
    Ok(ConsumerOutcome {
        fetch_latency,
        delivery_latency,
        records,
        errors,
    })
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_assignor_matches_kafka() {
        let members = vec!["b".to_string(), "a".to_string(), "c".to_string()];
        let a = range_assign(&members, 8);
        assert_eq!(a["a"], vec![0, 1, 2]);
        assert_eq!(a["b"], vec![3, 4, 5]);
        assert_eq!(a["c"], vec![6, 7]);
        let one = range_assign(&["x".to_string()], 4);
        assert_eq!(one["x"], vec![0, 1, 2, 3]);
    }

    #[test]
    fn assignment_round_trips() {
        let bytes = encode_assignment("t", vec![1, 5]).unwrap();
        assert_eq!(decode_assignment(bytes, "t").unwrap(), vec![1, 5]);
        assert!(decode_assignment(Bytes::new(), "t").unwrap().is_empty());
    }
}
