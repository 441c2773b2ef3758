//! CreateTopics (v2–v7): topics with configs, `validate_only`, the broker's default
//! partition count for `num_partitions = -1`, one replica per partition (this is one
//! node), and from v5 the resulting configs, partition count and replication factor.
//!
//! Checks run in Kafka's order, and each topic gets its own error: name
//! (INVALID_TOPIC_EXCEPTION), duplicates in the request (INVALID_REQUEST), existence
//! (TOPIC_ALREADY_EXISTS), partitions (INVALID_PARTITIONS), replication
//! (INVALID_REPLICATION_FACTOR / INVALID_REPLICA_ASSIGNMENT), configs (INVALID_CONFIG).

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::info;
use uuid::Uuid;

use super::describe_configs::topic_defaults;
use crate::broker::topic_config::{ConfigError, TopicConfig};
use crate::broker::topic_name::validate_topic_name;
use crate::broker::Broker;

/// A topic's failure: Kafka error code and message.
type Failure = (i16, String);

/// What a valid request for one topic resolves to.
struct NewTopic {
    partitions: i32,
    config: TopicConfig,
}

pub(crate) fn handle(
    request: CreateTopicsRequest,
    version: i16,
    broker: &Broker,
) -> CreateTopicsResponse {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.0.as_str().to_owned()).or_default() += 1;
    }
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let result = CreatableTopicResult::default().with_name(topic.name.clone());
            let outcome = if counts.get(name).copied().unwrap_or(0) > 1 {
                Err((
                    ResponseError::InvalidRequest.code(),
                    format!(
                        "Create topics request contains multiple entries for the topic {}",
                        crate::broker::topic_name::abbreviated(name)
                    ),
                ))
            } else {
                create_one(broker, topic, request.validate_only)
            };
            match outcome {
                Ok((id, new_topic)) => success(result, version, id, &new_topic),
                Err((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

fn success(
    result: CreatableTopicResult,
    version: i16,
    id: Uuid,
    new_topic: &NewTopic,
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

/// Validates, then (unless `validate_only`) creates one topic. Returns the topic id
/// (nil for `validate_only`, as Kafka does) and what was created.
fn create_one(
    broker: &Broker,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<(Uuid, NewTopic), Failure> {
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
    let overrides = config.overrides().clone();
    let new_topic = NewTopic { partitions, config };
    let failure = |e: crate::broker::TopicError| (e.error_code(), e.to_string());
    if validate_only {
        broker
            .validate_new_topic(name, partitions, &overrides)
            .map_err(failure)?;
        return Ok((Uuid::nil(), new_topic));
    }
    let created = broker
        .create_topic(name, partitions, overrides)
        .map_err(failure)?;
    info!(topic = name, partitions, id = %created.id, "created topic");
    Ok((created.id, new_topic))
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
    use kafka_protocol::messages::{BrokerId, TopicName};

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
        round_trip(&handle(request, version, broker), version)
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
