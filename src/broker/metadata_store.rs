//! The broker's own metadata (cluster id, topics, their ids, partition counts and config
//! overrides), kept in `<data_dir>/_strata/topics.bin` as one bincode document.
//!
//! Invariant: the file on disk is always a complete document, the old one or the new one.
//! A save writes `topics.bin.tmp`, fsyncs it, renames it over `topics.bin` and fsyncs the
//! directory, so a crash at any moment leaves one of the two whole versions.
//!
//! The file is the bincode document followed by the CRC-32C of those bytes (u32 BE). A file
//! whose checksum does not match is refused and the broker does not start: a damaged
//! document that still decoded could rename or shrink topics, and the start-up would then
//! remove their partition directories as orphans. Refusing loses nothing; the operator
//! restores the file (or removes it to start with no topics, which deletes their data).
//! Files written before the checksum existed (format 1) are read if they decode exactly.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Name of the broker's own directory under the data dir. Partition directories end in
/// `-<digits>`, so this never collides with one.
pub const STATE_DIR: &str = "_strata";
const FILE_NAME: &str = "topics.bin";
/// Bumped when the document's layout changes; older broker versions refuse newer files.
const FORMAT_VERSION: u32 = 2;
/// The format without the CRC-32C trailer, still read.
const FORMAT_VERSION_UNCHECKED: u32 = 1;

/// Failures reading or writing the metadata document; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata file {path} is corrupt: {source}")]
    Decode {
        path: PathBuf,
        source: bincode::Error,
    },
    #[error(
        "broker state file {path} is damaged (CRC-32C mismatch); refusing to start rather than \
         trust it: restore it from a backup"
    )]
    Checksum { path: PathBuf },
    #[error("metadata file {path} has format version {found}, this broker reads {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot encode metadata: {0}")]
    Encode(bincode::Error),
}

/// One topic as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub id: Uuid,
    pub partitions: u32,
    /// Per-topic config overrides (Kafka key -> value), as the client gave them.
    pub configs: BTreeMap<String, String>,
}

/// The whole persisted document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataDocument {
    pub format_version: u32,
    pub cluster_id: String,
    pub topics: Vec<TopicRecord>,
}

impl MetadataDocument {
    pub fn new(cluster_id: String) -> Self {
        MetadataDocument {
            format_version: FORMAT_VERSION,
            cluster_id,
            topics: Vec::new(),
        }
    }
}

/// Reads and atomically replaces the metadata document.
#[derive(Debug)]
pub struct MetadataStore {
    dir: PathBuf,
    /// Documents written since open (each a write, two fsyncs and a rename).
    saves: AtomicU64,
}

impl MetadataStore {
    /// Creates `<data_dir>/_strata/` if needed.
    pub fn open(data_dir: &Path) -> Result<MetadataStore, MetadataError> {
        let dir = data_dir.join(STATE_DIR);
        fs::create_dir_all(&dir).map_err(|source| MetadataError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(MetadataStore {
            dir,
            saves: AtomicU64::new(0),
        })
    }

    /// The broker's own directory (`<data_dir>/_strata`), where other broker state (group
    /// offsets) may live too.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stored document, or None on a fresh data dir.
    pub fn load(&self) -> Result<Option<MetadataDocument>, MetadataError> {
        let path = self.dir.join(FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(MetadataError::Io { path, source }),
        };
        let doc: MetadataDocument = match crc_checked_body(&bytes) {
            Some(doc_bytes) => {
                bincode::deserialize(doc_bytes).map_err(|source| MetadataError::Decode {
                    path: path.clone(),
                    source,
                })?
            }
            None => {
                // Format 1 had no checksum: accept only an exact decode of a format-1 document.
                match decode_exact::<MetadataDocument>(&bytes) {
                    Some(doc) if doc.format_version == FORMAT_VERSION_UNCHECKED => doc,
                    _ => return Err(MetadataError::Checksum { path }),
                }
            }
        };
        if doc.format_version != FORMAT_VERSION && doc.format_version != FORMAT_VERSION_UNCHECKED {
            return Err(MetadataError::Version {
                path,
                found: doc.format_version,
            });
        }
        Ok(Some(doc))
    }

    /// Replaces the stored document; durable when this returns Ok.
    pub fn save(&self, doc: &MetadataDocument) -> Result<(), MetadataError> {
        let doc = MetadataDocument {
            format_version: FORMAT_VERSION,
            ..doc.clone()
        };
        let bytes = bincode::serialize(&doc).map_err(MetadataError::Encode)?;
        replace_file(&self.dir, FILE_NAME, &with_crc(bytes))?;
        self.saves.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// How many documents were written since open.
    pub fn saves(&self) -> u64 {
        self.saves.load(Ordering::Relaxed)
    }
}

/// Appends the CRC-32C of `body` (u32 BE) to it: the framing of every file in `_strata`
/// (`topics.bin`, `broker_configs.bin`, `producer_ids`). Read back with [`crc_checked_body`].
pub fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&body);
    body.extend_from_slice(&crc.to_be_bytes());
    body
}

