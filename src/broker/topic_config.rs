//! Per-topic configuration: the table of topic configs Strata knows, with Kafka's names,
//! types, defaults and validation rules; parsing a topic's override set on top of the
//! broker's defaults; conversion to the storage crate's [`LogConfig`]; and the entries
//! DescribeConfigs reports.
//!
//! A topic's configuration is resolved per key in Kafka's order of precedence:
//! 1. the topic's own override (source `DYNAMIC_TOPIC_CONFIG` = 1),
//! 2. the broker's default for topics: a dynamic broker config set with AlterConfigs on
//!    this broker (`DYNAMIC_BROKER_CONFIG` = 2) or cluster-wide (`DYNAMIC_DEFAULT_BROKER_CONFIG`
//!    = 3), or a static setting that differs from Kafka's (`STATIC_BROKER_CONFIG` = 4, e.g.
//!    `--default-retention-ms`); see [`crate::broker::broker_config`],
//! 3. Kafka's built-in default (source `DEFAULT_CONFIG` = 5).
//!
//! Only overrides are persisted; changing a broker default therefore changes every topic
//! that does not override the key, as in Kafka.
//!
//! Keys marked read-only in the table are reported so that tools asking for them get an
//! answer, but Strata does not implement them: setting one to anything other than its
//! fixed value is `INVALID_CONFIG`.

use std::collections::BTreeMap;
use std::fmt;

use strata_storage::{LogConfig, TimestampType};

/// Kafka's `INVALID_CONFIG` error code.
pub const INVALID_CONFIG: i16 = 40;

/// Kafka's `DescribeConfigsResponse` config type numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

impl ConfigType {
    /// The number DescribeConfigs v3+ puts in `config_type`.
    pub fn code(self) -> i8 {
        self as i8
    }

    fn java_name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Short => "SHORT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::List => "LIST",
        }
    }
}

/// Where a config value comes from, numbered as Kafka's `DescribeConfigsResponse`
/// `config_source` / synonym `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigSource {
    /// A per-topic override (`DYNAMIC_TOPIC_CONFIG`).
    DynamicTopic = 1,
    /// A broker config altered at runtime for this broker (`DYNAMIC_BROKER_CONFIG`).
    DynamicBroker = 2,
    /// A broker config altered at runtime for every broker (`DYNAMIC_DEFAULT_BROKER_CONFIG`).
    DynamicDefaultBroker = 3,
    /// Set in the broker's static configuration: flags, environment or config file
    /// (`STATIC_BROKER_CONFIG`).
    StaticBroker = 4,
    /// Kafka's built-in default (`DEFAULT_CONFIG`).
    Default = 5,
}

impl ConfigSource {
    /// The number on the wire.
    pub fn code(self) -> i8 {
        self as i8
    }
}

/// Why a topic configuration was refused. Every variant is Kafka's `INVALID_CONFIG` (40);
/// `Display` uses Kafka's wording so clients show a familiar message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("Unknown topic config name: {name}")]
    UnknownKey { name: String },
    #[error("Invalid value {value} for configuration {name}: {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: String,
    },
    #[error("Null value not supported for topic config: {name}")]
    NullValue { name: String },
    #[error("Config value {op} is not allowed for config key: {name}")]
    OperationNotAllowed { name: String, op: &'static str },
}

impl ConfigError {
    /// Kafka's `INVALID_CONFIG` for every variant.
    pub fn error_code(&self) -> i16 {
        INVALID_CONFIG
    }
}

/// Kafka's `cleanup.policy`. Strata stores it; log compaction itself is not implemented
/// yet, so a policy without `delete` keeps every record (no time or size retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

/// Broker-level defaults for topic configs, filled from the server's configuration and the
/// dynamic broker configs. Values use Kafka's units and conventions (milliseconds, bytes,
/// -1 = unlimited for retention, `i64::MAX` = never for flush). `Default` gives Kafka's own
/// defaults; a field named in `sources` is reported with that source, any other
/// field that differs from Kafka's default with source `STATIC_BROKER_CONFIG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDefaults {
    /// `log.retention.ms` → `retention.ms`; -1 = keep forever.
    pub retention_ms: i64,
    /// `log.retention.bytes` → `retention.bytes` (per partition); -1 = unlimited.
    pub retention_bytes: i64,
    /// `log.segment.bytes` → `segment.bytes`.
    pub segment_bytes: i32,
    /// `log.roll.ms` → `segment.ms`.
    pub segment_ms: i64,
    /// `message.max.bytes` → `max.message.bytes` (largest batch accepted).
    pub max_message_bytes: i32,
    /// `log.flush.interval.messages` → `flush.messages`; `i64::MAX` = never forced.
    pub flush_messages: i64,
    /// `log.flush.interval.ms` → `flush.ms`; `i64::MAX` = never forced.
    pub flush_ms: i64,
    /// `log.message.timestamp.type` → `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// Topic config keys whose broker-level value was set explicitly, with the level it
    /// was set at: `DynamicBroker`, `DynamicDefaultBroker`, or `StaticBroker` for a flag,
    /// environment variable or config-file entry (even one equal to Kafka's default).
    pub sources: BTreeMap<&'static str, ConfigSource>,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults {
            retention_ms: 604_800_000,
            retention_bytes: -1,
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            max_message_bytes: 1_048_588,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            message_timestamp_type: TimestampType::CreateTime,
            sources: BTreeMap::new(),
        }
    }
}

impl TopicDefaults {
    /// The defaults a broker-wide [`LogConfig`] stands for (`None` retention or flush
    /// becomes Kafka's "never" value). Sizes beyond Kafka's INT range are clamped to
    /// `i32::MAX`.
    pub fn from_log_config(config: &LogConfig) -> TopicDefaults {
        let long = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let int = |v: u64| i32::try_from(v).unwrap_or(i32::MAX);
        TopicDefaults {
            retention_ms: config.retention_ms.map_or(-1, long),
            retention_bytes: config.retention_bytes.map_or(-1, long),
            segment_bytes: int(config.segment_bytes),
            segment_ms: config.segment_ms.map_or(i64::MAX, long),
            max_message_bytes: int(config.max_message_bytes),
            flush_messages: config.flush_messages.map_or(i64::MAX, long),
            flush_ms: config.flush_ms.map_or(i64::MAX, long),
            message_timestamp_type: config.timestamp_type,
            sources: BTreeMap::new(),
        }
    }

