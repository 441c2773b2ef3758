//! Idempotent-producer state of one partition, as Kafka's `ProducerStateManager` keeps it:
//! for each producer id its epoch and the metadata of its last [`BATCHES_PER_PRODUCER`]
//! batches. `Log::append` checks every batch that carries a producer id against it before
//! assigning offsets:
//!
//! - a batch whose epoch and first/last sequence match a cached batch is a *duplicate*
//!   (a retry): the append succeeds with the original offsets and nothing is written;
//! - an epoch below the producer's current one is `INVALID_PRODUCER_EPOCH` (47);
//! - a higher epoch must start at sequence 0, unless the producer is unknown;
//! - within an epoch the first sequence must follow the last one (`last + 1`, or 0 after
//!   `i32::MAX`), else `OUT_OF_ORDER_SEQUENCE_NUMBER` (45);
//! - an unknown producer (never seen, or expired) is accepted at any sequence: Kafka
//!   stopped answering `UNKNOWN_PRODUCER_ID` on produce with KIP-360 (2.5), so this never
//!   produces that code either.
//!
//! Batches without a producer id (-1) are not checked and leave no state.
//!
//! The state is derived from the log: it is rebuilt from the batch headers (producer id,
//! epoch, base sequence, offsets, max timestamp). Snapshots make that cheap — written at
//! every segment roll and at clean close as `<offset, 20 digits>.snapshot`, where the offset
//! is the log end offset the state covers. Opening a log loads the newest readable
//! snapshot at or below the recovered log end and replays the headers of the batches after
//! it. The file format (versioned, fixed-width fields) is in `snapshot_format`.
//!
//! Transactions: a transactional batch opens a transaction at its first offset (unless one
//! is open); a non-transactional batch from a producer with an open transaction is
//! INVALID_TXN_STATE; a marker (`complete_txn`) ends it. The table keeps the open
//! transactions ordered by first offset (`ongoing`) for the last stable offset; producers
//! with an open transaction never expire. See `crate::txn`.
//!
//! Transaction verification (Kafka's `VerificationGuard`, KIP-890 part 1): before the
//! broker asks its transaction coordinator whether a transactional batch belongs to an
//! ongoing transaction, it takes a [`VerificationGuard`] from this partition
//! ([`ProducerStateTable::start_verification`]); the append then checks, under the
//! partition's append lock, that the guard is still the producer's current one. A marker
//! of the producer (`complete_txn`) removes it, so a batch verified before its
//! transaction ended and appended after that transaction's marker is refused instead of
//! opening a transaction nothing will end. Guards live in memory only (they cover one
//! request) and expire with idle producers.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::{BatchHeader, CONTROL_TYPE_ABORT, CONTROL_TYPE_COMMIT};
use crate::error::StorageError;
use crate::file;
use crate::segment::{parse_segment_name, SegmentSource};
use crate::txn::{AbortedTxnEntry, OpenTxn, TxnIndex};

mod snapshot_format;

/// Batches remembered per producer (Kafka's `NUM_BATCHES_TO_RETAIN`; also the most
/// in-flight requests an idempotent producer may have).
pub const BATCHES_PER_PRODUCER: usize = 5;
/// Epoch of a producer the partition has no state for.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Sequence meaning "none yet".
pub const NO_SEQUENCE: i32 = -1;
/// Kafka's default `producer.id.expiration.ms`: one day.
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: u64 = 86_400_000;

pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";
/// `ProducerEntry::current_txn_first_offset` / `coordinator_epoch` when none.
pub const NO_OFFSET: i64 = -1;
/// Coordinator epoch of a producer no marker was written for yet.
pub const NO_COORDINATOR_EPOCH: i32 = -1;
/// Snapshots kept in a partition directory (the newest is the one used; the other is a
/// fallback should the newest be unreadable).
const SNAPSHOTS_KEPT: usize = 2;

/// What the log remembers of one appended batch of a producer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The batch's maxTimestamp (ms), as stored.
    pub timestamp: i64,
}

/// One producer's state in one partition. Fixed size: the last batches live in an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// `batches[..len]`, oldest first; all of epoch `epoch`.
    batches: [BatchMetadata; BATCHES_PER_PRODUCER],
    len: u8,
    /// maxTimestamp of the newest batch or marker (ms); the producer expires
    /// `producer.id.expiration.ms` after it, as in Kafka (unless a transaction is open).
    pub last_timestamp: i64,
    /// First offset of the producer's open transaction in this partition, or [`NO_OFFSET`].
    pub current_txn_first_offset: i64,
    /// Epoch of the transaction coordinator that wrote this producer's last marker here, or
    /// [`NO_COORDINATOR_EPOCH`]; a marker from an older coordinator epoch is refused.
    pub coordinator_epoch: i32,
}

