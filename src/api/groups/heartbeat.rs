//! Heartbeat (v0-v4): keeps a member's session alive; REBALANCE_IN_PROGRESS
//! tells it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{code, deferred, opt_string};
use crate::api::{Handled, RequestContext};
use crate::group::events::Heartbeat;

pub(crate) fn handle(
    request: HeartbeatRequest,
    ctx: &RequestContext,
) -> Handled<HeartbeatResponse> {
    let heartbeat = Heartbeat {
        group_id: request.group_id.to_string(),
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: opt_string(&request.group_instance_id),
    };
    let answer = ctx.groups.heartbeat(heartbeat);
    deferred(async move {
        let mut response = HeartbeatResponse::default();
        response.error_code = code(answer.await);
        response
    })
}