    /// The broker-level values as (topic config key, value) pairs, in table order.
    fn pairs(&self) -> [(&'static str, String); 8] {
        [
            ("retention.ms", self.retention_ms.to_string()),
            ("retention.bytes", self.retention_bytes.to_string()),
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.ms", self.segment_ms.to_string()),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            ("flush.messages", self.flush_messages.to_string()),
            ("flush.ms", self.flush_ms.to_string()),
            (
                "message.timestamp.type",
                timestamp_type_name(self.message_timestamp_type).to_owned(),
            ),
        ]
    }

    /// Sets the broker-level default of topic config `key` from its canonical text (as
    /// [`validate_override`] returns it). Keys without a broker-level default here, and
    /// values that do not parse, are refused.
    pub fn set(&mut self, key: &str, canonical: &str) -> Result<(), ConfigError> {
        let def = find_def(key).ok_or_else(|| ConfigError::UnknownKey {
            name: key.to_owned(),
        })?;
        let value = def.parse(canonical)?;
        def.check(canonical, &value)?;
        let long = || match &value {
            Value::Long(v) => Ok(*v),
            _ => Err(def.invalid(canonical, "not numeric")),
        };
        let int = || {
            long().and_then(|v| {
                i32::try_from(v).map_err(|_| def.invalid(canonical, "Not a number of type INT"))
            })
        };
        match key {
            "retention.ms" => self.retention_ms = long()?,
            "retention.bytes" => self.retention_bytes = long()?,
            "segment.bytes" => self.segment_bytes = int()?,
            "segment.ms" => self.segment_ms = long()?,
            "max.message.bytes" => self.max_message_bytes = int()?,
            "flush.messages" => self.flush_messages = long()?,
            "flush.ms" => self.flush_ms = long()?,
            "message.timestamp.type" => {
                self.message_timestamp_type = match canonical {
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => TimestampType::CreateTime,
                }
            }
            _ => {
                return Err(def.invalid(
                    canonical,
                    "Strata has no broker-level default for this topic config",
                ))
            }
        }
        Ok(())
    }

    /// Checks every default against the same rules a topic override must pass, so a bad
    /// flag is reported at start-up (the error names the topic-level key).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in self.pairs() {
            let def = find_def(key).ok_or_else(|| ConfigError::UnknownKey {
                name: key.to_owned(),
            })?;
            def.normalize(&value)?;
        }
        Ok(())
    }

    /// The broker-level values a topic reports instead of Kafka's default, keyed by topic
    /// config name, with their source: every dynamically set one, and the others that
    /// differ from Kafka's defaults (`STATIC_BROKER_CONFIG`).
    fn broker_values(&self) -> BTreeMap<&'static str, (String, ConfigSource)> {
        let kafka = TopicDefaults::default().pairs();
        self.pairs()
            .into_iter()
            .zip(kafka)
            .filter_map(|((key, mine), (_, theirs))| match self.sources.get(key) {
                Some(source) => Some((key, (mine, *source))),
                None if mine != theirs => Some((key, (mine, ConfigSource::StaticBroker))),
                None => None,
            })
            .collect()
    }
}

/// Kafka's name of a timestamp type, as `message.timestamp.type` takes it.
fn timestamp_type_name(t: TimestampType) -> &'static str {
    match t {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

/// A validation rule from Kafka's `ConfigDef`.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Any value of the type.
    Any,
    /// Numeric, `>= min` (Kafka's `Range.atLeast`).
    AtLeast(i64),
    /// Numeric, `>= min`, or -1 which Strata also accepts as "never".
    AtLeastOrMinusOne(i64),
    /// Numeric, within `min..=max` (Kafka's `Range.between`).
    Between(i64, i64),
    /// One of these strings (Kafka's `ValidString.in`).
    OneOf(&'static [&'static str]),
    /// A list whose items are each one of these (Kafka's `ValidList.in`).
    ListOf(&'static [&'static str]),
    /// Read-only in Strata: only the default value is accepted.
    Fixed,
}

/// One row of the topic config table.
#[derive(Debug)]
struct ConfigDef {
    name: &'static str,
    config_type: ConfigType,
    /// Kafka's default, written as DescribeConfigs reports it.
    default: &'static str,
    /// The broker-level config that supplies this key's default (Kafka's synonym).
    broker_synonym: &'static str,
    rule: Rule,
    doc: &'static str,
}

const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
const LONG_MAX: &str = "9223372036854775807";