impl ProducerEntry {
    fn empty(epoch: i16) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: [BatchMetadata::default(); BATCHES_PER_PRODUCER],
            len: 0,
            last_timestamp: -1,
            current_txn_first_offset: NO_OFFSET,
            coordinator_epoch: NO_COORDINATOR_EPOCH,
        }
    }

    /// Whether the producer has an open transaction in this partition.
    pub fn has_open_txn(&self) -> bool {
        self.current_txn_first_offset >= 0
    }

    /// Moves to `epoch`, forgetting the old epoch's batches (sequences restart at 0); the
    /// open transaction, coordinator epoch and last timestamp stay.
    fn set_epoch(&mut self, epoch: i16) {
        if epoch != self.epoch {
            *self = ProducerEntry {
                current_txn_first_offset: self.current_txn_first_offset,
                coordinator_epoch: self.coordinator_epoch,
                last_timestamp: self.last_timestamp,
                ..ProducerEntry::empty(epoch)
            };
        }
    }

    /// The remembered batches, oldest first.
    pub fn batches(&self) -> &[BatchMetadata] {
        &self.batches[..usize::from(self.len).min(BATCHES_PER_PRODUCER)]
    }

    /// Last sequence of the newest batch, or [`NO_SEQUENCE`].
    pub fn last_sequence(&self) -> i32 {
        self.batches()
            .last()
            .map_or(NO_SEQUENCE, |b| b.last_sequence)
    }

    fn find_duplicate(&self, b: &ProducerBatch) -> Option<BatchMetadata> {
        if b.epoch != self.epoch {
            return None;
        }
        self.batches()
            .iter()
            .find(|m| m.first_sequence == b.first_sequence && m.last_sequence == b.last_sequence)
            .copied()
    }

    /// Records an appended batch (a new epoch forgets the old epoch's batches); a
    /// transactional batch opens a transaction at its first offset unless one is open.
    fn push(&mut self, epoch: i16, meta: BatchMetadata, transactional: bool) {
        self.set_epoch(epoch);
        if transactional && !self.has_open_txn() {
            self.current_txn_first_offset = meta.first_offset;
        }
        let len = usize::from(self.len).min(BATCHES_PER_PRODUCER);
        if len == BATCHES_PER_PRODUCER {
            self.batches.copy_within(1.., 0);
            self.batches[BATCHES_PER_PRODUCER - 1] = meta;
        } else {
            self.batches[len] = meta;
            self.len += 1;
        }
        self.last_timestamp = meta.timestamp;
    }
}

/// The producer fields of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_sequence: i32,
    pub last_sequence: i32,
    /// The batch has the transactional attribute.
    pub transactional: bool,
}

impl ProducerBatch {
    /// The batch's producer fields; `None` for a batch without a producer id.
    pub fn of(h: &BatchHeader) -> Option<ProducerBatch> {
        h.has_producer_id().then(|| ProducerBatch {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first_sequence: h.base_sequence,
            last_sequence: h.last_sequence(),
            transactional: h.is_transactional(),
        })
    }
}

/// Why a batch was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProducerFault {
    /// The batch's epoch is older than the producer's current one (INVALID_PRODUCER_EPOCH).
    StaleEpoch { current: i16 },
    /// A gap or reordering in sequence numbers (OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrder {
        /// The last sequence of the producer's current epoch, or -1 for a new epoch.
        last_sequence: i32,
    },
    /// A non-transactional batch from a producer with an open transaction
    /// (INVALID_TXN_STATE).
    InvalidTxnState,
    /// A marker from a transaction coordinator epoch older than the one that wrote this
    /// producer's last marker here (TRANSACTION_COORDINATOR_FENCED).
    CoordinatorFenced { current: i32 },
}

/// The result of checking one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A new batch: append it.
    Append,
    /// A retry of a batch already in the log, with its metadata.
    Duplicate(BatchMetadata),
}

fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// Checks `b` against the producer's entry (`None`: unknown producer), following Kafka's
/// `ProducerAppendInfo` for batches from clients: duplicate, epoch, sequence, then
/// transaction state (a non-transactional batch while a transaction is open is refused).
pub fn check(entry: Option<&ProducerEntry>, b: &ProducerBatch) -> Result<Verdict, ProducerFault> {
    let Some(entry) = entry else {
        return Ok(Verdict::Append);
    };
    if let Some(original) = entry.find_duplicate(b) {
        return Ok(Verdict::Duplicate(original));
    }
    if b.epoch < entry.epoch {
        return Err(ProducerFault::StaleEpoch {
            current: entry.epoch,
        });
    }
    if b.epoch != entry.epoch {
        if b.first_sequence != 0 && entry.epoch != NO_PRODUCER_EPOCH {
            return Err(ProducerFault::OutOfOrder {
                last_sequence: NO_SEQUENCE,
            });
        }
    } else if entry.epoch != NO_PRODUCER_EPOCH
        && !in_sequence(entry.last_sequence(), b.first_sequence)
    {
        return Err(ProducerFault::OutOfOrder {
            last_sequence: entry.last_sequence(),
        });
    }
    if !b.transactional && entry.has_open_txn() {
        return Err(ProducerFault::InvalidTxnState);
    }
    Ok(Verdict::Append)
}

/// One batch of an append request, as the producer check sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlannedBatch {
    /// Byte position of the batch in the request.
    pub position: usize,
    pub batch: ProducerBatch,
    pub first_offset: i64,
    pub last_offset: i64,
    /// maxTimestamp the batch will be stored with.
    pub timestamp: i64,
}

/// The state changes a checked request makes once appended.
#[derive(Debug, Default)]
pub(crate) enum Updates {
    /// No batch with a producer id.
    #[default]
    Nothing,
    /// One batch (every Produce v3+ request): recorded in place, without copying entries.
    One(PlannedBatch),
    /// Several batches: the updated entries.
    Many(Vec<(i64, ProducerEntry)>),
}

/// The outcome of checking a whole append request.
#[derive(Debug)]
pub(crate) enum RequestVerdict {
    /// Append; then apply these updates.
    Append(Updates),
    /// The request retries a batch the log holds (Kafka answers the whole request with it).
    Duplicate(BatchMetadata),
}

/// Proof that a producer's transactional write was verified against the transaction
/// coordinator after this value was taken from the partition (see the module doc). Only
/// the partition that issued it accepts it, and only until the producer's next marker
/// there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerificationGuard {
    producer_id: i64,
    token: u64,
}

impl VerificationGuard {
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }
}

/// Source of guard tokens: unique in the process, so a guard of one partition or of an
/// earlier verification never matches another.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// A producer's current verification in one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Verification {
    token: u64,
    /// When it was started (ms); it expires like an idle producer.
    started_ms: i64,
}

/// Every producer's state in one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset -> producer id (derived from `producers`; first
    /// offsets are distinct batches, so unique). Its first key bounds the LSO.
    ongoing: BTreeMap<i64, i64>,
    /// Current verification guard of each producer with transactional writes verified
    /// since its last marker here (not persisted: a guard covers one request).
    verifications: HashMap<i64, Verification>,
}

