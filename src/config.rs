//! Broker configuration: command-line flags over `STRATA_*` environment variables over an
//! optional Kafka-style properties file (`--config FILE`, `key=value` lines).
//!
//! Every option is named as Kafka names it where Kafka has a name: the properties file
//! accepts the Kafka key (`log.dirs`, `num.partitions`, ...) or the flag's long name.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

/// Errors found while assembling the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad flags, environment values or file values (message comes from clap).
    #[error("{0}")]
    Invalid(#[from] clap::Error),
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} line {line}: expected key=value, got {text:?}")]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("config file {path} line {line}: unknown key {key:?}")]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
    },
}

/// The broker's settings. Durations are in milliseconds, sizes in bytes.
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(
    name = "strata",
    version,
    about = "A durable, partitioned commit-log broker that speaks the Apache Kafka wire protocol",
    long_about = "A durable, partitioned commit-log broker that speaks the Apache Kafka wire \
protocol.\n\nEvery option can be given as a flag, as the STRATA_* environment variable shown, \
or in a properties file (--config) under its Kafka name or its flag name. Flags win over \
environment variables, which win over the file."
)]
pub struct Config {
    /// Kafka-style properties file (`key=value` per line, `#` comments). Its values apply
    /// only to options given neither as a flag nor as an environment variable.
    #[arg(long, env = "STRATA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on for Kafka clients (port 0 picks a free port).
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,

    /// Host name given to clients in Metadata responses [default: the listen address's IP].
    /// Kafka: advertised.listeners.
    #[arg(long, env = "STRATA_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,

    /// Port given to clients in Metadata responses [default: the bound port].
    #[arg(long, env = "STRATA_ADVERTISED_PORT")]
    pub advertised_port: Option<u16>,

    /// Directory holding partition logs and broker metadata. Kafka: log.dirs.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Partition count of auto-created topics and of CreateTopics without a count, at
    /// most 10000 (the partitions one topic may have). Kafka: num.partitions.
    #[arg(long, env = "STRATA_NUM_PARTITIONS", default_value_t = 1,
          value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub num_partitions: i32,

    /// Most partitions this broker holds; a creation beyond it is refused with
    /// POLICY_VIOLATION. The open-file limit may allow fewer (each partition holds a file
    /// descriptor). Kafka: max.broker.partitions (KIP-578; Kafka's default is unbounded).
    #[arg(long, env = "STRATA_MAX_BROKER_PARTITIONS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub max_broker_partitions: u32,

