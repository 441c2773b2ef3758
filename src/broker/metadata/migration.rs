//! From the three files of earlier versions to the metadata log, once.
//!
//! Before the metadata log, `<data_dir>/_strata` held `topics.bin` (cluster id, topics,
//! their ids, partition counts and config overrides), `broker_configs.bin` (dynamic
//! broker configs) and `producer_ids` (the end of the last producer-id block), each a
//! document followed by its CRC-32C and replaced atomically. The readers of those formats
//! live here, and only here.
//!
//! The first start without a metadata log ([`open_metadata_log`]):
//! 1. reads the three files (a damaged one stops the start, naming it, as before);
//! 2. writes their content as the log's first batch, together with `migrated-from`
//!    (each file's name and CRC-32C), complete and fsync'd, then renamed into place
//!    (`local_log::initialize`);
//! 3. only then retires the files: each is renamed to `<name>.migrated` (kept for one
//!    release, so a downgrade is possible; see the README) and the directory fsync'd.
//!
//! A crash before 2 completes leaves the files authoritative (the next start migrates
//! again); a crash between 2 and 3 leaves the log and the files: the next start finds
//! each file's CRC in `migrated-from` and finishes 3. A file whose CRC is not there (an
//! older version ran on the data dir after the migration) stops the start: the two
//! disagree, and the broker will not guess which holds the operator's topics.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use uuid::Uuid;

use super::image::{ApplyError, MetadataImage};
use super::local_log::{self, LocalMetadataLog};
use super::log::MetadataLogError;
use super::record::{
    ClusterRecord, ConfigRecord, ConfigResource, MetadataRecord, PartitionRecord,
    ProducerIdsRecord, TopicRecord,
};

/// `topics.bin`, `broker_configs.bin` and `producer_ids`, in migration order.
pub const LEGACY_FILES: [&str; 3] = [TOPICS_FILE, BROKER_CONFIGS_FILE, PRODUCER_IDS_FILE];
const TOPICS_FILE: &str = "topics.bin";
const BROKER_CONFIGS_FILE: &str = "broker_configs.bin";
const PRODUCER_IDS_FILE: &str = "producer_ids";
/// Suffix of a migrated file.
pub const MIGRATED_SUFFIX: &str = ".migrated";
/// In the log's directory: `<file name> <CRC-32C of its bytes>` per migrated file.
const MIGRATED_FROM: &str = "migrated-from";

/// Failures reading the files of earlier versions; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LegacyFileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("broker state file {path} is corrupt: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error(
        "broker state file {path} is damaged (CRC-32C mismatch); refusing to start rather than \
         trust it: restore it from a backup"
    )]
    Checksum { path: PathBuf },
    #[error("broker state file {path} has format version {found}, this broker reads 1 and 2")]
    Version { path: PathBuf, found: u32 },
}

/// Failures opening (and, on the first start, creating) the metadata log.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Legacy(#[from] LegacyFileError),
    #[error(transparent)]
    Log(#[from] MetadataLogError),
    #[error(
        "{path} is not the file the metadata log in {log} was made from (an older Strata ran on \
         this data dir after the upgrade?): the two disagree and neither is trusted. Keep the \
         one that holds your topics: move {path} away, or move {log} away to migrate again \
         (see README, \"Upgrading and downgrading\")"
    )]
    Diverged { path: PathBuf, log: PathBuf },
    #[error(
        "the broker state files in {dir} do not make consistent metadata ({source}); nothing was \
         migrated or changed"
    )]
    Inconsistent { dir: PathBuf, source: ApplyError },
}

/// One topic as `topics.bin` stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LegacyTopic {
    name: String,
    id: Uuid,
    partitions: u32,
    configs: BTreeMap<String, String>,
}

/// `topics.bin`'s document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LegacyTopics {
    format_version: u32,
    cluster_id: String,
    topics: Vec<LegacyTopic>,
}