/// Keeps `ongoing` in step with a producer whose open transaction moved from `before` to
/// `after` (either may be [`NO_OFFSET`]).
fn reindex(ongoing: &mut BTreeMap<i64, i64>, producer_id: i64, before: i64, after: i64) {
    if before == after {
        return;
    }
    if before >= 0 {
        ongoing.remove(&before);
    }
    if after >= 0 {
        ongoing.insert(after, producer_id);
    }
}

impl ProducerStateTable {
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Records a batch the log now holds at `first_offset..=last_offset`.
    pub fn record(&mut self, b: &ProducerBatch, first_offset: i64, last_offset: i64, ts: i64) {
        let entry = self
            .producers
            .entry(b.producer_id)
            .or_insert_with(|| ProducerEntry::empty(b.epoch));
        let before = entry.current_txn_first_offset;
        entry.push(
            b.epoch,
            BatchMetadata {
                first_sequence: b.first_sequence,
                last_sequence: b.last_sequence,
                first_offset,
                last_offset,
                timestamp: ts,
            },
            b.transactional,
        );
        let after = entry.current_txn_first_offset;
        reindex(&mut self.ongoing, b.producer_id, before, after);
    }

    /// First offset of the oldest open transaction.
    pub fn first_open_txn_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Open transactions, oldest first.
    pub fn open_transactions(&self) -> Vec<OpenTxn> {
        self.ongoing
            .iter()
            .map(|(&first_offset, &producer_id)| OpenTxn {
                producer_id,
                producer_epoch: self
                    .producers
                    .get(&producer_id)
                    .map_or(NO_PRODUCER_EPOCH, |e| e.epoch),
                first_offset,
            })
            .collect()
    }

