//! AddOffsetsToTxn (v0-v4): the group's offsets join the producer's transaction, durably,
//! before TxnOffsetCommit. Errors as AddPartitionsToTxn (PRODUCER_FENCED from v2,
//! INVALID_PRODUCER_EPOCH before); a group id that is empty or longer than
//! `id.max.bytes` is INVALID_GROUP_ID; POLICY_VIOLATION beyond
//! `transaction.state.max.bytes`.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::deferred;
use crate::api::{Handled, RequestContext};

/// The first version that knows PRODUCER_FENCED.
const FENCED_SINCE: i16 = 2;

pub(crate) fn handle(
    request: AddOffsetsToTxnRequest,
    version: i16,
    ctx: &RequestContext,
) -> Handled<AddOffsetsToTxnResponse> {
    if let Err(e) = ctx.groups.limits().check_group_id(&request.group_id) {
        return Handled::Ready(AddOffsetsToTxnResponse::default().with_error_code(e.code()));
    }
    let group = request.group_id.to_string();
    let txns = ctx.txns.clone();
    let id = request.transactional_id.to_string();
    let producer_id = *request.producer_id;
    let epoch = request.producer_epoch;
    deferred(async move {
        let code = match txns.add_offsets(id, producer_id, epoch, group).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::debug!(error = %e, "AddOffsetsToTxn refused");
                e.code(version, FENCED_SINCE)
            }
        };
        AddOffsetsToTxnResponse::default().with_error_code(code)
    })
}
