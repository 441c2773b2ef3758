//! CreateTopics (v2–v7): topics with configs, `validate_only`, the broker's default
//! partition count for `num_partitions = -1`, one replica per partition (this is one
//! node), and from v5 the resulting configs, partition count and replication factor.
//!
//! The request runs on the admin thread (see `broker::admin_queue`) and is answered when
//! it is done; every topic it creates is persisted by one metadata write.
//!
//! Checks run in Kafka's order: the partitions the whole request asks for (more than
//! 10,000: POLICY_VIOLATION for every topic, before anything is allocated), then for each
//! topic its name (INVALID_TOPIC_EXCEPTION), duplicates in the request (INVALID_REQUEST),
//! existence (TOPIC_ALREADY_EXISTS), partitions (INVALID_PARTITIONS, also beyond 10,000 per
//! topic), replication (INVALID_REPLICATION_FACTOR / INVALID_REPLICA_ASSIGNMENT), configs
//! (INVALID_CONFIG), the broker's partition cap (POLICY_VIOLATION) and the controller
//! mutation quota (KIP-599): from v6 a topic beyond it is refused with
//! THROTTLING_QUOTA_EXCEEDED; older versions are created and their answer is delayed by
//! the throttle time instead.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::info;
use uuid::Uuid;

use super::describe_configs::topic_defaults;
use super::Handled;
use crate::broker::mutation_quota::{throttle_ms, QuotaMode};
use crate::broker::partition_limits::MAX_PARTITIONS_PER_REQUEST;
use crate::broker::topic_config::{ConfigError, TopicConfig};
use crate::broker::topic_name::validate_topic_name;
use crate::broker::{Broker, NewTopic, TopicError, TOO_MANY_PARTITIONS_PER_REQUEST};

/// A topic's failure: Kafka error code and message.
type Failure = (i16, String);

/// What a valid request for one topic resolves to.
struct Resolved {
    partitions: i32,
    config: TopicConfig,
}

/// The first version held strictly to the mutation quota (Kafka's `strictSinceVersion`).
const STRICT_QUOTA_SINCE: i16 = 6;

/// Queues the request on the admin thread; the answer comes when it is done (for versions
/// before v6, after the throttle time too).
pub(crate) fn handle(
    request: CreateTopicsRequest,
    version: i16,
    broker: &Broker,
) -> Handled<CreateTopicsResponse> {
    let names: Vec<TopicName> = request.topics.iter().map(|t| t.name.clone()).collect();
    let quota = QuotaMode::for_version(version, STRICT_QUOTA_SINCE);
    let answer = broker.submit_admin(move |broker| respond(request, version, broker, quota));
    Handled::Deferred(Box::pin(async move {
        let Ok(response) = answer.await else {
            return failed(names, &TopicError::AdminUnavailable);
        };
        quota.delay_response(response.throttle_time_ms).await;
        response
    }))
}

/// Every topic of the request failed with `error`.
fn failed(names: Vec<TopicName>, error: &TopicError) -> CreateTopicsResponse {
    let message = error.to_string();
    CreateTopicsResponse::default().with_topics(
        names
            .into_iter()
            .map(|name| {
                CreatableTopicResult::default()
                    .with_name(name)
                    .with_error_code(error.error_code())
                    .with_error_message(Some(super::error_message(message.clone())))
            })
            .collect(),
    )
}

