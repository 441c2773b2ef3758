//! Producer ids for idempotent producers (InitProducerId): unique for the life of the data
//! directory, never reused after a restart or a crash.
//!
//! Ids are handed out from blocks of [`BLOCK_SIZE`]. Before the first id of a block is
//! given out, the end of that block is persisted (atomically, fsync'd) in
//! `<data_dir>/_strata/producer_ids`, so after a restart allocation resumes above every id
//! that may have been used; a crash wastes at most the rest of one block. File format: the
//! text below followed by its CRC-32C (u32 BE, [`super::metadata_store::with_crc`]):
//!
//! ```text
//! strata-producer-ids 2
//! next_block_start <i64>
//! ```
//!
//! A file whose checksum does not match stops the start with an error naming it: a digit
//! flipped down would hand out ids again, so it is never reset or guessed. Files from
//! before the checksum (the same text with `strata-producer-ids 1`, no trailer) are read;
//! the next block persisted rewrites them with one.
//!
//! Issued ids: ids are handed out in increasing order, so every id at or above the next
//! one to be handed out has certainly never been issued, by this run or an earlier one
//! (earlier runs stayed below the persisted block this run started from). Produce refuses
//! batches that carry such an id ([`ProducerIds::never_issued`], one atomic load): a
//! client cannot write first under the id the next InitProducerId will return and make
//! the real producer's first batch look like a retry. Ids below that are accepted: those
//! below this run's first block may have been issued before a restart.
//!
//! Epochs (KIP-360): a producer that asks again with its id and current epoch gets the
//! epoch bumped; the same request repeated (its response was lost) gets the same answer;
//! any other epoch is INVALID_PRODUCER_EPOCH. Epochs are remembered in memory only, for
//! `producer.id.expiration.ms` after the producer's last InitProducerId: an id this broker
//! does not remember (after a restart, or expired) gets a fresh id at epoch 0, which is
//! what Kafka answers every non-transactional producer. An exhausted epoch also moves to
//! a fresh id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use super::metadata_store::{crc_checked_body, replace_file, with_crc, MetadataError};

/// Ids reserved per persisted block.
pub const BLOCK_SIZE: i64 = 1000;
const FILE_NAME: &str = "producer_ids";
const MAGIC_LINE: &str = "strata-producer-ids 2";
/// The format without the CRC-32C trailer, still read.
const MAGIC_LINE_UNCHECKED: &str = "strata-producer-ids 1";

/// Why a producer id could not be handed out.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("cannot persist the producer id block: {0}")]
    Persist(#[from] MetadataError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid producer id file")]
    Corrupt { path: PathBuf },
    #[error(
        "producer id file {path} is damaged (CRC-32C mismatch); refusing to start rather than \
         risk handing out producer ids again: restore it from a backup"
    )]
    Checksum { path: PathBuf },
    #[error("producer {producer_id} asked with epoch {given}, its current epoch is {current}")]
    InvalidEpoch {
        producer_id: i64,
        given: i16,
        current: i16,
    },
    #[error("every producer id has been used")]
    Exhausted,
}

impl ProducerIdError {
    /// The Kafka error code for this failure.
    pub fn error_code(&self) -> i16 {
        match self {
            ProducerIdError::InvalidEpoch { .. } => 47, // INVALID_PRODUCER_EPOCH
            _ => -1,                                    // UNKNOWN_SERVER_ERROR
        }
    }
}

/// A producer id and epoch handed to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdAndEpoch {
    pub producer_id: i64,
    pub epoch: i16,
}

/// What the broker remembers of a producer it handed an id to.
#[derive(Clone, Copy, Debug)]
struct Known {
    epoch: i16,
    /// The epoch the last bump started from (answers a repeated bump request).
    bumped_from: Option<i16>,
    /// When the producer last called InitProducerId (ms since the epoch).
    touched_ms: i64,
}

#[derive(Debug)]
struct Allocator {
    /// Next id to hand out; `next == block_end` means a new block must be persisted.
    next: i64,
    /// End (exclusive) of the persisted block.
    block_end: i64,
    known: HashMap<i64, Known>,
}

/// Hands out producer ids and tracks their epochs. Cheap to share behind the broker.
#[derive(Debug)]
pub struct ProducerIds {
    dir: PathBuf,
    expiration_ms: u64,
    inner: Mutex<Allocator>,
    /// `Allocator::next`, readable without the lock: no id at or above it has ever been
    /// handed out. Stored (under the lock) before an id is returned, so a producer can
    /// never use its id before this covers it.
    unissued_from: AtomicI64,
}

impl ProducerIds {
    /// Opens the allocator in `state_dir` (`<data_dir>/_strata`). `expiration_ms` is
    /// `producer.id.expiration.ms`. Blocking (reads a file).
    pub fn open(state_dir: &Path, expiration_ms: u64) -> Result<ProducerIds, ProducerIdError> {
        let path = state_dir.join(FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(ProducerIdError::Read { path, source }),
        };
        let start = match bytes {
            None => 0,
            Some(bytes) => match crc_checked_body(&bytes) {
                Some(body) => parse(body, MAGIC_LINE).ok_or(ProducerIdError::Corrupt { path })?,
                // No valid checksum: an exact older file, or damaged.
                None => {
                    parse(&bytes, MAGIC_LINE_UNCHECKED).ok_or(ProducerIdError::Checksum { path })?
                }
            },
        };
        Ok(ProducerIds {
            dir: state_dir.to_path_buf(),
            expiration_ms,
            inner: Mutex::new(Allocator {
                next: start,
                block_end: start,
                known: HashMap::new(),
            }),
            unissued_from: AtomicI64::new(start),
        })
    }

