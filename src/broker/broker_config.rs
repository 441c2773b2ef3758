//! Broker-level configs as Kafka exposes them on the broker resource of DescribeConfigs /
//! AlterConfigs / IncrementalAlterConfigs: the table of broker config names Strata
//! reports, the dynamic broker configs set at runtime, their persistence, and how they
//! become the defaults of every topic that does not override the key.
//!
//! A broker config's value is resolved in Kafka's order of precedence, each level with its
//! `config_source`:
//! 1. set dynamically for this broker, resource name `"<node id>"` (`DYNAMIC_BROKER_CONFIG`),
//! 2. set dynamically for every broker, resource name `""` (`DYNAMIC_DEFAULT_BROKER_CONFIG`),
//! 3. Strata's static configuration (`STATIC_BROKER_CONFIG`): an option given as a flag,
//!    `STRATA_*` environment variable or config-file entry, or one whose built-in value
//!    differs from Kafka's default (e.g. Strata's `group.min.session.timeout.ms`),
//! 4. Kafka's default (`DEFAULT_CONFIG`); `None` where Kafka's default is null (e.g.
//!    `log.flush.interval.ms`, `log.retention.ms`).
//!
//! Only the topic-default subset Kafka lets operators change at runtime and Strata
//! implements is dynamic (see [`BROKER_CONFIGS`] rows with [`Kind::TopicDefault`]); every
//! other name is reported read-only and refused by the alter APIs with INVALID_CONFIG.
//!
//! Synonyms: names that set the same thing (`log.retention.ms` / `.minutes` / `.hours`,
//! `log.roll.ms` / `.hours`) resolve as in Kafka: the first name in the group that has a
//! value at any level wins, so a static `log.retention.ms` beats a dynamic
//! `log.retention.hours`.
//!
//! Invariant: the dynamic sets are config records of the metadata log (resource
//! `Broker("<node id>")` and `Broker("")`), recorded before they take effect: the applier
//! derives the broker-wide defaults from the image and applies them to every partition.
//! Both sets in the image are always valid (validated before they are recorded); a set
//! recorded by another Strata version that no longer validates is ignored at apply, with
//! a warning.

use std::collections::BTreeMap;
use std::sync::RwLock;

use strata_storage::LogConfig;
use tracing::{info, warn};

use super::metadata::{controller, ConfigResource, MetadataImage, MetadataLogError};
use super::Broker;
use crate::broker::topic_config::{
    validate_override, AlterOp, ConfigEntry, ConfigError, ConfigSource, ConfigSynonym, ConfigType,
    TopicConfig, TopicDefaults,
};

const LONG_MAX: &str = "9223372036854775807";

/// Which dynamic set a broker resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Resource name `"<node id>"`: this broker only.
    Node,
    /// Resource name `""`: the cluster-wide default for every broker.
    ClusterDefault,
}

/// Why a broker config change was refused or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum BrokerConfigError {
    #[error("Unknown broker config name: {name}")]
    UnknownKey { name: String },
    #[error(
        "Cannot update these configs dynamically: {name}. Strata reads it only from its static \
         configuration (flags, STRATA_* environment variables or the config file) at start."
    )]
    NotDynamic { name: String },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("cannot record dynamic broker configs: {0}")]
    Persist(#[from] MetadataLogError),
    #[error("the broker's admin thread stopped before answering")]
    AdminUnavailable,
}

impl BrokerConfigError {
    /// INVALID_CONFIG (40) for a refused change, UNKNOWN_SERVER_ERROR (-1) when it could
    /// not be recorded.
    pub fn error_code(&self) -> i16 {
        match self {
            BrokerConfigError::Persist(_) | BrokerConfigError::AdminUnavailable => -1,
            _ => crate::broker::topic_config::INVALID_CONFIG,
        }
    }
}

/// How Strata treats one broker config.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Reported only; set by the static configuration, if at all.
    ReadOnly,
    /// Dynamically alterable (per broker and cluster-wide): the broker-level default of
    /// topic config `topic_key`. The value times `scale` is the topic config's value
    /// (hours → milliseconds), validated by the topic config's rules.
    TopicDefault { topic_key: &'static str, scale: i64 },
}

/// What the static configuration says, for the `static_value` functions.
struct StaticContext<'a> {
    config: &'a crate::config::Config,
    advertised_listener: String,
    /// Broker-level topic defaults from the static configuration alone.
    topics: TopicDefaults,
}

/// One row of the broker config table.
struct BrokerConfigDef {
    name: &'static str,
    config_type: ConfigType,
    /// Kafka's default as DescribeConfigs reports it; `None` is Kafka's null.
    default: Option<&'static str>,
    /// Names setting the same thing, in Kafka's order of precedence, this one included.
    synonyms: &'static [&'static str],
    kind: Kind,
    /// Strata's static value when it differs from Kafka's effective default.
    static_value: fn(&StaticContext) -> Option<String>,
    doc: &'static str,
}

fn no_static(_: &StaticContext) -> Option<String> {
    None
}

fn differs(value: String, kafka: &str) -> Option<String> {
    (value != kafka).then_some(value)
}

/// The static value of the option with clap id `arg_id`: reported when the operator gave
/// it explicitly or when it differs from Kafka's default.
fn given_or_differs(c: &StaticContext, arg_id: &str, value: String, kafka: &str) -> Option<String> {
    if c.config.explicitly_set.contains(arg_id) {
        Some(value)
    } else {
        differs(value, kafka)
    }
}

/// Topic configs whose broker-level default has a static option: (topic key, clap id).
const STATIC_TOPIC_DEFAULTS: &[(&str, &str)] = &[
    ("retention.bytes", "default_retention_bytes"),
    ("retention.ms", "default_retention_ms"),
    ("segment.bytes", "default_segment_bytes"),
];

const RETENTION: &[&str] = &[
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
];
const ROLL: &[&str] = &["log.roll.ms", "log.roll.hours"];
const FLUSH_MS: &[&str] = &["log.flush.interval.ms", "log.flush.scheduler.interval.ms"];