/// The body of a file written with [`with_crc`], or None when its last 4 bytes are not the
/// CRC-32C of the rest: the file is damaged, or was written before it carried a checksum
/// (the caller decides which, by whether the whole file is an exact older-format document).
pub fn crc_checked_body(bytes: &[u8]) -> Option<&[u8]> {
    let n = bytes.len().checked_sub(4)?;
    let (body, crc) = bytes.split_at(n);
    (crc32c::crc32c(body).to_be_bytes() == crc).then_some(body)
}

/// `bytes` decoded as exactly one bincode document (as `bincode::serialize` wrote it) with
/// nothing left over, or None. For older files without a checksum: a stricter decode than
/// `bincode::deserialize`, which ignores trailing bytes.
pub fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .deserialize::<T>(bytes)
        .ok()
}

/// Atomically replaces `<dir>/<name>` with `bytes`: writes `<name>.tmp`, fsyncs it, renames
/// it over `<name>` and fsyncs `dir`, so a crash at any moment leaves either the old or the
/// new content whole. Durable when this returns Ok.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), MetadataError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MetadataError::Io { path, source }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    fs::rename(&tmp, &dst).map_err(io(&dst))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap(), None);
        let mut doc = MetadataDocument::new("c1".into());
        doc.topics.push(TopicRecord {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 3,
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
        });
        store.save(&doc).unwrap();
        assert_eq!(store.load().unwrap(), Some(doc.clone()));
        doc.topics.clear();
        store.save(&doc).unwrap();
        assert_eq!(store.load().unwrap(), Some(doc));
        assert!(!dir.path().join(STATE_DIR).join("topics.bin.tmp").exists());
    }

    #[test]
    fn corrupt_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        fs::write(dir.path().join(STATE_DIR).join(FILE_NAME), b"\x01\x00\x00").unwrap();
        assert!(store.load().is_err());
    }

    #[test]
    fn a_flipped_byte_that_still_decodes_is_refused_and_format_1_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        let mut doc = MetadataDocument::new("c1".into());
        doc.topics.push(TopicRecord {
            name: "orders".into(),
            id: Uuid::new_v4(),
            partitions: 3,
            configs: BTreeMap::new(),
        });
        store.save(&doc).unwrap();
        let path = dir.path().join(STATE_DIR).join(FILE_NAME);
        let good = fs::read(&path).unwrap();
        // "orders" -> "ordfrs": still a valid bincode document, but not the one saved.
        let at = good.windows(6).position(|w| w == b"orders").unwrap() + 3;
        let mut bad = good.clone();
        bad[at] ^= 0x03;
        fs::write(&path, &bad).unwrap();
        assert!(matches!(store.load(), Err(MetadataError::Checksum { .. })));
        // A format-1 file (no checksum) from an older broker still loads.
        let mut legacy = doc.clone();
        legacy.format_version = FORMAT_VERSION_UNCHECKED;
        fs::write(&path, bincode::serialize(&legacy).unwrap()).unwrap();
        assert_eq!(store.load().unwrap().unwrap().topics, doc.topics);
    }
}
