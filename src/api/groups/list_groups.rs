//! ListGroups (v0-v4): every group, optionally filtered by state (v4).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{deferred, str_bytes};
use crate::api::{Handled, RequestContext};

pub(crate) fn handle(
    request: ListGroupsRequest,
    ctx: &RequestContext,
) -> Handled<ListGroupsResponse> {
    let filter: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let answer = ctx.groups.list();
    deferred(async move {
        let mut response = ListGroupsResponse::default();
        match answer.await {
            Ok(listed) => {
                response.groups = listed
                    .into_iter()
                    .filter(|g| {
                        filter.is_empty() || filter.contains(&g.state.as_str().to_ascii_lowercase())
                    })
                    .map(|g| {
                        let mut group = ListedGroup::default();
                        group.group_id = GroupId(str_bytes(g.group_id));
                        group.protocol_type = str_bytes(g.protocol_type);
                        group.group_state = str_bytes(g.state.as_str());
                        group
                    })
                    .collect();
            }
            Err(e) => response.error_code = e.code(),
        }
        response
    })
}
