//! `groups list`, `groups describe` and `groups reset`: consumer group state, lag, and
//! moving a group's committed offsets (dry run unless `--execute`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use bytes::Buf;
use kafka_protocol::messages::{
    consumer_protocol_assignment::ConsumerProtocolAssignment,
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde::Serialize;
use serde_json::json;

use super::client::{topic_name, Cluster, TopicInfo};
use super::error::{Result, ToolError};
use super::output::{opt, print_json, Table};
use super::plan::{plan_offset, PlannedReset, ResetTo};

/// Kafka's error code for a group that does not exist (DescribeGroups v6+, DeleteGroups).
const GROUP_ID_NOT_FOUND: i16 = 69;

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupState {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub members: Vec<Member>,
}

/// One member and the partitions assigned to it (decoded for the `consumer` protocol).
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub assignment: BTreeMap<String, Vec<i32>>,
}

/// Per partition lag of a group.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    /// `None` when the topic or partition no longer exists.
    pub log_end: Option<i64>,
    pub lag: Option<i64>,
    pub member_id: Option<String>,
}

/// `groups list`: every group on every broker of the cluster.
pub async fn list(cluster: &mut Cluster, json_out: bool, out: &mut impl Write) -> Result<()> {
    cluster.metadata(Some(&[])).await?;
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    for addr in cluster.broker_addrs() {
        let conn = cluster.conn(&addr).await?;
        let (response, _) = conn.send(&ListGroupsRequest::default()).await?;
        ToolError::check(response.error_code, || format!("listing groups on {addr}"))?;
        for g in response.groups {
            groups.insert(
                g.group_id.0.to_string(),
                (g.group_state.to_string(), g.protocol_type.to_string()),
            );
        }
    }
    if json_out {
        let list: Vec<_> = groups
            .iter()
            .map(|(g, (state, pt))| json!({"group": g, "state": if state.is_empty() { None } else { Some(state) }, "protocol_type": pt}))
            .collect();
        print_json(out, &json!({ "groups": list }))
    } else {
        let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL"]);
        for (g, (state, pt)) in &groups {
            let state = if state.is_empty() { "-" } else { state };
            table.row(vec![g.clone(), state.to_string(), pt.clone()]);
        }
        table.print(out)
    }
}

/// DescribeGroups of one group at its coordinator.
pub async fn describe_group(
    cluster: &mut Cluster,
    coordinator: &str,
    group: &str,
) -> Result<GroupState> {
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let (response, _) = cluster.conn(coordinator).await?.send(&request).await?;
    let described = response
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
        .ok_or_else(|| ToolError::UnknownGroup(group.to_string()))?;
    if described.error_code == GROUP_ID_NOT_FOUND {
        return Ok(GroupState {
            group: group.to_string(),
            state: "Dead".to_string(),
            protocol_type: String::new(),
            members: Vec::new(),
        });
    }
    ToolError::check(described.error_code, || {
        format!("describing group '{group}'")
    })?;
    let consumer = described.protocol_type.as_str() == "consumer";
    let members = described
        .members
        .into_iter()
        .map(|m| Member {
            member_id: m.member_id.to_string(),
            group_instance_id: m.group_instance_id.map(|s| s.to_string()),
            client_id: m.client_id.to_string(),
            client_host: m.client_host.to_string(),
            assignment: if consumer {
                decode_assignment(m.member_assignment)
            } else {
                BTreeMap::new()
            },
        })
        .collect();
    Ok(GroupState {
        group: group.to_string(),
        state: described.group_state.to_string(),
        protocol_type: described.protocol_type.to_string(),
        members,
    })
}

/// The consumer protocol's assignment bytes: `version i16` then the assignment; empty
/// when the bytes do not decode.
fn decode_assignment(mut bytes: bytes::Bytes) -> BTreeMap<String, Vec<i32>> {
    let mut out = BTreeMap::new();
    if bytes.remaining() < 2 {
        return out;
    }
    let version = bytes.get_i16().clamp(0, 3);
    if let Ok(a) = ConsumerProtocolAssignment::decode(&mut bytes, version) {
        for tp in a.assigned_partitions {
            out.entry(tp.topic.0.to_string())
                .or_insert_with(Vec::new)
                .extend(tp.partitions);
        }
    }
    out
}

