//! JoinGroup (v0-v9). v4+ members without an id first get MEMBER_ID_REQUIRED;
//! the answer waits until the rebalance's join phase ends. The coordinator refuses
//! what it would hold beyond its limits (`group::limits`) before keeping any of it:
//! INVALID_GROUP_ID, INVALID_REQUEST (instance id, protocol type or name longer than
//! `id.max.bytes`), GROUP_MAX_SIZE_REACHED (`group.max.size`, `group.max.bytes`,
//! `group.state.max.bytes`). The header's client id is kept cut to `id.max.bytes`.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};

use super::{code, deferred, opt_str_bytes, opt_string, str_bytes};
use crate::api::{Handled, RequestContext};
use crate::group::events::{JoinGroup, JoinResult};

pub(crate) fn handle(
    request: JoinGroupRequest,
    version: i16,
    header: &RequestHeader,
    ctx: &RequestContext,
) -> Handled<JoinGroupResponse> {
    let join = JoinGroup {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: opt_string(&request.group_instance_id),
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: ctx.peer.map(|p| format!("/{}", p.ip())).unwrap_or_default(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let answer = ctx.groups.join(join);
    deferred(async move { encode(answer.await, version) })
}

fn encode(result: JoinResult, version: i16) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = code(result.error);
    response.generation_id = result.generation_id;
    if version >= 7 {
        response.protocol_type = opt_str_bytes(result.protocol_type);
        response.protocol_name = opt_str_bytes(result.protocol_name);
    } else {
        // Not nullable before v7.
        response.protocol_name = Some(str_bytes(result.protocol_name.unwrap_or_default()));
    }
    if version >= 9 {
        response.skip_assignment = result.skip_assignment;
    }
    response.leader = str_bytes(result.leader_id);
    response.member_id = str_bytes(result.member_id);
    response.members = result
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = str_bytes(m.member_id);
            if version >= 5 {
                member.group_instance_id = opt_str_bytes(m.group_instance_id);
            }
            member.metadata = m.metadata;
            member
        })
        .collect();
    response
}
