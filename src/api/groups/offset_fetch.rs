//! OffsetFetch (v1-v8): committed offsets of one group (v1-v7) or several
//! (v8); all of a group's offsets when no topics are given (v2+). A partition
//! without a committed offset answers offset -1. There are no pending
//! transactional offsets, so `require_stable` never has to wait.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{deferred, str_bytes};
use crate::api::{Handled, RequestContext};
use crate::group::offsets::CommittedOffset;
use crate::group::GroupService;

/// One partition's answer: (partition, offset or None).
type Found = (i32, Option<CommittedOffset>);

/// The committed offsets asked for, grouped by topic in request order; with
/// `topics` None, every offset of the group.
fn lookup(
    groups: &GroupService,
    group_id: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Vec<(TopicName, Vec<Found>)> {
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(name, partitions)| {
                let found = partitions
                    .into_iter()
                    .map(|p| (p, groups.committed(group_id, name.as_str(), p)))
                    .collect();
                (name, found)
            })
            .collect(),
        None => {
            let mut out: Vec<(TopicName, Vec<Found>)> = Vec::new();
            for (topic, partition, offset) in groups.committed_all(group_id) {
                match out.last_mut() {
                    Some((name, found)) if name.as_str() == topic => {
                        found.push((partition, Some(offset)))
                    }
                    _ => out.push((TopicName(str_bytes(topic)), vec![(partition, Some(offset))])),
                }
            }
            out
        }
    }
}

fn fields(found: &Option<CommittedOffset>) -> (i64, i32, String) {
    match found {
        Some(o) => (
            o.offset,
            o.leader_epoch,
            o.metadata.clone().unwrap_or_default(),
        ),
        None => (-1, -1, String::new()),
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
                group.topics = lookup(groups, g.group_id.as_str(), topics)
                    .into_iter()
                    .map(|(name, found)| {
                        let mut topic = OffsetFetchResponseTopics::default();
                        topic.name = name;
                        topic.partitions = found
                            .into_iter()
                            .map(|(index, offset)| {
                                let (offset, epoch, metadata) = fields(&offset);
                                let mut p = OffsetFetchResponsePartitions::default();
                                p.partition_index = index;
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
    response.topics = lookup(groups, request.group_id.as_str(), topics)
        .into_iter()
        .map(|(name, found)| {
            let mut topic = OffsetFetchResponseTopic::default();
            topic.name = name;
            topic.partitions = found
                .into_iter()
                .map(|(index, offset)| {
                    let (offset, epoch, metadata) = fields(&offset);
                    let mut p = OffsetFetchResponsePartition::default();
                    p.partition_index = index;
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
