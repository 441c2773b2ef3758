//! AlterConfigs (v0–v2) and IncrementalAlterConfigs (v0–v1) for topics.
//!
//! AlterConfigs replaces a topic's whole override set; IncrementalAlterConfigs applies
//! SET / DELETE / APPEND / SUBTRACT to it. Either way the result is validated as a whole
//! (INVALID_CONFIG), recorded in the metadata log, and applied live to every partition
//! through `Log::set_config` (see `Broker::update_topic_configs`). The request runs on the
//! admin thread, like every metadata change, and is answered when its changes are
//! applied. With `validate_only` nothing changes. Broker resources (`"<node id>"` for this broker, `""` for the cluster-wide
//! default) work the same way on the dynamic broker configs (see `broker::broker_config`):
//! AlterConfigs replaces the resource's dynamic set, IncrementalAlterConfigs edits it; only
//! the dynamically alterable names are accepted, others are INVALID_CONFIG.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::info;

use super::describe_configs::{broker_scope, topic_config_of, RESOURCE_BROKER, RESOURCE_TOPIC};
use super::Handled;
use crate::broker::broker_config::{self, BrokerConfigError};
use crate::broker::topic_config::{AlterOp, ConfigError, TopicConfig};
use crate::broker::topic_name::validate_topic_name;
use crate::broker::{Broker, TopicError};

/// A resource's failure: Kafka error code and message.
type Failure = (i16, String);

/// Queues the request on the admin thread; the answer comes when it is done.
pub(crate) fn handle_alter(
    request: AlterConfigsRequest,
    version: i16,
    broker: &Broker,
) -> Handled<AlterConfigsResponse> {
    let unanswered: Vec<(i8, StrBytes)> = request
        .resources
        .iter()
        .map(|r| (r.resource_type, r.resource_name.clone()))
        .collect();
    let answer = broker.submit_admin(move |broker| respond_alter(request, version, broker));
    Handled::Deferred(Box::pin(async move {
        answer.await.unwrap_or_else(|_| {
            let (code, message) = admin_unavailable();
            AlterConfigsResponse::default().with_responses(
                unanswered
                    .into_iter()
                    .map(|(kind, name)| {
                        alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_error_code(code)
                            .with_error_message(message.clone())
                            .with_resource_type(kind)
                            .with_resource_name(name)
                    })
                    .collect(),
            )
        })
    }))
}

/// Queues the request on the admin thread; the answer comes when it is done.
pub(crate) fn handle_incremental(
    request: IncrementalAlterConfigsRequest,
    version: i16,
    broker: &Broker,
) -> Handled<IncrementalAlterConfigsResponse> {
    let unanswered: Vec<(i8, StrBytes)> = request
        .resources
        .iter()
        .map(|r| (r.resource_type, r.resource_name.clone()))
        .collect();
    let answer = broker.submit_admin(move |broker| respond_incremental(request, version, broker));
    Handled::Deferred(Box::pin(async move {
        answer.await.unwrap_or_else(|_| {
            let (code, message) = admin_unavailable();
            IncrementalAlterConfigsResponse::default().with_responses(
                unanswered
                    .into_iter()
                    .map(|(kind, name)| {
                        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_error_code(code)
                            .with_error_message(message.clone())
                            .with_resource_type(kind)
                            .with_resource_name(name)
                    })
                    .collect(),
            )
        })
    }))
}

fn admin_unavailable() -> (i16, Option<StrBytes>) {
    let e = TopicError::AdminUnavailable;
    (e.error_code(), Some(super::error_message(e.to_string())))
}