    /// Checks a transaction marker (Kafka's `appendEndTxnMarker`): its producer epoch may
    /// not be older than the producer's, nor its coordinator epoch older than the last
    /// marker's. An unknown producer accepts any marker.
    pub(crate) fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), ProducerFault> {
        let Some(entry) = self.get(producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.epoch {
            return Err(ProducerFault::StaleEpoch {
                current: entry.epoch,
            });
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(ProducerFault::CoordinatorFenced {
                current: entry.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records a marker the log now holds at `offset`: the producer moves to `producer_epoch`
    /// (a higher one fences the old epoch; sequences restart at 0), its open transaction
    /// ends. Returns the aborted-transaction entry for an abort that ended a transaction.
    pub(crate) fn complete_txn(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        offset: i64,
        timestamp: i64,
    ) -> Option<AbortedTxnEntry> {
        // Whatever was verified before this marker belongs to the transaction it ends.
        self.verifications.remove(&producer_id);
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry::empty(producer_epoch));
        entry.set_epoch(producer_epoch);
        let first = entry.current_txn_first_offset;
        entry.current_txn_first_offset = NO_OFFSET;
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp = timestamp;
        reindex(&mut self.ongoing, producer_id, first, NO_OFFSET);
        if commit || first < 0 {
            return None;
        }
        let last_stable_offset = self
            .first_open_txn_offset()
            .map_or(offset + 1, |o| o.min(offset + 1));
        Some(AbortedTxnEntry {
            producer_id,
            first_offset: first,
            last_offset: offset,
            last_stable_offset,
        })
    }

    /// Checks a request's batches in order, each against the state as if the earlier ones
    /// were appended. Err: the position of the refused batch and why.
    pub(crate) fn check_request(
        &self,
        batches: impl IntoIterator<Item = PlannedBatch>,
    ) -> Result<RequestVerdict, (usize, ProducerBatch, ProducerFault)> {
        let mut batches = batches.into_iter().peekable();
        let Some(first) = batches.next() else {
            return Ok(RequestVerdict::Append(Updates::Nothing));
        };
        if batches.peek().is_none() {
            return match check(self.get(first.batch.producer_id), &first.batch) {
                Ok(Verdict::Append) => Ok(RequestVerdict::Append(Updates::One(first))),
                Ok(Verdict::Duplicate(original)) => Ok(RequestVerdict::Duplicate(original)),
                Err(fault) => Err((first.position, first.batch, fault)),
            };
        }
        let mut updated: Vec<(i64, ProducerEntry)> = Vec::new();
        for p in std::iter::once(first).chain(batches) {
            let b = &p.batch;
            let slot = updated.iter().position(|(pid, _)| *pid == b.producer_id);
            let current = match slot {
                Some(i) => Some(updated[i].1),
                None => self.get(b.producer_id).copied(),
            };
            match check(current.as_ref(), b) {
                Err(fault) => return Err((p.position, *b, fault)),
                Ok(Verdict::Duplicate(original)) => return Ok(RequestVerdict::Duplicate(original)),
                Ok(Verdict::Append) => {}
            }
            let mut entry = current.unwrap_or_else(|| ProducerEntry::empty(b.epoch));
            entry.push(
                b.epoch,
                BatchMetadata {
                    first_sequence: b.first_sequence,
                    last_sequence: b.last_sequence,
                    first_offset: p.first_offset,
                    last_offset: p.last_offset,
                    timestamp: p.timestamp,
                },
                b.transactional,
            );
            match slot {
                Some(i) => updated[i].1 = entry,
                None => updated.push((b.producer_id, entry)),
            }
        }
        Ok(RequestVerdict::Append(Updates::Many(updated)))
    }

    /// Installs the state changes of a successful append.
    pub(crate) fn apply(&mut self, updates: Updates) {
        match updates {
            Updates::Nothing => {}
            Updates::One(p) => self.record(&p.batch, p.first_offset, p.last_offset, p.timestamp),
            Updates::Many(updated) => {
                for (pid, entry) in updated {
                    let before = self
                        .producers
                        .get(&pid)
                        .map_or(NO_OFFSET, |e| e.current_txn_first_offset);
                    reindex(
                        &mut self.ongoing,
                        pid,
                        before,
                        entry.current_txn_first_offset,
                    );
                    self.producers.insert(pid, entry);
                }
            }
        }
    }

    /// Records a batch header read back from the log (no checks: the log is the truth).
    /// For a control batch, `control` is its control record's `(type, coordinator epoch)`:
    /// an abort or commit marker ends the producer's transaction (returned as an entry
    /// when it aborted one); other control records change nothing.
    pub(crate) fn replay(
        &mut self,
        h: &BatchHeader,
        control: Option<(i16, i32)>,
    ) -> Option<AbortedTxnEntry> {
        if h.is_control() {
            let (kind, coordinator_epoch) = control?;
            if !h.has_producer_id() || !(kind == CONTROL_TYPE_ABORT || kind == CONTROL_TYPE_COMMIT)
            {
                return None;
            }
            return self.complete_txn(
                h.producer_id,
                h.producer_epoch,
                coordinator_epoch,
                kind == CONTROL_TYPE_COMMIT,
                h.base_offset,
                h.max_timestamp,
            );
        }
        if let Some(b) = ProducerBatch::of(h) {
            self.record(&b, h.base_offset, h.last_offset(), h.max_timestamp);
        }
        None
    }

    /// Forgets producers whose newest batch is at least `expiration_ms` older than `now_ms`
    /// (`producer.id.expiration.ms`), except those with an open transaction. Returns how
    /// many were removed.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: u64) -> usize {
        let before = self.producers.len();
        let limit = i64::try_from(expiration_ms).unwrap_or(i64::MAX);
        self.producers
            .retain(|_, e| e.has_open_txn() || now_ms.saturating_sub(e.last_timestamp) < limit);
        self.verifications
            .retain(|_, v| now_ms.saturating_sub(v.started_ms) < limit);
        before - self.producers.len()
    }

    /// The producer's current verification guard here, started now if it has none (every
    /// request verified before the producer's next marker shares it).
    pub(crate) fn start_verification(
        &mut self,
        producer_id: i64,
        now_ms: i64,
    ) -> VerificationGuard {
        let verification = self
            .verifications
            .entry(producer_id)
            .or_insert_with(|| Verification {
                token: NEXT_TOKEN.fetch_add(1, Ordering::Relaxed),
                started_ms: now_ms,
            });
        VerificationGuard {
            producer_id,
            token: verification.token,
        }
    }

    /// Whether `guard` is still the current guard of `producer_id` here: no marker of the
    /// producer was appended since it was taken.
    pub(crate) fn verifies(&self, producer_id: i64, guard: &VerificationGuard) -> bool {
        guard.producer_id == producer_id
            && self
                .verifications
                .get(&producer_id)
                .is_some_and(|v| v.token == guard.token)
    }

    /// The snapshot file's bytes for this state at log offset `offset`.
    pub fn encode_snapshot(&self, offset: i64) -> Vec<u8> {
        snapshot_format::encode(self, offset)
    }

    /// Decodes a snapshot file: the state and its offset, or why it is unusable
    /// (a snapshot of a newer version is refused, naming its version).
    pub fn decode_snapshot(bytes: &[u8]) -> Result<(ProducerStateTable, i64), String> {
        snapshot_format::decode(bytes)
    }
}

/// `<dir>/<offset, 20 digits>.snapshot`.
pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(snapshot_name(offset))
}

fn snapshot_name(offset: i64) -> String {
    format!("{offset:020}.{SNAPSHOT_SUFFIX}")
}

/// Offsets of the snapshot files in `dir`, ascending.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list", dir, e))?;
        let name = entry.file_name();
        if let Some((offset, SNAPSHOT_SUFFIX)) = name.to_str().and_then(parse_segment_name) {
            out.push(offset);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Writes the snapshot of `table` at `offset` durably (temp file, fsync, rename), then
/// removes all but the newest [`SNAPSHOTS_KEPT`] snapshots.
pub(crate) fn write_snapshot(
    dir: &Path,
    table: &ProducerStateTable,
    offset: i64,
) -> Result<(), StorageError> {
    file::write_atomic(&snapshot_path(dir, offset), &table.encode_snapshot(offset))?;
    let all = list_snapshots(dir)?;
    if all.len() > SNAPSHOTS_KEPT {
        for old in &all[..all.len() - SNAPSHOTS_KEPT] {
            file::remove_file(&snapshot_path(dir, *old))?;
        }
    }
    Ok(())
}

/// What [`load`] needs of one segment: where it ends, its readable bytes (up to where the
/// log ends now), and its aborted-transaction index.
pub(crate) struct ReplaySegment<'a> {
    pub next_offset: i64,
    pub source: SegmentSource,
    pub txn_index: &'a mut TxnIndex,
}

/// Rebuilds the producer state of a freshly recovered (or truncated) log and the aborted-transaction
/// entries of the replayed range: loads the newest readable snapshot at or below both the
/// log end and `replay_from_at_most` (removing snapshots above the log end, which a
/// truncation made stale, and unreadable ones), drops every segment's `.txnindex` entries
/// at or after that snapshot's offset, then replays the headers of every batch after it
/// (reading the control record of control batches), re-deriving those entries. An abort
/// marker whose transaction the replay cannot see (it began before the oldest retained
/// segment, with no snapshot covering it) keeps the entry the index had for it. The
/// segments' `txn_index` must be loaded. Returns the state and how many batch headers were
/// replayed.
pub(crate) fn load(
    dir: &Path,
    segments: &mut [ReplaySegment<'_>],
    replay_from_at_most: i64,
) -> Result<(ProducerStateTable, usize), StorageError> {
    let log_end = segments.last().map_or(0, |s| s.next_offset);
    let mut table = ProducerStateTable::default();
    let mut from = i64::MIN;
    for offset in list_snapshots(dir)?.into_iter().rev() {
        let path = snapshot_path(dir, offset);
        if offset > log_end {
            tracing::info!(file = %path.display(), log_end, "removing producer snapshot past the log end");
            file::remove_file(&path)?;
            continue;
        }
        if offset > replay_from_at_most {
            continue;
        }
        let decoded = match file::read_optional(&path)? {
            Some(bytes) => ProducerStateTable::decode_snapshot(&bytes),
            None => continue,
        };
        match decoded {
            Ok((loaded, at)) if at == offset => {
                table = loaded;
                from = offset;
                break;
            }
            Ok((_, at)) => {
                tracing::warn!(file = %path.display(), at, "producer snapshot names another offset; removing it");
                file::remove_file(&path)?;
            }
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "unreadable producer snapshot; removing it");
                file::remove_file(&path)?;
            }
        }
    }
    let mut replayed = 0;
    for seg in segments.iter_mut().filter(|s| s.next_offset > from) {
        let dropped = seg.txn_index.split_off_from(from);
        let source = &seg.source;
        let mut position = 0u64;
        while position < source.size() {
            let h = source.header_at(position)?;
            if h.base_offset >= from {
                let control = if h.is_control() {
                    let bytes = source.bytes(position, h.size() as u64)?;
                    crate::batch::control_record(&bytes)
                } else {
                    None
                };
                match table.replay(&h, control) {
                    Some(entry) => seg.txn_index.push(entry),
                    None if control.is_some_and(|(kind, _)| kind == CONTROL_TYPE_ABORT) => {
                        if let Some(kept) = dropped.iter().find(|e| {
                            e.last_offset == h.base_offset && e.producer_id == h.producer_id
                        }) {
                            seg.txn_index.push(*kept);
                        }
                    }
                    None => {}
                }
                replayed += 1;
            }
            position += h.size() as u64;
        }
    }
    Ok((table, replayed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, first: i32, last: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: pid,
            epoch,
            first_sequence: first,
            last_sequence: last,
            transactional: false,
        }
    }

    /// Appends `b` at `offset` if the rules allow it; returns the verdict.
    fn append(
        t: &mut ProducerStateTable,
        b: ProducerBatch,
        offset: i64,
    ) -> Result<Verdict, ProducerFault> {
        let v = check(t.get(b.producer_id), &b)?;
        if v == Verdict::Append {
            let n = i64::from(b.last_sequence.wrapping_sub(b.first_sequence));
            t.record(&b, offset, offset + n, 1000 + offset);
        }
        Ok(v)
    }

    /// The rules as a table: (batch, expected outcome) applied in order to one state.
    #[test]
    fn producer_rules_table() {
        use ProducerFault::*;
        let dup = |first_offset: i64, first: i32, last: i32| {
            Ok(Verdict::Duplicate(BatchMetadata {
                first_sequence: first,
                last_sequence: last,
                first_offset,
                last_offset: first_offset + i64::from(last - first),
                timestamp: 1000 + first_offset,
            }))
        };
        let cases: Vec<(ProducerBatch, i64, Result<Verdict, ProducerFault>)> = vec![
            // unknown producer: any first sequence is accepted (KIP-360)
            (batch(1, 0, 7, 9), 0, Ok(Verdict::Append)),
            (batch(1, 0, 10, 10), 3, Ok(Verdict::Append)),
            // exact retry of either cached batch
            (batch(1, 0, 7, 9), 99, dup(0, 7, 9)),
            (batch(1, 0, 10, 10), 99, dup(3, 10, 10)),
            // a gap, a reordering, a partial overlap
            (
                batch(1, 0, 12, 12),
                4,
                Err(OutOfOrder { last_sequence: 10 }),
            ),
            (batch(1, 0, 8, 10), 4, Err(OutOfOrder { last_sequence: 10 })),
            (batch(1, 0, 11, 11), 4, Ok(Verdict::Append)),
            // stale epoch, then a new epoch that must start at 0
            (batch(1, -1, 12, 12), 5, Err(StaleEpoch { current: 0 })),
            (batch(1, 1, 5, 5), 5, Err(OutOfOrder { last_sequence: -1 })),
            (batch(1, 1, 0, 4), 5, Ok(Verdict::Append)),
            (batch(1, 0, 12, 12), 10, Err(StaleEpoch { current: 1 })),
            // the old epoch's batches are forgotten
            (batch(1, 0, 11, 11), 10, Err(StaleEpoch { current: 1 })),
            (batch(1, 1, 0, 4), 10, dup(5, 0, 4)),
            // another producer is independent
            (batch(2, 3, 0, 0), 10, Ok(Verdict::Append)),
            (batch(2, 3, 2, 2), 11, Err(OutOfOrder { last_sequence: 0 })),
        ];
        let mut t = ProducerStateTable::default();
        for (i, (b, offset, want)) in cases.into_iter().enumerate() {
            assert_eq!(append(&mut t, b, offset), want, "case {i}: {b:?}");
        }
    }

    #[test]
    fn remembers_only_the_last_five_batches() {
        let mut t = ProducerStateTable::default();
        for s in 0..7 {
            assert_eq!(
                append(&mut t, batch(9, 0, s, s), i64::from(s)),
                Ok(Verdict::Append)
            );
        }
        let e = t.get(9).unwrap();
        assert_eq!(e.batches().len(), BATCHES_PER_PRODUCER);
        assert_eq!(e.batches()[0].first_sequence, 2);
        assert!(matches!(
            check(Some(e), &batch(9, 0, 2, 2)),
            Ok(Verdict::Duplicate(_))
        ));
        // older than the cache: neither a known duplicate nor in sequence
        assert_eq!(
            check(Some(e), &batch(9, 0, 1, 1)),
            Err(ProducerFault::OutOfOrder { last_sequence: 6 })
        );
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut t = ProducerStateTable::default();
        let last = crate::batch::increment_sequence(i32::MAX - 1, 1);
        assert_eq!(last, i32::MAX);
        assert_eq!(crate::batch::increment_sequence(i32::MAX, 2), 1);
        append(&mut t, batch(4, 0, i32::MAX - 1, i32::MAX), 0).unwrap();
        assert_eq!(append(&mut t, batch(4, 0, 0, 1), 2), Ok(Verdict::Append));
    }

    #[test]
    fn expiry_forgets_idle_producers_only() {
        let mut t = ProducerStateTable::default();
        t.record(&batch(1, 0, 0, 0), 0, 0, 1_000);
        t.record(&batch(2, 0, 0, 0), 1, 1, 5_000);
        assert_eq!(t.expire(10_000, 6_000), 1);
        assert!(t.get(1).is_none());
        assert!(t.get(2).is_some());
        // an expired producer is unknown again: any sequence is accepted
        assert_eq!(check(t.get(1), &batch(1, 0, 42, 42)), Ok(Verdict::Append));
    }

    fn txn_batch(pid: i64, epoch: i16, first: i32, last: i32) -> ProducerBatch {
        ProducerBatch {
            transactional: true,
            ..batch(pid, epoch, first, last)
        }
    }

    #[test]
    fn transactions_open_end_and_refuse_plain_batches() {
        let mut t = ProducerStateTable::default();
        // A transactional batch opens a transaction at its first offset.
        assert_eq!(check(t.get(1), &txn_batch(1, 0, 0, 1)), Ok(Verdict::Append));
        t.record(&txn_batch(1, 0, 0, 1), 10, 11, 0);
        t.record(&txn_batch(1, 0, 2, 2), 14, 14, 0);
        assert_eq!(t.get(1).unwrap().current_txn_first_offset, 10);
        // A plain batch from it is refused while the transaction is open; a retry of a
        // transactional batch is still a duplicate.
        assert_eq!(
            check(t.get(1), &batch(1, 0, 3, 3)),
            Err(ProducerFault::InvalidTxnState)
        );
        assert!(matches!(
            check(t.get(1), &txn_batch(1, 0, 2, 2)),
            Ok(Verdict::Duplicate(_))
        ));
        t.record(&txn_batch(2, 0, 0, 0), 12, 12, 0);
        assert_eq!(t.first_open_txn_offset(), Some(10));
        // Markers: stale producer epoch refused, older coordinator epoch refused.
        assert_eq!(
            t.check_marker(1, -1, 0),
            Err(ProducerFault::StaleEpoch { current: 0 })
        );
        assert_eq!(t.complete_txn(1, 0, 3, true, 15, 1), None);
        assert_eq!(
            t.check_marker(1, 0, 2),
            Err(ProducerFault::CoordinatorFenced { current: 3 })
        );
        assert_eq!(t.first_open_txn_offset(), Some(12));
        assert_eq!(check(t.get(1), &batch(1, 0, 3, 3)), Ok(Verdict::Append));
        // An abort records the range and the LSO after it.
        let aborted = t.complete_txn(2, 0, 3, false, 16, 1).unwrap();
        assert_eq!(
            (
                aborted.first_offset,
                aborted.last_offset,
                aborted.last_stable_offset
            ),
            (12, 16, 17)
        );
        assert_eq!(t.first_open_txn_offset(), None);
        // A marker with a higher epoch fences the old one; sequences restart at 0.
        t.record(&txn_batch(1, 0, 3, 3), 17, 17, 0);
        t.record(&txn_batch(2, 0, 1, 1), 18, 18, 0);
        let aborted = t.complete_txn(1, 1, 3, false, 19, 2).unwrap();
        assert_eq!((aborted.first_offset, aborted.last_stable_offset), (17, 18));
        assert_eq!(
            check(t.get(1), &txn_batch(1, 0, 4, 4)),
            Err(ProducerFault::StaleEpoch { current: 1 })
        );
        assert_eq!(
            check(t.get(1), &txn_batch(1, 1, 4, 4)),
            Err(ProducerFault::OutOfOrder { last_sequence: -1 })
        );
        assert_eq!(check(t.get(1), &txn_batch(1, 1, 0, 0)), Ok(Verdict::Append));
        // A second marker (a coordinator retry) changes nothing and records no abort.
        assert_eq!(t.complete_txn(1, 1, 3, false, 20, 2), None);
        // Producers with an open transaction never expire.
        assert_eq!(t.expire(i64::MAX, 1), 1);
        assert!(t.get(1).is_none());
        assert_eq!(t.get(2).unwrap().current_txn_first_offset, 18);
    }

    #[test]
    fn snapshot_round_trip_and_damage_is_detected() {
        let mut t = ProducerStateTable::default();
        for pid in 0..50 {
            for s in 0..(pid % 7) as i32 {
                t.record(&batch(pid, (pid % 3) as i16, s, s), pid * 10, pid * 10, 77);
            }
        }
        t.record(&batch(i64::MAX, i16::MAX, 0, i32::MAX), 5, 6, -1);
        // Open transactions and a marker's coordinator epoch are part of the state.
        t.record(&txn_batch(60, 2, 0, 4), 600, 604, 80);
        t.record(&txn_batch(61, 0, 0, 0), 605, 605, 80);
        t.complete_txn(61, 0, 9, false, 606, 81);
        t.record(&txn_batch(61, 0, 1, 1), 607, 607, 82);
        assert_eq!(t.first_open_txn_offset(), Some(600));
        // The layout storage/README.md documents: 22 bytes of header, 191 per producer.
        let mut one = ProducerStateTable::default();
        one.record(&txn_batch(3, 1, 0, 0), 40, 40, 5);
        one.complete_txn(3, 1, 7, true, 41, 6);
        one.record(&txn_batch(3, 1, 1, 1), 42, 42, 7);
        let encoded = one.encode_snapshot(9);
        assert_eq!(encoded.len(), 22 + 191);
        assert_eq!(&encoded[4..6], &2u16.to_le_bytes());
        assert_eq!(&encoded[6..14], &9i64.to_le_bytes());
        assert_eq!(&encoded[14..22], &1u64.to_le_bytes());
        assert_eq!(&encoded[22..30], &3i64.to_le_bytes());
        assert_eq!(&encoded[30..32], &1i16.to_le_bytes());
        assert_eq!(&encoded[22 + 179..22 + 187], &42i64.to_le_bytes());
        assert_eq!(&encoded[22 + 187..22 + 191], &7i32.to_le_bytes());
        let (back, _) = ProducerStateTable::decode_snapshot(&encoded).unwrap();
        assert_eq!(back.open_transactions(), one.open_transactions());
        assert_eq!(back, one);
        let bytes = t.encode_snapshot(1234);
        let (back, offset) = ProducerStateTable::decode_snapshot(&bytes).unwrap();
        assert_eq!(offset, 1234);
        assert_eq!(back, t);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                ProducerStateTable::decode_snapshot(&bad).is_err(),
                "byte {i}"
            );
        }
        for len in 0..bytes.len() {
            assert!(ProducerStateTable::decode_snapshot(&bytes[..len]).is_err());
        }
    }
}

