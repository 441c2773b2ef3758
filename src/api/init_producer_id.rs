//! InitProducerId (v0-v4) for idempotent producers: a producer id unique for the life of
//! the data directory, and its epoch (`broker::producer_ids`).
//!
//! - No transactional id: a fresh id at epoch 0; from v3 a producer that sends its current
//!   id and epoch (KIP-360, after an error such as OUT_OF_ORDER_SEQUENCE_NUMBER) gets the
//!   epoch bumped, or INVALID_PRODUCER_EPOCH when the epoch is not the one the broker gave
//!   it. A bumped epoch resets the producer's sequences in every partition (a new epoch
//!   starts at sequence 0).
//! - A transactional id: transactions are not implemented yet, so the answer is
//!   INVALID_REQUEST (42), which every client treats as fatal ("sent to an incompatible
//!   broker, see the broker logs"), and the broker logs why. Clients that retry
//!   coordinator errors would loop on NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE instead.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::{debug, warn};

use super::RequestContext;
use crate::broker::now_ms;
use crate::broker::producer_ids::ProducerIdAndEpoch;

/// Kafka's INVALID_REQUEST error code.
const INVALID_REQUEST: i16 = ResponseError::InvalidRequest.code();

pub(crate) fn handle(
    request: InitProducerIdRequest,
    version: i16,
    ctx: &RequestContext,
) -> InitProducerIdResponse {
    let failed = |code: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(txn) = &request.transactional_id {
        warn!(transactional_id = %txn.as_str(),
              "InitProducerId for a transactional producer refused: transactions are not supported");
        return failed(INVALID_REQUEST);
    }
    let current = (version >= 3 && *request.producer_id >= 0 && request.producer_epoch >= 0)
        .then_some(ProducerIdAndEpoch {
            producer_id: *request.producer_id,
            epoch: request.producer_epoch,
        });
    match ctx.broker.producer_ids().init(current, now_ms()) {
        Ok(given) => {
            debug!(
                producer_id = given.producer_id,
                epoch = given.epoch,
                ?current,
                "InitProducerId"
            );
            InitProducerIdResponse::default()
                .with_error_code(0)
                .with_producer_id(ProducerId(given.producer_id))
                .with_producer_epoch(given.epoch)
        }
        Err(e) => {
            warn!(error = %e, ?current, "InitProducerId failed");
            failed(e.error_code())
        }
    }
}