/// Every topic config Strata reports, sorted by name (DescribeConfigs returns them in
/// this order).
static TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        config_type: ConfigType::List,
        default: "delete",
        broker_synonym: "log.cleanup.policy",
        rule: Rule::ListOf(CLEANUP_POLICIES),
        doc: "A comma-separated list of \"delete\" and \"compact\". \"delete\" discards old \
              segments when their retention time or size limit is reached. Strata stores \
              \"compact\" but does not compact logs yet: a topic whose policy lacks \"delete\" \
              keeps every record.",
    },
    ConfigDef {
        name: "compression.type",
        config_type: ConfigType::String,
        default: "producer",
        broker_synonym: "compression.type",
        rule: Rule::Fixed,
        doc: "Strata always retains the compression codec set by the producer (\"producer\"); \
              batches are stored exactly as received. Read-only.",
    },
    ConfigDef {
        name: "delete.retention.ms",
        config_type: ConfigType::Long,
        default: "86400000",
        broker_synonym: "log.cleaner.delete.retention.ms",
        rule: Rule::Fixed,
        doc: "How long delete tombstones are kept for log compacted topics. Read-only in \
              Strata (compaction is not implemented).",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        config_type: ConfigType::Long,
        default: "60000",
        broker_synonym: "log.segment.delete.delay.ms",
        rule: Rule::Fixed,
        doc: "Time to wait before deleting a file from the filesystem. Read-only in Strata, \
              which deletes segments as soon as retention removes them.",
    },
    ConfigDef {
        name: "flush.messages",
        config_type: ConfigType::Long,
        default: LONG_MAX,
        broker_synonym: "log.flush.interval.messages",
        rule: Rule::AtLeastOrMinusOne(1),
        doc: "Force an fsync of the log once this many messages have been appended since the \
              last one. 9223372036854775807 (or -1) never forces one; Strata's flusher still \
              makes data durable promptly, and acks=all always waits for the fsync.",
    },
    ConfigDef {
        name: "flush.ms",
        config_type: ConfigType::Long,
        default: LONG_MAX,
        broker_synonym: "log.flush.interval.ms",
        rule: Rule::AtLeastOrMinusOne(0),
        doc: "Force an fsync of the log once a message has waited this many milliseconds. \
              9223372036854775807 (or -1) never forces one.",
    },
    ConfigDef {
        name: "follower.replication.throttled.replicas",
        config_type: ConfigType::List,
        default: "",
        broker_synonym: "follower.replication.throttled.replicas",
        rule: Rule::Fixed,
        doc: "Replicas whose log replication is throttled on the follower side. Strata is a \
              single node without replication. Read-only.",
    },
    ConfigDef {
        name: "index.interval.bytes",
        config_type: ConfigType::Int,
        default: "4096",
        broker_synonym: "log.index.interval.bytes",
        rule: Rule::AtLeast(0),
        doc: "How many bytes of log lie between two entries of the offset index (and the \
              time index). Smaller values make lookups faster and indexes larger.",
    },
    ConfigDef {
        name: "leader.replication.throttled.replicas",
        config_type: ConfigType::List,
        default: "",
        broker_synonym: "leader.replication.throttled.replicas",
        rule: Rule::Fixed,
        doc: "Replicas whose log replication is throttled on the leader side. Strata is a \
              single node without replication. Read-only.",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        config_type: ConfigType::Long,
        default: LONG_MAX,
        broker_synonym: "log.cleaner.max.compaction.lag.ms",
        rule: Rule::Fixed,
        doc: "The maximum time a message remains ineligible for compaction. Read-only in \
              Strata (compaction is not implemented).",
    },
    ConfigDef {
        name: "max.message.bytes",
        config_type: ConfigType::Int,
        default: "1048588",
        broker_synonym: "message.max.bytes",
        rule: Rule::AtLeast(0),
        doc: "The largest record batch size, in bytes, the topic accepts (after compression). \
              A larger batch is refused with MESSAGE_TOO_LARGE.",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        config_type: ConfigType::Long,
        default: LONG_MAX,
        broker_synonym: "log.message.timestamp.after.max.ms",
        rule: Rule::Fixed,
        doc: "How far a CreateTime timestamp may lie in the future of the broker's clock. \
              Strata does not check it. Read-only.",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        config_type: ConfigType::Long,
        default: LONG_MAX,
        broker_synonym: "log.message.timestamp.before.max.ms",
        rule: Rule::Fixed,
        doc: "How far a CreateTime timestamp may lie in the past of the broker's clock. \
              Strata does not check it. Read-only.",
    },
    ConfigDef {
        name: "message.timestamp.type",
        config_type: ConfigType::String,
        default: "CreateTime",
        broker_synonym: "log.message.timestamp.type",
        rule: Rule::OneOf(TIMESTAMP_TYPES),
        doc: "Whether record timestamps are the producer's (CreateTime) or the broker's \
              clock at append (LogAppendTime).",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        config_type: ConfigType::Double,
        default: "0.5",
        broker_synonym: "log.cleaner.min.cleanable.ratio",
        rule: Rule::Fixed,
        doc: "How dirty a log must be before the compactor cleans it. Read-only in Strata \
              (compaction is not implemented).",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        config_type: ConfigType::Long,
        default: "0",
        broker_synonym: "log.cleaner.min.compaction.lag.ms",
        rule: Rule::Fixed,
        doc: "The minimum time a message remains uncompacted. Read-only in Strata \
              (compaction is not implemented).",
    },
    ConfigDef {
        name: "min.insync.replicas",
        config_type: ConfigType::Int,
        default: "1",
        broker_synonym: "min.insync.replicas",
        rule: Rule::Between(1, 1),
        doc: "The minimum number of in-sync replicas an acks=all write needs. Strata is one \
              node whose promise is its disk (acks=all waits for the fsync), so the only \
              possible value is 1.",
    },
    ConfigDef {
        name: "preallocate",
        config_type: ConfigType::Boolean,
        default: "false",
        broker_synonym: "log.preallocate",
        rule: Rule::Fixed,
        doc: "Whether segment files are preallocated. Read-only in Strata.",
    },
    ConfigDef {
        name: "retention.bytes",
        config_type: ConfigType::Long,
        default: "-1",
        broker_synonym: "log.retention.bytes",
        rule: Rule::Any,
        doc: "The largest size, in bytes, a partition may grow to before old segments are \
              deleted (with the \"delete\" cleanup policy). Whole sealed segments are deleted, \
              never the active one. A negative value means no size limit.",
    },
    ConfigDef {
        name: "retention.ms",
        config_type: ConfigType::Long,
        default: "604800000",
        broker_synonym: "log.retention.ms",
        rule: Rule::AtLeast(-1),
        doc: "How long, in milliseconds, a segment is kept after its newest record before it \
              is deleted (with the \"delete\" cleanup policy). -1 means no time limit.",
    },
    ConfigDef {
        name: "segment.bytes",
        config_type: ConfigType::Int,
        default: "1073741824",
        broker_synonym: "log.segment.bytes",
        rule: Rule::AtLeast(14),
        doc: "The size, in bytes, at which the active segment is sealed and a new one \
              started. Retention deletes whole segments, so this is its granularity.",
    },
    ConfigDef {
        name: "segment.index.bytes",
        config_type: ConfigType::Int,
        default: "10485760",
        broker_synonym: "log.index.size.max.bytes",
        rule: Rule::AtLeast(4),
        doc: "The size, in bytes, of a segment's offset index; a full index rolls the segment.",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        config_type: ConfigType::Long,
        default: "0",
        broker_synonym: "log.roll.jitter.ms",
        rule: Rule::Fixed,
        doc: "Random jitter subtracted from segment.ms. Read-only in Strata.",
    },
    ConfigDef {
        name: "segment.ms",
        config_type: ConfigType::Long,
        default: "604800000",
        broker_synonym: "log.roll.ms",
        rule: Rule::AtLeast(1),
        doc: "The time, in milliseconds, after which the active segment is sealed even if it \
              is not full, so retention can delete it.",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        config_type: ConfigType::Boolean,
        default: "false",
        broker_synonym: "unclean.leader.election.enable",
        rule: Rule::Fixed,
        doc: "Whether an out-of-sync replica may become leader. Strata is a single node. \
              Read-only.",
    },
];