    /// Partitions per second that topic creations, partition creations and topic
    /// deletions may add or remove (a token bucket holding 11 seconds' worth), shared by
    /// every client. Kafka: the `controller_mutation_rate` client quota (KIP-599), which
    /// Kafka leaves unbounded by default.
    #[arg(long, env = "STRATA_CONTROLLER_MUTATION_RATE", default_value_t = 1000.0,
          value_parser = positive_rate)]
    pub controller_mutation_rate: f64,

    /// Create unknown topics on Metadata/Produce requests. Kafka: auto.create.topics.enable.
    #[arg(long, env = "STRATA_AUTO_CREATE_TOPICS", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub auto_create_topics: bool,

    /// Default retention time of a partition in ms; -1 keeps data forever.
    /// Kafka: log.retention.ms.
    #[arg(
        long,
        env = "STRATA_DEFAULT_RETENTION_MS",
        default_value_t = 604_800_000,
        allow_negative_numbers = true
    )]
    pub default_retention_ms: i64,

    /// Default retention size of a partition in bytes; -1 means unbounded.
    /// Kafka: log.retention.bytes.
    #[arg(long, env = "STRATA_DEFAULT_RETENTION_BYTES", default_value_t = -1,
          allow_negative_numbers = true)]
    pub default_retention_bytes: i64,

    /// Default segment size in bytes. Kafka: log.segment.bytes.
    #[arg(long, env = "STRATA_DEFAULT_SEGMENT_BYTES", default_value_t = 1_073_741_824,
          value_parser = clap::value_parser!(u64).range(14..))]
    pub default_segment_bytes: u64,

    /// Interval in ms between retention checks. Kafka: log.retention.check.interval.ms.
    #[arg(long, env = "STRATA_LOG_RETENTION_CHECK_INTERVAL_MS", default_value_t = 300_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub log_retention_check_interval_ms: u64,

    /// Largest request frame accepted; a larger length prefix closes the connection.
    /// Kafka: socket.request.max.bytes.
    #[arg(long, env = "STRATA_SOCKET_REQUEST_MAX_BYTES", default_value_t = 104_857_600,
          value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub socket_request_max_bytes: u32,

    /// Most record bytes one Fetch response returns, whatever the client asks for (the
    /// first batch may still exceed it, as in Kafka, KIP-74). Kafka: fetch.max.bytes.
    #[arg(long, env = "STRATA_FETCH_MAX_BYTES", default_value_t = 57_671_680,
          value_parser = clap::value_parser!(i32).range(1024..))]
    pub fetch_max_bytes: i32,

    /// Threads that run the request path's blocking storage work (appends, segment reads,
    /// transaction markers, DeleteRecords), so that no async worker waits for a disk.
    /// Kafka: num.io.threads.
    #[arg(long, env = "STRATA_NUM_IO_THREADS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub num_io_threads: u32,

    /// Requests read ahead on one connection while earlier responses are pending.
    #[arg(long, env = "STRATA_MAX_IN_FLIGHT_REQUESTS", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_in_flight_requests: u32,

    /// Largest number of open client connections; a connection accepted beyond it is
    /// closed at once (logged). Kafka: max.connections (unbounded by default there; here
    /// 10,000, so what connections hold — descriptors, buffers, requests read ahead — has
    /// a broker-wide bound by default).
    #[arg(long, env = "STRATA_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub max_connections: u32,

    /// Largest number of open connections from one IP address; beyond it a new connection
    /// is closed at once (logged). Kafka: max.connections.per.ip.
    #[arg(long, env = "STRATA_MAX_CONNECTIONS_PER_IP", default_value_t = i32::MAX as u32,
          value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub max_connections_per_ip: u32,

    /// A connection that sends no request and receives no response for this many ms is
    /// closed; -1 never closes idle connections. Kafka: connections.max.idle.ms.
    #[arg(
        long,
        env = "STRATA_CONNECTIONS_MAX_IDLE_MS",
        default_value_t = 600_000,
        allow_negative_numbers = true
    )]
    pub connections_max_idle_ms: i64,

    /// Bytes of request frames read but not yet answered, over all connections; reading
    /// stops while the budget is spent. -1 is unbounded. Kafka: queued.max.request.bytes
    /// (Kafka's default is -1; Strata bounds memory by default).
    #[arg(
        long,
        env = "STRATA_QUEUED_MAX_REQUEST_BYTES",
        default_value_t = 536_870_912,
        allow_negative_numbers = true
    )]
    pub queued_max_request_bytes: i64,

    /// Once the first byte of a request frame has arrived, the whole frame must arrive
    /// within this many ms or the connection is closed (time the broker makes it wait for
    /// queued.max.request.bytes does not count); -1 (or 0) never. Strata only: Kafka has no
    /// such limit and waits for connections.max.idle.ms.
    #[arg(
        long,
        env = "STRATA_REQUEST_READ_TIMEOUT_MS",
        default_value_t = 30_000,
        allow_negative_numbers = true
    )]
    pub request_read_timeout_ms: i64,

    /// This broker's node id (Metadata, FindCoordinator). Kafka: node.id.
    #[arg(long, env = "STRATA_NODE_ID", default_value_t = 0)]
    pub node_id: i32,

    /// Cluster id reported in Metadata [default: generated once and kept in the data dir].
    /// Kafka: cluster.id.
    #[arg(long, env = "STRATA_CLUSTER_ID")]
    pub cluster_id: Option<String>,

    /// Smallest session timeout a group member may ask for.
    /// Kafka: group.min.session.timeout.ms (Kafka's default is 6000).
    #[arg(
        long,
        env = "STRATA_GROUP_MIN_SESSION_TIMEOUT_MS",
        default_value_t = 1000
    )]
    pub group_min_session_timeout_ms: i32,

    /// Largest session timeout a group member may ask for.
    /// Kafka: group.max.session.timeout.ms.
    #[arg(
        long,
        env = "STRATA_GROUP_MAX_SESSION_TIMEOUT_MS",
        default_value_t = 1_800_000
    )]
    pub group_max_session_timeout_ms: i32,

    /// Delay before the first rebalance of a new group, to gather members.
    /// Kafka: group.initial.rebalance.delay.ms (Kafka's default is 3000).
    #[arg(
        long,
        env = "STRATA_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 0
    )]
    pub group_initial_rebalance_delay_ms: u64,

    /// How long the committed offsets of an empty group are kept, in minutes.
    /// Kafka: offsets.retention.minutes.
    #[arg(
        long,
        env = "STRATA_OFFSETS_RETENTION_MINUTES",
        default_value_t = 10_080
    )]
    pub offsets_retention_minutes: u64,

    /// How long a partition (and InitProducerId) remembers an idle idempotent producer,
    /// in milliseconds after its last batch. Kafka: producer.id.expiration.ms.
    #[arg(
        long,
        env = "STRATA_PRODUCER_ID_EXPIRATION_MS",
        default_value_t = 86_400_000
    )]
    pub producer_id_expiration_ms: u64,

    /// Largest `transaction.timeout.ms` a transactional producer may ask for in
    /// InitProducerId (a larger one is INVALID_TRANSACTION_TIMEOUT).
    /// Kafka: transaction.max.timeout.ms.
    #[arg(long, env = "STRATA_TRANSACTION_MAX_TIMEOUT_MS", default_value_t = 900_000,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub transaction_max_timeout_ms: i32,

    /// How often the transaction coordinator looks for transactions older than their
    /// timeout (and aborts them), in ms.
    /// Kafka: transaction.abort.timed.out.transaction.cleanup.interval.ms.
    #[arg(long, env = "STRATA_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS",
          default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,

    /// How long the coordinator keeps a transactional id without a transaction after its
    /// last use, in ms. Kafka: transactional.id.expiration.ms.
    #[arg(long, env = "STRATA_TRANSACTIONAL_ID_EXPIRATION_MS", default_value_t = 604_800_000,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub transactional_id_expiration_ms: i64,

    /// Longest group id, group instance id, transactional id, protocol type or protocol
    /// name a request may store: a longer group id is INVALID_GROUP_ID, the others
    /// INVALID_REQUEST. Client ids are kept cut to this length and member ids never
    /// exceed it. Strata's own limit (Kafka has none).
    #[arg(long, env = "STRATA_ID_MAX_BYTES", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub id_max_bytes: u32,

    /// Longest metadata string of a committed offset; longer is OFFSET_METADATA_TOO_LARGE.
    /// Kafka: offset.metadata.max.bytes.
    #[arg(long, env = "STRATA_OFFSET_METADATA_MAX_BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(0..=1_048_576))]
    pub offset_metadata_max_bytes: u32,

    /// Most members of one group, member ids handed out with MEMBER_ID_REQUIRED
    /// included; a JoinGroup beyond it is GROUP_MAX_SIZE_REACHED. Kafka: group.max.size
    /// (Kafka's default is unbounded).
    #[arg(long, env = "STRATA_GROUP_MAX_SIZE", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub group_max_size: u32,

    /// Most bytes of one group's membership (ids, protocol metadata and assignments of
    /// its members, plus a fixed overhead per member); a JoinGroup or SyncGroup beyond it
    /// is GROUP_MAX_SIZE_REACHED. At most 15 MiB, so that the group's record fits the
    /// offsets log. Strata's own limit (Kafka's is its message.max.bytes).
    #[arg(long, env = "STRATA_GROUP_MAX_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(65_536..=15 * 1024 * 1024))]
    pub group_max_bytes: u64,

    /// Most bytes of every group's membership and every committed and pending offset
    /// together, broker-wide; beyond it a JoinGroup or SyncGroup is
    /// GROUP_MAX_SIZE_REACHED and an OffsetCommit or TxnOffsetCommit
    /// INVALID_COMMIT_OFFSET_SIZE. Strata's own limit.
    #[arg(long, env = "STRATA_GROUP_STATE_MAX_BYTES", default_value_t = 512 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1_048_576..))]
    pub group_state_max_bytes: u64,

    /// Most bytes of every transactional id's state (its id, and the partitions and
    /// groups of its transaction), broker-wide; beyond it InitProducerId for a new id,
    /// AddPartitionsToTxn and AddOffsetsToTxn are POLICY_VIOLATION. Strata's own limit.
    #[arg(long, env = "STRATA_TRANSACTION_STATE_MAX_BYTES", default_value_t = 128 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1_048_576..))]
    pub transaction_state_max_bytes: u64,

    /// The options given explicitly, as a flag, a `STRATA_*` environment variable or a
    /// config-file entry (clap argument ids, e.g. `num_partitions`). DescribeConfigs
    /// reports these as `STATIC_BROKER_CONFIG`. Filled by [`Config::load_from`]; empty
    /// for [`Config::with_defaults`].
    #[arg(skip)]
    pub explicitly_set: BTreeSet<String>,
}