/// Every broker config Strata reports, sorted by name (DescribeConfigs order).
static BROKER_CONFIGS: &[BrokerConfigDef] = &[
    BrokerConfigDef {
        name: "advertised.listeners",
        config_type: ConfigType::String,
        default: None,
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |c| Some(c.advertised_listener.clone()),
        doc: "The address given to clients in Metadata responses (--advertised-host, \
              --advertised-port).",
    },
    BrokerConfigDef {
        name: "auto.create.topics.enable",
        config_type: ConfigType::Boolean,
        default: Some("true"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |c| {
            given_or_differs(
                c,
                "auto_create_topics",
                c.config.auto_create_topics.to_string(),
                "true",
            )
        },
        doc: "Whether unknown topics are created on Metadata and Produce requests.",
    },
    BrokerConfigDef {
        name: "broker.id",
        config_type: ConfigType::Int,
        default: Some("-1"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |c| Some(c.config.node_id.to_string()),
        doc: "This node's id (same as node.id).",
    },
    BrokerConfigDef {
        name: "compression.type",
        config_type: ConfigType::String,
        default: Some("producer"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: no_static,
        doc: "Strata stores batches exactly as the producer compressed them.",
    },
    BrokerConfigDef {
        name: "default.replication.factor",
        config_type: ConfigType::Int,
        default: Some("1"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: no_static,
        doc: "Strata is a single node: every partition has one replica.",
    },
    BrokerConfigDef {
        name: "group.initial.rebalance.delay.ms",
        config_type: ConfigType::Int,
        default: Some("3000"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |c| {
            given_or_differs(
                c,
                "group_initial_rebalance_delay_ms",
                c.config.group_initial_rebalance_delay_ms.to_string(),
                "3000",
            )
        },
        doc: "The delay before the first rebalance of a new group, in milliseconds.",
    },
    BrokerConfigDef {
        name: "group.max.session.timeout.ms",
        config_type: ConfigType::Int,
        default: Some("1800000"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |c| {
            given_or_differs(
                c,
                "group_max_session_timeout_ms",
                c.config.group_max_session_timeout_ms.to_string(),
                "1800000",
            )
        },
        doc: "The largest session timeout a group member may ask for, in milliseconds.",
    },
    BrokerConfigDef {
        name: "group.min.session.timeout.ms",
        config_type: ConfigType::Int,
        default: Some("6000"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |c| {
            given_or_differs(
                c,
                "group_min_session_timeout_ms",
                c.config.group_min_session_timeout_ms.to_string(),
                "6000",
            )
        },
        doc: "The smallest session timeout a group member may ask for, in milliseconds.",
    },
    BrokerConfigDef {
        name: "listeners",
        config_type: ConfigType::String,
        default: Some("PLAINTEXT://:9092"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |c| Some(format!("PLAINTEXT://{}", c.config.listen)),
        doc: "The address the broker listens on (--listen).",
    },
    BrokerConfigDef {
        name: "log.cleanup.policy",
        config_type: ConfigType::List,
        default: Some("delete"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: no_static,
        doc: "The default cleanup policy of topics. Set it per topic (cleanup.policy).",
    },
    BrokerConfigDef {
        name: "log.dirs",
        config_type: ConfigType::String,
        default: None,
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |c| Some(c.config.data_dir.display().to_string()),
        doc: "The directory holding partition logs and broker metadata (--data-dir).",
    },
    BrokerConfigDef {
        name: "log.flush.interval.messages",
        config_type: ConfigType::Long,
        default: Some(LONG_MAX),
        synonyms: &[],
        kind: Kind::TopicDefault {
            topic_key: "flush.messages",
            scale: 1,
        },
        static_value: |c| differs(c.topics.flush_messages.to_string(), LONG_MAX),
        doc: "Default flush.messages: force an fsync once this many messages are \
              unflushed. 9223372036854775807 never forces one.",
    },
    BrokerConfigDef {
        name: "log.flush.interval.ms",
        config_type: ConfigType::Long,
        default: None,
        synonyms: FLUSH_MS,
        kind: Kind::TopicDefault {
            topic_key: "flush.ms",
            scale: 1,
        },
        static_value: |c| differs(c.topics.flush_ms.to_string(), LONG_MAX),
        doc: "Default flush.ms: force an fsync once a message has waited this many \
              milliseconds. Unset (null) never forces one.",
    },
    BrokerConfigDef {
        name: "log.flush.scheduler.interval.ms",
        config_type: ConfigType::Long,
        default: Some(LONG_MAX),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: no_static,
        doc: "Stands in for log.flush.interval.ms when that is unset. Strata's flusher \
              makes appends durable on its own schedule.",
    },
    BrokerConfigDef {
        name: "log.index.interval.bytes",
        config_type: ConfigType::Int,
        default: Some("4096"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: no_static,
        doc: "Default index.interval.bytes. Set it per topic.",
    },
    BrokerConfigDef {
        name: "log.index.size.max.bytes",
        config_type: ConfigType::Int,
        default: Some("10485760"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: no_static,
        doc: "Default segment.index.bytes. Set it per topic.",
    },
    BrokerConfigDef {
        name: "log.message.timestamp.type",
        config_type: ConfigType::String,
        default: Some("CreateTime"),
        synonyms: &[],
        kind: Kind::TopicDefault {
            topic_key: "message.timestamp.type",
            scale: 1,
        },
        static_value: no_static,
        doc: "Default message.timestamp.type: CreateTime or LogAppendTime.",
    },
    BrokerConfigDef {
        name: "log.preallocate",
        config_type: ConfigType::Boolean,
        default: Some("false"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: no_static,
        doc: "Strata does not preallocate segment files.",
    },
    BrokerConfigDef {
        name: "log.retention.bytes",
        config_type: ConfigType::Long,
        default: Some("-1"),
        synonyms: &[],
        kind: Kind::TopicDefault {
            topic_key: "retention.bytes",
            scale: 1,
        },
        static_value: |c| {
            given_or_differs(
                c,
                "default_retention_bytes",
                c.topics.retention_bytes.to_string(),
                "-1",
            )
        },
        doc: "Default retention.bytes: the size a partition may reach before old segments \
              are deleted; -1 is unlimited (--default-retention-bytes).",
    },
    BrokerConfigDef {
        name: "log.retention.check.interval.ms",
        config_type: ConfigType::Long,
        default: Some("300000"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |c| {
            given_or_differs(
                c,
                "log_retention_check_interval_ms",
                c.config.log_retention_check_interval_ms.to_string(),
                "300000",
            )
        },
        doc: "How often retention runs, in milliseconds.",
    },
    BrokerConfigDef {
        name: "log.retention.hours",
        config_type: ConfigType::Int,
        default: Some("168"),
        synonyms: RETENTION,
        kind: Kind::TopicDefault {
            topic_key: "retention.ms",
            scale: 3_600_000,
        },
        static_value: no_static,
        doc: "Default retention.ms in hours; log.retention.minutes and log.retention.ms \
              take precedence. Negative keeps data forever.",
    },
    BrokerConfigDef {
        name: "log.retention.minutes",
        config_type: ConfigType::Int,
        default: None,
        synonyms: RETENTION,
        kind: Kind::TopicDefault {
            topic_key: "retention.ms",
            scale: 60_000,
        },
        static_value: no_static,
        doc: "Default retention.ms in minutes; log.retention.ms takes precedence. \
              Negative keeps data forever.",
    },
    BrokerConfigDef {
        name: "log.retention.ms",
        config_type: ConfigType::Long,
        default: None,
        synonyms: RETENTION,
        kind: Kind::TopicDefault {
            topic_key: "retention.ms",
            scale: 1,
        },
        static_value: |c| {
            given_or_differs(
                c,
                "default_retention_ms",
                c.topics.retention_ms.to_string(),
                "604800000",
            )
        },
        doc: "Default retention.ms: how long a segment is kept after its newest record; -1 \
              keeps data forever (--default-retention-ms).",
    },
    BrokerConfigDef {
        name: "log.roll.hours",
        config_type: ConfigType::Int,
        default: Some("168"),
        synonyms: ROLL,
        kind: Kind::TopicDefault {
            topic_key: "segment.ms",
            scale: 3_600_000,
        },
        static_value: no_static,
        doc: "Default segment.ms in hours; log.roll.ms takes precedence.",
    },
    BrokerConfigDef {
        name: "log.roll.ms",
        config_type: ConfigType::Long,
        default: None,
        synonyms: ROLL,
        kind: Kind::TopicDefault {
            topic_key: "segment.ms",
            scale: 1,
        },
        static_value: |c| differs(c.topics.segment_ms.to_string(), "604800000"),
        doc: "Default segment.ms: the age at which the active segment is sealed.",
    },
    BrokerConfigDef {
        name: "log.segment.bytes",
        config_type: ConfigType::Int,
        default: Some("1073741824"),
        synonyms: &[],
        kind: Kind::TopicDefault {
            topic_key: "segment.bytes",
            scale: 1,
        },
        static_value: |c| {
            given_or_differs(
                c,
                "default_segment_bytes",
                c.topics.segment_bytes.to_string(),
                "1073741824",
            )
        },
        doc: "Default segment.bytes: the size at which the active segment is sealed \
              (--default-segment-bytes).",
    },
    BrokerConfigDef {
        name: "message.max.bytes",
        config_type: ConfigType::Int,
        default: Some("1048588"),
        synonyms: &[],
        kind: Kind::TopicDefault {
            topic_key: "max.message.bytes",
            scale: 1,
        },
        static_value: |c| differs(c.topics.max_message_bytes.to_string(), "1048588"),
        doc: "Default max.message.bytes: the largest record batch accepted.",
    },
    BrokerConfigDef {
        name: "min.insync.replicas",
        config_type: ConfigType::Int,
        default: Some("1"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: no_static,
        doc: "Strata is one node whose promise is its disk; the only value is 1.",
    },
    BrokerConfigDef {
        name: "node.id",
        config_type: ConfigType::Int,
        default: Some("-1"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |c| Some(c.config.node_id.to_string()),
        doc: "This node's id (--node-id).",
    },
    BrokerConfigDef {
        name: "num.partitions",
        config_type: ConfigType::Int,
        default: Some("1"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |c| {
            given_or_differs(
                c,
                "num_partitions",
                c.config.num_partitions.to_string(),
                "1",
            )
        },
        doc: "The partition count of auto-created topics and of CreateTopics without a \
              count (--num-partitions).",
    },
    BrokerConfigDef {
        name: "offsets.retention.minutes",
        config_type: ConfigType::Int,
        default: Some("10080"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |c| {
            given_or_differs(
                c,
                "offsets_retention_minutes",
                c.config.offsets_retention_minutes.to_string(),
                "10080",
            )
        },
        doc: "How long the committed offsets of an empty group are kept, in minutes.",
    },
    BrokerConfigDef {
        name: "offsets.topic.replication.factor",
        config_type: ConfigType::Short,
        default: Some("3"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |_| Some("1".to_owned()),
        doc: "Strata keeps committed offsets in its own log on this node.",
    },
    BrokerConfigDef {
        name: "socket.request.max.bytes",
        config_type: ConfigType::Int,
        default: Some("104857600"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: |c| {
            given_or_differs(
                c,
                "socket_request_max_bytes",
                c.config.socket_request_max_bytes.to_string(),
                "104857600",
            )
        },
        doc: "The largest request frame accepted, in bytes.",
    },
    BrokerConfigDef {
        name: "unclean.leader.election.enable",
        config_type: ConfigType::Boolean,
        default: Some("false"),
        synonyms: &[],
        kind: Kind::ReadOnly,
        static_value: no_static,
        doc: "Strata is a single node; there is no other replica to elect.",
    },
];

/// The topic configs dynamic broker configs provide defaults for, each with its broker
/// names in Kafka's order of precedence.
const TOPIC_DEFAULT_GROUPS: &[(&str, &[&str])] = &[
    ("flush.messages", &["log.flush.interval.messages"]),
    ("flush.ms", &["log.flush.interval.ms"]),
    ("max.message.bytes", &["message.max.bytes"]),
    ("message.timestamp.type", &["log.message.timestamp.type"]),
    ("retention.bytes", &["log.retention.bytes"]),
    ("retention.ms", RETENTION),
    ("segment.bytes", &["log.segment.bytes"]),
    ("segment.ms", ROLL),
];

fn find_row(name: &str) -> Option<&'static BrokerConfigDef> {
    BROKER_CONFIGS.iter().find(|row| row.name == name)
}

/// True when the name is a broker config a client may change at runtime.
pub fn is_dynamic(name: &str) -> bool {
    find_row(name).is_some_and(|row| matches!(row.kind, Kind::TopicDefault { .. }))
}

/// Validates a dynamic broker config `name = value`. Returns `(canonical broker value,
/// topic config key, topic config value)`: the text stored and reported, and what it
/// means as the default of the topic config.
fn validate_dynamic(
    name: &str,
    value: &str,
) -> Result<(String, &'static str, String), BrokerConfigError> {
    let row = find_row(name).ok_or_else(|| BrokerConfigError::UnknownKey {
        name: name.to_owned(),
    })?;
    let Kind::TopicDefault { topic_key, scale } = row.kind else {
        return Err(BrokerConfigError::NotDynamic {
            name: name.to_owned(),
        });
    };
    let trimmed = value.trim();
    let invalid = |reason: String| ConfigError::InvalidValue {
        name: name.to_owned(),
        value: value.to_owned(),
        reason,
    };
    let not_a_number = |java: &str| invalid(format!("Not a number of type {java}"));
    let (canonical, topic_value) = match row.config_type {
        ConfigType::Long => {
            let v: i64 = trimmed.parse().map_err(|_| not_a_number("LONG"))?;
            (v.to_string(), scaled(v, scale))
        }
        ConfigType::Int => {
            let v: i32 = trimmed.parse().map_err(|_| not_a_number("INT"))?;
            (v.to_string(), scaled(i64::from(v), scale))
        }
        _ => (trimmed.to_owned(), trimmed.to_owned()),
    };
    // The topic config's rules apply; its error is reported under the broker name.
    let topic_value = validate_override(topic_key, &topic_value).map_err(|e| match e {
        ConfigError::InvalidValue { reason, .. } => invalid(reason),
        other => other,
    })?;
    Ok((canonical, topic_key, topic_value))
}

/// `value * scale` as text. A negative scaled time (hours, minutes) means "never", as in
/// Kafka, and becomes -1.
fn scaled(value: i64, scale: i64) -> String {
    if scale == 1 {
        value.to_string()
    } else if value < 0 {
        "-1".to_owned()
    } else {
        value.saturating_mul(scale).to_string()
    }
}

/// The dynamic broker configs: broker config name → canonical value, per scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicConfigs {
    pub node: BTreeMap<String, String>,
    pub cluster_default: BTreeMap<String, String>,
}

impl DynamicConfigs {
    fn scope(&self, scope: Scope) -> &BTreeMap<String, String> {
        match scope {
            Scope::Node => &self.node,
            Scope::ClusterDefault => &self.cluster_default,
        }
    }

    fn scope_mut(&mut self, scope: Scope) -> &mut BTreeMap<String, String> {
        match scope {
            Scope::Node => &mut self.node,
            Scope::ClusterDefault => &mut self.cluster_default,
        }
    }

    /// The value of broker config `name` at a dynamic level, with its source.
    fn get(&self, name: &str) -> Option<(&str, ConfigSource)> {
        self.node
            .get(name)
            .map(|v| (v.as_str(), ConfigSource::DynamicBroker))
            .or_else(|| {
                self.cluster_default
                    .get(name)
                    .map(|v| (v.as_str(), ConfigSource::DynamicDefaultBroker))
            })
    }

    /// Broker-level topic defaults: `static_defaults` with the dynamic configs applied in
    /// Kafka's order of precedence (see the module doc).
    pub fn resolve(&self, static_defaults: &TopicDefaults) -> Result<TopicDefaults, ConfigError> {
        let kafka = TopicDefaults::default();
        let mut out = static_defaults.clone();
        for (topic_key, names) in TOPIC_DEFAULT_GROUPS {
            for (i, name) in names.iter().enumerate() {
                if let Some((value, source)) = self.get(name) {
                    let (_, _, topic_value) =
                        validate_dynamic(name, value).map_err(|e| match e {
                            BrokerConfigError::Invalid(e) => e,
                            other => ConfigError::InvalidValue {
                                name: (*name).to_owned(),
                                value: value.to_owned(),
                                reason: other.to_string(),
                            },
                        })?;
                    out.set(topic_key, &topic_value)?;
                    out.sources.insert(topic_key, source);
                    break;
                }
                // A static value lives under the group's first name and beats dynamic
                // values of the later names.
                let static_set = static_defaults.sources.get(topic_key)
                    == Some(&ConfigSource::StaticBroker)
                    || differs_from_kafka(static_defaults, &kafka, topic_key);
                if i == 0 && static_set {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Drops entries that no longer validate (with a warning), so a stored set written by
    /// another Strata version cannot stop the broker from starting.
    fn retain_valid(&mut self) {
        for (scope, map) in [
            ("node", &mut self.node),
            ("cluster-default", &mut self.cluster_default),
        ] {
            map.retain(|name, value| match validate_dynamic(name, value) {
                Ok(_) => true,
                Err(e) => {
                    warn!(scope, name = %name, value = %value, error = %e,
                          "ignoring stored dynamic broker config");
                    false
                }
            });
        }
    }
}

fn differs_from_kafka(mine: &TopicDefaults, kafka: &TopicDefaults, topic_key: &str) -> bool {
    let pick = |d: &TopicDefaults| -> String {
        match topic_key {
            "retention.ms" => d.retention_ms.to_string(),
            "retention.bytes" => d.retention_bytes.to_string(),
            "segment.bytes" => d.segment_bytes.to_string(),
            "segment.ms" => d.segment_ms.to_string(),
            "max.message.bytes" => d.max_message_bytes.to_string(),
            "flush.messages" => d.flush_messages.to_string(),
            "flush.ms" => d.flush_ms.to_string(),
            "message.timestamp.type" => format!("{:?}", d.message_timestamp_type),
            _ => String::new(),
        }
    };
    pick(mine) != pick(kafka)
}

/// IncrementalAlterConfigs on a dynamic set: SET and DELETE (DELETE of an unset key is a
/// no-op); APPEND and SUBTRACT only exist for list configs, and no dynamic broker config is
/// a list. Values are validated when the result is stored.
pub fn apply_ops<'a, I>(
    current: &BTreeMap<String, String>,
    ops: I,
) -> Result<BTreeMap<String, String>, BrokerConfigError>
where
    I: IntoIterator<Item = (&'a str, &'a AlterOp)>,
{
    let mut out = current.clone();
    for (name, op) in ops {
        let row = find_row(name).ok_or_else(|| BrokerConfigError::UnknownKey {
            name: name.to_owned(),
        })?;
        match op {
            AlterOp::Set(value) => {
                out.insert(name.to_owned(), value.clone());
            }
            AlterOp::Delete => {
                out.remove(name);
            }
            AlterOp::Append(_) | AlterOp::Subtract(_) => {
                let op = if matches!(op, AlterOp::Append(_)) {
                    "append"
                } else {
                    "subtract"
                };
                if row.config_type != ConfigType::List || !is_dynamic(name) {
                    return Err(ConfigError::OperationNotAllowed {
                        name: name.to_owned(),
                        op,
                    }
                    .into());
                }
            }
        }
    }
    Ok(out)
}

/// The dynamic broker configs of this broker and the topic defaults they make, behind one
/// lock so readers see a consistent pair.
#[derive(Debug)]
pub struct BrokerConfigs {
    node_id: i32,
    /// Broker-level topic defaults from the static configuration alone.
    static_defaults: TopicDefaults,
    static_log_config: LogConfig,
    state: RwLock<State>,
}

#[derive(Debug, Clone)]
struct State {
    dynamic: DynamicConfigs,
    defaults: TopicDefaults,
    log_config: LogConfig,
}

impl BrokerConfigs {
    /// The static configuration alone (no dynamic configs until [`BrokerConfigs::apply_image`]).
    pub fn new(config: &crate::config::Config) -> BrokerConfigs {
        let static_log_config = super::default_log_config(config);
        let mut static_defaults = TopicDefaults::from_log_config(&static_log_config);
        for (topic_key, arg_id) in STATIC_TOPIC_DEFAULTS {
            if config.explicitly_set.contains(*arg_id) {
                static_defaults
                    .sources
                    .insert(topic_key, ConfigSource::StaticBroker);
            }
        }
        let state = derive_state(&DynamicConfigs::default(), &static_defaults).unwrap_or(State {
            dynamic: DynamicConfigs::default(),
            defaults: static_defaults.clone(),
            log_config: static_log_config.clone(),
        });
        BrokerConfigs {
            node_id: config.node_id,
            static_defaults,
            static_log_config,
            state: RwLock::new(state),
        }
    }

    /// Takes the dynamic configs of `image` (this node's and the cluster-wide ones) on top
    /// of the static configuration. Entries that no longer validate are ignored (logged).
    pub fn apply_image(&self, image: &MetadataImage) {
        let mut dynamic = DynamicConfigs {
            node: image.configs.broker(&self.node_id.to_string()),
            cluster_default: image.configs.broker(""),
        };
        dynamic.retain_valid();
        let state = match derive_state(&dynamic, &self.static_defaults) {
            Ok(state) => state,
            Err(e) => {
                warn!(error = %e, "recorded dynamic broker configs do not combine; ignoring them");
                derive_state(&DynamicConfigs::default(), &self.static_defaults).unwrap_or(State {
                    dynamic: DynamicConfigs::default(),
                    defaults: self.static_defaults.clone(),
                    log_config: self.static_log_config.clone(),
                })
            }
        };
        if state.dynamic != self.dynamic() {
            info!(node = ?state.dynamic.node, cluster_default = ?state.dynamic.cluster_default,
                  "dynamic broker configs in effect");
        }
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Every write replaces the whole state in one assignment, so a poisoned lock still
        // holds a consistent value.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Broker-wide log settings (static + dynamic); topic overrides apply on top.
    pub fn log_config(&self) -> LogConfig {
        self.read().log_config.clone()
    }

    /// Broker-level topic defaults with their sources.
    pub fn topic_defaults(&self) -> TopicDefaults {
        self.read().defaults.clone()
    }

    /// The current dynamic configs.
    pub fn dynamic(&self) -> DynamicConfigs {
        self.read().dynamic.clone()
    }

    /// The metadata resource of a scope.
    fn resource(&self, scope: Scope) -> ConfigResource {
        match scope {
            Scope::Node => ConfigResource::Broker(self.node_id.to_string()),
            Scope::ClusterDefault => ConfigResource::Broker(String::new()),
        }
    }
}

fn derive_state(
    dynamic: &DynamicConfigs,
    static_defaults: &TopicDefaults,
) -> Result<State, ConfigError> {
    let defaults = dynamic.resolve(static_defaults)?;
    let no_overrides: [(&str, &str); 0] = [];
    let log_config = TopicConfig::new(no_overrides, &defaults)?.log_config();
    Ok(State {
        dynamic: dynamic.clone(),
        defaults,
        log_config,
    })
}

impl Broker {
    /// Broker-level topic defaults (static and dynamic), with their sources.
    pub fn topic_defaults(&self) -> TopicDefaults {
        self.broker_configs.topic_defaults()
    }

    /// The dynamic broker configs currently in effect (canonical values).
    pub fn dynamic_broker_configs(&self) -> DynamicConfigs {
        self.broker_configs.dynamic()
    }

    /// DescribeConfigs of the broker resource: every broker config (scope `Node`) or the
    /// cluster-wide dynamic ones only (scope `ClusterDefault`, as Kafka answers for `""`),
    /// sorted by name; only the names in `keys` when given.
    pub fn describe_broker_configs(
        &self,
        scope: Scope,
        keys: Option<&[String]>,
        include_synonyms: bool,
    ) -> Vec<ConfigEntry> {
        let ctx = StaticContext {
            config: self.config(),
            advertised_listener: format!(
                "PLAINTEXT://{}:{}",
                self.advertised_host(),
                self.advertised_port()
            ),
            topics: self.broker_configs.static_defaults.clone(),
        };
        let dynamic = self.broker_configs.dynamic();
        BROKER_CONFIGS
            .iter()
            .filter(|row| keys.is_none_or(|keys| keys.iter().any(|k| k == row.name)))
            .filter(|row| scope == Scope::Node || dynamic.cluster_default.contains_key(row.name))
            .map(|row| entry(row, scope, &ctx, &dynamic, include_synonyms))
            .collect()
    }

    /// Read-modify-write of one dynamic set: `change` gets the current set and returns
    /// the complete new one, which is validated, recorded in the metadata log and then
    /// applied live (by the applier) to every partition whose topic does not override the
    /// key. With `validate_only` nothing changes. Returns the stored (canonical) set.
    /// Blocking: runs on the admin thread (so two alterations cannot lose each other's
    /// change) and waits for it.
    pub fn update_broker_configs<F>(
        &self,
        scope: Scope,
        validate_only: bool,
        change: F,
    ) -> Result<BTreeMap<String, String>, BrokerConfigError>
    where
        F: FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, BrokerConfigError>
            + Send
            + 'static,
    {
        self.run_admin(move |broker| broker.alter_broker_configs(scope, validate_only, change))
            .map_err(|_| BrokerConfigError::AdminUnavailable)?
    }

    /// [`Broker::update_broker_configs`] on the admin thread.
    pub(crate) fn alter_broker_configs(
        &self,
        scope: Scope,
        validate_only: bool,
        change: impl FnOnce(
            &BTreeMap<String, String>,
        ) -> Result<BTreeMap<String, String>, BrokerConfigError>,
    ) -> Result<BTreeMap<String, String>, BrokerConfigError> {
        let mut dynamic = self.broker_configs.dynamic();
        let current = dynamic.scope(scope).clone();
        let requested = change(&current)?;
        let mut canonical = BTreeMap::new();
        for (name, value) in &requested {
            let (value, _, _) = validate_dynamic(name, value)?;
            canonical.insert(name.clone(), value);
        }
        *dynamic.scope_mut(scope) = canonical.clone();
        derive_state(&dynamic, &self.broker_configs.static_defaults)?;
        if validate_only {
            return Ok(canonical);
        }
        // Against what is recorded (which may hold entries ignored as no longer valid).
        let resource = self.broker_configs.resource(scope);
        let recorded = self
            .image()
            .configs
            .get(&resource)
            .cloned()
            .unwrap_or_default();
        let records = controller::config_changes(&resource, &recorded, &canonical);
        if !records.is_empty() {
            self.commit(records)?;
        }
        info!(?scope, configs = ?canonical, "altered dynamic broker configs");
        Ok(canonical)
    }
}

/// The value of broker config `name` at one level (Kafka's `configSynonyms` levels).
fn level_value(
    level: ConfigSource,
    name: &str,
    ctx: &StaticContext,
    dynamic: &DynamicConfigs,
) -> Option<String> {
    match level {
        ConfigSource::DynamicBroker => dynamic.node.get(name).cloned(),
        ConfigSource::DynamicDefaultBroker => dynamic.cluster_default.get(name).cloned(),
        ConfigSource::StaticBroker => find_row(name).and_then(|row| (row.static_value)(ctx)),
        ConfigSource::Default => find_row(name).and_then(|row| row.default.map(str::to_owned)),
        ConfigSource::DynamicTopic => None,
    }
}

/// One DescribeConfigs entry, as Kafka's `createBrokerConfigEntry` builds it: the value of
/// this very name at the highest level that has one, synonyms level by level (names in
/// precedence order within a level) starting at this name, source of the first synonym.
fn entry(
    row: &'static BrokerConfigDef,
    scope: Scope,
    ctx: &StaticContext,
    dynamic: &DynamicConfigs,
    include_synonyms: bool,
) -> ConfigEntry {
    let levels: &[ConfigSource] = match scope {
        Scope::Node => &[
            ConfigSource::DynamicBroker,
            ConfigSource::DynamicDefaultBroker,
            ConfigSource::StaticBroker,
            ConfigSource::Default,
        ],
        Scope::ClusterDefault => &[
            ConfigSource::DynamicDefaultBroker,
            ConfigSource::StaticBroker,
            ConfigSource::Default,
        ],
    };
    let names: &[&str] = if row.synonyms.is_empty() {
        std::slice::from_ref(&row.name)
    } else {
        row.synonyms
    };
    let mut synonyms: Vec<ConfigSynonym> = levels
        .iter()
        .flat_map(|level| {
            names.iter().filter_map(move |name| {
                level_value(*level, name, ctx, dynamic).map(|value| ConfigSynonym {
                    name: (*name).to_owned(),
                    value: Some(value),
                    source: *level,
                })
            })
        })
        .collect();
    let first_own = synonyms
        .iter()
        .position(|s| s.name == row.name)
        .unwrap_or(synonyms.len());
    synonyms.drain(..first_own);
    let value = synonyms
        .iter()
        .find(|s| s.name == row.name)
        .and_then(|s| s.value.clone());
    let source = synonyms.first().map_or(ConfigSource::Default, |s| s.source);
    if !include_synonyms {
        synonyms.clear();
    }
    ConfigEntry {
        name: row.name.to_owned(),
        value,
        source,
        is_default: source == ConfigSource::Default,
        read_only: !matches!(row.kind, Kind::TopicDefault { .. }),
        sensitive: false,
        synonyms,
        config_type: row.config_type,
        documentation: row.doc,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use strata_storage::TimestampType;

    use super::*;
    use crate::api::describe_configs::fixture::{open_in, TestBroker};

    /// (name, value, Ok(canonical) | Err(message fragment)).
    #[test]
    fn dynamic_validation_table() {
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("log.flush.interval.messages", "1234", Ok("1234")),
            ("log.flush.interval.messages", " 7 ", Ok("7")),
            (
                "log.flush.interval.messages",
                "0",
                Err("Value must be at least 1"),
            ),
            (
                "log.flush.interval.messages",
                "x",
                Err("Not a number of type LONG"),
            ),
            ("log.flush.interval.ms", LONG_MAX, Ok(LONG_MAX)),
            ("log.flush.interval.ms", "0", Ok("0")),
            ("log.retention.ms", "-1", Ok("-1")),
            ("log.retention.ms", "-2", Err("at least -1")),
            ("log.retention.hours", "-1", Ok("-1")),
            ("log.retention.hours", "2", Ok("2")),
            (
                "log.retention.hours",
                "3000000000",
                Err("Not a number of type INT"),
            ),
            ("log.retention.minutes", "30", Ok("30")),
            ("log.roll.hours", "0", Err("Value must be at least 1")),
            ("log.roll.ms", "10", Ok("10")),
            ("log.segment.bytes", "13", Err("Value must be at least 14")),
            ("log.retention.bytes", "4096", Ok("4096")),
            ("message.max.bytes", "-1", Err("Value must be at least 0")),
            (
                "log.message.timestamp.type",
                "LogAppendTime",
                Ok("LogAppendTime"),
            ),
            (
                "log.message.timestamp.type",
                "Later",
                Err("String must be one of"),
            ),
            (
                "num.partitions",
                "2",
                Err("Cannot update these configs dynamically"),
            ),
            (
                "log.dirs",
                "/tmp",
                Err("Cannot update these configs dynamically"),
            ),
            ("no.such.config", "1", Err("Unknown broker config name")),
        ];
        for (name, value, expected) in cases {
            match (expected, validate_dynamic(name, value)) {
                (Ok(want), Ok((have, _, _))) => assert_eq!(&have, want, "{name}={value:?}"),
                (Err(fragment), Err(e)) => {
                    assert_eq!(e.error_code(), 40, "{name}={value:?}");
                    let message = e.to_string();
                    assert!(message.contains(fragment), "{name}={value:?}: {message}");
                    assert!(message.contains(name), "{name}={value:?}: {message}");
                }
                (expected, got) => panic!("{name}={value:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    fn dynamic(node: &[(&str, &str)], cluster: &[(&str, &str)]) -> DynamicConfigs {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        DynamicConfigs {
            node: map(node),
            cluster_default: map(cluster),
        }
    }

    /// (static retention.ms, node set, cluster set, expected retention.ms, expected source).
    #[test]
    fn retention_precedence_table() {
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(i64, Pairs, Pairs, i64, Option<ConfigSource>)] = &[
            (604_800_000, &[], &[], 604_800_000, None),
            (60_000, &[], &[], 60_000, None),
            (
                604_800_000,
                &[("log.retention.hours", "1")],
                &[],
                3_600_000,
                Some(ConfigSource::DynamicBroker),
            ),
            // A static log.retention.ms beats a dynamic log.retention.hours.
            (60_000, &[("log.retention.hours", "1")], &[], 60_000, None),
            (
                60_000,
                &[("log.retention.ms", "5000")],
                &[],
                5000,
                Some(ConfigSource::DynamicBroker),
            ),
            (
                604_800_000,
                &[],
                &[("log.retention.minutes", "2")],
                120_000,
                Some(ConfigSource::DynamicDefaultBroker),
            ),
            // The node level beats the cluster level for the same name...
            (
                604_800_000,
                &[("log.retention.ms", "1000")],
                &[("log.retention.ms", "2000")],
                1000,
                Some(ConfigSource::DynamicBroker),
            ),
            // ...but a higher-precedence name at the cluster level beats a lower one here.
            (
                604_800_000,
                &[("log.retention.hours", "1")],
                &[("log.retention.ms", "2000")],
                2000,
                Some(ConfigSource::DynamicDefaultBroker),
            ),
            (
                604_800_000,
                &[("log.retention.hours", "-1")],
                &[],
                -1,
                Some(ConfigSource::DynamicBroker),
            ),
        ];
        for (static_ms, node, cluster, want, source) in cases {
            let static_defaults = TopicDefaults {
                retention_ms: *static_ms,
                ..TopicDefaults::default()
            };
            let resolved = dynamic(node, cluster).resolve(&static_defaults).unwrap();
            assert_eq!(resolved.retention_ms, *want, "{node:?} {cluster:?}");
            assert_eq!(
                resolved.sources.get("retention.ms").copied(),
                *source,
                "{node:?} {cluster:?}"
            );
        }
    }

    #[test]
    fn every_dynamic_name_reaches_its_topic_default() {
        let set = dynamic(
            &[
                ("log.flush.interval.messages", "10"),
                ("log.flush.interval.ms", "20"),
                ("message.max.bytes", "30"),
                ("log.message.timestamp.type", "LogAppendTime"),
                ("log.retention.bytes", "40"),
                ("log.segment.bytes", "50"),
                ("log.roll.hours", "2"),
            ],
            &[],
        );
        let d = set.resolve(&TopicDefaults::default()).unwrap();
        assert_eq!(d.flush_messages, 10);
        assert_eq!(d.flush_ms, 20);
        assert_eq!(d.max_message_bytes, 30);
        assert_eq!(d.message_timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(d.retention_bytes, 40);
        assert_eq!(d.segment_bytes, 50);
        assert_eq!(d.segment_ms, 7_200_000);
        assert_eq!(d.sources.len(), 7);
        // Every dynamic row is covered by a topic-default group.
        for row in BROKER_CONFIGS {
            if let Kind::TopicDefault { topic_key, .. } = row.kind {
                let group = TOPIC_DEFAULT_GROUPS.iter().find(|(k, _)| *k == topic_key);
                assert!(
                    group.is_some_and(|(_, names)| names.contains(&row.name)),
                    "{}",
                    row.name
                );
            }
        }
    }

    #[test]
    fn table_is_sorted_and_synonym_groups_are_known() {
        let names: Vec<&str> = BROKER_CONFIGS.iter().map(|r| r.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        for row in BROKER_CONFIGS {
            assert!(
                row.synonyms.is_empty() || row.synonyms.contains(&row.name),
                "{}",
                row.name
            );
            for synonym in row.synonyms {
                assert!(find_row(synonym).is_some(), "{synonym}");
            }
        }
    }

    #[test]
    fn incremental_ops_on_a_dynamic_set() {
        let current = BTreeMap::from([("log.retention.ms".to_owned(), "1000".to_owned())]);
        let set = AlterOp::Set("5".into());
        let out = apply_ops(
            &current,
            [
                ("log.flush.interval.messages", &set),
                ("log.retention.ms", &AlterOp::Delete),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            BTreeMap::from([("log.flush.interval.messages".to_owned(), "5".to_owned())])
        );
        let append = AlterOp::Append("x".into());
        let err = apply_ops(&current, [("log.retention.ms", &append)]).unwrap_err();
        assert!(err.to_string().contains("append"), "{err}");
        assert!(apply_ops(&current, [("bogus", &set)]).is_err());
    }

    fn entry_of(entries: &[ConfigEntry], name: &str) -> ConfigEntry {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} listed"))
            .clone()
    }

    #[test]
    fn describe_reports_kafka_values_and_sources() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open_in(&dir, |c| {
            c.num_partitions = 3;
            c.default_retention_ms = 60_000;
        });
        let entries = broker.describe_broker_configs(Scope::Node, None, true);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names.len(), BROKER_CONFIGS.len());

        let flush = entry_of(&entries, "log.flush.interval.messages");
        assert_eq!(flush.value.as_deref(), Some(LONG_MAX));
        assert_eq!(flush.source, ConfigSource::Default);
        assert!(flush.is_default && !flush.read_only);

        // Kafka's null default: no value, and the scheduler synonym is not listed.
        let flush_ms = entry_of(&entries, "log.flush.interval.ms");
        assert_eq!(flush_ms.value, None);
        assert_eq!(flush_ms.source, ConfigSource::Default);
        assert!(flush_ms.synonyms.is_empty());

        let retention = entry_of(&entries, "log.retention.ms");
        assert_eq!(retention.value.as_deref(), Some("60000"));
        assert_eq!(retention.source, ConfigSource::StaticBroker);
        let synonym_names: Vec<&str> = retention.synonyms.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            synonym_names,
            vec!["log.retention.ms", "log.retention.hours"]
        );
        let hours = entry_of(&entries, "log.retention.hours");
        assert_eq!(hours.value.as_deref(), Some("168"));
        assert_eq!(hours.source, ConfigSource::Default);

        let partitions = entry_of(&entries, "num.partitions");
        assert_eq!(partitions.value.as_deref(), Some("3"));
        assert_eq!(partitions.source, ConfigSource::StaticBroker);
        assert!(partitions.read_only);
        assert_eq!(entry_of(&entries, "node.id").value.as_deref(), Some("0"));
        assert_eq!(
            entry_of(&entries, "log.dirs").value.as_deref(),
            Some(dir.path().to_str().unwrap())
        );
        assert_eq!(
            entry_of(&entries, "listeners").value.as_deref(),
            Some("PLAINTEXT://127.0.0.1:9092")
        );

        let some = broker.describe_broker_configs(
            Scope::Node,
            Some(&["message.max.bytes".to_owned(), "bogus".to_owned()]),
            false,
        );
        assert_eq!(some.len(), 1);
        assert!(some[0].synonyms.is_empty());
        // Nothing set cluster-wide: the "" resource lists nothing.
        assert!(broker
            .describe_broker_configs(Scope::ClusterDefault, None, true)
            .is_empty());
    }

    fn set(broker: &Broker, scope: Scope, pairs: &[(&str, &str)]) -> Result<(), BrokerConfigError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        broker
            .update_broker_configs(scope, false, |_| Ok(map))
            .map(|_| ())
    }

    #[test]
    fn alter_is_live_for_topics_without_overrides_and_survives_restart() {
        let t = TestBroker::open();
        t.broker.create_topic("plain", 2, BTreeMap::new()).unwrap();
        let own = BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]);
        t.broker.create_topic("own", 1, own).unwrap();

        set(
            &t.broker,
            Scope::Node,
            &[
                ("log.flush.interval.messages", "1234"),
                ("log.retention.ms", "5000"),
            ],
        )
        .unwrap();
        for log in &t.broker.topic("plain").unwrap().partitions {
            assert_eq!(log.config().flush_messages, Some(1234));
            assert_eq!(log.config().retention_ms, Some(5000));
        }
        let own_log = t.broker.topic("own").unwrap().partitions[0].clone();
        assert_eq!(
            own_log.config().retention_ms,
            Some(1000),
            "topic override wins"
        );
        assert_eq!(own_log.config().flush_messages, Some(1234));

        let entries = t.broker.describe_broker_configs(Scope::Node, None, true);
        let flush = entry_of(&entries, "log.flush.interval.messages");
        assert_eq!(flush.value.as_deref(), Some("1234"));
        assert_eq!(flush.source, ConfigSource::DynamicBroker);
        assert!(!flush.is_default && !flush.read_only);
        assert_eq!(flush.synonyms.len(), 2);
        assert_eq!(flush.synonyms[1].source, ConfigSource::Default);

        // A topic's view names the dynamic broker level as the source.
        let topic = TopicConfig::new(
            BTreeMap::<String, String>::new(),
            &t.broker.topic_defaults(),
        )
        .unwrap()
        .describe(Some(&["flush.messages".to_owned()]), true);
        assert_eq!(topic[0].value.as_deref(), Some("1234"));
        assert_eq!(topic[0].source, ConfigSource::DynamicBroker);
        assert_eq!(topic[0].synonyms[0].name, "log.flush.interval.messages");

        // Refused and validate-only changes leave everything as it was.
        let before = t.broker.broker_configs.dynamic();
        assert!(set(&t.broker, Scope::Node, &[("num.partitions", "2")]).is_err());
        assert!(set(&t.broker, Scope::Node, &[("log.retention.ms", "soon")]).is_err());
        let map = BTreeMap::from([("log.retention.ms".to_owned(), "1".to_owned())]);
        t.broker
            .update_broker_configs(Scope::Node, true, |_| Ok(map))
            .unwrap();
        assert_eq!(t.broker.broker_configs.dynamic(), before);
        assert_eq!(
            t.broker.topic("plain").unwrap().partitions[0]
                .config()
                .retention_ms,
            Some(5000)
        );

        set(
            &t.broker,
            Scope::ClusterDefault,
            &[("log.segment.bytes", "1048576")],
        )
        .unwrap();
        let cluster = t
            .broker
            .describe_broker_configs(Scope::ClusterDefault, None, true);
        assert_eq!(cluster.len(), 1);
        assert_eq!(cluster[0].source, ConfigSource::DynamicDefaultBroker);

        let t = t.restart();
        let log = t.broker.topic("plain").unwrap().partitions[1].clone();
        assert_eq!(log.config().flush_messages, Some(1234));
        assert_eq!(log.config().retention_ms, Some(5000));
        assert_eq!(log.config().segment_bytes, 1_048_576);
        let entries = t.broker.describe_broker_configs(Scope::Node, None, false);
        let segment = entry_of(&entries, "log.segment.bytes");
        assert_eq!(segment.source, ConfigSource::DynamicDefaultBroker);

        // Replacing the node set with an empty one falls back to the defaults, live.
        set(&t.broker, Scope::Node, &[]).unwrap();
        assert_eq!(log.config().flush_messages, None);
        assert_eq!(log.config().retention_ms, Some(604_800_000));
        assert_eq!(log.config().segment_bytes, 1_048_576);
        // New topics start from the current broker defaults.
        t.broker.create_topic("later", 1, BTreeMap::new()).unwrap();
        let later = t.broker.topic("later").unwrap().partitions[0].config();
        assert_eq!(later.segment_bytes, 1_048_576);
    }

    #[test]
    fn node_configs_stored_for_another_node_id_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open_in(&dir, |_| {});
        set(&broker, Scope::Node, &[("log.flush.interval.ms", "10")]).unwrap();
        set(&broker, Scope::ClusterDefault, &[("log.roll.ms", "60000")]).unwrap();
        broker.close();
        drop(broker);
        let broker = open_in(&dir, |c| c.node_id = 7);
        let dynamic = broker.broker_configs.dynamic();
        assert!(dynamic.node.is_empty());
        assert_eq!(dynamic.cluster_default.len(), 1);
        assert_eq!(broker.default_log_config().flush_ms, None);
        assert_eq!(broker.default_log_config().segment_ms, Some(60_000));
    }

    /// Options given explicitly are STATIC_BROKER_CONFIG even at Kafka's default value;
    /// this also checks every clap id the table names.
    #[test]
    fn explicitly_given_options_are_static_even_at_kafka_defaults() {
        use clap::CommandFactory;
        let sources = |explicit: bool| {
            let dir = tempfile::tempdir().unwrap();
            let broker = open_in(&dir, |c| {
                c.group_min_session_timeout_ms = 6000;
                c.group_initial_rebalance_delay_ms = 3000;
                if explicit {
                    c.explicitly_set = crate::config::Config::command()
                        .get_arguments()
                        .map(|a| a.get_id().as_str().to_owned())
                        .collect();
                }
            });
            let entries = broker.describe_broker_configs(Scope::Node, None, false);
            let defaults = broker.topic_defaults();
            (entries, defaults)
        };
        let (implicit, implicit_topics) = sources(false);
        let (explicit, explicit_topics) = sources(true);
        let flipped: Vec<&str> = implicit
            .iter()
            .zip(&explicit)
            .filter(|(i, e)| {
                // Kafka's null default shows as no value until a value is given.
                if i.name != "log.dirs" && i.value.is_some() {
                    assert_eq!(i.value, e.value, "{}", i.name);
                }
                i.source == ConfigSource::Default && e.source == ConfigSource::StaticBroker
            })
            .map(|(i, _)| i.name.as_str())
            .collect();
        assert_eq!(
            flipped,
            vec![
                "auto.create.topics.enable",
                "group.initial.rebalance.delay.ms",
                "group.max.session.timeout.ms",
                "group.min.session.timeout.ms",
                "log.retention.bytes",
                "log.retention.check.interval.ms",
                "log.retention.ms",
                "log.segment.bytes",
                "num.partitions",
                "offsets.retention.minutes",
                "socket.request.max.bytes",
            ]
        );
        assert!(implicit_topics.sources.is_empty());
        let static_keys: Vec<&str> = explicit_topics.sources.keys().copied().collect();
        assert_eq!(
            static_keys,
            vec!["retention.bytes", "retention.ms", "segment.bytes"]
        );
        // An explicit static log.retention.ms beats a dynamic log.retention.hours.
        let hours = dynamic(&[("log.retention.hours", "1")], &[]);
        let static_defaults = TopicDefaults {
            sources: BTreeMap::from([("retention.ms", ConfigSource::StaticBroker)]),
            ..TopicDefaults::default()
        };
        assert_eq!(
            hours.resolve(&static_defaults).unwrap().retention_ms,
            604_800_000
        );
        assert_eq!(
            hours
                .resolve(&TopicDefaults::default())
                .unwrap()
                .retention_ms,
            3_600_000
        );
    }
}