/// The producer rules and their persistence through the public `Log` API.
#[cfg(test)]
mod log_tests {
    use std::path::Path;

    use super::*;
    use crate::log::tests::{crash, open, small_config};
    use crate::testing::{producer_batch, simple_batch, with_transactional};
    use crate::Log;

    fn snapshots(dir: &Path) -> Vec<i64> {
        list_snapshots(&dir.join("topic-0")).unwrap()
    }

    /// Appends `n` batches of 3 records for each of producers 1..=3, interleaved; returns the
    /// next sequence of each producer.
    fn interleave(log: &Log, n: i32) -> [i32; 3] {
        let mut next = [0; 3];
        for _ in 0..n {
            for (i, seq) in next.iter_mut().enumerate() {
                let pid = i as i64 + 1;
                let info = log
                    .append(&producer_batch(3, pid, 0, *seq, 1000), 0)
                    .unwrap();
                assert!(!info.duplicate);
                *seq += 3;
            }
        }
        next
    }

    fn states(log: &Log) -> Vec<Option<ProducerEntry>> {
        (1..=3).map(|pid| log.producer_state(pid)).collect()
    }

    #[test]
    fn retry_is_answered_with_original_offsets_and_gaps_and_stale_epochs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        log.append(&simple_batch(2, 8, 0), 0).unwrap();
        let first = producer_batch(3, 7, 0, 0, 500);
        let a = log.append(&first, 0).unwrap();
        assert_eq!((a.base_offset, a.last_offset, a.duplicate), (2, 4, false));
        let again = log.append(&first, 0).unwrap();
        assert_eq!(
            (again.base_offset, again.last_offset, again.duplicate),
            (2, 4, true)
        );
        assert_eq!(log.log_end_offset(), 5);

