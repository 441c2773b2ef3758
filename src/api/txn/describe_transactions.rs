//! DescribeTransactions (v0): the state, producer, timeout, start time and partitions of
//! each transactional id; TRANSACTIONAL_ID_NOT_FOUND for an id the coordinator does not
//! know.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::api::RequestContext;

pub(crate) fn handle(
    request: DescribeTransactionsRequest,
    ctx: &RequestContext,
) -> DescribeTransactionsResponse {
    let asked = crate::api::distinct(request.transactional_ids, |id| id.clone());
    let ids: Vec<String> = asked.iter().map(|id| id.to_string()).collect();
    let found = ctx.txns.describe(&ids);
    let mut response = DescribeTransactionsResponse::default();
    response.transaction_states = asked
        .into_iter()
        .zip(found)
        .map(|(id, meta)| {
            let mut state = TransactionState::default();
            state.transactional_id = id;
            match meta {
                None => {
                    state.error_code = ResponseError::TransactionalIdNotFound.code();
                    state.producer_id = ProducerId(-1);
                    state.producer_epoch = -1;
                    state.transaction_start_time_ms = -1;
                }
                Some(m) => {
                    state.transaction_state = StrBytes::from_static_str(m.state.name());
                    state.transaction_timeout_ms = m.timeout_ms;
                    state.transaction_start_time_ms = m.txn_start_ms;
                    state.producer_id = ProducerId(m.producer_id);
                    state.producer_epoch = m.producer_epoch;
                    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                    for (topic, partition) in &m.partitions {
                        by_topic.entry(topic.clone()).or_default().push(*partition);
                    }
                    state.topics = by_topic
                        .into_iter()
                        .map(|(topic, partitions)| {
                            let mut data = TopicData::default();
                            data.topic = TopicName(StrBytes::from_string(topic));
                            data.partitions = partitions;
                            data
                        })
                        .collect();
                }
            }
            state
        })
        .collect();
    response
}