/// The whole request; runs on the admin thread.
pub(crate) fn respond(
    request: CreateTopicsRequest,
    version: i16,
    broker: &Broker,
    quota: QuotaMode,
) -> CreateTopicsResponse {
    let default_partitions = u64::try_from(broker.config().num_partitions).unwrap_or(0);
    let requested = request.topics.iter().fold(0u64, |sum, topic| {
        let partitions = if !topic.assignments.is_empty() {
            topic.assignments.len() as u64
        } else if topic.num_partitions == -1 {
            default_partitions
        } else {
            u64::try_from(topic.num_partitions).unwrap_or(0)
        };
        sum.saturating_add(partitions)
    });
    if requested > MAX_PARTITIONS_PER_REQUEST {
        let names = request.topics.into_iter().map(|t| t.name).collect();
        return failed(
            names,
            &TopicError::RequestTooLarge(TOO_MANY_PARTITIONS_PER_REQUEST),
        );
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.0.as_str()).or_default() += 1;
    }
    // Each topic's own checks; the valid ones go to the broker together.
    let mut outcomes: Vec<Result<Resolved, Failure>> = Vec::with_capacity(request.topics.len());
    let mut wanted = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        let outcome = if counts.get(name).copied().unwrap_or(0) > 1 {
            Err((
                ResponseError::InvalidRequest.code(),
                format!(
                    "Create topics request contains multiple entries for the topic {}",
                    crate::broker::topic_name::abbreviated(name)
                ),
            ))
        } else {
            resolve(broker, topic)
        };
        if let Ok(resolved) = &outcome {
            wanted.push(NewTopic {
                name: name.to_owned(),
                partitions: resolved.partitions,
                configs: resolved.config.overrides().clone(),
            });
        }
        outcomes.push(outcome);
    }
    let mut created = broker
        .create_topics(wanted, request.validate_only, quota)
        .into_iter();
    let results = request
        .topics
        .into_iter()
        .zip(outcomes)
        .map(|(topic, outcome)| {
            let result = CreatableTopicResult::default().with_name(topic.name.clone());
            let outcome = outcome.and_then(|resolved| {
                let id = match created.next() {
                    Some(Ok(Some(created))) => {
                        info!(topic = %created.name, partitions = resolved.partitions,
                              id = %created.id, "created topic");
                        created.id
                    }
                    // validate_only: Kafka answers with a nil id.
                    Some(Ok(None)) => Uuid::nil(),
                    Some(Err(e)) => return Err((e.error_code(), e.to_string())),
                    None => {
                        let e = TopicError::AdminUnavailable;
                        return Err((e.error_code(), e.to_string()));
                    }
                };
                Ok((id, resolved))
            });
            match outcome {
                Ok((id, resolved)) => success(result, version, id, &resolved),
                Err((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(super::error_message(message))),
            }
        })
        .collect();
    CreateTopicsResponse::default()
        .with_throttle_time_ms(throttle_ms(broker.mutation_throttle_time()))
        .with_topics(results)
}

fn success(
    result: CreatableTopicResult,
    version: i16,
    id: Uuid,
    new_topic: &Resolved,
) -> CreatableTopicResult {
    let result = result.with_topic_id(id);
    if version < 5 {
        return result;
    }
    let configs = new_topic
        .config
        .describe(None, false)
        .into_iter()
        .map(|entry| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_string(entry.name))
                .with_value(entry.value.map(StrBytes::from_string))
                .with_read_only(entry.read_only)
                .with_config_source(entry.source.code())
                .with_is_sensitive(entry.sensitive)
        })
        .collect();
    result
        .with_num_partitions(new_topic.partitions)
        .with_replication_factor(1)
        .with_configs(Some(configs))
}

/// The request's own checks for one topic, before the broker's: name, existence,
/// partitions and replication, configs.
fn resolve(broker: &Broker, topic: &CreatableTopic) -> Result<Resolved, Failure> {
    let name = topic.name.0.as_str();
    validate_topic_name(name).map_err(|e| (e.error_code(), e.to_string()))?;
    if broker.topic(name).is_some() {
        return Err((
            ResponseError::TopicAlreadyExists.code(),
            format!("Topic '{name}' already exists."),
        ));
    }
    let partitions = resolve_partitions(broker, topic)?;
    let config = resolve_configs(broker, topic)?;
    Ok(Resolved { partitions, config })
}

/// The partition count, from `num_partitions` or from manual replica assignments.
fn resolve_partitions(broker: &Broker, topic: &CreatableTopic) -> Result<i32, Failure> {
    let invalid_request = |m: String| (ResponseError::InvalidRequest.code(), m);
    if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(invalid_request(
                "Both numPartitions or replicationFactor and replicasAssignments were set. \
                 Both cannot be used at the same time."
                    .to_owned(),
            ));
        }
        let node = broker.node_id();
        let mut seen = vec![false; topic.assignments.len()];
        for assignment in &topic.assignments {
            let index = usize::try_from(assignment.partition_index)
                .ok()
                .filter(|i| *i < seen.len() && !seen[*i]);
            let Some(index) = index else {
                return Err((
                    ResponseError::InvalidReplicaAssignment.code(),
                    format!(
                        "Partitions must be numbered 0 to {} without gaps or repeats; got {}",
                        seen.len() - 1,
                        assignment.partition_index
                    ),
                ));
            };
            seen[index] = true;
            if assignment.broker_ids.len() != 1 || assignment.broker_ids[0].0 != node {
                return Err((
                    ResponseError::InvalidReplicaAssignment.code(),
                    format!(
                        "Partition {} must have exactly one replica, on node {node} (this is a \
                         single-node broker)",
                        assignment.partition_index
                    ),
                ));
            }
        }
        return i32::try_from(topic.assignments.len())
            .map_err(|_| invalid_request("too many assignments".to_owned()));
    }
    match topic.replication_factor {
        -1 | 1 => {}
        rf if rf < 1 => {
            return Err((
                ResponseError::InvalidReplicationFactor.code(),
                "Replication factor must be larger than 0, or -1 to use the default value."
                    .to_owned(),
            ))
        }
        rf => {
            return Err((
                ResponseError::InvalidReplicationFactor.code(),
                format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered."),
            ))
        }
    }
    match topic.num_partitions {
        -1 => Ok(broker.config().num_partitions),
        n if n < 1 => Err((
            ResponseError::InvalidPartitions.code(),
            "Number of partitions was set to an invalid non-positive value.".to_owned(),
        )),
        n => Ok(n),
    }
}