/// Properties-file keys: (Kafka name, clap argument id). The flag's long name (with `-` or
/// `.` or `_` separators) is accepted as well.
const FILE_KEYS: &[(&str, &str)] = &[
    ("listeners", "listen"),
    ("advertised.host.name", "advertised_host"),
    ("advertised.port", "advertised_port"),
    ("log.dirs", "data_dir"),
    ("log.dir", "data_dir"),
    ("num.partitions", "num_partitions"),
    ("max.broker.partitions", "max_broker_partitions"),
    ("controller.mutation.rate", "controller_mutation_rate"),
    ("auto.create.topics.enable", "auto_create_topics"),
    ("log.retention.ms", "default_retention_ms"),
    ("log.retention.bytes", "default_retention_bytes"),
    ("log.segment.bytes", "default_segment_bytes"),
    (
        "log.retention.check.interval.ms",
        "log_retention_check_interval_ms",
    ),
    ("socket.request.max.bytes", "socket_request_max_bytes"),
    ("fetch.max.bytes", "fetch_max_bytes"),
    ("num.io.threads", "num_io_threads"),
    ("max.connections", "max_connections"),
    ("max.connections.per.ip", "max_connections_per_ip"),
    ("connections.max.idle.ms", "connections_max_idle_ms"),
    ("queued.max.request.bytes", "queued_max_request_bytes"),
    ("node.id", "node_id"),
    ("broker.id", "node_id"),
    ("cluster.id", "cluster_id"),
    (
        "group.min.session.timeout.ms",
        "group_min_session_timeout_ms",
    ),
    (
        "group.max.session.timeout.ms",
        "group_max_session_timeout_ms",
    ),
    (
        "group.initial.rebalance.delay.ms",
        "group_initial_rebalance_delay_ms",
    ),
    ("offsets.retention.minutes", "offsets_retention_minutes"),
    ("producer.id.expiration.ms", "producer_id_expiration_ms"),
    ("transaction.max.timeout.ms", "transaction_max_timeout_ms"),
    (
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "transaction_abort_timed_out_transaction_cleanup_interval_ms",
    ),
    (
        "transactional.id.expiration.ms",
        "transactional_id_expiration_ms",
    ),
];