    /// Whether `producer_id` has certainly never been handed out by InitProducerId (by
    /// this run or, since ids only grow across restarts, any earlier one). Lock-free: the
    /// produce path calls it for every idempotent batch.
    pub fn never_issued(&self, producer_id: i64) -> bool {
        producer_id >= self.unissued_from.load(Ordering::Acquire)
    }

    /// InitProducerId for a producer without a transactional id. `current` is the id and
    /// epoch the client already has (v3+; `None` for a new producer). Blocking when a new
    /// block must be persisted (once per [`BLOCK_SIZE`] ids).
    pub fn init(
        &self,
        current: Option<ProducerIdAndEpoch>,
        now_ms: i64,
    ) -> Result<ProducerIdAndEpoch, ProducerIdError> {
        let mut a = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let limit = i64::try_from(self.expiration_ms).unwrap_or(i64::MAX);
        a.known
            .retain(|_, k| now_ms.saturating_sub(k.touched_ms) < limit);
        if let Some(cur) = current {
            if let Some(known) = a.known.get_mut(&cur.producer_id) {
                if cur.epoch == known.epoch && known.epoch < i16::MAX - 1 {
                    known.bumped_from = Some(known.epoch);
                    known.epoch += 1;
                    known.touched_ms = now_ms;
                    return Ok(ProducerIdAndEpoch {
                        producer_id: cur.producer_id,
                        epoch: known.epoch,
                    });
                }
                if known.bumped_from == Some(cur.epoch) {
                    known.touched_ms = now_ms;
                    return Ok(ProducerIdAndEpoch {
                        producer_id: cur.producer_id,
                        epoch: known.epoch,
                    });
                }
                if cur.epoch != known.epoch {
                    return Err(ProducerIdError::InvalidEpoch {
                        producer_id: cur.producer_id,
                        given: cur.epoch,
                        current: known.epoch,
                    });
                }
                // The epoch is exhausted: continue with a fresh id below.
            }
        }
        let producer_id = self.allocate(&mut a)?;
        a.known.insert(
            producer_id,
            Known {
                epoch: 0,
                bumped_from: None,
                touched_ms: now_ms,
            },
        );
        Ok(ProducerIdAndEpoch {
            producer_id,
            epoch: 0,
        })
    }

    /// A fresh producer id for a transactional id (the transaction coordinator tracks its
    /// epochs itself, durably, so the id is not remembered here). Blocking when a new
    /// block must be persisted.
    pub fn allocate_transactional(&self) -> Result<i64, ProducerIdError> {
        let mut a = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.allocate(&mut a)
    }

    fn allocate(&self, a: &mut Allocator) -> Result<i64, ProducerIdError> {
        if a.next >= a.block_end {
            let end = a
                .block_end
                .checked_add(BLOCK_SIZE)
                .ok_or(ProducerIdError::Exhausted)?;
            let text = format!("{MAGIC_LINE}\nnext_block_start {end}\n");
            replace_file(&self.dir, FILE_NAME, &with_crc(text.into_bytes()))?;
            a.next = a.block_end;
            a.block_end = end;
        }
        let id = a.next;
        a.next += 1;
        self.unissued_from.store(a.next, Ordering::Release);
        Ok(id)
    }
}