        let gap = log.append(&producer_batch(1, 7, 0, 4, 500), 0).unwrap_err();
        assert_eq!(gap.error_code(), 45, "{gap}");
        let next = log.append(&producer_batch(1, 7, 0, 3, 500), 0).unwrap();
        assert_eq!(next.base_offset, 5);
        // A bumped epoch starts at 0; the old epoch is then fenced.
        let bad_start = log.append(&producer_batch(1, 7, 1, 4, 500), 0).unwrap_err();
        assert_eq!(bad_start.error_code(), 45);
        log.append(&producer_batch(1, 7, 1, 0, 500), 0).unwrap();
        let stale = log.append(&producer_batch(1, 7, 0, 4, 500), 0).unwrap_err();
        assert_eq!(stale.error_code(), 47, "{stale}");
        // Unknown producers start anywhere; plain batches are never checked.
        log.append(&producer_batch(1, 8, 0, 1000, 500), 0).unwrap();
        log.append(&simple_batch(1, 8, 0), 0).unwrap();
        log.append(&simple_batch(1, 8, 0), 0).unwrap();
        // A transactional batch needs a producer id.
        let txn = with_transactional(simple_batch(1, 8, 0), -1, -1, -1);
        assert_eq!(log.append(&txn, 0).unwrap_err().error_code(), 87);
        assert_eq!(log.log_end_offset(), 10);
    }

    #[test]
    fn several_batches_in_one_request_are_checked_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        let mut two = producer_batch(2, 5, 0, 0, 1);
        two.extend(producer_batch(2, 5, 0, 2, 1));
        assert_eq!(log.append(&two, 0).unwrap().last_offset, 3);
        let mut gap = producer_batch(1, 5, 0, 4, 1);
        gap.extend(producer_batch(1, 5, 0, 6, 1));
        assert_eq!(log.append(&gap, 0).unwrap_err().error_code(), 45);
        assert_eq!(log.log_end_offset(), 4);
        assert_eq!(log.producer_state(5).unwrap().last_sequence(), 3);
    }

    #[test]
    fn state_survives_clean_close_and_crash_and_is_rebuilt_without_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        let next = interleave(&log, 40);
        let before = states(&log);
        assert!(snapshots(dir.path()).len() >= 2, "rolls write snapshots");

        // Unclean: the newest roll snapshot plus the active segment's headers.
        crash(log);
        let log = open(dir.path(), small_config());
        assert_eq!(states(&log), before);
        let retry = producer_batch(3, 2, 0, next[1] - 3, 1000);
        assert!(log.append(&retry, 0).unwrap().duplicate);

        // Clean: a snapshot at the log end, nothing replayed.
        let end = log.log_end_offset();
        log.close().unwrap();
        assert_eq!(snapshots(dir.path()).last(), Some(&end));
        let log = open(dir.path(), small_config());
        assert_eq!(states(&log), before);

        // No snapshot at all: every header is replayed.
        crash(log);
        for s in snapshots(dir.path()) {
            std::fs::remove_file(snapshot_path(&dir.path().join("topic-0"), s)).unwrap();
        }
        let log = open(dir.path(), small_config());
        assert_eq!(states(&log), before);
        assert!(log.append(&retry, 0).unwrap().duplicate);
        let fresh = log
            .append(&producer_batch(1, 2, 0, next[1], 1000), 0)
            .unwrap();
        assert!(!fresh.duplicate);
    }

    #[test]
    fn snapshots_past_the_log_end_or_damaged_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        let next = interleave(&log, 30);
        let before = states(&log);
        let pdir = dir.path().join("topic-0");
        crash(log);
        // A snapshot from a longer log (before a truncation) claiming a producer is ahead.
        let mut bogus = ProducerStateTable::default();
        bogus.record(
            &ProducerBatch {
                producer_id: 1,
                epoch: 0,
                first_sequence: next[0],
                last_sequence: next[0] + 5,
                transactional: false,
            },
            10_000,
            10_005,
            1000,
        );
        write_snapshot(&pdir, &bogus, 10_000).unwrap();
        // The newest real snapshot is torn.
        let newest = snapshots(dir.path())[0];
        std::fs::write(snapshot_path(&pdir, newest), b"torn").unwrap();
        let log = open(dir.path(), small_config());
        assert_eq!(states(&log), before);
        assert!(!snapshots(dir.path()).contains(&10_000));
    }

    #[test]
    fn retention_keeps_state_of_producers_whose_batches_it_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfigExt::with_retention_bytes(small_config(), 1);
        let log = open(dir.path(), config.clone());
        log.append(&producer_batch(2, 42, 3, 0, 1000), 0).unwrap();
        for _ in 0..40 {
            log.append(&simple_batch(4, 64, 1000), 0).unwrap();
        }
        let outcome = log.apply_retention(2000).unwrap();
        assert!(outcome.segments_deleted > 0 && outcome.log_start_offset > 1);
        crash(log);
        let log = open(dir.path(), config);
        let entry = log.producer_state(42).expect("state kept");
        assert_eq!((entry.epoch, entry.last_sequence()), (3, 1));
        let retry = log.append(&producer_batch(2, 42, 3, 0, 1000), 0).unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, 0);
    }

    #[test]
    fn idle_producers_expire() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        log.append(&producer_batch(1, 1, 0, 0, 1_000), 0).unwrap();
        log.append(&producer_batch(1, 2, 0, 0, 50_000), 0).unwrap();
        assert_eq!(log.expire_producers(60_000, 20_000), 1);
        assert!(log.producer_state(1).is_none());
        assert_eq!(log.producer_count(), 1);
        // Expired means unknown: its old batch is accepted again (as in Kafka).
        assert!(
            !log.append(&producer_batch(1, 1, 0, 0, 1_000), 0)
                .unwrap()
                .duplicate
        );
    }

    /// Kafka's verification guard (KIP-890 part 1): a batch verified before a marker of
    /// its producer and appended after it is refused and leaves nothing; every guard taken
    /// before the marker shares its fate; a guard taken after it is good until the next.
    #[test]
    fn a_marker_invalidates_verifications_taken_before_it() {
        use crate::records::{CheckedBatch, RecordRules};
        use crate::testing::txn_batch;
        use crate::TxnMarker;
        let rules = RecordRules {
            keys_required: false,
            max_inflated_bytes: 1 << 20,
        };
        let append = |log: &Log, seq: i32, guard| {
            let bytes = txn_batch(2, 7, 0, seq, 1_000);
            let checked = CheckedBatch::check(&bytes, &rules).unwrap();
            log.append_verified_batch(checked, 0, guard)
        };
        let marker = TxnMarker {
            producer_id: 7,
            producer_epoch: 0,
            coordinator_epoch: 0,
            commit: false,
        };
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_config());
        let first = log.start_txn_verification(7, 0);
        let second = log.start_txn_verification(7, 0);
        assert_eq!(
            first, second,
            "concurrent requests share the producer's guard"
        );
        append(&log, 0, first).unwrap();
        let late = log.start_txn_verification(7, 0);
        log.append_marker(&marker, 0).unwrap();
        let end = log.log_end_offset();
        let err = append(&log, 2, late).unwrap_err();
        assert!(
            matches!(
                err,
                crate::AppendError::TxnVerificationLost { producer_id: 7, .. }
            ),
            "{err}"
        );
        assert_eq!(err.error_code(), crate::error::INVALID_TXN_STATE);
        assert_eq!(log.log_end_offset(), end, "nothing appended");
        assert!(
            log.open_transactions().is_empty(),
            "no transaction left open"
        );
        // A new transaction verifies again and is accepted; a guard of another partition
        // (or producer) never is.
        let next = log.start_txn_verification(7, 0);
        assert_ne!(next, late);
        let other_dir = tempfile::tempdir().unwrap();
        let other = open(other_dir.path(), small_config());
        let foreign = other.start_txn_verification(7, 0);
        assert!(append(&log, 2, foreign).is_err());
        append(&log, 2, next).unwrap();
        assert_eq!(log.open_transactions().len(), 1);
        // Unused guards expire with idle producers.
        let mut table = ProducerStateTable::default();
        table.start_verification(9, 1_000);
        table.expire(1_000 + 20_000, 20_000);
        assert!(table.verifications.is_empty());
    }

    /// Small helper so the retention test reads clearly.
    trait LogConfigExt {
        fn with_retention_bytes(self, bytes: u64) -> Self;
    }

    impl LogConfigExt for crate::LogConfig {
        fn with_retention_bytes(mut self, bytes: u64) -> Self {
            self.retention_bytes = Some(bytes);
            self
        }
    }
}
