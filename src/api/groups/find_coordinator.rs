//! FindCoordinator (v0-v4): this node coordinates every group and every
//! transactional id. v4 batches keys.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::broker::Broker;

/// Key types: 0 = consumer group, 1 = transactional id.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The answer for one key: Ok for this node, or the error.
fn find(key: &str, key_type: i8) -> Result<(), ResponseError> {
    if key_type != KEY_TYPE_GROUP && key_type != KEY_TYPE_TRANSACTION {
        return Err(ResponseError::InvalidRequest);
    }
    if key.is_empty() && key_type == KEY_TYPE_TRANSACTION {
        return Err(ResponseError::InvalidRequest);
    }
    Ok(())
}

pub(crate) fn handle(
    request: FindCoordinatorRequest,
    version: i16,
    broker: &Broker,
) -> FindCoordinatorResponse {
    let host = str_bytes(broker.advertised_host());
    let port = broker.advertised_port();
    let node = BrokerId(broker.node_id());
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let mut c = Coordinator::default();
                c.key = key.clone();
                match find(key, request.key_type) {
                    Ok(()) => {
                        c.node_id = node;
                        c.host = host.clone();
                        c.port = port;
                    }
                    Err(e) => {
                        c.node_id = BrokerId(-1);
                        c.host = StrBytes::default();
                        c.port = -1;
                        c.error_code = e.code();
                        c.error_message = Some(str_bytes(e.to_string()));
                    }
                }
                c
            })
            .collect();
        return response;
    }
    match find(&request.key, request.key_type) {
        Ok(()) => {
            response.node_id = node;
            response.host = host;
            response.port = port;
        }
        Err(e) => {
            response.error_code = e.code();
            response.node_id = BrokerId(-1);
            response.port = -1;
            if version >= 1 {
                response.error_message = Some(str_bytes(e.to_string()));
            }
        }
    }
    response
}
