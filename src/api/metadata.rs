//! Metadata: this node as the only broker and controller, and topics with their ids and
//! partitions (this node leads every partition, epoch 0, replicas = isr = [this node]).
//! Unknown topics are created when both the broker and the request allow it; the response
//! that creates one answers LEADER_NOT_AVAILABLE for it, as Kafka does. The topics are
//! created on the admin thread (one batch, see `broker::auto_create`), and that response
//! is sent once their creation is done, so the client's next request finds them. A topic
//! the broker cannot queue now (its auto-creation queue or mutation quota is full) is
//! also answered LEADER_NOT_AVAILABLE, and the client retries.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tracing::debug;
use uuid::Uuid;

use super::Handled;
use crate::api::describe_cluster;
use crate::broker::auto_create::AutoCreate;
use crate::broker::{Broker, Topic};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
const LEADER_NOT_AVAILABLE: i16 = ResponseError::LeaderNotAvailable.code();
const UNKNOWN_TOPIC_ID: i16 = ResponseError::UnknownTopicId.code();

/// Bit field of Kafka's `AclOperation` codes that a topic supports: READ (3), WRITE (4),
/// CREATE (5), DELETE (6), ALTER (7), DESCRIBE (8), DESCRIBE_CONFIGS (10) and
/// ALTER_CONFIGS (11). Strata has no authorizer, so, as Kafka without one, it reports
/// every one of them as allowed when a client asks (v8+).
const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

pub(crate) fn handle(
    request: MetadataRequest,
    version: i16,
    broker: &Broker,
) -> Handled<MetadataResponse> {
    let mut creating = Vec::new();
    let response = describe_topics(request, version, broker, &mut creating);
    if creating.is_empty() {
        return Handled::Ready(response);
    }
    Handled::Deferred(Box::pin(async move {
        for mut done in creating {
            // Err: the batch's sender is gone, so it is over too.
            let _ = done.wait_for(|done| *done).await;
        }
        response
    }))
}

/// The response; `creating` gets the done signal of every topic this request is
/// auto-creating.
fn describe_topics(
    request: MetadataRequest,
    version: i16,
    broker: &Broker,
    creating: &mut Vec<watch::Receiver<bool>>,
) -> MetadataResponse {
    let node = BrokerId(broker.node_id());
    // v0 has no null topic list: an empty list means every topic.
    let requested = match request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(topics),
        _ => None,
    };
    // Before v4 the request has no flag and Kafka auto-creates.
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    let mut topics: Vec<MetadataResponseTopic> = match requested {
        None => broker.topics().iter().map(|t| describe(t)).collect(),
        Some(list) => super::distinct(list, |t| (t.name.clone(), t.topic_id))
            .into_iter()
            .map(|wanted| match wanted.name {
                Some(name) => lookup_by_name(broker, name, allow_create, creating),
                None => match broker.topic_by_id(wanted.topic_id) {
                    Some(topic) => describe(&topic),
                    None => error_topic(None, wanted.topic_id, UNKNOWN_TOPIC_ID),
                },
            })
            .collect(),
    };
    if version >= 8 && request.include_topic_authorized_operations {
        for topic in &mut topics {
            topic.topic_authorized_operations = TOPIC_OPERATIONS;
        }
    }
    // The cluster's operations are in the response of v8–v10 only (DescribeCluster since).
    let cluster_operations =
        if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
            describe_cluster::CLUSTER_AUTHORIZED_OPERATIONS
        } else {
            describe_cluster::OPERATIONS_NOT_REQUESTED
        };
    MetadataResponse::default()
        .with_cluster_authorized_operations(cluster_operations)
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(StrBytes::from_string(broker.advertised_host().to_string()))
            .with_port(broker.advertised_port())])
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id().to_string())))
        .with_controller_id(node)
        .with_topics(topics)
}