/// AlterConfigs: each resource's `configs` becomes its complete override set. The admin
/// thread.
pub(crate) fn respond_alter(
    request: AlterConfigsRequest,
    _version: i16,
    broker: &Broker,
) -> AlterConfigsResponse {
    // Kafka answers every mention of a resource named twice and applies none of them.
    let repeated = super::repeated(
        request
            .resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str().to_owned())),
    );
    let responses = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.as_str().to_owned();
            let outcome = match resource.resource_type {
                _ if repeated.contains(&(resource.resource_type, name.clone())) => {
                    Err(repeated_resource())
                }
                RESOURCE_TOPIC => collect_values(&resource.configs, |c| (&c.name, &c.value))
                    .and_then(|overrides| {
                        alter_topic(broker, &name, request.validate_only, |current| {
                            current.replace_overrides(&overrides)
                        })
                    }),
                RESOURCE_BROKER => collect_values(&resource.configs, |c| (&c.name, &c.value))
                    .and_then(|configs| {
                        alter_broker(broker, &name, request.validate_only, |_| Ok(configs))
                    }),
                other => Err(unsupported_resource(other)),
            };
            let (code, message) = split(outcome);
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

/// IncrementalAlterConfigs: each resource's operations apply to its current overrides.
/// The admin thread.
pub(crate) fn respond_incremental(
    request: IncrementalAlterConfigsRequest,
    _version: i16,
    broker: &Broker,
) -> IncrementalAlterConfigsResponse {
    // Kafka answers every mention of a resource named twice and applies none of them.
    let repeated = super::repeated(
        request
            .resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str().to_owned())),
    );
    let responses = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.as_str().to_owned();
            let outcome = match resource.resource_type {
                _ if repeated.contains(&(resource.resource_type, name.clone())) => {
                    Err(repeated_resource())
                }
                RESOURCE_TOPIC => parse_ops(&resource.configs).and_then(|ops| {
                    alter_topic(broker, &name, request.validate_only, |current| {
                        current.apply_incremental(ops.iter().map(|(k, op)| (k.as_str(), op)))
                    })
                }),
                RESOURCE_BROKER => parse_ops(&resource.configs).and_then(|ops| {
                    alter_broker(broker, &name, request.validate_only, |current| {
                        broker_config::apply_ops(
                            current,
                            ops.iter().map(|(k, op)| (k.as_str(), op)),
                        )
                    })
                }),
                other => Err(unsupported_resource(other)),
            };
            let (code, message) = split(outcome);
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn split(outcome: Result<(), Failure>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((code, message)) => (code, Some(super::error_message(message))),
    }
}

fn repeated_resource() -> Failure {
    (
        ResponseError::InvalidRequest.code(),
        "Each resource must appear at most once.".to_owned(),
    )
}

/// Kafka's answer to a null value (INVALID_REQUEST, its wording).
fn null_value(name: &str) -> Failure {
    (
        ResponseError::InvalidRequest.code(),
        format!("Null value not supported for : {name}"),
    )
}

/// Kafka's answer to a config key named twice in one resource.
fn duplicate_key(name: &str) -> Failure {
    (
        ResponseError::InvalidRequest.code(),
        format!("Error due to duplicate config keys: {name}"),
    )
}

fn unsupported_resource(resource_type: i8) -> Failure {
    (
        ResponseError::InvalidRequest.code(),
        format!("Unsupported resource type: {resource_type}"),
    )
}

/// The legacy request's name/value pairs; a null value or a key named twice is
/// INVALID_REQUEST, as Kafka's broker answers.
fn collect_values<T>(
    configs: &[T],
    fields: impl Fn(&T) -> (&StrBytes, &Option<StrBytes>),
) -> Result<BTreeMap<String, String>, Failure> {
    let mut map = BTreeMap::new();
    for config in configs {
        let (name, value) = fields(config);
        let Some(value) = value else {
            return Err(null_value(name.as_str()));
        };
        if map
            .insert(name.as_str().to_owned(), value.as_str().to_owned())
            .is_some()
        {
            return Err(duplicate_key(name.as_str()));
        }
    }
    Ok(map)
}

