//! TxnOffsetCommit (v0-v4): offsets committed inside a transaction. The coordinator checks
//! the producer (INVALID_PRODUCER_ID_MAPPING; a stale epoch is INVALID_PRODUCER_EPOCH, what
//! Kafka's offsets-log append answers) and that AddOffsetsToTxn put the group in the
//! ongoing transaction (else INVALID_TXN_STATE); from v3 the group checks the member and
//! generation like OffsetCommit. The offsets are then durable but pending: OffsetFetch
//! sees them only once EndTxn commits.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::deferred;
use crate::api::groups::offset_commit::check_partition;
use crate::api::{Handled, RequestContext};
use crate::broker::now_ms;
use crate::group::offsets::CommittedOffset;

/// A partition's index and whether it may be committed.
type PartitionOutcome = (i32, Result<(), ResponseError>);

pub(crate) fn handle(
    request: TxnOffsetCommitRequest,
    version: i16,
    ctx: &RequestContext,
) -> Handled<TxnOffsetCommitResponse> {
    let now = now_ms();
    let group = request.group_id.to_string();
    let mut outcomes: Vec<(TopicName, Vec<PartitionOutcome>)> = Vec::new();
    let mut offsets = Vec::new();
    for topic in request.topics {
        let known = ctx.broker.topic(topic.name.as_str());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let leader_epoch = if version >= 2 {
                p.committed_leader_epoch
            } else {
                -1
            };
            let outcome = check_partition(
                ctx.groups.limits(),
                known.as_deref(),
                &group,
                p.partition_index,
                CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                    commit_timestamp_ms: now,
                },
            )
            .map(|offset| offsets.push((topic.name.to_string(), p.partition_index, offset)));
            partitions.push((p.partition_index, outcome));
        }
        outcomes.push((topic.name, partitions));
    }
    let member = (version >= 3).then(|| {
        (
            request.member_id.to_string(),
            request.group_instance_id.as_ref().map(|s| s.to_string()),
            request.generation_id,
        )
    });
    let answer = (!group.is_empty() && !offsets.is_empty()).then(|| {
        let txns = ctx.txns.clone();
        let id = request.transactional_id.to_string();
        let producer_id = *request.producer_id;
        let epoch = request.producer_epoch;
        async move {
            txns.txn_offset_commit(id, group, producer_id, epoch, member, offsets)
                .await
        }
    });
    deferred(async move {
        let committed = match answer {
            Some(answer) => answer.await,
            None => Ok(()),
        };
        if let Err(e) = &committed {
            tracing::debug!(error = %e, "TxnOffsetCommit refused");
        }
        let mut response = TxnOffsetCommitResponse::default();
        response.topics = outcomes
            .into_iter()
            .map(|(name, partitions)| {
                let mut topic = TxnOffsetCommitResponseTopic::default();
                topic.name = name;
                topic.partitions = partitions
                    .into_iter()
                    .map(|(index, outcome)| {
                        let mut partition = TxnOffsetCommitResponsePartition::default();
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
