//! DescribeCluster (v0–v2): this node as the only broker and the controller.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

/// `endpoint_type` values (v1+): the request is for brokers or for controllers.
const ENDPOINT_BROKERS: i8 = 1;

/// Kafka's `AclOperation` codes of the operations on the cluster resource. Strata has no
/// authorizer, so every one of them is allowed.
const CLUSTER_OPERATIONS: [i32; 7] = [
    5,  // CREATE
    7,  // ALTER
    8,  // DESCRIBE
    9,  // CLUSTER_ACTION
    10, // DESCRIBE_CONFIGS
    11, // ALTER_CONFIGS
    12, // IDEMPOTENT_WRITE
];

/// [`CLUSTER_OPERATIONS`] as the bit field that responses carry (bit `op` set for each).
pub(crate) const CLUSTER_AUTHORIZED_OPERATIONS: i32 = {
    let mut bits = 0;
    let mut i = 0;
    while i < CLUSTER_OPERATIONS.len() {
        bits |= 1 << CLUSTER_OPERATIONS[i];
        i += 1;
    }
    bits
};

/// Kafka's "authorized operations were not requested" marker.
pub(crate) const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

pub(crate) fn handle(
    request: DescribeClusterRequest,
    version: i16,
    broker: &Broker,
) -> DescribeClusterResponse {
    let endpoint_type = if version >= 1 {
        request.endpoint_type
    } else {
        ENDPOINT_BROKERS
    };
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(endpoint_type)
        .with_cluster_id(StrBytes::from_string(broker.cluster_id().to_owned()))
        .with_controller_id(BrokerId(broker.node_id()));
    if endpoint_type != ENDPOINT_BROKERS {
        return response
            .with_error_code(ResponseError::MismatchedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER",
            )))
            .with_controller_id(BrokerId(-1));
    }
    let operations = if request.include_cluster_authorized_operations {
        CLUSTER_AUTHORIZED_OPERATIONS
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    response
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(broker.node_id()))
            .with_host(StrBytes::from_string(broker.advertised_host().to_owned()))
            .with_port(broker.advertised_port())
            .with_rack(None)])
        .with_cluster_authorized_operations(operations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::describe_configs::fixture::{round_trip, TestBroker};

    #[test]
    fn this_node_is_the_cluster_at_every_version() {
        let t = TestBroker::open();
        for version in 0..=2 {
            let request =
                DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
            let response = round_trip(&handle(request, version, &t.broker), version);
            assert_eq!(response.error_code, 0);
            assert_eq!(response.cluster_id.as_str(), t.broker.cluster_id());
            assert_eq!(response.controller_id, BrokerId(0));
            assert_eq!(response.brokers.len(), 1);
            assert_eq!(response.brokers[0].broker_id, BrokerId(0));
            assert_eq!(response.brokers[0].port, t.broker.advertised_port());
            assert_ne!(response.cluster_authorized_operations & (1 << 8), 0);
        }
        let request = DescribeClusterRequest::default().with_endpoint_type(2);
        let response = round_trip(&handle(request, 1, &t.broker), 1);
        assert_eq!(
            response.error_code,
            ResponseError::MismatchedEndpointType.code()
        );
    }
}
