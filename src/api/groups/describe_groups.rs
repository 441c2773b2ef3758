//! DescribeGroups (v0-v5): state, protocol, and members with client ids and
//! hosts; member metadata and assignments only while the group is Stable. An
//! unknown group is described as Dead, as Kafka does before v6.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};

use super::{deferred, opt_str_bytes, str_bytes};
use crate::api::{Handled, RequestContext};

/// READ, DELETE and DESCRIBE (Kafka's AclOperation codes 3, 6, 8) as a bit set:
/// everything a group allows, since Strata has no ACLs.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

pub(crate) fn handle(
    request: DescribeGroupsRequest,
    version: i16,
    ctx: &RequestContext,
) -> Handled<DescribeGroupsResponse> {
    let ids: Vec<String> = crate::api::distinct(
        request.groups.iter().map(|g| g.to_string()).collect(),
        |g| g.clone(),
    );
    let with_operations = version >= 3 && request.include_authorized_operations;
    let answer = ctx.groups.describe(ids.clone());
    deferred(async move {
        let mut response = DescribeGroupsResponse::default();
        let described = answer.await;
        response.groups = match described {
            Ok(described) => described
                .into_iter()
                .map(|d| {
                    let mut group = DescribedGroup::default();
                    group.group_id = GroupId(str_bytes(d.group_id));
                    group.group_state = str_bytes(d.state.as_str());
                    group.protocol_type = str_bytes(d.protocol_type);
                    group.protocol_data = str_bytes(d.protocol);
                    if with_operations {
                        group.authorized_operations = GROUP_OPERATIONS;
                    }
                    group.members = d
                        .members
                        .into_iter()
                        .map(|m| {
                            let mut member = DescribedGroupMember::default();
                            member.member_id = str_bytes(m.member_id);
                            if version >= 4 {
                                member.group_instance_id = opt_str_bytes(m.group_instance_id);
                            }
                            member.client_id = str_bytes(m.client_id);
                            member.client_host = str_bytes(m.client_host);
                            member.member_metadata = m.metadata;
                            member.member_assignment = m.assignment;
                            member
                        })
                        .collect();
                    group
                })
                .collect(),
            Err(e) => ids
                .into_iter()
                .map(|id| {
                    let mut group = DescribedGroup::default();
                    group.group_id = GroupId(str_bytes(id));
                    group.error_code = e.code();
                    group
                })
                .collect(),
        };
        response
    })
}