/// The incremental request's operations, in order. A key named twice, a null value for
/// any operation but DELETE, or an unknown operation number is INVALID_REQUEST, as in
/// Kafka.
fn parse_ops(
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<Vec<(String, AlterOp)>, Failure> {
    let mut seen = HashSet::new();
    let mut ops = Vec::with_capacity(configs.len());
    for config in configs {
        let name = config.name.as_str();
        if !seen.insert(name) {
            return Err(duplicate_key(name));
        }
        // Only DELETE (1) may come without a value.
        if config.config_operation != 1 && config.value.is_none() {
            return Err(null_value(name));
        }
        let op = AlterOp::from_wire(config.config_operation, config.value.as_deref()).ok_or_else(
            || {
                (
                    ResponseError::InvalidRequest.code(),
                    format!(
                        "Unknown config operation {} for config key {name}",
                        config.config_operation
                    ),
                )
            },
        )?;
        ops.push((name.to_owned(), op));
    }
    Ok(ops)
}

/// Computes the topic's new override set with `change` from its current config and
/// records it (then applied live) unless `validate_only`. On the admin thread, so
/// concurrent alterations do not lose updates.
fn alter_topic(
    broker: &Broker,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&TopicConfig) -> Result<TopicConfig, ConfigError>,
) -> Result<(), Failure> {
    validate_topic_name(name).map_err(|e| (e.error_code(), e.to_string()))?;
    let invalid = |(code, message): Failure| TopicError::InvalidConfig { code, message };
    let updated = broker
        .alter_topic_configs(name, validate_only, |current| {
            let current = topic_config_of(broker, current).map_err(invalid)?;
            let updated = change(&current).map_err(|e| invalid((e.error_code(), e.to_string())))?;
            Ok(updated.overrides().clone())
        })
        .map_err(|e| match e {
            TopicError::Unknown(_) => (
                ResponseError::UnknownTopicOrPartition.code(),
                format!("Topic '{name}' does not exist."),
            ),
            e => (e.error_code(), e.to_string()),
        })?;
    if !validate_only {
        info!(topic = name, overrides = ?updated.configs, "altered topic configs");
    }
    Ok(())
}