/// `broker_configs.bin`'s document. Node configs are kept with the node id they were set
/// for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LegacyBrokerConfigs {
    format_version: u32,
    node_id: i32,
    node: BTreeMap<String, String>,
    cluster_default: BTreeMap<String, String>,
}

/// The bincode documents' format with and without the CRC-32C trailer.
const FORMAT_CHECKED: u32 = 2;
const FORMAT_UNCHECKED: u32 = 1;
const PRODUCER_IDS_MAGIC: &str = "strata-producer-ids 2";
const PRODUCER_IDS_MAGIC_UNCHECKED: &str = "strata-producer-ids 1";

/// Opens the metadata log in `state_dir` (`<data_dir>/_strata`), creating it first on a
/// fresh data dir (cluster id `new_cluster_id`) or from the files of an earlier version,
/// and retiring those files once the log holds them. Blocking.
pub fn open_metadata_log(
    state_dir: &Path,
    node_id: i32,
    new_cluster_id: impl FnOnce() -> String,
) -> Result<LocalMetadataLog, MigrationError> {
    local_log::remove_unfinished(state_dir)?;
    if !local_log::exists(state_dir) {
        let legacy = read_legacy(state_dir)?;
        let (records, side_files) = match &legacy {
            Some(legacy) => {
                info!(topics = legacy.topics.as_ref().map_or(0, |t| t.topics.len()),
                      next_producer_id = ?legacy.next_producer_id,
                      "migrating topics.bin, broker_configs.bin and producer_ids to the metadata log");
                let records = legacy.records(node_id, new_cluster_id);
                // Checked before anything is written: the log refuses at replay what does
                // not apply, and a log that cannot open would block every later start.
                MetadataImage::default()
                    .apply_batch(&records)
                    .map_err(|source| MigrationError::Inconsistent {
                        dir: state_dir.to_path_buf(),
                        source,
                    })?;
                (records, vec![(MIGRATED_FROM, legacy.crcs())])
            }
            None => (
                vec![MetadataRecord::Cluster(ClusterRecord {
                    cluster_id: new_cluster_id(),
                })],
                Vec::new(),
            ),
        };
        local_log::initialize(state_dir, records, &side_files)?;
    }
    let log_dir = state_dir.join(local_log::DIR_NAME);
    let log = LocalMetadataLog::open(&log_dir, node_id)?;
    retire_legacy(state_dir, &log_dir)?;
    Ok(log)
}

/// What the files of an earlier version hold (None for a file that is not there).
struct Legacy {
    topics: Option<LegacyTopics>,
    broker_configs: Option<LegacyBrokerConfigs>,
    next_producer_id: Option<i64>,
    /// (file name, CRC-32C of its bytes) of every file read.
    read: Vec<(&'static str, u32)>,
}

impl Legacy {
    /// The records that say what the files said.
    fn records(
        &self,
        node_id: i32,
        new_cluster_id: impl FnOnce() -> String,
    ) -> Vec<MetadataRecord> {
        let cluster_id = match &self.topics {
            Some(doc) => doc.cluster_id.clone(),
            None => new_cluster_id(),
        };
        let mut records = vec![MetadataRecord::Cluster(ClusterRecord { cluster_id })];
        for topic in self.topics.iter().flat_map(|doc| &doc.topics) {
            records.push(MetadataRecord::Topic(TopicRecord {
                name: topic.name.clone(),
                topic_id: topic.id,
            }));
            records.extend((0..topic.partitions).map(|p| {
                MetadataRecord::Partition(PartitionRecord {
                    topic_id: topic.id,
                    partition_id: p,
                    replicas: vec![node_id],
                    isr: vec![node_id],
                    leader: node_id,
                    leader_epoch: 0,
                    partition_epoch: 0,
                })
            }));
            records.extend(topic.configs.iter().map(|(name, value)| {
                config(ConfigResource::Topic(topic.name.clone()), name, value)
            }));
        }
        if let Some(doc) = &self.broker_configs {
            let node = ConfigResource::Broker(doc.node_id.to_string());
            records.extend(doc.node.iter().map(|(k, v)| config(node.clone(), k, v)));
            let cluster = ConfigResource::Broker(String::new());
            records.extend(
                doc.cluster_default
                    .iter()
                    .map(|(k, v)| config(cluster.clone(), k, v)),
            );
        }
        if let Some(next) = self.next_producer_id.filter(|next| *next > 0) {
            records.push(MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: node_id,
                broker_epoch: -1,
                next_producer_id: next,
            }));
        }
        records
    }

    /// The `migrated-from` file.
    fn crcs(&self) -> Vec<u8> {
        self.read
            .iter()
            .map(|(name, crc)| format!("{name} {crc:08x}\n"))
            .collect::<String>()
            .into_bytes()
    }
}