impl Config {
    /// Reads flags from the process arguments, the environment, and `--config` if given.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_from(std::env::args_os())
    }

    /// Like [`Config::load`] with explicit arguments (the first is the program name).
    pub fn load_from<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let matches = Config::command().try_get_matches_from(&args)?;
        let mut first = Config::from_arg_matches(&matches)?;
        first.explicitly_set = explicit_ids(&matches);
        let Some(path) = first.config.clone() else {
            return Ok(first);
        };
        let file_values = read_properties(&path)?;
        let mut extra: Vec<OsString> = Vec::new();
        for (id, value) in file_values {
            if given_explicitly(&matches, &id) {
                continue;
            }
            extra.push(format!("--{}", id.replace('_', "-")).into());
            extra.push(value.into());
        }
        if extra.is_empty() {
            return Ok(first);
        }
        // Re-parse with the file's values appended as flags: clap validates them exactly
        // as it validates flags, and the original flags/environment still win because
        // only options they left unset were appended.
        let mut all = args;
        all.extend(extra);
        let matches = Config::command().try_get_matches_from(&all)?;
        let mut config = Config::from_arg_matches(&matches)?;
        config.explicitly_set = explicit_ids(&matches);
        Ok(config)
    }

    /// A configuration with every default, listening on `listen` and storing in `data_dir`
    /// (convenient for tests and embedding).
    pub fn with_defaults(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Config {
        let mut config = Config::parse_from(["strata"]);
        config.listen = listen;
        config.data_dir = data_dir.into();
        config
    }
}

