//! The transaction APIs: AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn,
//! DescribeTransactions and ListTransactions (InitProducerId lives in
//! `api::init_producer_id`). Each module turns a decoded request into the transaction
//! coordinator's terms (`crate::txn`) and its answer back into a response. Every API that
//! changes a transaction waits on the transaction log, so its response is deferred.

pub(crate) mod add_offsets_to_txn;
pub(crate) mod add_partitions_to_txn;
pub(crate) mod describe_transactions;
pub(crate) mod end_txn;
pub(crate) mod list_transactions;
pub(crate) mod txn_offset_commit;

use kafka_protocol::messages::{ApiKey, RequestHeader};

use super::{decode, respond, FrameError, Handled, Reply, RequestBody, RequestContext};

/// Decodes and handles one transaction API request.
pub(crate) fn dispatch(
    api: ApiKey,
    version: i16,
    header: &RequestHeader,
    body: &mut RequestBody,
    ctx: &RequestContext,
) -> Result<Reply, FrameError> {
    let corr = header.correlation_id;
    let reply = match api {
        ApiKey::AddPartitionsToTxn => respond(
            api,
            version,
            corr,
            add_partitions_to_txn::handle(decode(api, version, body)?, version, ctx),
        ),
        ApiKey::AddOffsetsToTxn => respond(
            api,
            version,
            corr,
            add_offsets_to_txn::handle(decode(api, version, body)?, version, ctx),
        ),
        ApiKey::TxnOffsetCommit => respond(
            api,
            version,
            corr,
            txn_offset_commit::handle(decode(api, version, body)?, version, ctx),
        ),
        ApiKey::EndTxn => respond(
            api,
            version,
            corr,
            end_txn::handle(decode(api, version, body)?, version, ctx),
        ),
        ApiKey::DescribeTransactions => respond(
            api,
            version,
            corr,
            Handled::Ready(describe_transactions::handle(
                decode(api, version, body)?,
                ctx,
            )),
        ),
        ApiKey::ListTransactions => respond(
            api,
            version,
            corr,
            Handled::Ready(list_transactions::handle(
                decode(api, version, body)?,
                version,
                ctx,
            )),
        ),
        _ => Reply::Now(Some(super::error_only_frame(
            corr,
            super::UNSUPPORTED_VERSION,
        ))),
    };
    Ok(reply)
}

/// A deferred handler answer.
fn deferred<R: Send + 'static>(
    future: impl std::future::Future<Output = R> + Send + 'static,
) -> Handled<R> {
    Handled::Deferred(Box::pin(future))
}

#[cfg(test)]
mod tests;
