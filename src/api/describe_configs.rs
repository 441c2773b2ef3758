//! DescribeConfigs (v1–v4): every config of a topic with its value, source, default flag,
//! synonyms and (v3+) type and documentation; and the broker resource of this node.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::broker_config::Scope;
use crate::broker::topic_config::{ConfigEntry, TopicConfig, TopicDefaults};
use crate::broker::topic_name::validate_topic_name;
use crate::broker::Broker;

/// Kafka's `ConfigResource.Type` numbers.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

/// Answers each resource independently; an error in one does not affect the others.
pub(crate) fn handle(
    request: DescribeConfigsRequest,
    version: i16,
    broker: &Broker,
) -> DescribeConfigsResponse {
    let include_documentation = version >= 3 && request.include_documentation;
    let resources = super::distinct(request.resources, |r| {
        (
            r.resource_type,
            r.resource_name.clone(),
            r.configuration_keys.clone(),
        )
    });
    let results = resources
        .into_iter()
        .map(|resource| {
            // Null or empty: every config (Kafka treats both alike).
            let keys: Option<Vec<String>> = resource
                .configuration_keys
                .filter(|keys| !keys.is_empty())
                .map(|keys| keys.iter().map(|k| k.as_str().to_owned()).collect());
            let name = resource.resource_name.as_str().to_owned();
            let described = match resource.resource_type {
                RESOURCE_TOPIC => {
                    describe_topic(broker, &name, keys.as_deref(), request.include_synonyms)
                }
                RESOURCE_BROKER => {
                    describe_broker(broker, &name, keys.as_deref(), request.include_synonyms)
                }
                other => Err((
                    ResponseError::InvalidRequest.code(),
                    format!("Unsupported resource type: {other}"),
                )),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            match described {
                Ok(entries) => result.with_configs(
                    entries
                        .iter()
                        .map(|e| wire_entry(e, include_documentation))
                        .collect(),
                ),
                Err((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(super::error_message(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The broker-wide topic defaults (static flags such as `--default-retention-ms`, and
/// dynamic broker configs) as topic-config defaults, with their sources.
pub(crate) fn topic_defaults(broker: &Broker) -> TopicDefaults {
    broker.topic_defaults()
}

/// A topic's resolved configuration. A stored override set that no longer validates (it
/// was valid when stored) is reported as INVALID_CONFIG rather than hidden.
pub(crate) fn topic_config_of(
    broker: &Broker,
    overrides: &std::collections::BTreeMap<String, String>,
) -> Result<TopicConfig, (i16, String)> {
    TopicConfig::new(overrides, &topic_defaults(broker))
        .map_err(|e| (e.error_code(), e.to_string()))
}

fn describe_topic(
    broker: &Broker,
    name: &str,
    keys: Option<&[String]>,
    include_synonyms: bool,
) -> Result<Vec<ConfigEntry>, (i16, String)> {
    validate_topic_name(name).map_err(|e| (e.error_code(), e.to_string()))?;
    let topic = broker.topic(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition.code(),
            format!("Topic '{name}' does not exist."),
        )
    })?;
    Ok(topic_config_of(broker, &topic.configs)?.describe(keys, include_synonyms))
}

/// The broker resource of `name`: `""` for the cluster-wide dynamic defaults, otherwise
/// this node's id.
pub(crate) fn broker_scope(broker: &Broker, name: &str) -> Result<Scope, (i16, String)> {
    if name.is_empty() {
        return Ok(Scope::ClusterDefault);
    }
    let invalid = |message: String| (ResponseError::InvalidRequest.code(), message);
    let id: i32 = name
        .parse()
        .map_err(|_| invalid(format!("Broker id must be an integer, but it is: {name}")))?;
    if id != broker.node_id() {
        return Err(invalid(format!(
            "Unexpected broker id, expected {} or empty string, but received {name}",
            broker.node_id()
        )));
    }
    Ok(Scope::Node)
}

/// The broker resource: `""` lists the cluster-wide dynamic configs, this node's id every
/// broker config (see `broker::broker_config`).
fn describe_broker(
    broker: &Broker,
    name: &str,
    keys: Option<&[String]>,
    include_synonyms: bool,
) -> Result<Vec<ConfigEntry>, (i16, String)> {
    let scope = broker_scope(broker, name)?;
    Ok(broker.describe_broker_configs(scope, keys, include_synonyms))
}

/// The wire form of one entry. `documentation` only when the client asked (v3+).
pub(crate) fn wire_entry(
    entry: &ConfigEntry,
    include_documentation: bool,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(entry.name.clone()))
        .with_value(entry.value.clone().map(StrBytes::from_string))
        .with_read_only(entry.read_only)
        .with_config_source(entry.source.code())
        .with_is_sensitive(entry.sensitive)
        .with_synonyms(
            entry
                .synonyms
                .iter()
                .map(|s| {
                    DescribeConfigsSynonym::default()
                        .with_name(StrBytes::from_string(s.name.clone()))
                        .with_value(s.value.clone().map(StrBytes::from_string))
                        .with_source(s.source.code())
                })
                .collect(),
        )
        .with_config_type(entry.config_type.code())
        .with_documentation(
            include_documentation.then(|| StrBytes::from_static_str(entry.documentation)),
        )
}

/// A broker on a temporary data dir for the admin handlers' unit tests.
#[cfg(test)]
pub(crate) mod fixture {
    use std::sync::Arc;

    use kafka_protocol::protocol::{Decodable, Encodable};

    use crate::broker::Broker;
    use crate::config::Config;

    pub(crate) struct TestBroker {
        pub broker: Arc<Broker>,
        pub dir: tempfile::TempDir,
    }

    impl TestBroker {
        pub(crate) fn open() -> TestBroker {
            let dir = tempfile::tempdir().unwrap();
            let broker = open_in(&dir, |_| {});
            TestBroker { broker, dir }
        }

        /// Closes this broker and opens a new one on the same data dir.
        pub(crate) fn restart(self) -> TestBroker {
            let TestBroker { broker, dir } = self;
            broker.close();
            drop(broker);
            let broker = open_in(&dir, |_| {});
            TestBroker { broker, dir }
        }
    }

    pub(crate) fn open_in(dir: &tempfile::TempDir, edit: impl FnOnce(&mut Config)) -> Arc<Broker> {
        let listen = "127.0.0.1:9092".parse().unwrap();
        let mut config = Config::with_defaults(listen, dir.path());
        edit(&mut config);
        Broker::open(config, listen).unwrap()
    }

    /// Encodes `message` at `version` and decodes it back: the handler's answer must be
    /// representable at every advertised version.
    pub(crate) fn round_trip<M: Encodable + Decodable>(message: &M, version: i16) -> M {
        let mut buf = bytes::BytesMut::new();
        message.encode(&mut buf, version).unwrap();
        let mut bytes = buf.freeze();
        let decoded = M::decode(&mut bytes, version).unwrap();
        assert!(bytes.is_empty(), "trailing bytes at version {version}");
        decoded
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;

    use super::fixture::{open_in, round_trip, TestBroker};
    use super::*;
    use crate::broker::topic_config::{ConfigSource, ConfigType};

    fn resource(kind: i8, name: &str, keys: Option<&[&str]>) -> DescribeConfigsResource {
        DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configuration_keys(keys.map(|keys| {
                keys.iter()
                    .map(|k| StrBytes::from_string((*k).to_owned()))
                    .collect()
            }))
    }

    fn describe(
        broker: &Broker,
        version: i16,
        synonyms: bool,
        docs: bool,
        resources: Vec<DescribeConfigsResource>,
    ) -> DescribeConfigsResponse {
        let request = DescribeConfigsRequest::default()
            .with_resources(resources)
            .with_include_synonyms(synonyms)
            .with_include_documentation(docs);
        round_trip(&handle(request, version, broker), version)
    }

    #[test]
    fn topic_values_sources_and_defaults_at_every_version() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open_in(&dir, |c| c.default_retention_bytes = 1 << 30);
        let overrides = BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]);
        broker.create_topic("described", 1, overrides).unwrap();
        for version in 1..=4 {
            let response = describe(
                &broker,
                version,
                true,
                true,
                vec![resource(RESOURCE_TOPIC, "described", None)],
            );
            let result = &response.results[0];
            assert_eq!(result.error_code, 0);
            let get = |name: &str| {
                result
                    .configs
                    .iter()
                    .find(|c| c.name.as_str() == name)
                    .unwrap()
            };
            let retention = get("retention.ms");
            assert_eq!(retention.value.as_deref(), Some("1000"));
            assert_eq!(retention.config_source, ConfigSource::DynamicTopic.code());
            assert_eq!(
                retention.synonyms[0].source,
                ConfigSource::DynamicTopic.code()
            );
            let bytes = get("retention.bytes");
            assert_eq!(bytes.value.as_deref(), Some("1073741824"));
            assert_eq!(bytes.config_source, ConfigSource::StaticBroker.code());
            let policy = get("cleanup.policy");
            assert_eq!(policy.value.as_deref(), Some("delete"));
            assert_eq!(policy.config_source, ConfigSource::Default.code());
            assert!(!policy.read_only);
            assert!(get("compression.type").read_only);
            if version >= 3 {
                assert_eq!(policy.config_type, ConfigType::List.code());
                assert!(policy.documentation.as_deref().unwrap().contains("compact"));
            }
        }
    }

    #[test]
    fn keys_synonyms_and_documentation_are_on_request() {
        let t = TestBroker::open();
        t.broker.create_topic("keys", 1, BTreeMap::new()).unwrap();
        let response = describe(
            &t.broker,
            4,
            false,
            false,
            vec![resource(
                RESOURCE_TOPIC,
                "keys",
                Some(&["segment.bytes", "flush.ms", "bogus"]),
            )],
        );
        let configs = &response.results[0].configs;
        let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["flush.ms", "segment.bytes"]);
        let all = describe(
            &t.broker,
            4,
            false,
            false,
            vec![resource(RESOURCE_TOPIC, "keys", Some(&[]))],
        );
        assert_eq!(
            all.results[0].configs.len(),
            crate::broker::topic_config::known_keys().count()
        );
        assert!(configs
            .iter()
            .all(|c| c.synonyms.is_empty() && c.documentation.is_none()));
        assert_eq!(configs[0].value.as_deref(), Some("9223372036854775807"));
    }

    #[test]
    fn unknown_topics_and_bad_resources_get_errors() {
        let t = TestBroker::open();
        let response = describe(
            &t.broker,
            4,
            false,
            false,
            vec![
                resource(RESOURCE_TOPIC, "missing", None),
                resource(RESOURCE_TOPIC, "bad/name", None),
                resource(RESOURCE_BROKER, "7", None),
                resource(RESOURCE_BROKER, "x", None),
                resource(99, "x", None),
                resource(RESOURCE_BROKER, "", None),
            ],
        );
        let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![3, 17, 42, 42, 42, 0]);
        assert!(response.results[5].configs.is_empty());
    }

    #[test]
    fn broker_resource_reports_node_settings() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open_in(&dir, |c| {
            c.num_partitions = 4;
            c.default_retention_ms = 60_000;
        });
        let response = describe(
            &broker,
            4,
            true,
            false,
            vec![resource(RESOURCE_BROKER, "0", None)],
        );
        let result = &response.results[0];
        assert_eq!(result.error_code, 0);
        let get = |name: &str| {
            result
                .configs
                .iter()
                .find(|c| c.name.as_str() == name)
                .unwrap()
        };
        assert_eq!(get("num.partitions").value.as_deref(), Some("4"));
        assert_eq!(
            get("num.partitions").config_source,
            ConfigSource::StaticBroker.code()
        );
        assert_eq!(get("log.retention.ms").value.as_deref(), Some("60000"));
        assert_eq!(
            get("message.max.bytes").config_source,
            ConfigSource::Default.code()
        );
        assert_eq!(get("node.id").value.as_deref(), Some("0"));
        let names: Vec<&str> = result.configs.iter().map(|c| c.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }
}