fn config(resource: ConfigResource, name: &str, value: &str) -> MetadataRecord {
    MetadataRecord::Config(ConfigRecord {
        resource,
        name: name.to_owned(),
        value: Some(value.to_owned()),
    })
}

/// The three files' content; None when none of them exists.
fn read_legacy(state_dir: &Path) -> Result<Option<Legacy>, LegacyFileError> {
    let mut read = Vec::new();
    let mut bytes_of = |name: &'static str| -> Result<Option<(PathBuf, Vec<u8>)>, LegacyFileError> {
        let path = state_dir.join(name);
        match fs::read(&path) {
            Ok(bytes) => {
                read.push((name, crc32c::crc32c(&bytes)));
                Ok(Some((path, bytes)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LegacyFileError::Io { path, source }),
        }
    };
    let topics = bytes_of(TOPICS_FILE)?
        .map(|(path, bytes)| decode_document::<LegacyTopics>(&path, &bytes, |d| d.format_version))
        .transpose()?;
    let broker_configs = bytes_of(BROKER_CONFIGS_FILE)?
        .map(|(path, bytes)| {
            decode_document::<LegacyBrokerConfigs>(&path, &bytes, |d| d.format_version)
        })
        .transpose()?;
    let next_producer_id = bytes_of(PRODUCER_IDS_FILE)?
        .map(|(path, bytes)| decode_producer_ids(&path, &bytes))
        .transpose()?;
    if read.is_empty() {
        return Ok(None);
    }
    Ok(Some(Legacy {
        topics,
        broker_configs,
        next_producer_id,
        read,
    }))
}

/// A bincode document followed by its CRC-32C (u32 BE), or a format-1 document without
/// one that decodes exactly.
fn decode_document<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    format_of: impl Fn(&T) -> u32,
) -> Result<T, LegacyFileError> {
    let doc: T = match crc_checked_body(bytes) {
        Some(body) => bincode::deserialize(body).map_err(|e| LegacyFileError::Decode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?,
        None => match decode_exact::<T>(bytes) {
            Some(doc) if format_of(&doc) == FORMAT_UNCHECKED => doc,
            _ => {
                return Err(LegacyFileError::Checksum {
                    path: path.to_path_buf(),
                })
            }
        },
    };
    match format_of(&doc) {
        FORMAT_CHECKED | FORMAT_UNCHECKED => Ok(doc),
        found => Err(LegacyFileError::Version {
            path: path.to_path_buf(),
            found,
        }),
    }
}

/// `producer_ids`: the end of the last block persisted.
fn decode_producer_ids(path: &Path, bytes: &[u8]) -> Result<i64, LegacyFileError> {
    match crc_checked_body(bytes) {
        Some(body) => {
            parse_producer_ids(body, PRODUCER_IDS_MAGIC).ok_or_else(|| LegacyFileError::Decode {
                path: path.to_path_buf(),
                reason: "not a producer id file".to_owned(),
            })
        }
        None => parse_producer_ids(bytes, PRODUCER_IDS_MAGIC_UNCHECKED).ok_or_else(|| {
            LegacyFileError::Checksum {
                path: path.to_path_buf(),
            }
        }),
    }
}

/// The block start in `bytes` if they are exactly the text of a file whose first line is
/// `magic`.
fn parse_producer_ids(bytes: &[u8], magic: &str) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()? != magic {
        return None;
    }
    let value = lines.next()?.strip_prefix("next_block_start ")?;
    let start: i64 = value.parse().ok()?;
    (start >= 0 && lines.next().is_none()).then_some(start)
}

