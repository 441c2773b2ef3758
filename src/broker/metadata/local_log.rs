//! The single-node metadata log: `<data_dir>/_strata/metadata/metadata-<N>.log`, a
//! [`RecordLog`] of [`MetadataFrame`]s (length, CRC-32C, payload; fsync'd per append).
//!
//! # File
//!
//! A file is the parts of one snapshot (`Snapshot` frames, all with the same
//! `end_offset`; none in a log that was never compacted) followed by `Batch` frames with
//! consecutive offsets: a batch's `base_offset` is the offset after the previous batch (or
//! the snapshot's `end_offset`). Each append is one frame, so a batch is applied all or
//! none. A snapshot is written by [`RecordLog::rewrite`]: a new generation, complete and
//! fsync'd before it is renamed over the old one.
//!
//! # Damage
//!
//! Unlike the offsets and transaction logs, which skip a damaged frame, the metadata log
//! stops the start with an error naming the file and the byte when a frame in the middle
//! is damaged, or when the frames do not replay (a gap in offsets, a record that does not
//! fit): a lost `RemoveTopic` or `Topic` record would make the start-up remove real
//! partitions as orphans. A torn tail (the last frame cut short: a crash in the middle of
//! an append, never acknowledged) is cut, as in every log.
//!
//! # Initialization
//!
//! The log directory is created complete or not at all: [`initialize`] writes the first
//! records into `metadata.new/`, fsyncs them, and renames the directory to `metadata/`.
//! A `metadata.new/` found at start is an initialization that did not finish and is
//! removed.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use super::image::MetadataImage;
use super::log::{
    AppliedBatch, Committed, Listener, MetadataLog, MetadataLogError, MetadataSnapshot,
};
use super::record::{MetadataFrame, MetadataRecord};
use crate::broker::record_log::{scan_frames, LogRecord, RecordLog, RecordLogError};

/// The log's directory under `_strata`.
pub const DIR_NAME: &str = "metadata";
/// Where [`initialize`] writes before renaming to [`DIR_NAME`].
const NEW_DIR_NAME: &str = "metadata.new";
/// Compact (write a snapshot) once the file exceeds this and twice its last snapshot.
pub const COMPACT_THRESHOLD: u64 = 1 << 20;
/// Records per snapshot frame (a frame holds at most 16 MiB).
const SNAPSHOT_FRAME_RECORDS: usize = 1000;

/// The single-node metadata log.
#[derive(Debug)]
pub struct LocalMetadataLog {
    inner: Mutex<Inner>,
    image: watch::Sender<Arc<MetadataImage>>,
    /// Written into snapshots' producer-id records.
    node_id: i32,
    /// Batches appended since open.
    appends: AtomicU64,
}

struct Inner {
    log: RecordLog<MetadataFrame>,
    /// Where the current file's snapshot ends (0: the file has none).
    snapshot_end: u64,
    /// Every record after the snapshot, with its offset.
    since_snapshot: Vec<(u64, MetadataRecord)>,
    listener: Option<Listener>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("log", &self.log)
            .field("snapshot_end", &self.snapshot_end)
            .finish_non_exhaustive()
    }
}

impl LocalMetadataLog {
    /// Opens the log in `dir` (`<data_dir>/_strata/metadata`) and replays it. Refuses a
    /// damaged or inconsistent file. Blocking.
    pub fn open(dir: &Path, node_id: i32) -> Result<LocalMetadataLog, MetadataLogError> {
        Self::open_compacting_at(dir, node_id, COMPACT_THRESHOLD)
    }