fn find_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

/// True when `name` is a topic config Strata knows (settable or read-only).
pub fn is_known_key(name: &str) -> bool {
    find_def(name).is_some()
}

/// The names of every topic config, in DescribeConfigs order.
pub fn known_keys() -> impl Iterator<Item = &'static str> {
    TOPIC_CONFIGS.iter().map(|def| def.name)
}

/// A parsed value of one config, after type conversion.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Long(i64),
    Bool(bool),
    Double(f64),
    Str(String),
    List(Vec<String>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Long(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Double(v) => write!(f, "{v}"),
            Value::Str(v) => f.write_str(v),
            Value::List(items) => f.write_str(&items.join(",")),
        }
    }
}

impl ConfigDef {
    fn invalid(&self, value: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            name: self.name.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// Converts the text to the config's type, as Kafka's `ConfigDef.parseType` does
    /// (surrounding whitespace is ignored).
    fn parse(&self, raw: &str) -> Result<Value, ConfigError> {
        let trimmed = raw.trim();
        let not_a_number = || {
            self.invalid(
                raw,
                format!("Not a number of type {}", self.config_type.java_name()),
            )
        };
        Ok(match self.config_type {
            ConfigType::Long => Value::Long(trimmed.parse::<i64>().map_err(|_| not_a_number())?),
            ConfigType::Int => Value::Long(i64::from(
                trimmed.parse::<i32>().map_err(|_| not_a_number())?,
            )),
            ConfigType::Short => Value::Long(i64::from(
                trimmed.parse::<i16>().map_err(|_| not_a_number())?,
            )),
            ConfigType::Double => {
                let v = trimmed.parse::<f64>().map_err(|_| not_a_number())?;
                if !v.is_finite() {
                    return Err(not_a_number());
                }
                Value::Double(v)
            }
            ConfigType::Boolean => match trimmed.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(self.invalid(raw, "Expected value to be either true or false")),
            },
            ConfigType::String => Value::Str(trimmed.to_owned()),
            ConfigType::List => Value::List(split_list(trimmed)),
        })
    }

    fn check(&self, raw: &str, value: &Value) -> Result<(), ConfigError> {
        match (self.rule, value) {
            (Rule::Any, _) => Ok(()),
            (Rule::AtLeast(min), Value::Long(v)) if *v < min => {
                Err(self.invalid(raw, format!("Value must be at least {min}")))
            }
            (Rule::AtLeastOrMinusOne(min), Value::Long(v)) if *v < min && *v != -1 => Err(self
                .invalid(
                    raw,
                    format!("Value must be at least {min} (or -1 for never)"),
                )),
            (Rule::Between(min, _), Value::Long(v)) if *v < min => {
                Err(self.invalid(raw, format!("Value must be at least {min}")))
            }
            (Rule::Between(_, max), Value::Long(v)) if *v > max => {
                Err(self.invalid(raw, format!("Value must be no more than {max}")))
            }
            (Rule::OneOf(allowed), Value::Str(v)) if !allowed.contains(&v.as_str()) => Err(self
                .invalid(
                    raw,
                    format!("String must be one of: {}", allowed.join(", ")),
                )),
            (Rule::ListOf(allowed), Value::List(items)) => {
                match items.iter().find(|item| !allowed.contains(&item.as_str())) {
                    Some(_) => Err(self.invalid(
                        raw,
                        format!("String must be one of: {}", allowed.join(", ")),
                    )),
                    None => Ok(()),
                }
            }
            (Rule::Fixed, v) => {
                let fixed = self.parse(self.default)?;
                if *v == fixed {
                    Ok(())
                } else {
                    Err(self.invalid(
                        raw,
                        format!(
                            "Strata does not support changing this config; its only value is \"{}\"",
                            self.default
                        ),
                    ))
                }
            }
            _ => Ok(()),
        }
    }

    /// Parses and validates `raw`, returning the canonical text stored and reported
    /// (numbers in decimal, lists joined by `,` without spaces).
    fn normalize(&self, raw: &str) -> Result<String, ConfigError> {
        let value = self.parse(raw)?;
        self.check(raw, &value)?;
        Ok(value.to_string())
    }
}

fn split_list(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    text.split(',').map(|item| item.trim().to_owned()).collect()
}

/// Validates one override `name = value` and returns the canonical value that
/// [`TopicConfig::new`] would store for it.
pub fn validate_override(name: &str, value: &str) -> Result<String, ConfigError> {
    let def = find_def(name).ok_or_else(|| ConfigError::UnknownKey {
        name: name.to_owned(),
    })?;
    def.normalize(value)
}

/// One change of an IncrementalAlterConfigs request, with Kafka's operation numbers
/// (SET = 0, DELETE = 1, APPEND = 2, SUBTRACT = 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterOp {
    /// Set the override to this value.
    Set(String),
    /// Remove the override, falling back to the broker's or Kafka's default.
    Delete,
    /// Add the comma-separated items to a list config (items already present are kept once).
    Append(String),
    /// Remove the comma-separated items from a list config.
    Subtract(String),
}

impl AlterOp {
    /// Builds the operation from Kafka's wire number and the request's value.
    /// Returns `None` for an unknown operation number (the caller answers INVALID_REQUEST).
    pub fn from_wire(op: i8, value: Option<&str>) -> Option<AlterOp> {
        let value = value.unwrap_or_default().to_owned();
        match op {
            0 => Some(AlterOp::Set(value)),
            1 => Some(AlterOp::Delete),
            2 => Some(AlterOp::Append(value)),
            3 => Some(AlterOp::Subtract(value)),
            _ => None,
        }
    }
}

/// A topic's configuration: the validated override set and the effective value of every
/// key it affects. Built only through [`TopicConfig::new`], so it is always valid.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// The topic's own overrides, canonical values, keyed by config name. This is what
    /// the broker persists.
    overrides: BTreeMap<String, String>,
    /// The broker-level defaults this config was resolved against.
    defaults: TopicDefaults,
    /// Effective values (override > broker default > Kafka default).
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i32,
    pub segment_ms: i64,
    pub segment_index_bytes: i32,
    pub index_interval_bytes: i32,
    pub cleanup_policy: CleanupPolicy,
    pub max_message_bytes: i32,
    pub message_timestamp_type: TimestampType,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub min_insync_replicas: i32,
}

