//! SyncGroup (v0-v5): the leader's assignment is relayed to every member;
//! members that sync before the leader wait for it. An assignment that would take the
//! group past `group.max.bytes` or `group.state.max.bytes` fails the generation:
//! every waiting member gets GROUP_MAX_SIZE_REACHED and the group rebalances.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{code, deferred, opt_str_bytes, opt_string};
use crate::api::{Handled, RequestContext};
use crate::group::events::SyncGroup;

pub(crate) fn handle(
    request: SyncGroupRequest,
    version: i16,
    ctx: &RequestContext,
) -> Handled<SyncGroupResponse> {
    let sync = SyncGroup {
        group_id: request.group_id.to_string(),
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: opt_string(&request.group_instance_id),
        protocol_type: opt_string(&request.protocol_type),
        protocol_name: opt_string(&request.protocol_name),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let answer = ctx.groups.sync(sync);
    deferred(async move {
        let result = answer.await;
        let mut response = SyncGroupResponse::default();
        response.error_code = code(result.error);
        if version >= 5 {
            response.protocol_type = opt_str_bytes(result.protocol_type);
            response.protocol_name = opt_str_bytes(result.protocol_name);
        }
        response.assignment = result.assignment;
        response
    })
}
