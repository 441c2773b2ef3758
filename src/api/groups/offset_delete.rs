//! OffsetDelete (v0): deletes a group's committed offsets of some partitions,
//! except of topics the group is consuming (GROUP_SUBSCRIBED_TO_TOPIC).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::{code, deferred};
use crate::api::{Handled, RequestContext};

pub(crate) fn handle(
    request: OffsetDeleteRequest,
    ctx: &RequestContext,
) -> Handled<OffsetDeleteResponse> {
    // Partitions that exist go to the coordinator; the rest are unknown.
    let mut asked = Vec::new();
    let mut known = Vec::new();
    for topic in &request.topics {
        let found = ctx.broker.topic(topic.name.as_str());
        for p in &topic.partitions {
            let exists = found
                .as_ref()
                .is_some_and(|t| t.partition(p.partition_index).is_some());
            asked.push(exists);
            if exists {
                known.push((topic.name.to_string(), p.partition_index));
            }
        }
    }
    let answer = ctx
        .groups
        .delete_offsets(request.group_id.to_string(), known);
    deferred(async move {
        let mut response = OffsetDeleteResponse::default();
        let errors = match answer.await {
            Ok(errors) => errors,
            Err(e) => {
                response.error_code = e.code();
                return response;
            }
        };
        let mut errors = errors.into_iter();
        let mut asked = asked.into_iter();
        for topic in request.topics {
            let mut out = OffsetDeleteResponseTopic::default();
            for p in &topic.partitions {
                let error = if asked.next().unwrap_or(false) {
                    errors.next().flatten()
                } else {
                    Some(ResponseError::UnknownTopicOrPartition)
                };
                let mut partition = OffsetDeleteResponsePartition::default();
                partition.partition_index = p.partition_index;
                partition.error_code = code(error);
                out.partitions.push(partition);
            }
            out.name = topic.name;
            response.topics.push(out);
        }
        response
    })
}