impl TopicConfig {
    /// Validates `overrides` (topic config name → value as a client sent it) on top of the
    /// broker's `defaults`. Unknown names and invalid values are `INVALID_CONFIG`.
    pub fn new<K, V, I>(overrides: I, defaults: &TopicDefaults) -> Result<TopicConfig, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut canonical = BTreeMap::new();
        for (name, value) in overrides {
            let name = name.as_ref();
            canonical.insert(name.to_owned(), validate_override(name, value.as_ref())?);
        }
        defaults.validate()?;
        let broker_values = defaults.broker_values();

        let effective = |key: &str| -> &str {
            canonical
                .get(key)
                .map(String::as_str)
                .or_else(|| broker_values.get(key).map(|(v, _)| v.as_str()))
                .or_else(|| find_def(key).map(|def| def.default))
                .unwrap_or_default()
        };
        // Every effective value has been validated by now, so these parses cannot fail;
        // an error here would still be reported rather than panic.
        let long = |key: &str| -> Result<i64, ConfigError> {
            let def = find_def(key).ok_or_else(|| ConfigError::UnknownKey {
                name: key.to_owned(),
            })?;
            let raw = effective(key);
            match def.parse(raw)? {
                Value::Long(v) => Ok(v),
                _ => Err(def.invalid(raw, "not numeric")),
            }
        };
        let int = |key: &str| -> Result<i32, ConfigError> {
            let v = long(key)?;
            i32::try_from(v).map_err(|_| ConfigError::InvalidValue {
                name: key.to_owned(),
                value: v.to_string(),
                reason: "Not a number of type INT".to_owned(),
            })
        };

        let policy_items = split_list(effective("cleanup.policy"));
        let cleanup_policy = CleanupPolicy {
            delete: policy_items.iter().any(|p| p == "delete"),
            compact: policy_items.iter().any(|p| p == "compact"),
        };
        let message_timestamp_type = match effective("message.timestamp.type") {
            "LogAppendTime" => TimestampType::LogAppendTime,
            _ => TimestampType::CreateTime,
        };

        Ok(TopicConfig {
            retention_ms: long("retention.ms")?,
            retention_bytes: long("retention.bytes")?,
            segment_bytes: int("segment.bytes")?,
            segment_ms: long("segment.ms")?,
            segment_index_bytes: int("segment.index.bytes")?,
            index_interval_bytes: int("index.interval.bytes")?,
            cleanup_policy,
            max_message_bytes: int("max.message.bytes")?,
            message_timestamp_type,
            flush_messages: long("flush.messages")?,
            flush_ms: long("flush.ms")?,
            min_insync_replicas: int("min.insync.replicas")?,
            overrides: canonical,
            defaults: defaults.clone(),
        })
    }

    /// The topic's validated overrides (canonical values): what the broker persists and
    /// what CreateTopics v5+ echoes as non-default.
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// The same overrides on top of new broker defaults (used when the broker restarts
    /// with different flags, or to re-check a persisted set).
    pub fn with_defaults(&self, defaults: &TopicDefaults) -> Result<TopicConfig, ConfigError> {
        TopicConfig::new(&self.overrides, defaults)
    }

    /// AlterConfigs semantics: `overrides` replaces the whole override set.
    pub fn replace_overrides<K, V, I>(&self, overrides: I) -> Result<TopicConfig, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        TopicConfig::new(overrides, &self.defaults)
    }

    /// IncrementalAlterConfigs semantics: applies `ops` in order to the current overrides
    /// and validates the result. APPEND and SUBTRACT are allowed only on list configs and
    /// start from the effective value (the default when there is no override). DELETE of
    /// a key that has no override is a no-op, as in Kafka.
    pub fn apply_incremental<'a, I>(&self, ops: I) -> Result<TopicConfig, ConfigError>
    where
        I: IntoIterator<Item = (&'a str, &'a AlterOp)>,
    {
        let mut overrides = self.overrides.clone();
        for (name, op) in ops {
            match op {
                AlterOp::Set(value) => {
                    overrides.insert(name.to_owned(), value.clone());
                }
                AlterOp::Delete => {
                    overrides.remove(name);
                }
                AlterOp::Append(items) | AlterOp::Subtract(items) => {
                    let op_name = if matches!(op, AlterOp::Append(_)) {
                        "append"
                    } else {
                        "subtract"
                    };
                    let def = find_def(name).ok_or_else(|| ConfigError::UnknownKey {
                        name: name.to_owned(),
                    })?;
                    if def.config_type != ConfigType::List {
                        return Err(ConfigError::OperationNotAllowed {
                            name: name.to_owned(),
                            op: op_name,
                        });
                    }
                    let current = overrides
                        .get(name)
                        .cloned()
                        .or_else(|| self.defaults.broker_values().remove(name).map(|(v, _)| v))
                        .unwrap_or_else(|| def.default.to_owned());
                    let mut list = split_list(&current);
                    let changes = split_list(items.trim());
                    if matches!(op, AlterOp::Append(_)) {
                        for item in changes {
                            if !list.contains(&item) {
                                list.push(item);
                            }
                        }
                    } else {
                        list.retain(|item| !changes.contains(item));
                    }
                    overrides.insert(name.to_owned(), list.join(","));
                }
            }
        }
        TopicConfig::new(&overrides, &self.defaults)
    }

    /// The storage crate's settings for every partition of this topic. Kafka's "never"
    /// values map to `None`: retention -1 (any negative retention.bytes), flush
    /// `i64::MAX` or -1. A cleanup policy without `delete` disables time and size
    /// retention (compaction itself is not implemented).
    pub fn log_config(&self) -> LogConfig {
        let non_negative = |v: i64| u64::try_from(v).ok();
        let retention = |v: i64| {
            if self.cleanup_policy.delete {
                non_negative(v)
            } else {
                None
            }
        };
        let flush = |v: i64| if v == i64::MAX { None } else { non_negative(v) };
        LogConfig {
            segment_bytes: non_negative(i64::from(self.segment_bytes)).unwrap_or(1),
            segment_ms: non_negative(self.segment_ms),
            segment_index_bytes: non_negative(i64::from(self.segment_index_bytes)).unwrap_or(4),
            index_interval_bytes: non_negative(i64::from(self.index_interval_bytes)).unwrap_or(0),
            max_message_bytes: non_negative(i64::from(self.max_message_bytes)).unwrap_or(0),
            retention_ms: retention(self.retention_ms),
            retention_bytes: retention(self.retention_bytes),
            timestamp_type: self.message_timestamp_type,
            flush_messages: flush(self.flush_messages),
            flush_ms: flush(self.flush_ms),
        }
    }

    /// The DescribeConfigs entries for this topic: every known key, or only those named
    /// in `keys` (unknown names are skipped, as Kafka does). Synonyms (override, broker
    /// default, Kafka default — in order of precedence) only when `include_synonyms`.
    pub fn describe(&self, keys: Option<&[String]>, include_synonyms: bool) -> Vec<ConfigEntry> {
        TOPIC_CONFIGS
            .iter()
            .filter(|def| keys.is_none_or(|keys| keys.iter().any(|k| k == def.name)))
            .map(|def| self.entry(def, include_synonyms))
            .collect()
    }

    fn entry(&self, def: &'static ConfigDef, include_synonyms: bool) -> ConfigEntry {
        let topic_value = self.overrides.get(def.name);
        let broker_values = self.defaults.broker_values();
        let broker_value = broker_values.get(def.name);
        let (value, source) = match (topic_value, broker_value) {
            (Some(v), _) => (v.clone(), ConfigSource::DynamicTopic),
            (None, Some((v, source))) => (v.clone(), *source),
            (None, None) => (def.default.to_owned(), ConfigSource::Default),
        };
        let mut synonyms = Vec::new();
        if include_synonyms {
            if let Some(v) = topic_value {
                synonyms.push(ConfigSynonym {
                    name: def.name.to_owned(),
                    value: Some(v.clone()),
                    source: ConfigSource::DynamicTopic,
                });
            }
            if let Some((v, source)) = broker_value {
                synonyms.push(ConfigSynonym {
                    name: def.broker_synonym.to_owned(),
                    value: Some(v.clone()),
                    source: *source,
                });
            }
            synonyms.push(ConfigSynonym {
                name: def.broker_synonym.to_owned(),
                value: Some(def.default.to_owned()),
                source: ConfigSource::Default,
            });
        }
        ConfigEntry {
            name: def.name.to_owned(),
            value: Some(value),
            source,
            is_default: source == ConfigSource::Default,
            read_only: matches!(def.rule, Rule::Fixed),
            sensitive: false,
            synonyms,
            config_type: def.config_type,
            documentation: def.doc,
        }
    }
}

