//! EndTxn (v0-v4): commits or aborts the producer's transaction. Answered once every
//! marker is written (read_committed consumers see the outcome at once), or once the
//! decision is durable if a marker cannot be written now (finished in the background).
//! A retry of a completed EndTxn with the same outcome succeeds; the other outcome is
//! INVALID_TXN_STATE. PRODUCER_FENCED from v2 (INVALID_PRODUCER_EPOCH before).

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::deferred;
use crate::api::{Handled, RequestContext};

/// The first version that knows PRODUCER_FENCED.
const FENCED_SINCE: i16 = 2;

pub(crate) fn handle(
    request: EndTxnRequest,
    version: i16,
    ctx: &RequestContext,
) -> Handled<EndTxnResponse> {
    let txns = ctx.txns.clone();
    let id = request.transactional_id.to_string();
    let producer_id = *request.producer_id;
    let epoch = request.producer_epoch;
    let commit = request.committed;
    deferred(async move {
        let code = match txns.end_txn(id, producer_id, epoch, commit).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::debug!(error = %e, commit, "EndTxn refused");
                e.code(version, FENCED_SINCE)
            }
        };
        EndTxnResponse::default().with_error_code(code)
    })
}
