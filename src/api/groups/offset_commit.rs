//! OffsetCommit (v2-v8): checks the committer's generation and member id, then
//! answers only once the offsets are fsync'd in the offsets log. The metadata
//! string and leader epoch are kept and returned by OffsetFetch as given.
//!
//! Refused before anything is stored or logged: a group id that is empty or longer
//! than `id.max.bytes` (INVALID_GROUP_ID), metadata longer than
//! `offset.metadata.max.bytes` (OFFSET_METADATA_TOO_LARGE, per partition), offsets the
//! coordinator has no room for under `group.state.max.bytes`
//! (INVALID_COMMIT_OFFSET_SIZE). A request with no partition left to commit is
//! answered without reaching the coordinator (and creates no group), as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};

use super::{deferred, opt_string};
use crate::api::{Handled, RequestContext};
use crate::broker::{now_ms, Topic};
use crate::group::offsets::CommittedOffset;
use crate::group::GroupLimits;

/// Whether `offset` may be committed for `partition` of `topic` (None: no such topic) in
/// `group`: OffsetCommit's and TxnOffsetCommit's per-partition checks. Ok: the offset to
/// store.
pub(crate) fn check_partition(
    limits: &GroupLimits,
    topic: Option<&Topic>,
    group: &str,
    partition: i32,
    offset: CommittedOffset,
) -> Result<CommittedOffset, ResponseError> {
    limits.check_group_id(group)?;
    if topic.is_none_or(|t| t.partition(partition).is_none()) {
        Err(ResponseError::UnknownTopicOrPartition)
    } else if offset
        .metadata
        .as_ref()
        .is_some_and(|m| m.len() > limits.offset_metadata_max_bytes)
    {
        Err(ResponseError::OffsetMetadataTooLarge)
    } else {
        Ok(offset)
    }
}

/// A partition's index and whether it may be committed.
type PartitionOutcome = (i32, Result<(), ResponseError>);

pub(crate) fn handle(
    request: OffsetCommitRequest,
    version: i16,
    ctx: &RequestContext,
) -> Handled<OffsetCommitResponse> {
    let now = now_ms();
    let group_id = request.group_id.to_string();
    // Per partition, in request order: Err(code) decided now, Ok = to commit.
    let mut outcomes: Vec<(TopicName, Vec<PartitionOutcome>)> = Vec::new();
    let mut offsets = Vec::new();
    for topic in request.topics {
        let known = ctx.broker.topic(topic.name.as_str());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let leader_epoch = if version >= 6 {
                p.committed_leader_epoch
            } else {
                -1
            };
            let outcome = check_partition(
                ctx.groups.limits(),
                known.as_deref(),
                &group_id,
                p.partition_index,
                CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch,
                    metadata: opt_string(&p.committed_metadata),
                    commit_timestamp_ms: now,
                },
            )
            .map(|offset| offsets.push((topic.name.to_string(), p.partition_index, offset)));
            partitions.push((p.partition_index, outcome));
        }
        outcomes.push((topic.name, partitions));
    }
    let member_id = request.member_id.to_string();
    let instance = opt_string(&request.group_instance_id);
    let generation = request.generation_id_or_member_epoch;
    let answer = (!offsets.is_empty()).then(|| {
        ctx.groups
            .commit_offsets(group_id, member_id, instance, generation, offsets)
    });
    deferred(async move {
        let committed = match answer {
            Some(answer) => answer.await,
            // Every partition carries its own error already.
            None => Ok(()),
        };
        let mut response = OffsetCommitResponse::default();
        response.topics = outcomes
            .into_iter()
            .map(|(name, partitions)| {
                let mut topic = OffsetCommitResponseTopic::default();
                topic.name = name;
                topic.partitions = partitions
                    .into_iter()
                    .map(|(index, outcome)| {
                        let mut partition = OffsetCommitResponsePartition::default();
                        partition.partition_index = index;
                        partition.error_code = match outcome.and(committed) {
                            Ok(()) => 0,
                            Err(e) => e.code(),
                        };
                        partition
                    })
                    .collect();
                topic
            })
            .collect();
        response
    })
}