/// The storage settings of a topic whose overrides are `overrides`, on top of the
/// broker-wide `defaults` (a shorthand for [`TopicDefaults::from_log_config`] +
/// [`TopicConfig::new`] + [`TopicConfig::log_config`]).
pub fn to_log_config(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig, ConfigError> {
    TopicConfig::new(overrides, &TopicDefaults::from_log_config(defaults)).map(|c| c.log_config())
}

/// One config as DescribeConfigs reports it, independent of the wire encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
    /// True exactly when the value is Kafka's built-in default (source `DEFAULT_CONFIG`).
    pub is_default: bool,
    /// True for configs Strata reports but does not let a client change.
    pub read_only: bool,
    pub sensitive: bool,
    pub synonyms: Vec<ConfigSynonym>,
    pub config_type: ConfigType,
    pub documentation: &'static str,
}

/// A synonym of a config: the same setting at another level of precedence.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigSynonym {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<TopicConfig, ConfigError> {
        TopicConfig::new(pairs.iter().copied(), &TopicDefaults::default())
    }

    /// (key, value, Ok(canonical value) | Err(reason fragment)).
    #[test]
    fn override_validation_table() {
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("retention.ms", "1000", Ok("1000")),
            ("retention.ms", " 1000 ", Ok("1000")),
            ("retention.ms", "-1", Ok("-1")),
            ("retention.ms", "-2", Err("Value must be at least -1")),
            ("retention.ms", "abc", Err("Not a number of type LONG")),
            ("retention.ms", "", Err("Not a number of type LONG")),
            ("retention.bytes", "-1", Ok("-1")),
            ("retention.bytes", "1048576", Ok("1048576")),
            ("segment.bytes", "1048576", Ok("1048576")),
            ("segment.bytes", "14", Ok("14")),
            ("segment.bytes", "13", Err("Value must be at least 14")),
            (
                "segment.bytes",
                "3000000000",
                Err("Not a number of type INT"),
            ),
            ("segment.ms", "1", Ok("1")),
            ("segment.ms", "0", Err("Value must be at least 1")),
            ("segment.index.bytes", "3", Err("Value must be at least 4")),
            ("index.interval.bytes", "0", Ok("0")),
            ("cleanup.policy", "delete", Ok("delete")),
            ("cleanup.policy", "compact", Ok("compact")),
            ("cleanup.policy", "compact, delete", Ok("compact,delete")),
            ("cleanup.policy", "", Ok("")),
            (
                "cleanup.policy",
                "remove",
                Err("String must be one of: compact, delete"),
            ),
            ("max.message.bytes", "2000000", Ok("2000000")),
            ("max.message.bytes", "-1", Err("Value must be at least 0")),
            (
                "message.timestamp.type",
                "LogAppendTime",
                Ok("LogAppendTime"),
            ),
            ("message.timestamp.type", "CreateTime", Ok("CreateTime")),
            (
                "message.timestamp.type",
                "logappendtime",
                Err("String must be one of: CreateTime, LogAppendTime"),
            ),
            ("flush.messages", "1", Ok("1")),
            ("flush.messages", "-1", Ok("-1")),
            ("flush.messages", "0", Err("Value must be at least 1")),
            ("flush.ms", "0", Ok("0")),
            ("flush.ms", "-2", Err("Value must be at least 0")),
            ("min.insync.replicas", "1", Ok("1")),
            (
                "min.insync.replicas",
                "2",
                Err("Value must be no more than 1"),
            ),
            ("min.insync.replicas", "0", Err("Value must be at least 1")),
            ("compression.type", "producer", Ok("producer")),
            (
                "compression.type",
                "gzip",
                Err("its only value is \"producer\""),
            ),
            ("preallocate", "FALSE", Ok("false")),
            ("preallocate", "true", Err("Strata does not support")),
            ("preallocate", "maybe", Err("either true or false")),
            ("min.cleanable.dirty.ratio", "0.50", Ok("0.5")),
            ("unclean.leader.election.enable", "false", Ok("false")),
            ("leader.replication.throttled.replicas", "", Ok("")),
        ];
        for (key, value, expected) in cases {
            let got = validate_override(key, value);
            match (expected, got) {
                (Ok(want), Ok(have)) => assert_eq!(&have, want, "{key}={value:?}"),
                (Err(fragment), Err(err)) => {
                    assert_eq!(err.error_code(), 40);
                    let msg = err.to_string();
                    assert!(msg.contains(fragment), "{key}={value:?}: {msg}");
                    assert!(msg.contains(key), "{key}={value:?}: {msg}");
                }
                (expected, got) => panic!("{key}={value:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn unknown_key_is_invalid_config() {
        let err = config(&[("retention.hours", "1")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::UnknownKey {
                name: "retention.hours".into()
            }
        );
        assert_eq!(err.error_code(), 40);
        assert_eq!(
            err.to_string(),
            "Unknown topic config name: retention.hours"
        );
    }

    #[test]
    fn defaults_map_to_storage_defaults() {
        let cfg = config(&[]).unwrap();
        assert!(cfg.overrides().is_empty());
        let log = cfg.log_config();
        assert_eq!(log.segment_bytes, 1_073_741_824);
        assert_eq!(log.segment_ms, Some(604_800_000));
        assert_eq!(log.segment_index_bytes, 10_485_760);
        assert_eq!(log.index_interval_bytes, 4096);
        assert_eq!(log.max_message_bytes, 1_048_588);
        assert_eq!(log.retention_ms, Some(604_800_000));
        assert_eq!(log.retention_bytes, None);
        assert_eq!(log.timestamp_type, TimestampType::CreateTime);
        assert_eq!(log.flush_messages, None);
        assert_eq!(log.flush_ms, None);
    }

    /// (overrides, check on the resulting LogConfig).
    #[test]
    fn overrides_map_to_log_config_table() {
        type Check = fn(&LogConfig) -> bool;
        let cases: &[(&[(&str, &str)], Check)] = &[
            (&[("retention.ms", "-1")], |l| l.retention_ms.is_none()),
            (&[("retention.ms", "60000")], |l| {
                l.retention_ms == Some(60_000)
            }),
            (&[("retention.bytes", "-5")], |l| {
                l.retention_bytes.is_none()
            }),
            (&[("retention.bytes", "4096")], |l| {
                l.retention_bytes == Some(4096)
            }),
            (&[("segment.bytes", "2048")], |l| l.segment_bytes == 2048),
            (&[("segment.ms", "10")], |l| l.segment_ms == Some(10)),
            (&[("flush.messages", "1")], |l| l.flush_messages == Some(1)),
            (&[("flush.messages", "-1")], |l| l.flush_messages.is_none()),
            (&[("flush.ms", "0")], |l| l.flush_ms == Some(0)),
            (&[("flush.ms", "9223372036854775807")], |l| {
                l.flush_ms.is_none()
            }),
            (&[("max.message.bytes", "100")], |l| {
                l.max_message_bytes == 100
            }),
            (&[("message.timestamp.type", "LogAppendTime")], |l| {
                l.timestamp_type == TimestampType::LogAppendTime
            }),
            (
                &[("cleanup.policy", "compact"), ("retention.ms", "1000")],
                |l| l.retention_ms.is_none() && l.retention_bytes.is_none(),
            ),
            (
                &[
                    ("cleanup.policy", "compact,delete"),
                    ("retention.ms", "1000"),
                ],
                |l| l.retention_ms == Some(1000),
            ),
        ];
        for (overrides, check) in cases {
            let cfg = config(overrides).unwrap();
            assert!(
                check(&cfg.log_config()),
                "{overrides:?} -> {:?}",
                cfg.log_config()
            );
        }
    }

    #[test]
    fn broker_defaults_apply_below_overrides() {
        let defaults = TopicDefaults {
            retention_ms: 3_600_000,
            segment_bytes: 1 << 20,
            ..TopicDefaults::default()
        };
        let cfg = TopicConfig::new([("segment.bytes", "4096")], &defaults).unwrap();
        assert_eq!(cfg.retention_ms, 3_600_000);
        assert_eq!(cfg.segment_bytes, 4096);
        let entries = cfg.describe(None, true);
        let get = |name: &str| entries.iter().find(|e| e.name == name).unwrap().clone();

        let retention = get("retention.ms");
        assert_eq!(retention.value.as_deref(), Some("3600000"));
        assert_eq!(retention.source, ConfigSource::StaticBroker);
        assert!(!retention.is_default);
        assert_eq!(
            retention.synonyms,
            vec![
                ConfigSynonym {
                    name: "log.retention.ms".into(),
                    value: Some("3600000".into()),
                    source: ConfigSource::StaticBroker
                },
                ConfigSynonym {
                    name: "log.retention.ms".into(),
                    value: Some("604800000".into()),
                    source: ConfigSource::Default
                },
            ]
        );

        let segment = get("segment.bytes");
        assert_eq!(segment.value.as_deref(), Some("4096"));
        assert_eq!(segment.source, ConfigSource::DynamicTopic);
        assert_eq!(segment.synonyms.len(), 3);
        assert_eq!(segment.synonyms[0].name, "segment.bytes");

        let policy = get("cleanup.policy");
        assert_eq!(policy.value.as_deref(), Some("delete"));
        assert_eq!(policy.source, ConfigSource::Default);
        assert!(policy.is_default);
        assert!(!policy.read_only);
        assert_eq!(policy.config_type, ConfigType::List);

        let compression = get("compression.type");
        assert!(compression.read_only);
        assert!(compression.is_default);
    }

    #[test]
    fn describe_lists_every_key_sorted_or_the_requested_ones() {
        let cfg = config(&[("retention.ms", "1000")]).unwrap();
        let all = cfg.describe(None, false);
        assert_eq!(all.len(), TOPIC_CONFIGS.len());
        let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert!(all.iter().all(|e| e.synonyms.is_empty()));
        for required in [
            "retention.ms",
            "retention.bytes",
            "segment.bytes",
            "segment.ms",
            "segment.index.bytes",
            "index.interval.bytes",
            "cleanup.policy",
            "max.message.bytes",
            "message.timestamp.type",
            "flush.messages",
            "flush.ms",
            "min.insync.replicas",
        ] {
            let entry = all.iter().find(|e| e.name == required).unwrap();
            assert!(!entry.read_only, "{required} must be settable");
        }

        let some = cfg.describe(Some(&["retention.ms".into(), "nope".into()]), false);
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].value.as_deref(), Some("1000"));
        assert_eq!(some[0].source, ConfigSource::DynamicTopic);
        assert!(!some[0].is_default);
    }

    #[test]
    fn alter_replaces_the_override_set() {
        let cfg = config(&[("retention.ms", "1000"), ("segment.bytes", "4096")]).unwrap();
        let replaced = cfg.replace_overrides([("flush.messages", "1")]).unwrap();
        assert_eq!(
            replaced.overrides().keys().collect::<Vec<_>>(),
            vec!["flush.messages"]
        );
        assert_eq!(replaced.retention_ms, 604_800_000);
        assert!(cfg.replace_overrides([("bogus", "1")]).is_err());
    }

    #[test]
    fn incremental_ops_table() {
        let base = config(&[("retention.ms", "1000"), ("segment.bytes", "4096")]).unwrap();
        let set = AlterOp::Set("2000".into());
        let delete = AlterOp::Delete;
        let append_compact = AlterOp::Append("compact".into());
        let subtract_delete = AlterOp::Subtract("delete".into());
        let append_bad = AlterOp::Append("bogus".into());

        let cfg = base.apply_incremental([("retention.ms", &set)]).unwrap();
        assert_eq!(cfg.overrides()["retention.ms"], "2000");
        assert_eq!(cfg.overrides()["segment.bytes"], "4096");

        let cfg = base
            .apply_incremental([("segment.bytes", &delete)])
            .unwrap();
        assert!(!cfg.overrides().contains_key("segment.bytes"));
        assert_eq!(cfg.segment_bytes, 1_073_741_824);

        // DELETE without an override is a no-op.
        let cfg = base.apply_incremental([("flush.ms", &delete)]).unwrap();
        assert_eq!(cfg.overrides(), base.overrides());

        // APPEND starts from the default "delete".
        let cfg = base
            .apply_incremental([("cleanup.policy", &append_compact)])
            .unwrap();
        assert_eq!(cfg.overrides()["cleanup.policy"], "delete,compact");
        assert!(cfg.cleanup_policy.delete && cfg.cleanup_policy.compact);
        // APPEND of an item already present keeps it once.
        let again = cfg
            .apply_incremental([("cleanup.policy", &append_compact)])
            .unwrap();
        assert_eq!(again.overrides()["cleanup.policy"], "delete,compact");

        let cfg = cfg
            .apply_incremental([("cleanup.policy", &subtract_delete)])
            .unwrap();
        assert_eq!(cfg.overrides()["cleanup.policy"], "compact");
        assert!(cfg.log_config().retention_ms.is_none());

        let err = base
            .apply_incremental([("retention.ms", &append_compact)])
            .unwrap_err();
        assert_eq!(
            err,
            ConfigError::OperationNotAllowed {
                name: "retention.ms".into(),
                op: "append"
            }
        );
        assert!(base
            .apply_incremental([("cleanup.policy", &append_bad)])
            .is_err());
        assert!(base.apply_incremental([("bogus", &set)]).is_err());
        assert!(base
            .apply_incremental([("retention.ms", &AlterOp::Set("x".into()))])
            .is_err());
    }

    #[test]
    fn alter_keeps_broker_defaults() {
        let defaults = TopicDefaults {
            retention_bytes: 1 << 30,
            ..TopicDefaults::default()
        };
        let cfg = TopicConfig::new(Vec::<(String, String)>::new(), &defaults).unwrap();
        let set = AlterOp::Set("5".into());
        let altered = cfg.apply_incremental([("flush.messages", &set)]).unwrap();
        assert_eq!(altered.retention_bytes, 1 << 30);
        let replaced = cfg
            .replace_overrides(Vec::<(String, String)>::new())
            .unwrap();
        assert_eq!(replaced.retention_bytes, 1 << 30);
        assert_eq!(replaced, cfg);
    }

    #[test]
    fn wire_ops() {
        assert_eq!(
            AlterOp::from_wire(0, Some("1")),
            Some(AlterOp::Set("1".into()))
        );
        assert_eq!(AlterOp::from_wire(1, None), Some(AlterOp::Delete));
        assert_eq!(
            AlterOp::from_wire(2, Some("a")),
            Some(AlterOp::Append("a".into()))
        );
        assert_eq!(
            AlterOp::from_wire(3, Some("a")),
            Some(AlterOp::Subtract("a".into()))
        );
        assert_eq!(AlterOp::from_wire(4, Some("a")), None);
    }

    #[test]
    fn invalid_broker_defaults_are_reported() {
        let defaults = TopicDefaults {
            segment_ms: 0,
            ..TopicDefaults::default()
        };
        let err = defaults.validate().unwrap_err();
        assert!(err.to_string().contains("segment.ms"), "{err}");
        assert!(TopicDefaults::default().validate().is_ok());
    }

    #[test]
    fn storage_defaults_are_kafka_defaults() {
        assert_eq!(
            TopicDefaults::from_log_config(&LogConfig::default()),
            TopicDefaults::default()
        );
        let broker = LogConfig {
            retention_ms: None,
            segment_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let overrides = BTreeMap::from([("retention.bytes".to_owned(), "100".to_owned())]);
        let log = to_log_config(&broker, &overrides).unwrap();
        assert_eq!(log.retention_ms, None);
        assert_eq!(log.retention_bytes, Some(100));
        assert_eq!(log.segment_bytes, 1 << 20);
        let bad = BTreeMap::from([("retention.ms".to_owned(), "soon".to_owned())]);
        assert_eq!(to_log_config(&broker, &bad).unwrap_err().error_code(), 40);
    }
}
