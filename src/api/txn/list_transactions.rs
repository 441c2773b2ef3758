//! ListTransactions (v0-v1): every transactional id with its producer id and state,
//! filtered by state names (an unknown name is listed in `unknown_state_filters` and
//! matches nothing), by producer ids, and from v1 by duration: only transactions that
//! started more than `duration_filter` ms ago (Kafka's rule; -1 = no filter).

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use crate::api::RequestContext;
use crate::broker::now_ms;
use crate::txn::TxnState;

pub(crate) fn handle(
    request: ListTransactionsRequest,
    version: i16,
    ctx: &RequestContext,
) -> ListTransactionsResponse {
    let mut response = ListTransactionsResponse::default();
    let mut states = Vec::new();
    for name in &request.state_filters {
        match TxnState::from_name(name.as_str()) {
            Some(state) => states.push(state),
            None => response.unknown_state_filters.push(name.clone()),
        }
    }
    let producers: Vec<i64> = request.producer_id_filters.iter().map(|p| **p).collect();
    let duration = if version >= 1 {
        request.duration_filter
    } else {
        -1
    };
    let now = now_ms();
    response.transaction_states = ctx
        .txns
        .list()
        .into_iter()
        .filter(|m| {
            (request.state_filters.is_empty() || states.contains(&m.state))
                && (producers.is_empty() || producers.contains(&m.producer_id))
                && (duration < 0 || now.saturating_sub(m.txn_start_ms) > duration)
        })
        .map(|m| {
            let mut state = TransactionState::default();
            state.transactional_id =
                TransactionalId(StrBytes::from_string(m.transactional_id.to_string()));
            state.producer_id = ProducerId(m.producer_id);
            state.transaction_state = StrBytes::from_static_str(m.state.name());
            state
        })
        .collect();
    response
}