/// The group's committed offsets (OffsetFetch for all topics), `(topic, partition) -> offset`.
pub async fn committed_offsets(
    cluster: &mut Cluster,
    coordinator: &str,
    group: &str,
) -> Result<BTreeMap<(String, i32), i64>> {
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(None);
    let (response, _) = cluster.conn(coordinator).await?.send(&request).await?;
    if response.error_code == GROUP_ID_NOT_FOUND {
        return Ok(BTreeMap::new());
    }
    ToolError::check(response.error_code, || {
        format!("fetching committed offsets of group '{group}'")
    })?;
    let mut out = BTreeMap::new();
    for t in response.topics {
        let topic = t.name.0.to_string();
        for p in t.partitions {
            ToolError::check(p.error_code, || {
                format!("committed offset of {topic}:{}", p.partition_index)
            })?;
            if p.committed_offset >= 0 {
                out.insert((topic.clone(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// Lag rows for `partitions` of a group: committed offset, log end, lag, owning member.
pub async fn lag_of(
    cluster: &mut Cluster,
    state: &GroupState,
    committed: &BTreeMap<(String, i32), i64>,
) -> Result<Vec<PartitionLag>> {
    let mut partitions: BTreeSet<(String, i32)> = committed.keys().cloned().collect();
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &state.members {
        for (topic, ps) in &m.assignment {
            for p in ps {
                partitions.insert((topic.clone(), *p));
                owner.insert((topic.clone(), *p), m.member_id.clone());
            }
        }
    }
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    // All topics, so that offsets left on a deleted topic show as such instead of failing.
    let leaders = cluster.metadata(None).await?;
    let live: Vec<(String, i32)> = partitions
        .iter()
        .filter(|(t, p)| {
            leaders
                .get(t)
                .is_some_and(|info| info.partitions.contains_key(p))
        })
        .cloned()
        .collect();
    let ends = cluster
        .list_offsets(&live, super::client::LATEST, &leaders)
        .await?;
    Ok(partitions
        .into_iter()
        .map(|key| {
            let log_end = ends.get(&key).map(|o| o.unwrap_or(0));
            let c = committed.get(&key).copied();
            PartitionLag {
                lag: c.zip(log_end).map(|(c, end)| (end - c).max(0)),
                committed: c,
                log_end,
                member_id: owner.get(&key).cloned(),
                topic: key.0,
                partition: key.1,
            }
        })
        .collect())
}

/// `groups describe GROUP`.
pub async fn describe(
    cluster: &mut Cluster,
    group: &str,
    json_out: bool,
    out: &mut impl Write,
) -> Result<()> {
    let coordinator = cluster.coordinator(group).await?;
    let state = describe_group(cluster, &coordinator, group).await?;
    let committed = committed_offsets(cluster, &coordinator, group).await?;
    if (state.state == "Dead" || state.state.is_empty()) && committed.is_empty() {
        return Err(ToolError::UnknownGroup(group.to_string()));
    }
    let lags = lag_of(cluster, &state, &committed).await?;
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for l in &lags {
        *totals.entry(l.topic.clone()).or_default() += l.lag.unwrap_or(0);
    }
    if json_out {
        let value = json!({
            "group": state.group,
            "state": state.state,
            "protocol_type": state.protocol_type,
            "members": state.members,
            "partitions": lags,
            "total_lag": totals,
        });
        return print_json(out, &value);
    }
    writeln!(
        out,
        "GROUP {}  STATE {}  MEMBERS {}",
        state.group,
        state.state,
        state.members.len()
    )?;
    if !state.members.is_empty() {
        writeln!(out)?;
        let mut table = Table::new(&["MEMBER", "CLIENT", "HOST", "ASSIGNMENT"]);
        for m in &state.members {
            let assignment = m
                .assignment
                .iter()
                .map(|(t, ps)| {
                    let ps: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
                    format!("{t}:{}", ps.join(","))
                })
                .collect::<Vec<_>>()
                .join(" ");
            table.row(vec![
                m.member_id.clone(),
                m.client_id.clone(),
                m.client_host.clone(),
                assignment,
            ]);
        }
        table.print(out)?;
    }
    writeln!(out)?;
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "LOG-END",
        "LAG",
        "MEMBER",
    ]);
    for l in &lags {
        table.row(vec![
            l.topic.clone(),
            l.partition.to_string(),
            opt(l.committed),
            opt(l.log_end),
            opt(l.lag),
            l.member_id.clone().unwrap_or_else(|| "-".to_string()),
        ]);
    }
    table.print(out)?;
    writeln!(out)?;
    let mut table = Table::new(&["TOPIC", "TOTAL-LAG"]);
    for (t, lag) in &totals {
        table.row(vec![t.clone(), lag.to_string()]);
    }
    table.print(out)
}

/// What `groups reset` should do.
#[derive(Debug, Clone)]
pub struct ResetRequest {
    pub group: String,
    /// `(topic, partitions)`; `None` partitions = all of the topic's partitions.
    pub topics: Vec<(String, Option<Vec<i32>>)>,
    /// Use every topic the group has committed offsets for.
    pub all_topics: bool,
    pub to: ResetTo,
    pub execute: bool,
}

/// `groups reset`: computes the plan, prints it, and with `execute` commits it.
pub async fn reset(
    cluster: &mut Cluster,
    request: &ResetRequest,
    json_out: bool,
    out: &mut impl Write,
) -> Result<()> {
    let group = request.group.as_str();
    let coordinator = cluster.coordinator(group).await?;
    let state = describe_group(cluster, &coordinator, group).await?;
    let committed = committed_offsets(cluster, &coordinator, group).await?;

    // The partitions to reset.
    let mut targets: BTreeSet<(String, i32)> = BTreeSet::new();
    let leaders: BTreeMap<String, TopicInfo>;
    if request.all_topics {
        if committed.is_empty() {
            if matches!(state.state.as_str(), "Dead" | "") {
                return Err(ToolError::UnknownGroup(group.to_string()));
            }
            return Err(ToolError::Usage(format!(
                "group '{group}' has no committed offsets, so --all-topics selects nothing; name the topics with --topic"
            )));
        }
        let topics: Vec<String> = committed
            .keys()
            .map(|(t, _)| t.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        leaders = cluster.metadata(Some(&topics)).await?;
        for (t, info) in &leaders {
            for p in info.partitions.keys() {
                targets.insert((t.clone(), *p));
            }
        }
    } else {
        let topics: Vec<String> = request.topics.iter().map(|(t, _)| t.clone()).collect();
        leaders = cluster.metadata(Some(&topics)).await?;
        for (t, parts) in &request.topics {
            let info = leaders
                .get(t)
                .ok_or_else(|| ToolError::UnknownTopic(t.clone()))?;
            match parts {
                None => targets.extend(info.partitions.keys().map(|p| (t.clone(), *p))),
                Some(ps) => {
                    for p in ps {
                        if !info.partitions.contains_key(p) {
                            return Err(ToolError::UnknownPartition {
                                topic: t.clone(),
                                partition: *p,
                            });
                        }
                        targets.insert((t.clone(), *p));
                    }
                }
            }
        }
    }
    let targets: Vec<(String, i32)> = targets.into_iter().collect();
    let bounds = cluster.offset_bounds(&targets, &leaders).await?;
    let by_time = match request.to {
        ResetTo::Timestamp(ts) => Some(cluster.list_offsets(&targets, ts, &leaders).await?),
        _ => None,
    };
    let mut plan = Vec::with_capacity(targets.len());
    for key in &targets {
        let (start, end) = bounds.get(key).copied().unwrap_or((0, 0));
        let current = committed.get(key).copied();
        let for_time = by_time.as_ref().and_then(|m| m.get(key).copied().flatten());
        let new = plan_offset(
            &request.to,
            current,
            start,
            end,
            for_time,
            &format!("{}:{}", key.0, key.1),
        )?;
        plan.push(PlannedReset {
            topic: key.0.clone(),
            partition: key.1,
            current,
            new,
            log_start: start,
            log_end: end,
        });
    }

    if request.execute {
        if !state.members.is_empty() || !matches!(state.state.as_str(), "Empty" | "Dead" | "") {
            return Err(ToolError::GroupActive {
                group: group.to_string(),
                state: state.state.clone(),
                members: state.members.len(),
            });
        }
        commit(cluster, &coordinator, group, &plan).await?;
    }

    if json_out {
        return print_json(
            out,
            &json!({"group": group, "executed": request.execute, "partitions": plan}),
        );
    }
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT",
        "NEW",
        "LOG-START",
        "LOG-END",
    ]);
    for p in &plan {
        table.row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            opt(p.current),
            p.new.to_string(),
            p.log_start.to_string(),
            p.log_end.to_string(),
        ]);
    }
    table.print(out)?;
    if request.execute {
        writeln!(
            out,
            "\nCommitted new offsets for {} partition(s) of group '{group}'.",
            plan.len()
        )?;
    } else {
        writeln!(
            out,
            "\nDry run: nothing changed. Add --execute to commit these offsets."
        )?;
    }
    Ok(())
}

/// OffsetCommit of the plan as an admin commit: generation -1 and an empty member id, as
/// Kafka's kafka-consumer-groups tool does (accepted only while the group has no members).
async fn commit(
    cluster: &mut Cluster,
    coordinator: &str,
    group: &str,
    plan: &[PlannedReset],
) -> Result<()> {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for p in plan {
        by_topic.entry(&p.topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(p.partition)
                .with_committed_offset(p.new)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::from_static_str(""))),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_retention_time_ms(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let (response, _) = cluster.conn(coordinator).await?.send(&request).await?;
    for t in response.topics {
        for p in t.partitions {
            if p.error_code == 25 || p.error_code == 22 || p.error_code == 27 {
                // UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION / REBALANCE_IN_PROGRESS: a member
                // joined between our check and the commit.
                return Err(ToolError::GroupActive {
                    group: group.to_string(),
                    state: "joining".to_string(),
                    members: 1,
                });
            }
            ToolError::check(p.error_code, || {
                format!(
                    "committing offset of {}:{}",
                    t.name.0.as_str(),
                    p.partition_index
                )
            })?;
        }
    }
    Ok(())
}