/// The block start in `bytes` if they are exactly the text of a file whose first line is
/// `magic`.
fn parse(bytes: &[u8], magic: &str) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()? != magic {
        return None;
    }
    let value = lines.next()?.strip_prefix("next_block_start ")?;
    let start: i64 = value.parse().ok()?;
    (start >= 0 && lines.next().is_none()).then_some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    #[test]
    fn ids_are_unique_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let ids = ProducerIds::open(dir.path(), DAY).unwrap();
            for _ in 0..(BLOCK_SIZE + 7) {
                let got = ids.init(None, 0).unwrap();
                assert_eq!(got.epoch, 0);
                assert!(seen.insert(got.producer_id), "reused {got:?}");
            }
        }
        // Three restarts, each after one full block and part of the next.
        let ids = ProducerIds::open(dir.path(), DAY).unwrap();
        assert_eq!(ids.init(None, 0).unwrap().producer_id, 6 * BLOCK_SIZE);
    }

    #[test]
    fn epoch_bump_retry_and_fencing() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path(), DAY).unwrap();
        let first = ids.init(None, 0).unwrap();
        let bumped = ids.init(Some(first), 1).unwrap();
        assert_eq!(bumped.producer_id, first.producer_id);
        assert_eq!(bumped.epoch, 1);
        // The same request again (lost response): the same answer.
        assert_eq!(ids.init(Some(first), 2).unwrap(), bumped);
        // An epoch that was never current here.
        let stale = ProducerIdAndEpoch {
            producer_id: first.producer_id,
            epoch: 7,
        };
        assert_eq!(ids.init(Some(stale), 3).unwrap_err().error_code(), 47);
        // Unknown (e.g. issued before a restart): a fresh id.
        let unknown = ProducerIdAndEpoch {
            producer_id: 999_999,
            epoch: 4,
        };
        let fresh = ids.init(Some(unknown), 4).unwrap();
        assert_ne!(fresh.producer_id, 999_999);
        assert_eq!(fresh.epoch, 0);
    }

    #[test]
    fn exhausted_epoch_moves_to_a_new_id_and_idle_ids_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path(), 1000).unwrap();
        let mut cur = ids.init(None, 0).unwrap();
        for _ in 0..(i16::MAX - 1) {
            cur = ids.init(Some(cur), 0).unwrap();
        }
        assert_eq!(cur.epoch, i16::MAX - 1);
        let next = ids.init(Some(cur), 0).unwrap();
        assert_ne!(next.producer_id, cur.producer_id);
        assert_eq!(next.epoch, 0);
        // Expired: asking with the right epoch gets a fresh id rather than a bump.
        let later = ids.init(Some(next), 5_000).unwrap();
        assert_ne!(later.producer_id, next.producer_id);
        assert_eq!(later.epoch, 0);
    }

    #[test]
    fn transactional_ids_come_from_the_same_sequence_without_epoch_tracking() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path(), DAY).unwrap();
        let plain = ids.init(None, 0).unwrap();
        let txn = ids.allocate_transactional().unwrap();
        assert_eq!(txn, plain.producer_id + 1);
        // Not remembered: asking to bump it gets a fresh id, as for an unknown id.
        let asked = ProducerIdAndEpoch {
            producer_id: txn,
            epoch: 0,
        };
        assert_ne!(ids.init(Some(asked), 1).unwrap().producer_id, txn);
    }

    #[test]
    fn only_ids_at_or_above_the_next_one_are_never_issued_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path(), DAY).unwrap();
        assert!(ids.never_issued(0), "nothing handed out yet");
        let first = ids.init(None, 0).unwrap().producer_id;
        let txn = ids.allocate_transactional().unwrap();
        assert!(!ids.never_issued(first) && !ids.never_issued(txn));
        assert!(ids.never_issued(txn + 1) && ids.never_issued(i64::MAX));
        drop(ids);
        // After a restart every id of the earlier run may have been issued; the next
        // block's ids have not.
        let ids = ProducerIds::open(dir.path(), DAY).unwrap();
        assert!(!ids.never_issued(first) && !ids.never_issued(BLOCK_SIZE - 1));
        assert!(ids.never_issued(BLOCK_SIZE));
        assert_eq!(ids.init(None, 0).unwrap().producer_id, BLOCK_SIZE);
        assert!(!ids.never_issued(BLOCK_SIZE) && ids.never_issued(BLOCK_SIZE + 1));
    }

    #[test]
    fn corrupt_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "strata-producer-ids 1\nnext_block_start x\n",
        )
        .unwrap();
        assert!(ProducerIds::open(dir.path(), DAY).is_err());
    }

    #[test]
    fn a_flipped_digit_is_refused_naming_the_file_and_format_1_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path(), DAY).unwrap();
        for _ in 0..(3 * BLOCK_SIZE) {
            ids.init(None, 0).unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let good = std::fs::read(&path).unwrap();
        assert!(good.starts_with(b"strata-producer-ids 2\nnext_block_start 3000\n"));
        // Round trip: a restart resumes above every id handed out.
        let ids = ProducerIds::open(dir.path(), DAY).unwrap();
        assert_eq!(ids.init(None, 0).unwrap().producer_id, 3 * BLOCK_SIZE);

        // A digit flipped down (4000 -> 1000) would reuse ids: refused, never reset.
        let good = std::fs::read(&path).unwrap();
        let at = good.windows(4).position(|w| w == b"4000").unwrap();
        let mut bad = good.clone();
        bad[at] = b'1';
        std::fs::write(&path, &bad).unwrap();
        let err = ProducerIds::open(dir.path(), DAY).unwrap_err();
        assert!(matches!(err, ProducerIdError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("producer_ids"), "{err}");
        // Without its trailer the new text is not an older file either.
        std::fs::write(&path, &good[..good.len() - 4]).unwrap();
        assert!(ProducerIds::open(dir.path(), DAY).is_err());

        // A format-1 file (no checksum) from an older broker is still read.
        std::fs::write(&path, "strata-producer-ids 1\nnext_block_start 7000\n").unwrap();
        let ids = ProducerIds::open(dir.path(), DAY).unwrap();
        assert_eq!(ids.init(None, 0).unwrap().producer_id, 7000);
        // ...and rewritten with a checksum when the next block is persisted.
        let rewritten = std::fs::read(&path).unwrap();
        assert_eq!(
            crc_checked_body(&rewritten),
            Some(&b"strata-producer-ids 2\nnext_block_start 8000\n"[..])
        );
    }
}
