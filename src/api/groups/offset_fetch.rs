//! OffsetFetch (v1-v8): committed offsets of one group (v1-v7) or several
//! (v8); all of a group's offsets when no topics are given (v2+). A partition
//! without a committed offset answers offset -1. With `require_stable` (v7+) a
//! partition that has a pending transactional offset (TxnOffsetCommit whose
//! transaction is not decided yet) answers UNSTABLE_OFFSET_COMMIT with offset
//! -1, at partition level (v8: in the group's partition entries), as Kafka's
//! coordinator does; the client retries until the transaction ends.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{code, deferred, str_bytes};
use crate::api::{Handled, RequestContext};
use crate::group::offsets::CommittedOffset;
use crate::group::GroupService;

/// One partition's answer: (partition, offset or None, or
/// UNSTABLE_OFFSET_COMMIT when stability was required and a transaction holds
/// a pending offset for it).
type Found = (i32, Result<Option<CommittedOffset>, ResponseError>);

/// One partition's committed offset, unless `require_stable` and pending.
fn find(
    groups: &GroupService,
    group_id: &str,
    topic: &str,
    partition: i32,
    require_stable: bool,
) -> Result<Option<CommittedOffset>, ResponseError> {
    if require_stable && groups.has_pending_txn_offset(group_id, topic, partition) {
        return Err(ResponseError::UnstableOffsetCommit);
    }
    Ok(groups.committed(group_id, topic, partition))
}

/// The committed offsets asked for, grouped by topic in request order; with
/// `topics` None, every committed offset of the group (Kafka lists only
/// committed partitions there, each checked for stability like the others).
fn lookup(
    groups: &GroupService,
    group_id: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
    require_stable: bool,
) -> Vec<(TopicName, Vec<Found>)> {
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(name, partitions)| {
                let found = partitions
                    .into_iter()
                    .map(|p| (p, find(groups, group_id, name.as_str(), p, require_stable)))
                    .collect();
                (name, found)
            })
            .collect(),
        None => {
            let mut out: Vec<(TopicName, Vec<Found>)> = Vec::new();
            for (topic, partition, offset) in groups.committed_all(group_id) {
                let found = if require_stable
                    && groups.has_pending_txn_offset(group_id, &topic, partition)
                {
                    Err(ResponseError::UnstableOffsetCommit)
                } else {
                    Ok(Some(offset))
                };
                match out.last_mut() {
                    Some((name, partitions)) if name.as_str() == topic => {
                        partitions.push((partition, found))
                    }
                    _ => out.push((TopicName(str_bytes(topic)), vec![(partition, found)])),
                }
            }
            out
        }
    }
}

/// (offset, leader epoch, metadata, error code) of one partition's answer.
fn fields(found: &Result<Option<CommittedOffset>, ResponseError>) -> (i64, i32, String, i16) {
    match found {
        Ok(Some(o)) => (
            o.offset,
            o.leader_epoch,
            o.metadata.clone().unwrap_or_default(),
            0,
        ),
        Ok(None) => (-1, -1, String::new(), 0),
        Err(e) => (-1, -1, String::new(), code(Some(*e))),
    }
}

/// Waits until the offset commits that arrived before this request are
/// durable (a client reads its own commits), then answers from the table.
pub(crate) fn handle(
    request: OffsetFetchRequest,
    version: i16,
    ctx: &RequestContext,
) -> Handled<OffsetFetchResponse> {
    let barrier = ctx.groups.barrier();
    let groups = ctx.groups.clone();
    deferred(async move {
        if let Err(e) = barrier.await {
            tracing::warn!(error = %e, "offset writer unavailable; answering from memory");
        }
        answer(request, version, &groups)
    })
}

fn answer(request: OffsetFetchRequest, version: i16, groups: &GroupService) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        response.groups = request
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                let mut group = OffsetFetchResponseGroup::default();
                group.topics = lookup(groups, g.group_id.as_str(), topics, request.require_stable)
                    .into_iter()
                    .map(|(name, found)| {
                        let mut topic = OffsetFetchResponseTopics::default();
                        topic.name = name;
                        topic.partitions = found
                            .into_iter()
                            .map(|(index, offset)| {
                                let (offset, epoch, metadata, error) = fields(&offset);
                                let mut p = OffsetFetchResponsePartitions::default();
                                p.partition_index = index;
                                p.error_code = error;
                                p.committed_offset = offset;
                                p.committed_leader_epoch = epoch;
                                p.metadata = Some(str_bytes(metadata));
                                p
                            })
                            .collect();
                        topic
                    })
                    .collect();
                group.group_id = GroupId(g.group_id.0);
                group
            })
            .collect();
        return response;
    }
    let topics = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let require_stable = version >= 7 && request.require_stable;
    response.topics = lookup(groups, request.group_id.as_str(), topics, require_stable)
        .into_iter()
        .map(|(name, found)| {
            let mut topic = OffsetFetchResponseTopic::default();
            topic.name = name;
            topic.partitions = found
                .into_iter()
                .map(|(index, offset)| {
                    let (offset, epoch, metadata, error) = fields(&offset);
                    let mut p = OffsetFetchResponsePartition::default();
                    p.partition_index = index;
                    p.error_code = error;
                    p.committed_offset = offset;
                    if version >= 5 {
                        p.committed_leader_epoch = epoch;
                    }
                    p.metadata = Some(str_bytes(metadata));
                    p
                })
                .collect();
            topic
        })
        .collect();
    response
}
