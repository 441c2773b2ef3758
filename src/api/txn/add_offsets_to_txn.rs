//! AddOffsetsToTxn (v0-v4): the group's offsets join the producer's transaction, durably,
//! before TxnOffsetCommit. Errors as AddPartitionsToTxn (PRODUCER_FENCED from v2,
//! INVALID_PRODUCER_EPOCH before); an empty group id is INVALID_GROUP_ID.

use kafka_protocol::error::ResponseError;
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
    let group = request.group_id.to_string();
    if group.is_empty() {
        return Handled::Ready(
            AddOffsetsToTxnResponse::default()
                .with_error_code(ResponseError::InvalidGroupId.code()),
        );
    }
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