/// The topic's validated override set (null values are INVALID_CONFIG, as in Kafka).
fn resolve_configs(broker: &Broker, topic: &CreatableTopic) -> Result<TopicConfig, Failure> {
    let mut overrides = BTreeMap::new();
    for config in &topic.configs {
        let name = config.name.as_str();
        let Some(value) = &config.value else {
            let e = ConfigError::NullValue {
                name: name.to_owned(),
            };
            return Err((e.error_code(), e.to_string()));
        };
        overrides.insert(name.to_owned(), value.as_str().to_owned());
    }
    TopicConfig::new(&overrides, &topic_defaults(broker))
        .map_err(|e| (e.error_code(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopicConfig,
    };
    use kafka_protocol::messages::BrokerId;

    use super::*;
    use crate::api::describe_configs::fixture::{round_trip, TestBroker};

    fn topic(
        name: &str,
        partitions: i32,
        rf: i16,
        configs: &[(&str, Option<&str>)],
    ) -> CreatableTopic {
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_owned())))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string((*k).to_owned()))
                            .with_value(v.map(|v| StrBytes::from_string(v.to_owned())))
                    })
                    .collect(),
            )
    }

    fn create(
        broker: &Broker,
        version: i16,
        validate_only: bool,
        topics: Vec<CreatableTopic>,
    ) -> CreateTopicsResponse {
        let request = CreateTopicsRequest::default()
            .with_topics(topics)
            .with_validate_only(validate_only)
            .with_timeout_ms(1000);
        let quota = QuotaMode::for_version(version, STRICT_QUOTA_SINCE);
        let response = broker
            .run_admin(move |broker| respond(request, version, broker, quota))
            .unwrap();
        round_trip(&response, version)
    }

    #[test]
    fn creates_with_configs_and_reports_them() {
        let t = TestBroker::open();
        let response = create(
            &t.broker,
            7,
            false,
            vec![topic(
                "orders",
                3,
                -1,
                &[
                    ("retention.ms", Some("1000")),
                    ("cleanup.policy", Some("compact, delete")),
                ],
            )],
        );
        let result = &response.topics[0];
        assert_eq!(result.error_code, 0, "{:?}", result.error_message);
        assert_eq!(result.num_partitions, 3);
        assert_eq!(result.replication_factor, 1);
        let created = t.broker.topic("orders").unwrap();
        assert_eq!(created.partitions.len(), 3);
        assert_eq!(result.topic_id, created.id);
        assert_eq!(created.configs["cleanup.policy"], "compact,delete");
        assert_eq!(created.partitions[0].config().retention_ms, Some(1000));
        let configs = result.configs.as_ref().unwrap();
        let retention = configs
            .iter()
            .find(|c| c.name.as_str() == "retention.ms")
            .unwrap();
        assert_eq!(retention.value.as_deref(), Some("1000"));
        assert_eq!(retention.config_source, 1);
        let segment = configs
            .iter()
            .find(|c| c.name.as_str() == "segment.bytes")
            .unwrap();
        assert_eq!(segment.config_source, 5);
    }

    #[test]
    fn every_version_encodes_and_defaults_apply() {
        let t = TestBroker::open();
        for version in 2..=7 {
            let name = format!("v{version}");
            let response = create(&t.broker, version, false, vec![topic(&name, -1, 1, &[])]);
            assert_eq!(response.topics[0].error_code, 0, "v{version}");
            assert_eq!(response.topics[0].name.0.as_str(), name);
            assert_eq!(t.broker.topic(&name).unwrap().partitions.len(), 1);
            if version >= 5 {
                assert_eq!(response.topics[0].num_partitions, 1);
            }
        }
    }

    #[test]
    fn validate_only_creates_nothing() {
        let t = TestBroker::open();
        let response = create(
            &t.broker,
            7,
            true,
            vec![topic("dry", 2, 1, &[("flush.messages", Some("1"))])],
        );
        assert_eq!(response.topics[0].error_code, 0);
        assert_eq!(response.topics[0].num_partitions, 2);
        assert!(t.broker.topic("dry").is_none());
        assert!(!t.dir.path().join("dry-0").exists());
    }

    /// (topic, expected error code, message fragment).
    #[test]
    fn errors_table() {
        let t = TestBroker::open();
        create(
            &t.broker,
            7,
            false,
            vec![topic("exists", 1, 1, &[]), topic("a.b", 1, 1, &[])],
        );
        let cases: Vec<(CreatableTopic, i16, &str)> = vec![
            (topic("exists", 1, 1, &[]), 36, "already exists"),
            (topic("a_b", 1, 1, &[]), 17, "collides"),
            (topic("bad name", 1, 1, &[]), 17, "illegal"),
            (topic("", 1, 1, &[]), 17, "empty"),
            (topic("..", 1, 1, &[]), 17, "cannot be"),
            (topic(&"x".repeat(250), 1, 1, &[]), 17, "249"),
            (topic("zero", 0, 1, &[]), 37, "partitions"),
            (topic("neg", -2, 1, &[]), 37, "partitions"),
            (topic("rf3", 1, 3, &[]), 38, "replicat"),
            (topic("rf0", 1, 0, &[]), 38, "larger than 0"),
            (
                topic("cfg", 1, 1, &[("retention.ms", Some("soon"))]),
                40,
                "retention.ms",
            ),
            (
                topic("cfg2", 1, 1, &[("no.such.config", Some("1"))]),
                40,
                "Unknown topic config",
            ),
            (
                topic("cfg3", 1, 1, &[("retention.ms", None)]),
                40,
                "Null value",
            ),
            (
                topic("cfg4", 1, 1, &[("min.insync.replicas", Some("2"))]),
                40,
                "min.insync.replicas",
            ),
        ];
        for (request, code, fragment) in cases {
            let name = request.name.0.as_str().to_owned();
            let response = create(&t.broker, 7, false, vec![request]);
            let result = &response.topics[0];
            assert_eq!(
                result.error_code, code,
                "{name}: {:?}",
                result.error_message
            );
            let message = result.error_message.as_deref().unwrap_or_default();
            assert!(message.contains(fragment), "{name}: {message}");
            assert_eq!(result.num_partitions, -1);
            if code != 36 && code != 17 {
                assert!(t.broker.topic(&name).is_none(), "{name} must not exist");
            }
        }
    }

    #[test]
    fn duplicate_names_in_one_request_are_invalid() {
        let t = TestBroker::open();
        let response = create(
            &t.broker,
            7,
            false,
            vec![
                topic("dup", 1, 1, &[]),
                topic("dup", 2, 1, &[]),
                topic("ok", 1, 1, &[]),
            ],
        );
        assert_eq!(response.topics[0].error_code, 42);
        assert_eq!(response.topics[1].error_code, 42);
        assert_eq!(response.topics[2].error_code, 0);
        assert!(t.broker.topic("dup").is_none());
    }

    #[test]
    fn manual_assignments_must_name_this_node() {
        let t = TestBroker::open();
        let assign = |p: i32, nodes: &[i32]| {
            CreatableReplicaAssignment::default()
                .with_partition_index(p)
                .with_broker_ids(nodes.iter().map(|n| BrokerId(*n)).collect())
        };
        let good =
            topic("manual", -1, -1, &[]).with_assignments(vec![assign(0, &[0]), assign(1, &[0])]);
        let bad = topic("manual2", -1, -1, &[]).with_assignments(vec![assign(0, &[1])]);
        let gap = topic("manual3", -1, -1, &[]).with_assignments(vec![assign(1, &[0])]);
        let both = topic("manual4", 2, -1, &[]).with_assignments(vec![assign(0, &[0])]);
        let response = create(&t.broker, 7, false, vec![good, bad, gap, both]);
        let codes: Vec<i16> = response.topics.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![0, 39, 39, 42]);
        assert_eq!(t.broker.topic("manual").unwrap().partitions.len(), 2);
    }
}
