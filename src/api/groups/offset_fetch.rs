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
        let asked = crate::api::distinct(request.groups, |g| {
            let topics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                    .collect::<Vec<_>>()
            });
            (g.group_id.clone(), topics)
        });
        response.groups = asked
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

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use tokio::sync::watch;

    use super::*;
    use crate::group::GroupServiceConfig;

    fn offset(n: i64) -> CommittedOffset {
        CommittedOffset {
            offset: n,
            leader_epoch: 4,
            metadata: None,
            commit_timestamp_ms: 1,
        }
    }

    fn v7(topics: Option<Vec<i32>>, require_stable: bool) -> OffsetFetchRequest {
        let mut request = OffsetFetchRequest::default();
        request.group_id = GroupId(str_bytes("g"));
        request.require_stable = require_stable;
        request.topics = topics.map(|partitions| {
            let mut topic = OffsetFetchRequestTopic::default();
            topic.name = TopicName(str_bytes("t"));
            topic.partition_indexes = partitions;
            vec![topic]
        });
        request
    }

    /// A service where "g" has t/0 committed at 5 with a pending transactional
    /// offset 9, t/1 committed at 7 and t/2 only pending.
    async fn service(dir: &std::path::Path) -> (GroupService, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let service = GroupService::start(GroupServiceConfig::default(), dir, rx)
            .await
            .unwrap();
        service
            .commit_offsets(
                "g".into(),
                String::new(),
                None,
                -1,
                vec![("t".into(), 0, offset(5)), ("t".into(), 1, offset(7))],
            )
            .await
            .unwrap();
        service
            .commit_txn_offsets(
                "g".into(),
                3,
                0,
                None,
                vec![("t".into(), 0, offset(9)), ("t".into(), 2, offset(1))],
            )
            .await
            .unwrap();
        (service, tx)
    }

    fn partitions_v7(response: &OffsetFetchResponse) -> Vec<(i32, i64, i16)> {
        response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.committed_offset, p.error_code))
            .collect()
    }

    #[tokio::test]
    async fn require_stable_answers_unstable_for_pending_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let (service, _tx) = service(dir.path()).await;
        let unstable = ResponseError::UnstableOffsetCommit.code();

        let stable = answer(v7(Some(vec![0, 1, 2, 3]), true), 7, &service);
        assert_eq!(
            partitions_v7(&stable),
            vec![(0, -1, unstable), (1, 7, 0), (2, -1, unstable), (3, -1, 0)]
        );
        // Without require_stable (or before v7) the committed offsets answer.
        let plain = answer(v7(Some(vec![0, 1, 2]), false), 7, &service);
        assert_eq!(
            partitions_v7(&plain),
            vec![(0, 5, 0), (1, 7, 0), (2, -1, 0)]
        );
        let old = answer(v7(Some(vec![0, 2]), true), 6, &service);
        assert_eq!(partitions_v7(&old), vec![(0, 5, 0), (2, -1, 0)]);
        // All offsets of the group: committed partitions, each checked.
        let all = answer(v7(None, true), 7, &service);
        assert_eq!(partitions_v7(&all), vec![(0, -1, unstable), (1, 7, 0)]);

        // v8: in the group's partition entries; the group itself has no error.
        let mut request = OffsetFetchRequest::default();
        request.require_stable = true;
        let mut group = OffsetFetchRequestGroup::default();
        group.group_id = GroupId(str_bytes("g"));
        let mut topic = OffsetFetchRequestTopics::default();
        topic.name = TopicName(str_bytes("t"));
        topic.partition_indexes = vec![0, 1];
        group.topics = Some(vec![topic]);
        request.groups = vec![group];
        let v8 = answer(request, 8, &service);
        assert_eq!(v8.groups[0].error_code, 0);
        let found: Vec<(i32, i64, i16)> = v8.groups[0].topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.committed_offset, p.error_code))
            .collect();
        assert_eq!(found, vec![(0, -1, unstable), (1, 7, 0)]);

        // Once the transaction commits the offsets are stable and visible.
        service.complete_txn("g".into(), 3, true).await.unwrap();
        let after = answer(v7(Some(vec![0, 1, 2]), true), 7, &service);
        assert_eq!(partitions_v7(&after), vec![(0, 9, 0), (1, 7, 0), (2, 1, 0)]);
    }
}
