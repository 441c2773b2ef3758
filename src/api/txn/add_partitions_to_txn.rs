//! AddPartitionsToTxn (v0-v3, the client form): the partitions join the producer's
//! transaction, durably, before the producer writes to them.
//!
//! As Kafka's KafkaApis: a partition that does not exist is UNKNOWN_TOPIC_OR_PARTITION and
//! then none is added (the others answer OPERATION_NOT_ATTEMPTED); otherwise every
//! partition carries the coordinator's answer: INVALID_PRODUCER_ID_MAPPING,
//! PRODUCER_FENCED (v2+; INVALID_PRODUCER_EPOCH before), CONCURRENT_TRANSACTIONS
//! (retriable), INVALID_REQUEST for an empty transactional id, POLICY_VIOLATION when the
//! partitions would take the coordinator past `transaction.state.max.bytes`.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::deferred;
use crate::api::{Handled, RequestContext};

/// The first version that knows PRODUCER_FENCED.
const FENCED_SINCE: i16 = 2;

pub(crate) fn handle(
    request: AddPartitionsToTxnRequest,
    version: i16,
    ctx: &RequestContext,
) -> Handled<AddPartitionsToTxnResponse> {
    let id = request.v3_and_below_transactional_id.to_string();
    let producer_id = *request.v3_and_below_producer_id;
    let epoch = request.v3_and_below_producer_epoch;
    let topics: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> = request
        .v3_and_below_topics
        .into_iter()
        .map(|t| (t.name, t.partitions))
        .collect();
    let missing = |name: &str, partition: i32| {
        ctx.broker
            .topic(name)
            .is_none_or(|t| t.partition(partition).is_none())
    };
    let any_missing = topics
        .iter()
        .any(|(name, parts)| parts.iter().any(|p| missing(name.as_str(), *p)));
    if any_missing {
        let codes = topics
            .iter()
            .map(|(name, parts)| {
                let codes = parts
                    .iter()
                    .map(|p| {
                        if missing(name.as_str(), *p) {
                            ResponseError::UnknownTopicOrPartition.code()
                        } else {
                            ResponseError::OperationNotAttempted.code()
                        }
                    })
                    .collect();
                (name.clone(), parts.clone(), codes)
            })
            .collect();
        return Handled::Ready(response(codes));
    }
    let partitions: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|(name, parts)| parts.iter().map(move |p| (name.to_string(), *p)))
        .collect();
    let txns = ctx.txns.clone();
    deferred(async move {
        let code = match txns
            .add_partitions(id, producer_id, epoch, partitions)
            .await
        {
            Ok(()) => 0,
            Err(e) => {
                tracing::debug!(error = %e, "AddPartitionsToTxn refused");
                e.code(version, FENCED_SINCE)
            }
        };
        let codes = topics
            .into_iter()
            .map(|(name, parts)| {
                let codes = vec![code; parts.len()];
                (name, parts, codes)
            })
            .collect();
        response(codes)
    })
}

type TopicCodes = Vec<(kafka_protocol::messages::TopicName, Vec<i32>, Vec<i16>)>;

fn response(topics: TopicCodes) -> AddPartitionsToTxnResponse {
    let mut response = AddPartitionsToTxnResponse::default();
    response.results_by_topic_v3_and_below = topics
        .into_iter()
        .map(|(name, parts, codes)| {
            let mut topic = AddPartitionsToTxnTopicResult::default();
            topic.name = name;
            topic.results_by_partition = parts
                .into_iter()
                .zip(codes)
                .map(|(index, code)| {
                    let mut p = AddPartitionsToTxnPartitionResult::default();
                    p.partition_index = index;
                    p.partition_error_code = code;
                    p
                })
                .collect();
            topic
        })
        .collect();
    response
}
