//! CreatePartitions (v0–v3): grows a topic to `count` partitions. Partitions can only be
//! added (INVALID_PARTITIONS otherwise); `validate_only` checks without changing anything.
//! Manual assignments must put each new partition's single replica on this node.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::info;

use crate::broker::Broker;

pub(crate) fn handle(
    request: CreatePartitionsRequest,
    _version: i16,
    broker: &Broker,
) -> CreatePartitionsResponse {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.0.as_str()).or_default() += 1;
    }
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let outcome = if counts.get(name).copied().unwrap_or(0) > 1 {
                Err((
                    ResponseError::InvalidRequest.code(),
                    format!("Duplicate topic in request: {name}"),
                ))
            } else {
                grow(broker, topic, request.validate_only)
            };
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            match outcome {
                Ok(()) => result,
                Err((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

fn grow(
    broker: &Broker,
    topic: &CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let name = topic.name.0.as_str();
    let current = broker
        .topic(name)
        .ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition.code(),
                format!("The topic '{name}' does not exist."),
            )
        })?
        .partitions
        .len();
    // An empty list is treated like null (automatic placement): kafka-protocol's default
    // is an empty list, and some clients send one.
    if let Some(assignments) = topic.assignments.as_ref().filter(|a| !a.is_empty()) {
        let adding = usize::try_from(topic.count)
            .unwrap_or(0)
            .saturating_sub(current);
        if assignments.len() != adding {
            return Err((
                ResponseError::InvalidReplicaAssignment.code(),
                format!(
                    "Increasing the number of partitions by {adding} but {} assignments provided.",
                    assignments.len()
                ),
            ));
        }
        let node = broker.node_id();
        if let Some(bad) = assignments
            .iter()
            .find(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != node)
        {
            let ids: Vec<i32> = bad.broker_ids.iter().map(|b| b.0).collect();
            return Err((
                ResponseError::InvalidReplicaAssignment.code(),
                format!(
                    "Replica assignment {ids:?} is invalid: each partition has exactly one \
                     replica, on node {node} (this is a single-node broker)."
                ),
            ));
        }
    }
    broker
        .add_partitions(name, topic.count, validate_only)
        .map_err(|e| (e.error_code(), e.to_string()))?;
    if !validate_only {
        info!(
            topic = name,
            from = current,
            to = topic.count,
            "added partitions"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
    use kafka_protocol::messages::{BrokerId, TopicName};

    use super::*;
    use crate::api::describe_configs::fixture::{round_trip, TestBroker};

    fn grow_to(name: &str, count: i32) -> CreatePartitionsTopic {
        CreatePartitionsTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_owned())))
            .with_count(count)
    }

    fn send(
        broker: &Broker,
        version: i16,
        validate_only: bool,
        topics: Vec<CreatePartitionsTopic>,
    ) -> Vec<i16> {
        let request = CreatePartitionsRequest::default()
            .with_topics(topics)
            .with_validate_only(validate_only);
        let response = round_trip(&handle(request, version, broker), version);
        response.results.iter().map(|r| r.error_code).collect()
    }

    #[test]
    fn grows_only_and_validate_only_changes_nothing() {
        let t = TestBroker::open();
        t.broker.create_topic("grow", 2, BTreeMap::new()).unwrap();
        for version in 0..=3 {
            let target = 3 + i32::from(version);
            assert_eq!(
                send(&t.broker, version, true, vec![grow_to("grow", 100)]),
                vec![0]
            );
            assert_eq!(
                t.broker.topic("grow").unwrap().partitions.len() as i32,
                target - 1
            );
            assert_eq!(
                send(&t.broker, version, false, vec![grow_to("grow", target)]),
                vec![0]
            );
            assert_eq!(
                t.broker.topic("grow").unwrap().partitions.len() as i32,
                target
            );
            assert!(t.dir.path().join(format!("grow-{}", target - 1)).exists());
        }
        assert_eq!(
            send(
                &t.broker,
                3,
                false,
                vec![grow_to("grow", 6), grow_to("grow2", 2), grow_to("grow", 1)]
            ),
            vec![42, 3, 42]
        );
        assert_eq!(
            send(&t.broker, 3, false, vec![grow_to("grow", 6)]),
            vec![37]
        );
        assert_eq!(
            send(&t.broker, 3, false, vec![grow_to("grow", 2)]),
            vec![37]
        );
        let t = t.restart();
        assert_eq!(t.broker.topic("grow").unwrap().partitions.len(), 6);
    }

    #[test]
    fn assignments_must_match_the_increase_and_this_node() {
        let t = TestBroker::open();
        t.broker
            .create_topic("assigned", 1, BTreeMap::new())
            .unwrap();
        let on = |nodes: &[i32]| {
            CreatePartitionsAssignment::default()
                .with_broker_ids(nodes.iter().map(|n| BrokerId(*n)).collect())
        };
        let wrong_count = grow_to("assigned", 3).with_assignments(Some(vec![on(&[0])]));
        assert_eq!(send(&t.broker, 3, false, vec![wrong_count]), vec![39]);
        let wrong_node = grow_to("assigned", 2).with_assignments(Some(vec![on(&[2])]));
        assert_eq!(send(&t.broker, 3, false, vec![wrong_node]), vec![39]);
        let good = grow_to("assigned", 3).with_assignments(Some(vec![on(&[0]), on(&[0])]));
        assert_eq!(send(&t.broker, 3, false, vec![good]), vec![0]);
        assert_eq!(t.broker.topic("assigned").unwrap().partitions.len(), 3);
    }
}
