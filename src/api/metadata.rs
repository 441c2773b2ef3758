//! Metadata: this node as the only broker and controller, and topics with their ids and
//! partitions (this node leads every partition, epoch 0, replicas = isr = [this node]).
//! Unknown topics are created when both the broker and the request allow it; the response
//! that creates one answers LEADER_NOT_AVAILABLE for it, as Kafka does.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::warn;
use uuid::Uuid;

use crate::broker::{Broker, Topic};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
const LEADER_NOT_AVAILABLE: i16 = ResponseError::LeaderNotAvailable.code();
const UNKNOWN_TOPIC_ID: i16 = ResponseError::UnknownTopicId.code();

pub(crate) fn handle(request: MetadataRequest, version: i16, broker: &Broker) -> MetadataResponse {
    let node = BrokerId(broker.node_id());
    // v0 has no null topic list: an empty list means every topic.
    let requested = match request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(topics),
        _ => None,
    };
    // Before v4 the request has no flag and Kafka auto-creates.
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    let topics = match requested {
        None => broker.topics().iter().map(|t| describe(t, node)).collect(),
        Some(list) => list
            .into_iter()
            .map(|wanted| match wanted.name {
                Some(name) => lookup_by_name(broker, name, allow_create, node),
                None => match broker.topic_by_id(wanted.topic_id) {
                    Some(topic) => describe(&topic, node),
                    None => error_topic(None, wanted.topic_id, UNKNOWN_TOPIC_ID),
                },
            })
            .collect(),
    };
    MetadataResponse::default()
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
    node: BrokerId,
) -> MetadataResponseTopic {
    if let Some(topic) = broker.topic(name.as_str()) {
        return describe(&topic, node);
    }
    let found = if allow_create {
        broker.topic_or_auto_create(name.as_str())
    } else {
        Ok(None)
    };
    match found {
        // As Kafka does, the response that creates a topic reports it as not yet led;
        // clients refresh their metadata and find it on the next request.
        Ok(Some(_created)) => error_topic(Some(name), Uuid::nil(), LEADER_NOT_AVAILABLE),
        Ok(None) => error_topic(Some(name), Uuid::nil(), UNKNOWN_TOPIC_OR_PARTITION),
        Err(e) => {
            warn!(topic = %name.as_str(), error = %e, "metadata: topic not available");
            error_topic(Some(name), Uuid::nil(), e.error_code())
        }
    }
}

fn describe(topic: &Topic, node: BrokerId) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions.len() as i32)
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
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