    /// [`LocalMetadataLog::open`], compacting at `compact_threshold` bytes.
    pub(crate) fn open_compacting_at(
        dir: &Path,
        node_id: i32,
        compact_threshold: u64,
    ) -> Result<LocalMetadataLog, MetadataLogError> {
        check_intact(dir)?;
        let (log, frames) = RecordLog::<MetadataFrame>::open(dir, compact_threshold)?;
        let path = log.path().to_path_buf();
        let inconsistent = |reason: String| MetadataLogError::Inconsistent {
            path: path.clone(),
            reason,
        };
        let mut image = MetadataImage::default();
        let mut snapshot_end = None;
        let mut since_snapshot = Vec::new();
        let mut in_snapshot = true;
        for frame in frames {
            match frame {
                MetadataFrame::Snapshot {
                    end_offset,
                    records,
                } => {
                    if !in_snapshot || snapshot_end.is_some_and(|end| end != end_offset) {
                        return Err(inconsistent(format!(
                            "a snapshot part ending at {end_offset} after other frames"
                        )));
                    }
                    for record in &records {
                        image
                            .apply(record)
                            .map_err(|e| inconsistent(format!("snapshot: {e}")))?;
                    }
                    snapshot_end = Some(end_offset);
                }
                MetadataFrame::Batch {
                    base_offset,
                    records,
                } => {
                    if in_snapshot {
                        in_snapshot = false;
                        if let Some(end) = snapshot_end {
                            image.next_offset = end;
                        }
                    }
                    if base_offset != image.next_offset {
                        return Err(inconsistent(format!(
                            "a batch at offset {base_offset} where {} was due",
                            image.next_offset
                        )));
                    }
                    for record in records {
                        let offset = image.next_offset;
                        image
                            .apply(&record)
                            .map_err(|e| inconsistent(e.to_string()))?;
                        since_snapshot.push((offset, record));
                    }
                }
            }
        }
        if in_snapshot {
            if let Some(end) = snapshot_end {
                image.next_offset = end;
            }
        }
        if image.cluster_id.is_none() {
            return Err(MetadataLogError::Uninitialized { path });
        }
        info!(path = %path.display(), next_offset = image.next_offset,
              topics = image.topics.len(), "metadata log replayed");
        let (image, _) = watch::channel(Arc::new(image));
        let log = LocalMetadataLog {
            inner: Mutex::new(Inner {
                log,
                snapshot_end: snapshot_end.unwrap_or(0),
                since_snapshot,
                listener: None,
            }),
            image,
            node_id,
            appends: AtomicU64::new(0),
        };
        // A file that grew past the threshold in earlier runs is compacted now: growth
        // is measured from the size at open, so without this a broker restarted often
        // enough would never reach twice that size.
        let mut inner = log.lock();
        if inner.log.len() > compact_threshold && !inner.since_snapshot.is_empty() {
            if let Err(e) = log.write_snapshot(&mut inner) {
                warn!(error = %e, "cannot compact the metadata log at start; it is compacted once it doubles");
            }
        }
        drop(inner);
        Ok(log)
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Batches appended since open (each one write and one fsync).
    pub fn appends(&self) -> u64 {
        self.appends.load(Ordering::Relaxed)
    }

    /// The file appended to.
    pub fn path(&self) -> PathBuf {
        self.lock().log.path().to_path_buf()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every change to `Inner` is made after the fallible steps, so a panic cannot
        // leave it half-updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append_now(&self, records: Vec<MetadataRecord>) -> Result<u64, MetadataLogError> {
        let mut inner = self.lock();
        let current = self.image();
        let base_offset = current.next_offset;
        let next = current.apply_batch(&records)?;
        let frame = MetadataFrame::Batch {
            base_offset,
            records,
        };
        inner.log.append(std::slice::from_ref(&frame))?;
        let (MetadataFrame::Batch { records, .. } | MetadataFrame::Snapshot { records, .. }) =
            frame;
        let end = next.next_offset;
        let next = Arc::new(next);
        inner
            .since_snapshot
            .extend((base_offset..).zip(records.iter().cloned()));
        self.image.send_replace(next.clone());
        self.appends.fetch_add(1, Ordering::Relaxed);
        if let Some(listener) = &inner.listener {
            listener(AppliedBatch {
                base_offset,
                records: records.into(),
                image: next,
            });
        }
        if inner.log.needs_compaction() {
            if let Err(e) = self.write_snapshot(&mut inner) {
                warn!(error = %e, "cannot compact the metadata log; it keeps growing until the next try");
            }
        }
        Ok(end)
    }

    /// Rewrites the file as a snapshot of the current image.
    fn write_snapshot(&self, inner: &mut Inner) -> Result<MetadataSnapshot, MetadataLogError> {
        let image = self.image();
        let records = image.to_records(self.node_id);
        let end_offset = image.next_offset;
        let frames = snapshot_frames(end_offset, &records);
        inner.log.rewrite(&frames)?;
        inner.snapshot_end = end_offset;
        inner.since_snapshot.clear();
        Ok(MetadataSnapshot {
            end_offset,
            records,
        })
    }
}

impl MetadataLog for LocalMetadataLog {
    fn append(&self, records: Vec<MetadataRecord>) -> Committed {
        let (done, committed) = oneshot::channel();
        let _ = done.send(self.append_now(records));
        committed
    }