/// The body of a file whose last 4 bytes are the CRC-32C (u32 BE) of the rest.
fn crc_checked_body(bytes: &[u8]) -> Option<&[u8]> {
    let n = bytes.len().checked_sub(4)?;
    let (body, crc) = bytes.split_at(n);
    (crc32c::crc32c(body).to_be_bytes() == crc).then_some(body)
}

/// `bytes` decoded as exactly one bincode document with nothing left over.
fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .deserialize::<T>(bytes)
        .ok()
}

/// Renames each file of an earlier version that the log in `log_dir` was made from to
/// `<name>.migrated`; refuses one it was not made from.
fn retire_legacy(state_dir: &Path, log_dir: &Path) -> Result<(), MigrationError> {
    let present: Vec<&str> = LEGACY_FILES
        .into_iter()
        .filter(|name| state_dir.join(name).exists())
        .collect();
    if present.is_empty() {
        return Ok(());
    }
    let migrated_from = match fs::read_to_string(log_dir.join(MIGRATED_FROM)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(LegacyFileError::Io {
                path: log_dir.join(MIGRATED_FROM),
                source,
            }
            .into())
        }
    };
    for name in present {
        let path = state_dir.join(name);
        let bytes = fs::read(&path).map_err(|source| LegacyFileError::Io {
            path: path.clone(),
            source,
        })?;
        let line = format!("{name} {:08x}", crc32c::crc32c(&bytes));
        if !migrated_from.lines().any(|l| l == line) {
            return Err(MigrationError::Diverged {
                path,
                log: log_dir.to_path_buf(),
            });
        }
        let retired = state_dir.join(format!("{name}{MIGRATED_SUFFIX}"));
        fs::rename(&path, &retired).map_err(|source| MetadataLogError::Io {
            path: retired.clone(),
            source,
        })?;
        warn!(file = %path.display(), kept_as = %retired.display(),
              "retired a broker state file now held by the metadata log");
    }
    local_log::sync_dir(state_dir)?;
    Ok(())
}

/// Writers of the earlier formats, for tests.
#[cfg(test)]
pub(crate) mod legacy_writers {
    use super::*;

    fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        body
    }

    /// `(name, id, partitions, configs)` of one topic.
    pub(crate) type LegacyTopicSpec<'a> = (&'a str, Uuid, u32, &'a [(&'a str, &'a str)]);

    /// `topics.bin` with one document entry per topic.
    pub(crate) fn topics_bin(cluster_id: &str, topics: &[LegacyTopicSpec<'_>]) -> Vec<u8> {
        let doc = LegacyTopics {
            format_version: FORMAT_CHECKED,
            cluster_id: cluster_id.to_owned(),
            topics: topics
                .iter()
                .map(|(name, id, partitions, configs)| LegacyTopic {
                    name: (*name).to_owned(),
                    id: *id,
                    partitions: *partitions,
                    configs: pairs(configs),
                })
                .collect(),
        };
        with_crc(bincode::serialize(&doc).unwrap())
    }

    pub(crate) fn broker_configs_bin(
        node_id: i32,
        node: &[(&str, &str)],
        cluster_default: &[(&str, &str)],
    ) -> Vec<u8> {
        let doc = LegacyBrokerConfigs {
            format_version: FORMAT_CHECKED,
            node_id,
            node: pairs(node),
            cluster_default: pairs(cluster_default),
        };
        with_crc(bincode::serialize(&doc).unwrap())
    }

    pub(crate) fn producer_ids(next_block_start: i64) -> Vec<u8> {
        with_crc(
            format!("{PRODUCER_IDS_MAGIC}\nnext_block_start {next_block_start}\n").into_bytes(),
        )
    }

    fn pairs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::legacy_writers::*;
    use super::*;

    fn write(state: &Path, name: &str, bytes: &[u8]) {
        fs::create_dir_all(state).unwrap();
        fs::write(state.join(name), bytes).unwrap();
    }

    fn legacy_dir(state: &Path, a: Uuid) {
        write(
            state,
            TOPICS_FILE,
            &topics_bin("cid", &[("a", a, 3, &[("retention.ms", "1000")])]),
        );
        write(
            state,
            BROKER_CONFIGS_FILE,
            &broker_configs_bin(
                0,
                &[("log.retention.ms", "5000")],
                &[("log.roll.ms", "60000")],
            ),
        );
        write(state, PRODUCER_IDS_FILE, &producer_ids(3000));
    }

    #[test]
    fn the_three_files_become_the_log_and_are_retired() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let a = Uuid::new_v4();
        legacy_dir(state, a);
        let log = open_metadata_log(state, 0, || unreachable!()).unwrap();
        let image = log.image();
        assert_eq!(image.cluster_id.as_deref(), Some("cid"));
        let topic = image.topics.by_name("a").unwrap();
        assert_eq!((topic.id, topic.partitions.len()), (a, 3));
        assert_eq!(topic.partitions[2].leader, 0);
        assert_eq!(image.configs.topic("a")["retention.ms"], "1000");
        assert_eq!(image.configs.broker("0")["log.retention.ms"], "5000");
        assert_eq!(image.configs.broker("")["log.roll.ms"], "60000");
        assert_eq!(image.next_producer_id, 3000);
        for name in LEGACY_FILES {
            assert!(!state.join(name).exists(), "{name} retired");
            assert!(
                state.join(format!("{name}.migrated")).exists(),
                "{name} kept"
            );
        }
        drop(log);
        // Later starts open the log; the retired files are not read again.
        fs::write(state.join("topics.bin.migrated"), b"garbage").unwrap();
        let log = open_metadata_log(state, 0, || unreachable!()).unwrap();
        assert_eq!(log.image().topics.len(), 1);
    }

    #[test]
    fn every_crash_point_of_the_migration_is_finished_by_the_next_start() {
        let a = Uuid::new_v4();
        // Crash while the log was being written: an unfinished `metadata.new`.
        let dir = tempfile::tempdir().unwrap();
        legacy_dir(dir.path(), a);
        fs::create_dir(dir.path().join("metadata.new")).unwrap();
        fs::write(
            dir.path()
                .join("metadata.new/metadata-00000000000000000000.log"),
            b"torn",
        )
        .unwrap();
        let log = open_metadata_log(dir.path(), 0, || unreachable!()).unwrap();
        assert_eq!(log.image().topics.by_name("a").unwrap().id, a);
        assert!(!dir.path().join("metadata.new").exists());

        // Crash after the log was renamed into place, before (or while) the files were
        // retired: the next start retires them and keeps the log.
        let dir = tempfile::tempdir().unwrap();
        legacy_dir(dir.path(), a);
        drop(open_metadata_log(dir.path(), 0, || unreachable!()).unwrap());
        for name in [TOPICS_FILE, PRODUCER_IDS_FILE] {
            fs::rename(
                dir.path().join(format!("{name}.migrated")),
                dir.path().join(name),
            )
            .unwrap();
        }
        let log = open_metadata_log(dir.path(), 0, || unreachable!()).unwrap();
        assert_eq!(log.image().next_producer_id, 3000);
        assert_eq!(log.image().topics.by_name("a").unwrap().id, a);
        assert!(LEGACY_FILES.iter().all(|n| !dir.path().join(n).exists()));

        // A topics.bin the log was not made from (an older version ran here after the
        // upgrade): refused, both left as they are.
        drop(log);
        let other = topics_bin("cid", &[("b", Uuid::new_v4(), 1, &[])]);
        write(dir.path(), TOPICS_FILE, &other);
        let err = open_metadata_log(dir.path(), 0, || unreachable!()).unwrap_err();
        assert!(matches!(err, MigrationError::Diverged { .. }), "{err}");
        assert_eq!(fs::read(dir.path().join(TOPICS_FILE)).unwrap(), other);
    }

    #[test]
    fn a_damaged_file_stops_the_migration_naming_it_and_format_1_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        legacy_dir(state, Uuid::new_v4());
        let good = fs::read(state.join(PRODUCER_IDS_FILE)).unwrap();
        let mut bad = good.clone();
        let at = bad.windows(4).position(|w| w == b"3000").unwrap();
        bad[at] = b'1';
        fs::write(state.join(PRODUCER_IDS_FILE), &bad).unwrap();
        let err = open_metadata_log(state, 0, || unreachable!()).unwrap_err();
        assert!(err.to_string().contains("producer_ids"), "{err}");
        assert!(!local_log::exists(state), "nothing written");
        fs::write(state.join(PRODUCER_IDS_FILE), &good).unwrap();

        // Intact files that do not make consistent metadata (one id for two topics):
        // refused before anything is written, so a later start can still migrate.
        let id = Uuid::new_v4();
        let good_topics = fs::read(state.join(TOPICS_FILE)).unwrap();
        write(
            state,
            TOPICS_FILE,
            &topics_bin("cid", &[("a", id, 1, &[]), ("b", id, 1, &[])]),
        );
        let err = open_metadata_log(state, 0, || unreachable!()).unwrap_err();
        assert!(matches!(err, MigrationError::Inconsistent { .. }), "{err}");
        assert!(!local_log::exists(state), "nothing written");
        assert!(state.join(TOPICS_FILE).exists(), "nothing retired");
        fs::write(state.join(TOPICS_FILE), &good_topics).unwrap();

        // Format 1 of each: no checksum.
        let legacy_topics = LegacyTopics {
            format_version: FORMAT_UNCHECKED,
            cluster_id: "old".into(),
            topics: vec![LegacyTopic {
                name: "t".into(),
                id: Uuid::new_v4(),
                partitions: 2,
                configs: BTreeMap::new(),
            }],
        };
        write(
            state,
            TOPICS_FILE,
            &bincode::serialize(&legacy_topics).unwrap(),
        );
        let legacy_configs = LegacyBrokerConfigs {
            format_version: FORMAT_UNCHECKED,
            node_id: 3,
            node: BTreeMap::from([("log.retention.ms".into(), "7".into())]),
            cluster_default: BTreeMap::new(),
        };
        write(
            state,
            BROKER_CONFIGS_FILE,
            &bincode::serialize(&legacy_configs).unwrap(),
        );
        write(
            state,
            PRODUCER_IDS_FILE,
            b"strata-producer-ids 1\nnext_block_start 7000\n",
        );
        let log = open_metadata_log(state, 0, || unreachable!()).unwrap();
        let image = log.image();
        assert_eq!(image.cluster_id.as_deref(), Some("old"));
        assert_eq!(image.topics.by_name("t").unwrap().partitions.len(), 2);
        assert_eq!(image.configs.broker("3")["log.retention.ms"], "7");
        assert_eq!(image.next_producer_id, 7000);
    }

    #[test]
    fn a_fresh_data_dir_gets_a_log_with_a_new_cluster_id() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_metadata_log(dir.path(), 0, || "fresh".to_owned()).unwrap();
        assert_eq!(log.image().cluster_id.as_deref(), Some("fresh"));
        assert!(!dir
            .path()
            .join(local_log::DIR_NAME)
            .join(MIGRATED_FROM)
            .exists());
    }
}
