//! InitProducerId (v0-v5): a producer id and epoch for idempotent and transactional
//! producers.
//!
//! - No transactional id: a fresh id at epoch 0 (`broker::producer_ids`: from the block
//!   in use, no disk on the request path; waits only if no recorded block is left); from v3 a
//!   producer that sends its current id and epoch (KIP-360, after an error such as
//!   OUT_OF_ORDER_SEQUENCE_NUMBER) gets the epoch bumped, or INVALID_PRODUCER_EPOCH when
//!   the epoch is not the one the broker gave it. A bumped epoch resets the producer's
//!   sequences in every partition (a new epoch starts at sequence 0).
//! - A transactional id: the transaction coordinator (`crate::txn`) maps it durably to a
//!   producer id and bumps the epoch, fencing the previous instance; an ongoing
//!   transaction is aborted first. The answer waits for the transaction log.
//!   Errors: INVALID_TRANSACTION_TIMEOUT (timeout not in 1..=transaction.max.timeout.ms),
//!   CONCURRENT_TRANSACTIONS (a commit or abort is being completed; retriable),
//!   PRODUCER_FENCED (v4+; INVALID_PRODUCER_EPOCH before) for a KIP-360 request whose
//!   id/epoch is not current, INVALID_REQUEST for an empty id, one longer than
//!   `id.max.bytes` or only one of producer id / epoch being -1, POLICY_VIOLATION for a
//!   new id beyond `transaction.state.max.bytes`, COORDINATOR_NOT_AVAILABLE if the log
//!   cannot be written.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::{debug, warn};

use super::{Handled, RequestContext};
use crate::broker::now_ms;
use crate::broker::producer_ids::{ProducerIdAndEpoch, ProducerIdError};
use crate::txn::ExpectedProducer;

/// The first version that knows PRODUCER_FENCED.
const FENCED_SINCE: i16 = 4;

fn failed(code: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

fn given(producer_id: i64, epoch: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(0)
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
}

pub(crate) fn handle(
    request: InitProducerIdRequest,
    version: i16,
    ctx: &RequestContext,
) -> Handled<InitProducerIdResponse> {
    if let Some(txn) = &request.transactional_id {
        return transactional(txn.to_string(), &request, version, ctx.txns.clone());
    }
    let current = (version >= 3 && *request.producer_id >= 0 && request.producer_epoch >= 0)
        .then_some(ProducerIdAndEpoch {
            producer_id: *request.producer_id,
            epoch: request.producer_epoch,
        });
    // An id from the block in use; a wait (off the request path's thread) only when ids
    // are handed out faster than the admin thread records blocks.
    if let Some(outcome) = ctx.broker.producer_ids().try_init(current, now_ms()) {
        return Handled::Ready(answer(outcome, current));
    }
    let broker = ctx.broker.clone();
    Handled::Deferred(Box::pin(async move {
        let outcome = broker.producer_ids().init(current, now_ms()).await;
        answer(outcome, current)
    }))
}

fn answer(
    outcome: Result<ProducerIdAndEpoch, ProducerIdError>,
    current: Option<ProducerIdAndEpoch>,
) -> InitProducerIdResponse {
    match outcome {
        Ok(id) => {
            debug!(
                producer_id = id.producer_id,
                epoch = id.epoch,
                ?current,
                "InitProducerId"
            );
            given(id.producer_id, id.epoch)
        }
        Err(e) => {
            warn!(error = %e, ?current, "InitProducerId failed");
            failed(e.error_code())
        }
    }
}

fn transactional(
    transactional_id: String,
    request: &InitProducerIdRequest,
    version: i16,
    txns: crate::txn::TxnCoordinator,
) -> Handled<InitProducerIdResponse> {
    let (producer_id, epoch) = if version >= 3 {
        (*request.producer_id, request.producer_epoch)
    } else {
        (-1, -1)
    };
    // Kafka's KafkaApis: both -1 is a new producer; only one of them -1 is malformed.
    let expected = match (producer_id, epoch) {
        (-1, -1) => None,
        (-1, _) | (_, -1) => {
            return Handled::Ready(failed(ResponseError::InvalidRequest.code()));
        }
        (producer_id, epoch) => Some(ExpectedProducer { producer_id, epoch }),
    };
    let timeout_ms = request.transaction_timeout_ms;
    Handled::Deferred(Box::pin(async move {
        match txns
            .init_producer_id(transactional_id.clone(), timeout_ms, expected)
            .await
        {
            Ok((producer_id, epoch)) => given(producer_id, epoch),
            Err(e) => {
                debug!(transactional_id, error = %e, ?expected, "transactional InitProducerId refused");
                failed(e.code(version, FENCED_SINCE))
            }
        }
    }))
}