    fn read(&self, from: u64, max: usize) -> Result<Vec<(u64, MetadataRecord)>, MetadataLogError> {
        let inner = self.lock();
        if from < inner.snapshot_end {
            return Err(MetadataLogError::Compacted {
                from,
                snapshot: inner.snapshot_end,
            });
        }
        let start = inner.since_snapshot.partition_point(|(o, _)| *o < from);
        Ok(inner.since_snapshot[start..]
            .iter()
            .take(max)
            .cloned()
            .collect())
    }

    fn snapshot(&self) -> Result<MetadataSnapshot, MetadataLogError> {
        let mut inner = self.lock();
        self.write_snapshot(&mut inner)
    }

    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    fn set_listener(&self, listener: Listener) {
        self.lock().listener = Some(listener);
    }
}

/// `records` as the snapshot frames of a file.
fn snapshot_frames(end_offset: u64, records: &[MetadataRecord]) -> Vec<MetadataFrame> {
    let mut frames: Vec<MetadataFrame> = records
        .chunks(SNAPSHOT_FRAME_RECORDS)
        .map(|chunk| MetadataFrame::Snapshot {
            end_offset,
            records: chunk.to_vec(),
        })
        .collect();
    if frames.is_empty() {
        // The snapshot's offset must be in the file even with nothing to rebuild.
        frames.push(MetadataFrame::Snapshot {
            end_offset,
            records: Vec::new(),
        });
    }
    frames
}

/// The newest generation's file in `dir`, if any (`<stem>-<20 digits>.log`, as
/// `RecordLog` names them).
fn newest_file(dir: &Path) -> Result<Option<PathBuf>, MetadataLogError> {
    let io = |source| MetadataLogError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in entries {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let generation = name
            .strip_prefix(MetadataFrame::FILE_STEM)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.strip_suffix(".log"))
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(generation) = generation {
            if newest.as_ref().is_none_or(|(g, _)| generation > *g) {
                newest = Some((generation, entry.path()));
            }
        }
    }
    Ok(newest.map(|(_, path)| path))
}

/// Err when the newest file has a damaged frame anywhere but in a torn tail: the shared
/// record log would skip it, which the metadata must not.
fn check_intact(dir: &Path) -> Result<(), MetadataLogError> {
    let Some(path) = newest_file(dir)? else {
        return Ok(());
    };
    let bytes = fs::read(&path).map_err(|source| MetadataLogError::Io {
        path: path.clone(),
        source,
    })?;
    let scan = scan_frames::<MetadataFrame>(&bytes).map_err(|newer| {
        MetadataLogError::Storage(RecordLogError::NewerVersion {
            path: path.clone(),
            position: newer.position,
            version: newer.version,
            supported: <MetadataFrame as LogRecord>::VERSION,
        })
    })?;
    if let Some(skipped) = scan.skipped.first() {
        return Err(MetadataLogError::Damaged {
            path,
            at: skipped.start,
        });
    }
    if scan.valid_end < bytes.len() && !scan.torn_tail {
        return Err(MetadataLogError::Damaged {
            path,
            at: scan.valid_end,
        });
    }
    Ok(())
}

/// Whether `state_dir` holds an initialized metadata log.
pub fn exists(state_dir: &Path) -> bool {
    state_dir.join(DIR_NAME).is_dir()
}