/// A rate that is a positive, finite number.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

/// Ids of the arguments given as flags or environment variables (config-file entries are
/// appended as flags before the final parse, so they count too).
fn explicit_ids(matches: &ArgMatches) -> BTreeSet<String> {
    Config::command()
        .get_arguments()
        .map(|arg| arg.get_id().as_str())
        .filter(|id| *id != "config" && given_explicitly(matches, id))
        .map(str::to_owned)
        .collect()
}

fn given_explicitly(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable)
    )
}

/// Parses a properties file into (argument id, value) pairs, last occurrence winning.
fn read_properties(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((key, value)) = line.split_once(['=', ':']) else {
            return Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                line: index + 1,
                text: raw.to_string(),
            });
        };
        let key = key.trim();
        let mut value = value.trim().to_string();
        let Some(id) = arg_id_for_key(key) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_path_buf(),
                line: index + 1,
                key: key.to_string(),
            });
        };
        if id == "listen" {
            // Kafka's `listeners=PLAINTEXT://host:port` form.
            if let Some((_, addr)) = value.split_once("://") {
                value = addr.to_string();
            }
        }
        out.insert(id, value);
    }
    Ok(out)
}

fn arg_id_for_key(key: &str) -> Option<String> {
    if let Some((_, id)) = FILE_KEYS.iter().find(|(k, _)| *k == key) {
        return Some((*id).to_string());
    }
    let normalized = key.replace(['-', '.'], "_");
    Config::command()
        .get_arguments()
        .map(|arg| arg.get_id().as_str().to_string())
        .filter(|id| id != "config")
        .find(|id| *id == normalized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn defaults_make_a_local_broker() {
        let c = Config::load_from(["strata"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.num_partitions, 1);
        assert!(c.auto_create_topics);
        assert_eq!(c.socket_request_max_bytes, 100 * 1024 * 1024);
        assert_eq!(c.node_id, 0);
    }

    #[test]
    fn file_values_apply_only_where_flags_are_silent() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "# comment\nnum.partitions=4\nlog.dirs=/tmp/x\nlisteners=PLAINTEXT://127.0.0.1:9999\n\
             auto.create.topics.enable=false\nlog-retention-check-interval-ms = 5000"
        )
        .unwrap();
        let path = file.path().to_str().unwrap().to_string();
        let c = Config::load_from(["strata", "--config", &path, "--num-partitions", "2"]).unwrap();
        assert_eq!(c.num_partitions, 2, "flag wins over file");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.listen, "127.0.0.1:9999".parse().unwrap());
        assert!(!c.auto_create_topics);
        assert_eq!(c.log_retention_check_interval_ms, 5000);
        let explicit: Vec<&str> = c.explicitly_set.iter().map(String::as_str).collect();
        assert_eq!(
            explicit,
            vec![
                "auto_create_topics",
                "data_dir",
                "listen",
                "log_retention_check_interval_ms",
                "num_partitions"
            ]
        );
        assert!(Config::load_from(["strata"])
            .unwrap()
            .explicitly_set
            .is_empty());
    }

    #[test]
    fn request_read_timeout_and_fetch_max_bytes_from_flags_and_file() {
        let c = Config::load_from(["strata"]).unwrap();
        assert_eq!(c.request_read_timeout_ms, 30_000);
        assert_eq!(c.fetch_max_bytes, 57_671_680);
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "request.read.timeout.ms=-1\nfetch.max.bytes=1048576").unwrap();
        let path = file.path().to_str().unwrap().to_string();
        let c = Config::load_from(["strata", "--config", &path]).unwrap();
        assert_eq!(c.request_read_timeout_ms, -1);
        assert_eq!(c.fetch_max_bytes, 1 << 20);
        let c = Config::load_from(["strata", "--request-read-timeout-ms", "500"]).unwrap();
        assert_eq!(c.request_read_timeout_ms, 500);
        // Kafka's own floor for fetch.max.bytes.
        assert!(Config::load_from(["strata", "--fetch-max-bytes", "1023"]).is_err());
    }

    #[test]
    fn transaction_settings_take_kafka_names_and_defaults() {
        let c = Config::load_from(["strata"]).unwrap();
        assert_eq!(c.transaction_max_timeout_ms, 900_000);
        assert_eq!(
            c.transaction_abort_timed_out_transaction_cleanup_interval_ms,
            10_000
        );
        assert_eq!(c.transactional_id_expiration_ms, 604_800_000);
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "transaction.max.timeout.ms=5000
             transaction.abort.timed.out.transaction.cleanup.interval.ms=20
             transactional.id.expiration.ms=3000"
        )
        .unwrap();
        let path = file.path().to_str().unwrap().to_string();
        let c = Config::load_from(["strata", "--config", &path]).unwrap();
        assert_eq!(c.transaction_max_timeout_ms, 5000);
        assert_eq!(
            c.transaction_abort_timed_out_transaction_cleanup_interval_ms,
            20
        );
        assert_eq!(c.transactional_id_expiration_ms, 3000);
    }

    #[test]
    fn group_and_transaction_limits_take_their_names_and_defaults() {
        let c = Config::load_from(["strata"]).unwrap();
        assert_eq!(c.id_max_bytes, 1024);
        assert_eq!(c.offset_metadata_max_bytes, 4096);
        assert_eq!(c.group_max_size, 1000);
        assert_eq!(c.group_max_bytes, 4 * 1024 * 1024);
        assert_eq!(c.group_state_max_bytes, 512 * 1024 * 1024);
        assert_eq!(c.transaction_state_max_bytes, 128 * 1024 * 1024);
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "id.max.bytes=100\noffset.metadata.max.bytes=10\ngroup.max.size=3\n\
             group.max.bytes=70000\ngroup.state.max.bytes=2000000\n\
             transaction.state.max.bytes=3000000"
        )
        .unwrap();
        let path = file.path().to_str().unwrap().to_string();
        let c = Config::load_from(["strata", "--config", &path]).unwrap();
        assert_eq!(
            (
                c.id_max_bytes,
                c.offset_metadata_max_bytes,
                c.group_max_size,
                c.group_max_bytes,
                c.group_state_max_bytes,
                c.transaction_state_max_bytes
            ),
            (100, 10, 3, 70_000, 2_000_000, 3_000_000)
        );
        // The group record must fit the offsets log.
        assert!(Config::load_from(["strata", "--group-max-bytes", "16777216"]).is_err());
        assert!(Config::load_from(["strata", "--id-max-bytes", "10"]).is_err());
    }

    #[test]
    fn partition_caps_and_mutation_rate_take_kafka_names_and_bounded_defaults() {
        let c = Config::load_from(["strata"]).unwrap();
        assert_eq!(c.max_broker_partitions, 100_000);
        assert_eq!(c.controller_mutation_rate, 1000.0);
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "max.broker.partitions=50\ncontroller.mutation.rate=2.5"
        )
        .unwrap();
        let path = file.path().to_str().unwrap().to_string();
        let c = Config::load_from(["strata", "--config", &path]).unwrap();
        assert_eq!(c.max_broker_partitions, 50);
        assert_eq!(c.controller_mutation_rate, 2.5);
        for bad in [
            ["--controller-mutation-rate", "0"],
            ["--controller-mutation-rate", "inf"],
            ["--max-broker-partitions", "0"],
            ["--num-partitions", "10001"],
        ] {
            assert!(
                Config::load_from(["strata", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "no.such.key=1").unwrap();
        let path = file.path().to_str().unwrap().to_string();
        let err = Config::load_from(["strata", "--config", &path]).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err}");
    }

    #[test]
    fn bad_file_value_is_reported() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "num.partitions=zero").unwrap();
        let path = file.path().to_str().unwrap().to_string();
        assert!(Config::load_from(["strata", "--config", &path]).is_err());
    }
}
