//! LeaveGroup (v0-v5): one member before v3, a batch of members (by member id
//! or static instance id) from v3.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{code, deferred, opt_str_bytes, opt_string, str_bytes};
use crate::api::{Handled, RequestContext};
use crate::group::events::LeavingMember;

pub(crate) fn handle(
    request: LeaveGroupRequest,
    version: i16,
    ctx: &RequestContext,
) -> Handled<LeaveGroupResponse> {
    let members: Vec<LeavingMember> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: opt_string(&m.group_instance_id),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: request.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let group_id = request.group_id.to_string();
    let answer = ctx.groups.leave(group_id, members);
    deferred(async move {
        let result = answer.await;
        let mut response = LeaveGroupResponse::default();
        if version >= 3 {
            response.error_code = code(result.error);
            response.members = result
                .members
                .into_iter()
                .map(|(m, error)| {
                    let mut member = MemberResponse::default();
                    member.member_id = str_bytes(m.member_id);
                    member.group_instance_id = opt_str_bytes(m.group_instance_id);
                    member.error_code = code(error);
                    member
                })
                .collect();
        } else {
            // One member: its error is the response's error.
            let member_error = result.members.first().and_then(|(_, e)| *e);
            response.error_code = code(result.error.or(member_error));
        }
        response
    })
}