/// Computes the broker resource's new dynamic set with `change` from its current one and
/// records it (then applied live) unless `validate_only`; see
/// `Broker::update_broker_configs`. The admin thread.
fn alter_broker(
    broker: &Broker,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(
        &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, BrokerConfigError>,
) -> Result<(), Failure> {
    let scope = broker_scope(broker, name)?;
    broker
        .alter_broker_configs(scope, validate_only, change)
        .map(|_| ())
        .map_err(|e| (e.error_code(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{alter_configs_request, incremental_alter_configs_request};
    use strata_storage::TimestampType;

    use super::*;
    use crate::api::describe_configs::fixture::{round_trip, TestBroker};

    /// Runs `respond` on the admin thread, as the handler does.
    fn on_admin<R: Send + 'static>(
        broker: &Broker,
        respond: impl FnOnce(&Broker) -> R + Send + 'static,
    ) -> R {
        broker.run_admin(respond).unwrap()
    }

    /// One resource of a legacy AlterConfigs request setting `pairs` (None: a null value).
    fn legacy_resource(
        kind: i8,
        name: &str,
        pairs: &[(&str, Option<&str>)],
    ) -> alter_configs_request::AlterConfigsResource {
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configs(
                pairs
                    .iter()
                    .map(|(k, v)| {
                        alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_string((*k).to_owned()))
                            .with_value(v.map(|v| StrBytes::from_string(v.to_owned())))
                    })
                    .collect(),
            )
    }

    fn legacy(
        broker: &Broker,
        validate_only: bool,
        kind: i8,
        name: &str,
        pairs: &[(&str, Option<&str>)],
    ) -> i16 {
        let resource = legacy_resource(kind, name, pairs);
        let mut code = 0;
        for version in [0, 1, 2] {
            let request = AlterConfigsRequest::default()
                .with_resources(vec![resource.clone()])
                .with_validate_only(validate_only);
            let response = round_trip(
                &on_admin(broker, move |b| respond_alter(request, version, b)),
                version,
            );
            assert_eq!(response.responses[0].resource_name.as_str(), name);
            code = response.responses[0].error_code;
        }
        code
    }

    fn incremental(
        broker: &Broker,
        version: i16,
        validate_only: bool,
        name: &str,
        ops: &[(&str, i8, Option<&str>)],
    ) -> (i16, String) {
        incremental_on(broker, version, validate_only, RESOURCE_TOPIC, name, ops)
    }

    fn incremental_on(
        broker: &Broker,
        version: i16,
        validate_only: bool,
        kind: i8,
        name: &str,
        ops: &[(&str, i8, Option<&str>)],
    ) -> (i16, String) {
        let resource = incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configs(
                ops.iter()
                    .map(|(k, op, v)| {
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_string((*k).to_owned()))
                            .with_config_operation(*op)
                            .with_value(v.map(|v| StrBytes::from_string(v.to_owned())))
                    })
                    .collect(),
            );
        let request = IncrementalAlterConfigsRequest::default()
            .with_resources(vec![resource])
            .with_validate_only(validate_only);
        let response = round_trip(
            &on_admin(broker, move |b| respond_incremental(request, version, b)),
            version,
        );
        let r = &response.responses[0];
        (
            r.error_code,
            r.error_message.as_deref().unwrap_or_default().to_owned(),
        )
    }

    fn overrides(broker: &Broker, name: &str) -> Vec<(String, String)> {
        broker
            .topic(name)
            .unwrap()
            .configs
            .clone()
            .into_iter()
            .collect()
    }

    #[test]
    fn alter_configs_replaces_the_set_live_and_durably() {
        let t = TestBroker::open();
        let initial = BTreeMap::from([("segment.bytes".to_owned(), "4096".to_owned())]);
        t.broker.create_topic("alter", 2, initial).unwrap();
        assert_eq!(
            legacy(
                &t.broker,
                false,
                RESOURCE_TOPIC,
                "alter",
                &[
                    ("retention.ms", Some("5000")),
                    ("message.timestamp.type", Some("LogAppendTime"))
                ]
            ),
            0
        );
        assert_eq!(
            overrides(&t.broker, "alter"),
            vec![
                (
                    "message.timestamp.type".to_owned(),
                    "LogAppendTime".to_owned()
                ),
                ("retention.ms".to_owned(), "5000".to_owned())
            ]
        );
        for log in &t.broker.topic("alter").unwrap().partitions {
            let config = log.config();
            assert_eq!(config.retention_ms, Some(5000));
            assert_eq!(config.timestamp_type, TimestampType::LogAppendTime);
            assert_eq!(
                config.segment_bytes,
                1 << 30,
                "replaced set drops segment.bytes"
            );
        }
        // validate_only and invalid changes leave everything as it was.
        assert_eq!(
            legacy(
                &t.broker,
                true,
                RESOURCE_TOPIC,
                "alter",
                &[("retention.ms", Some("1"))]
            ),
            0
        );
        assert_eq!(
            legacy(
                &t.broker,
                false,
                RESOURCE_TOPIC,
                "alter",
                &[("retention.ms", Some("x"))]
            ),
            40
        );
        assert_eq!(
            legacy(
                &t.broker,
                false,
                RESOURCE_TOPIC,
                "alter",
                &[("retention.ms", None)]
            ),
            42,
            "a null value is INVALID_REQUEST, as Kafka's broker answers"
        );
        assert_eq!(
            legacy(
                &t.broker,
                false,
                RESOURCE_TOPIC,
                "alter",
                &[("bogus", Some("1"))]
            ),
            40
        );
        assert_eq!(legacy(&t.broker, false, RESOURCE_TOPIC, "missing", &[]), 3);
        assert_eq!(
            legacy(
                &t.broker,
                false,
                RESOURCE_BROKER,
                "0",
                &[("num.partitions", Some("2"))]
            ),
            40,
            "not dynamically alterable"
        );
        assert_eq!(legacy(&t.broker, false, RESOURCE_BROKER, "0", &[]), 0);
        assert_eq!(legacy(&t.broker, false, 1, "x", &[]), 42);
        assert_eq!(
            t.broker.topic("alter").unwrap().configs["retention.ms"],
            "5000"
        );

        let t = t.restart();
        assert_eq!(
            t.broker.topic("alter").unwrap().configs["retention.ms"],
            "5000"
        );
        let log = &t.broker.topic("alter").unwrap().partitions[1];
        assert_eq!(log.config().retention_ms, Some(5000));
        assert_eq!(log.config().timestamp_type, TimestampType::LogAppendTime);
    }

    #[test]
    fn incremental_ops_apply_live_and_durably() {
        let t = TestBroker::open();
        let initial = BTreeMap::from([("segment.bytes".to_owned(), "4096".to_owned())]);
        t.broker.create_topic("inc", 1, initial).unwrap();
        for version in [0, 1] {
            let (code, message) = incremental(
                &t.broker,
                version,
                false,
                "inc",
                &[
                    ("retention.bytes", 0, Some("100000")),
                    ("flush.messages", 0, Some("1")),
                ],
            );
            assert_eq!(code, 0, "{message}");
        }
        let log = t.broker.topic("inc").unwrap().partitions[0].clone();
        assert_eq!(log.config().retention_bytes, Some(100_000));
        assert_eq!(log.config().flush_messages, Some(1));
        assert_eq!(log.config().segment_bytes, 4096, "untouched overrides stay");

        assert_eq!(
            incremental(&t.broker, 1, false, "inc", &[("segment.bytes", 1, None)]).0,
            0
        );
        assert_eq!(
            t.broker.topic("inc").unwrap().partitions[0]
                .config()
                .segment_bytes,
            1 << 30
        );
        assert_eq!(
            incremental(
                &t.broker,
                1,
                false,
                "inc",
                &[("cleanup.policy", 2, Some("compact"))]
            )
            .0,
            0
        );
        assert_eq!(
            t.broker.topic("inc").unwrap().configs["cleanup.policy"],
            "delete,compact"
        );
        assert_eq!(
            incremental(
                &t.broker,
                1,
                false,
                "inc",
                &[("cleanup.policy", 3, Some("delete"))]
            )
            .0,
            0
        );
        assert_eq!(
            t.broker.topic("inc").unwrap().configs["cleanup.policy"],
            "compact"
        );
        // A compact-only policy turns size retention off in storage.
        assert_eq!(
            t.broker.topic("inc").unwrap().partitions[0]
                .config()
                .retention_bytes,
            None
        );

        let before = overrides(&t.broker, "inc");
        type Ops<'a> = &'a [(&'a str, i8, Option<&'a str>)];
        let cases: &[(Ops, i16, &str)] = &[
            (&[("retention.ms", 2, Some("5"))], 40, "append"),
            (&[("retention.ms", 0, Some("-7"))], 40, "at least -1"),
            (&[("nope", 0, Some("1"))], 40, "Unknown"),
            (
                &[("retention.ms", 0, Some("1")), ("retention.ms", 1, None)],
                42,
                "duplicate",
            ),
            (&[("retention.ms", 9, Some("1"))], 42, "operation"),
        ];
        for (ops, code, fragment) in cases {
            let (got, message) = incremental(&t.broker, 1, false, "inc", ops);
            assert_eq!(got, *code, "{ops:?}: {message}");
            assert!(message.contains(fragment), "{ops:?}: {message}");
        }
        assert_eq!(
            incremental(&t.broker, 1, true, "inc", &[("retention.ms", 0, Some("1"))]).0,
            0
        );
        assert_eq!(overrides(&t.broker, "inc"), before);
        assert_eq!(
            incremental(
                &t.broker,
                1,
                false,
                "absent",
                &[("retention.ms", 0, Some("1"))]
            )
            .0,
            3
        );

        let t = t.restart();
        assert_eq!(overrides(&t.broker, "inc"), before);
        assert_eq!(
            t.broker.topic("inc").unwrap().partitions[0]
                .config()
                .flush_messages,
            Some(1)
        );
    }

    #[test]
    fn concurrent_incremental_alters_do_not_lose_updates() {
        let t = TestBroker::open();
        t.broker.create_topic("busy", 1, BTreeMap::new()).unwrap();
        let keys = ["retention.ms", "segment.ms", "flush.ms", "retention.bytes"];
        std::thread::scope(|scope| {
            for key in keys {
                let broker = &t.broker;
                scope.spawn(move || {
                    for i in 1..=20 {
                        let value = (1000 + i).to_string();
                        let (code, message) =
                            incremental(broker, 1, false, "busy", &[(key, 0, Some(&value))]);
                        assert_eq!(code, 0, "{message}");
                    }
                });
            }
        });
        let configs = t.broker.topic("busy").unwrap().configs.clone();
        for key in keys {
            assert_eq!(configs.get(key).map(String::as_str), Some("1020"), "{key}");
        }
    }

    #[test]
    fn broker_resources_alter_the_dynamic_sets() {
        use crate::broker::broker_config::Scope;
        let t = TestBroker::open();
        t.broker.create_topic("t", 1, BTreeMap::new()).unwrap();
        let flush = |broker: &Broker| broker.topic("t").unwrap().partitions[0].config();

        // AlterConfigs replaces the node's set (every version).
        let set = [("log.flush.interval.messages", Some("1234"))];
        assert_eq!(legacy(&t.broker, false, RESOURCE_BROKER, "0", &set), 0);
        assert_eq!(flush(&t.broker).flush_messages, Some(1234));
        let set = [("log.flush.interval.ms", Some("9223372036854775807"))];
        assert_eq!(legacy(&t.broker, false, RESOURCE_BROKER, "0", &set), 0);
        assert_eq!(flush(&t.broker).flush_messages, None, "replaced set");
        assert_eq!(
            t.broker
                .dynamic_broker_configs()
                .node
                .keys()
                .collect::<Vec<_>>(),
            vec!["log.flush.interval.ms"]
        );
        let bad = [("log.flush.interval.messages", Some("0"))];
        assert_eq!(legacy(&t.broker, false, RESOURCE_BROKER, "0", &bad), 40);
        assert_eq!(legacy(&t.broker, false, RESOURCE_BROKER, "5", &set), 42);
        assert_eq!(legacy(&t.broker, false, RESOURCE_BROKER, "zero", &set), 42);

        // IncrementalAlterConfigs edits it; "" is the cluster-wide set.
        for version in [0, 1] {
            let (code, message) = incremental_on(
                &t.broker,
                version,
                false,
                RESOURCE_BROKER,
                "0",
                &[("log.retention.ms", 0, Some("5000"))],
            );
            assert_eq!(code, 0, "{message}");
        }
        assert_eq!(flush(&t.broker).retention_ms, Some(5000));
        let (code, _) = incremental_on(
            &t.broker,
            1,
            false,
            RESOURCE_BROKER,
            "",
            &[("log.message.timestamp.type", 0, Some("LogAppendTime"))],
        );
        assert_eq!(code, 0);
        assert_eq!(
            flush(&t.broker).timestamp_type,
            TimestampType::LogAppendTime
        );
        type Ops<'a> = &'a [(&'a str, i8, Option<&'a str>)];
        let refused: &[(Ops, i16, &str)] = &[
            (&[("num.partitions", 0, Some("3"))], 40, "dynamically"),
            (&[("log.retention.ms", 2, Some("1"))], 40, "append"),
            (&[("log.retention.ms", 0, Some("-5"))], 40, "at least -1"),
            (&[("nope", 0, Some("1"))], 40, "Unknown broker config"),
            (&[("log.retention.ms", 7, Some("1"))], 42, "operation"),
        ];
        for (ops, code, fragment) in refused {
            let (got, message) = incremental_on(&t.broker, 1, false, RESOURCE_BROKER, "0", ops);
            assert_eq!(got, *code, "{ops:?}: {message}");
            assert!(message.contains(fragment), "{ops:?}: {message}");
        }
        let (code, _) = incremental_on(
            &t.broker,
            1,
            true,
            RESOURCE_BROKER,
            "0",
            &[("log.retention.ms", 1, None)],
        );
        assert_eq!(code, 0);
        assert_eq!(flush(&t.broker).retention_ms, Some(5000), "validate_only");
        let (code, _) = incremental_on(
            &t.broker,
            1,
            false,
            RESOURCE_BROKER,
            "0",
            &[("log.retention.ms", 1, None)],
        );
        assert_eq!(code, 0);
        assert_eq!(flush(&t.broker).retention_ms, Some(604_800_000));

        let t = t.restart();
        let dynamic = t.broker.dynamic_broker_configs();
        assert_eq!(
            dynamic
                .node
                .get("log.flush.interval.ms")
                .map(String::as_str),
            Some("9223372036854775807")
        );
        assert_eq!(
            dynamic
                .cluster_default
                .get("log.message.timestamp.type")
                .map(String::as_str),
            Some("LogAppendTime")
        );
        assert_eq!(
            flush(&t.broker).timestamp_type,
            TimestampType::LogAppendTime
        );
        let entries = t
            .broker
            .describe_broker_configs(Scope::ClusterDefault, None, false);
        assert_eq!(entries.len(), 1);
    }

    /// Kafka's broker answers every occurrence of a resource named twice in one request
    /// with INVALID_REQUEST and applies none of them; a config key named twice, or a null
    /// value (other than an incremental DELETE), is INVALID_REQUEST too.
    #[test]
    fn repeated_resources_keys_and_null_values_are_invalid_requests() {
        let t = TestBroker::open();
        t.broker.create_topic("twice", 1, BTreeMap::new()).unwrap();
        t.broker.create_topic("once", 1, BTreeMap::new()).unwrap();
        let value = |v: &str| Some(StrBytes::from_string(v.to_owned()));
        for version in [0, 1, 2] {
            let request = AlterConfigsRequest::default().with_resources(vec![
                legacy_resource(RESOURCE_TOPIC, "twice", &[("retention.ms", Some("1000"))]),
                legacy_resource(RESOURCE_TOPIC, "once", &[("retention.ms", Some("3000"))]),
                legacy_resource(RESOURCE_TOPIC, "twice", &[("retention.ms", Some("2000"))]),
            ]);
            let response = round_trip(
                &on_admin(&t.broker, move |b| respond_alter(request, version, b)),
                version,
            );
            let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
            assert_eq!(codes, vec![42, 0, 42], "v{version}");
        }
        assert!(overrides(&t.broker, "twice").is_empty());
        assert_eq!(
            overrides(&t.broker, "once"),
            vec![("retention.ms".to_owned(), "3000".to_owned())]
        );
        let dup_key = &[("retention.ms", Some("1")), ("retention.ms", Some("2"))];
        assert_eq!(
            legacy(&t.broker, false, RESOURCE_TOPIC, "once", dup_key),
            42
        );
        let null = &[("retention.ms", None)];
        assert_eq!(legacy(&t.broker, false, RESOURCE_TOPIC, "once", null), 42);

        let incremental_resource = |name: &str, v: &str| {
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_string(name.to_owned()))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_config_operation(0)
                        .with_value(value(v)),
                ])
        };
        for version in [0, 1] {
            let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_resource("twice", "4000"),
                incremental_resource("twice", "5000"),
                incremental_resource("once", "6000"),
            ]);
            let response = round_trip(
                &on_admin(&t.broker, move |b| respond_incremental(request, version, b)),
                version,
            );
            let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
            assert_eq!(codes, vec![42, 42, 0], "v{version}");
            assert_eq!(
                response.responses[0].error_message.as_deref(),
                Some("Each resource must appear at most once.")
            );
        }
        assert!(overrides(&t.broker, "twice").is_empty());
        let (code, message) =
            incremental(&t.broker, 1, false, "once", &[("retention.ms", 0, None)]);
        assert_eq!(
            (code, message.as_str()),
            (42, "Null value not supported for : retention.ms")
        );
        assert_eq!(
            overrides(&t.broker, "once"),
            vec![("retention.ms".to_owned(), "6000".to_owned())]
        );
    }
}