fn lookup_by_name(
    broker: &Broker,
    name: TopicName,
    allow_create: bool,
    creating: &mut Vec<watch::Receiver<bool>>,
) -> MetadataResponseTopic {
    if let Some(topic) = broker.topic(name.as_str()) {
        return describe(&topic);
    }
    if !allow_create {
        return error_topic(Some(name), Uuid::nil(), UNKNOWN_TOPIC_OR_PARTITION);
    }
    match broker.auto_create(name.as_str()) {
        Ok(AutoCreate::Exists(topic)) => describe(&topic),
        // As Kafka does, the response that creates a topic reports it as not yet led;
        // clients refresh their metadata and find it on the next request.
        Ok(AutoCreate::Creating(done)) => {
            creating.push(done);
            error_topic(Some(name), Uuid::nil(), LEADER_NOT_AVAILABLE)
        }
        Ok(AutoCreate::Busy) => error_topic(Some(name), Uuid::nil(), LEADER_NOT_AVAILABLE),
        Ok(AutoCreate::Disabled) => {
            error_topic(Some(name), Uuid::nil(), UNKNOWN_TOPIC_OR_PARTITION)
        }
        Err(e) => {
            debug!(topic = %name.as_str(), error = %e, "metadata: topic not available");
            error_topic(Some(name), Uuid::nil(), e.error_code())
        }
    }
}

/// Each partition as the metadata has it: leader, leader epoch, replicas, ISR.
fn describe(topic: &Topic) -> MetadataResponseTopic {
    let nodes = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let partitions = topic
        .partitions
        .iter()
        .zip(0..)
        .map(|(partition, index)| {
            let state = partition.state();
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(state.leader))
                .with_leader_epoch(state.leader_epoch)
                .with_replica_nodes(nodes(&state.replicas))
                .with_isr_nodes(nodes(&state.isr))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(false)
        .with_partitions(partitions)
}

fn error_topic(name: Option<TopicName>, id: Uuid, error_code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error_code)
        .with_name(name)
        .with_topic_id(id)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;

    use super::*;
    use crate::api::describe_configs::fixture::{round_trip, TestBroker};

    /// Kafka's `AclOperation` codes.
    const READ: i32 = 3;
    const WRITE: i32 = 4;
    const DESCRIBE: i32 = 8;
    const IDEMPOTENT_WRITE: i32 = 12;

    /// The response of a request that creates nothing.
    fn ready(handled: Handled<MetadataResponse>) -> MetadataResponse {
        match handled {
            Handled::Ready(response) => response,
            _ => panic!("expected an immediate response"),
        }
    }

    fn has(bits: i32, op: i32) -> bool {
        bits != i32::MIN && bits & (1 << op) != 0
    }

    /// Without an authorizer Kafka answers requested authorized operations with every
    /// operation the resource supports (confluent-kafka's `describe_topics(...,
    /// include_authorized_operations=True)` reads them from Metadata v8+).
    #[test]
    fn requested_authorized_operations_list_every_supported_operation() {
        let t = TestBroker::open();
        t.broker.create_topic("ops", 1, BTreeMap::new()).unwrap();
        for version in 8..=12 {
            let wanted = |name: &str| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
            };
            let mut request = MetadataRequest::default()
                .with_topics(Some(vec![wanted("ops"), wanted("missing")]))
                .with_allow_auto_topic_creation(false)
                .with_include_topic_authorized_operations(true);
            if version <= 10 {
                request = request.with_include_cluster_authorized_operations(true);
            }
            let response = round_trip(&ready(handle(request, version, &t.broker)), version);
            let ops = response.topics[0].topic_authorized_operations;
            assert!(
                has(ops, READ) && has(ops, WRITE) && has(ops, DESCRIBE),
                "v{version}: topic operations {ops:#x}"
            );
            assert_eq!(
                response.topics[1].error_code, UNKNOWN_TOPIC_OR_PARTITION,
                "v{version}"
            );
            assert_eq!(response.topics[1].topic_authorized_operations, ops);
            if version <= 10 {
                let cluster = response.cluster_authorized_operations;
                assert!(
                    has(cluster, IDEMPOTENT_WRITE) && has(cluster, DESCRIBE),
                    "v{version}: cluster operations {cluster:#x}"
                );
            }
        }
    }

    #[test]
    fn authorized_operations_not_requested_stay_unset() {
        let t = TestBroker::open();
        t.broker.create_topic("ops", 1, BTreeMap::new()).unwrap();
        for version in [1, 8, 10, 12] {
            let response = round_trip(
                &ready(handle(
                    MetadataRequest::default().with_topics(None),
                    version,
                    &t.broker,
                )),
                version,
            );
            assert_eq!(response.topics.len(), 1);
            assert_eq!(response.topics[0].topic_authorized_operations, i32::MIN);
            assert_eq!(response.cluster_authorized_operations, i32::MIN);
        }
    }
}
