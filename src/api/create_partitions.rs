//! CreatePartitions (v0–v3): grows a topic to `count` partitions. Partitions can only be
//! added (INVALID_PARTITIONS otherwise); `validate_only` checks without changing anything.
//! Manual assignments must put each new partition's single replica on this node.
//!
//! The request runs on the admin thread and is answered when it is done, with one metadata
//! write for all its topics. A request adding more than 10,000 partitions in all is
//! refused with POLICY_VIOLATION for every topic, as Kafka's controller does, before
//! anything is allocated; a topic may not grow beyond 10,000 partitions
//! (INVALID_PARTITIONS) nor the broker beyond its partition cap (POLICY_VIOLATION). From
//! v3 the controller mutation quota refuses a topic with THROTTLING_QUOTA_EXCEEDED;
//! older versions are served and their answer is delayed by the throttle time.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, TopicName};
use tracing::info;

use super::Handled;
use crate::broker::mutation_quota::{throttle_ms, QuotaMode};
use crate::broker::{Broker, TopicError};

/// The first version held strictly to the mutation quota (Kafka's `strictSinceVersion`).
const STRICT_QUOTA_SINCE: i16 = 3;

/// Queues the request on the admin thread; the answer comes when it is done (for versions
/// before v3, after the throttle time too).
pub(crate) fn handle(
    request: CreatePartitionsRequest,
    version: i16,
    broker: &Broker,
) -> Handled<CreatePartitionsResponse> {
    let names: Vec<TopicName> = request.topics.iter().map(|t| t.name.clone()).collect();
    let quota = quota_mode(version);
    let answer = broker.submit_admin(move |broker| respond(request, broker, quota));
    Handled::Deferred(Box::pin(async move {
        let Ok(response) = answer.await else {
            let error = TopicError::AdminUnavailable;
            let results = names
                .into_iter()
                .map(|name| {
                    CreatePartitionsTopicResult::default()
                        .with_name(name)
                        .with_error_code(error.error_code())
                        .with_error_message(Some(super::error_message(error.to_string())))
                })
                .collect();
            return CreatePartitionsResponse::default().with_results(results);
        };
        quota.delay_response(response.throttle_time_ms).await;
        response
    }))
}

fn quota_mode(version: i16) -> QuotaMode {
    QuotaMode::for_version(version, STRICT_QUOTA_SINCE)
}

/// The whole request; runs on the admin thread.
pub(crate) fn respond(
    request: CreatePartitionsRequest,
    broker: &Broker,
    quota: QuotaMode,
) -> CreatePartitionsResponse {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.0.as_str()).or_default() += 1;
    }
    // Each topic's own checks; the valid ones go to the broker together.
    let outcomes: Vec<Result<(), (i16, String)>> = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            if counts.get(name).copied().unwrap_or(0) > 1 {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    format!("Duplicate topic in request: {name}"),
                ));
            }
            check(broker, topic)
        })
        .collect();
    let wanted: Vec<(String, i32)> = request
        .topics
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(topic, _)| (topic.name.0.as_str().to_owned(), topic.count))
        .collect();
    let mut grown = broker
        .add_partitions(wanted, request.validate_only, quota)
        .into_iter();
    let results = request
        .topics
        .into_iter()
        .zip(outcomes)
        .map(|(topic, outcome)| {
            let outcome = outcome.and_then(|()| match grown.next() {
                Some(Ok(grown)) => {
                    if !request.validate_only {
                        info!(topic = %grown.name, to = grown.partitions.len(), "added partitions");
                    }
                    Ok(())
                }
                Some(Err(e)) => Err((e.error_code(), e.to_string())),
                None => {
                    let e = TopicError::AdminUnavailable;
                    Err((e.error_code(), e.to_string()))
                }
            });
            let result = CreatePartitionsTopicResult::default().with_name(topic.name);
            match outcome {
                Ok(()) => result,
                Err((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(super::error_message(message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default()
        .with_throttle_time_ms(throttle_ms(broker.mutation_throttle_time()))
        .with_results(results)
}

/// The request's own checks for one topic: it exists, and manual assignments (if any)
/// match the increase and put every replica on this node.
fn check(broker: &Broker, topic: &CreatePartitionsTopic) -> Result<(), (i16, String)> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::protocol::StrBytes;

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
        let quota = quota_mode(version);
        let response = broker
            .run_admin(move |broker| respond(request, broker, quota))
            .unwrap();
        let response = round_trip(&response, version);
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