/// Removes what an initialization that did not finish left in `state_dir`.
pub fn remove_unfinished(state_dir: &Path) -> Result<(), MetadataLogError> {
    let unfinished = state_dir.join(NEW_DIR_NAME);
    match fs::remove_dir_all(&unfinished) {
        Ok(()) => {
            warn!(dir = %unfinished.display(), "removed an unfinished metadata log initialization");
            sync_dir(state_dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MetadataLogError::Io {
            path: unfinished,
            source,
        }),
    }
}

/// Creates the log in `<state_dir>/metadata` holding `records` as its first batch, with
/// `side_files` (name, bytes) beside it, all at once: written and fsync'd under
/// `metadata.new`, then renamed into place (the directory fsync'd). Blocking.
pub fn initialize(
    state_dir: &Path,
    records: Vec<MetadataRecord>,
    side_files: &[(&str, Vec<u8>)],
) -> Result<(), MetadataLogError> {
    remove_unfinished(state_dir)?;
    let new_dir = state_dir.join(NEW_DIR_NAME);
    {
        let (mut log, _) = RecordLog::<MetadataFrame>::open(&new_dir, COMPACT_THRESHOLD)?;
        log.append(&[MetadataFrame::Batch {
            base_offset: 0,
            records,
        }])?;
    }
    for (name, bytes) in side_files {
        let path = new_dir.join(name);
        let io = |source| MetadataLogError::Io {
            path: path.clone(),
            source,
        };
        fs::write(&path, bytes).map_err(io)?;
        File::open(&path).and_then(|f| f.sync_all()).map_err(io)?;
    }
    sync_dir(&new_dir)?;
    let dir = state_dir.join(DIR_NAME);
    fs::rename(&new_dir, &dir).map_err(|source| MetadataLogError::Io {
        path: dir.clone(),
        source,
    })?;
    sync_dir(state_dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), MetadataLogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| MetadataLogError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::super::log::wait_committed;
    use super::super::record::{ClusterRecord, PartitionRecord, TopicRecord};
    use super::*;

    fn cluster() -> MetadataRecord {
        MetadataRecord::Cluster(ClusterRecord {
            cluster_id: "c".into(),
        })
    }

    fn topic_with(name: &str, partitions: u32) -> Vec<MetadataRecord> {
        let id = Uuid::new_v4();
        let mut records = vec![MetadataRecord::Topic(TopicRecord {
            name: name.into(),
            topic_id: id,
        })];
        records.extend((0..partitions).map(|p| {
            MetadataRecord::Partition(PartitionRecord {
                topic_id: id,
                partition_id: p,
                replicas: vec![0],
                isr: vec![0],
                leader: 0,
                leader_epoch: 0,
                partition_epoch: 0,
            })
        }));
        records
    }

    fn open(state: &Path) -> LocalMetadataLog {
        LocalMetadataLog::open(&state.join(DIR_NAME), 0).unwrap()
    }

    fn names(log: &LocalMetadataLog) -> Vec<String> {
        let mut names: Vec<String> = log.image().topics.iter().map(|t| t.name.clone()).collect();
        names.sort();
        names
    }

    #[test]
    fn appends_replay_in_order_with_their_offsets() {
        let state = tempfile::tempdir().unwrap();
        initialize(state.path(), vec![cluster()], &[]).unwrap();
        let log = open(state.path());
        let end = wait_committed(log.append(topic_with("a", 2))).unwrap();
        assert_eq!(end, 4);
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        log.set_listener(Box::new(move |batch| {
            tx.lock().unwrap().send(batch).unwrap()
        }));
        assert_eq!(wait_committed(log.append(topic_with("b", 1))).unwrap(), 6);
        let applied = rx.try_recv().unwrap();
        assert_eq!((applied.base_offset, applied.records.len()), (4, 2));
        assert_eq!(applied.image.next_offset, 6);
        let read = log.read(3, 10).unwrap();
        assert_eq!(read.iter().map(|(o, _)| *o).collect::<Vec<_>>(), [3, 4, 5]);
        // A batch that does not apply is refused and not written.
        let refused = wait_committed(log.append(topic_with("a", 1)));
        assert!(
            matches!(refused, Err(MetadataLogError::Refused(_))),
            "{refused:?}"
        );
        drop(log);
        let log = open(state.path());
        assert_eq!(names(&log), ["a", "b"]);
        assert_eq!(log.image().next_offset, 6);
        assert_eq!(log.image().topics.partition_count(), 3);
    }

    #[test]
    fn a_snapshot_keeps_state_and_offsets() {
        let state = tempfile::tempdir().unwrap();
        initialize(state.path(), vec![cluster()], &[]).unwrap();
        let log = open(state.path());
        for i in 0..20 {
            wait_committed(log.append(topic_with(&format!("t{i}"), 3))).unwrap();
        }
        let snapshot = log.snapshot().unwrap();
        assert_eq!(snapshot.end_offset, 81);
        assert!(matches!(
            log.read(80, 1),
            Err(MetadataLogError::Compacted { snapshot: 81, .. })
        ));
        assert_eq!(
            wait_committed(log.append(topic_with("after", 1))).unwrap(),
            83
        );
        assert_eq!(log.read(81, 10).unwrap().len(), 2);
        drop(log);
        let log = open(state.path());
        assert_eq!(log.image().next_offset, 83);
        assert_eq!(log.image().topics.len(), 21);
        assert_eq!(log.image().topics.partition_count(), 61);
        // Snapshots are also taken on their own as the file grows.
        drop(log);
        let dir = state.path().join(DIR_NAME);
        let log = LocalMetadataLog::open_compacting_at(&dir, 0, 4096).unwrap();
        let before = log.path();
        for i in 0..60 {
            wait_committed(log.append(topic_with(&format!("more{i:03}"), 4))).unwrap();
        }
        assert_ne!(log.path(), before, "compacted into a new generation");
        let next = log.image().next_offset;
        drop(log);
        let log = open(state.path());
        assert_eq!(log.image().next_offset, next);
        assert_eq!(log.image().topics.len(), 81);

        // A file past the threshold with batches after its snapshot is compacted at open.
        for i in 0..5 {
            wait_committed(log.append(topic_with(&format!("late{i}"), 1))).unwrap();
        }
        let grown = log.path();
        drop(log);
        let log = LocalMetadataLog::open_compacting_at(&dir, 0, 1024).unwrap();
        assert_ne!(log.path(), grown, "compacted at open");
        assert!(matches!(
            log.read(next, 1),
            Err(MetadataLogError::Compacted { .. })
        ));
        assert_eq!(log.image().topics.len(), 86);
        drop(log);
        assert_eq!(open(state.path()).image().topics.len(), 86);
    }

    #[test]
    fn a_torn_tail_is_cut_but_damage_in_the_middle_stops_the_open() {
        let state = tempfile::tempdir().unwrap();
        initialize(state.path(), vec![cluster()], &[]).unwrap();
        let log = open(state.path());
        wait_committed(log.append(topic_with("orders", 1))).unwrap();
        wait_committed(log.append(topic_with("later", 1))).unwrap();
        let path = log.path();
        drop(log);
        let good = fs::read(&path).unwrap();

        // A crash in the middle of the last append: that batch is gone, the rest stays.
        fs::write(&path, &good[..good.len() - 5]).unwrap();
        assert_eq!(names(&open(state.path())), ["orders"]);

        // A flipped byte in an earlier batch: refused, naming the file; the file is kept.
        let at = good.windows(6).position(|w| w == b"orders").unwrap() + 2;
        let mut bad = good.clone();
        bad[at] ^= 0x17;
        fs::write(&path, &bad).unwrap();
        let err = LocalMetadataLog::open(&state.path().join(DIR_NAME), 0).unwrap_err();
        assert!(matches!(err, MetadataLogError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("metadata-"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), bad);
        fs::write(&path, &good).unwrap();
        assert_eq!(names(&open(state.path())), ["later", "orders"]);
    }

    #[test]
    fn an_unfinished_initialization_leaves_no_log() {
        let state = tempfile::tempdir().unwrap();
        let new_dir = state.path().join(NEW_DIR_NAME);
        fs::create_dir(&new_dir).unwrap();
        fs::write(
            new_dir.join("metadata-00000000000000000000.log"),
            b"partial",
        )
        .unwrap();
        assert!(!exists(state.path()));
        initialize(state.path(), vec![cluster()], &[("side", b"x".to_vec())]).unwrap();
        assert!(exists(state.path()) && !new_dir.exists());
        assert_eq!(
            fs::read(state.path().join(DIR_NAME).join("side")).unwrap(),
            b"x"
        );
        assert_eq!(open(state.path()).image().cluster_id.as_deref(), Some("c"));
    }
}
