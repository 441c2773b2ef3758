//! DeleteGroups (v0-v2): deletes empty groups and their committed offsets;
//! NON_EMPTY_GROUP for a group with members, GROUP_ID_NOT_FOUND for none.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::deferred;
use crate::api::{Handled, RequestContext};

pub(crate) fn handle(
    request: DeleteGroupsRequest,
    ctx: &RequestContext,
) -> Handled<DeleteGroupsResponse> {
    let answers: Vec<_> = request
        .groups_names
        .into_iter()
        .map(|group_id| {
            let answer = ctx.groups.delete_group(group_id.to_string());
            (group_id, answer)
        })
        .collect();
    deferred(async move {
        let mut response = DeleteGroupsResponse::default();
        for (group_id, answer) in answers {
            let mut result = DeletableGroupResult::default();
            if let Err(e) = answer.await {
                result.error_code = e.code();
            }
            result.group_id = group_id;
            response.results.push(result);
        }
        response
    })
}
