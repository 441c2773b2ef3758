//! The append path: validation of produced batches, offset assignment, the vectored
//! write, segment rolls, and scheduling the group commit.

use std::io::IoSlice;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{AppendInfo, Log, LogState, RollSnapshot};
use crate::batch::{
    self, BatchFault, BatchHeader, ATTR_LOG_APPEND_TIME, HEADER_LEN, LENGTH, PARTITION_LEADER_EPOCH,
};
use crate::config::{LogConfig, TimestampType};
use crate::error::{AppendError, StorageError};
use crate::flusher::lock;
use crate::leader_epoch::{self, LeaderEpochCache};
use crate::producer_state::{
    self, PlannedBatch, ProducerBatch, ProducerFault, RequestVerdict, Updates, VerificationGuard,
};
use crate::records::CheckedBatch;
use crate::segment::Segment;
use crate::txn::TxnMarker;

/// The producer-state change an append makes once written.
enum Pending {
    /// Client batches: the checked updates.
    Batches(Updates),
    /// A transaction marker: ends the producer's transaction.
    Marker(TxnMarker),
}

fn batch_error(dir: &Path, position: usize, fault: BatchFault) -> AppendError {
    match fault {
        BatchFault::Magic(magic) => AppendError::UnsupportedForMessageFormat {
            dir: dir.to_path_buf(),
            position,
            magic,
        },
        BatchFault::Count { .. } => AppendError::InvalidRecord {
            dir: dir.to_path_buf(),
            position,
            reason: fault.to_string(),
        },
        BatchFault::ShortHeader { .. } | BatchFault::Length { .. } | BatchFault::Crc { .. } => {
            AppendError::CorruptMessage {
                dir: dir.to_path_buf(),
                position,
                reason: fault.to_string(),
            }
        }
    }
}

/// The append error for a marker the producer state refused.
fn marker_error(dir: &Path, m: &TxnMarker, fault: ProducerFault) -> AppendError {
    match fault {
        ProducerFault::CoordinatorFenced { current } => AppendError::TransactionCoordinatorFenced {
            dir: dir.to_path_buf(),
            producer_id: m.producer_id,
            coordinator_epoch: m.coordinator_epoch,
            current,
        },
        other => producer_error(
            dir,
            0,
            &ProducerBatch {
                producer_id: m.producer_id,
                epoch: m.producer_epoch,
                first_sequence: -1,
                last_sequence: -1,
                transactional: true,
            },
            other,
        ),
    }
}

/// The append error for a batch the producer state refused.
fn producer_error(
    dir: &Path,
    position: usize,
    batch: &ProducerBatch,
    fault: ProducerFault,
) -> AppendError {
    match fault {
        ProducerFault::StaleEpoch { current } => AppendError::InvalidProducerEpoch {
            dir: dir.to_path_buf(),
            position,
            producer_id: batch.producer_id,
            epoch: batch.epoch,
            current,
        },
        ProducerFault::OutOfOrder { last_sequence } => AppendError::OutOfOrderSequence {
            dir: dir.to_path_buf(),
            position,
            producer_id: batch.producer_id,
            epoch: batch.epoch,
            sequence: batch.first_sequence,
            last_sequence,
        },
        ProducerFault::InvalidTxnState => AppendError::InvalidTxnState {
            dir: dir.to_path_buf(),
            position,
            producer_id: batch.producer_id,
        },
        ProducerFault::CoordinatorFenced { current } => AppendError::TransactionCoordinatorFenced {
            dir: dir.to_path_buf(),
            producer_id: batch.producer_id,
            coordinator_epoch: -1,
            current,
        },
    }
}

impl Log {
    /// Validates every batch of a produce request: structure, size, CRC, record count.
    pub(super) fn validate(
        &self,
        batches: &[u8],
        config: &LogConfig,
    ) -> Result<Vec<(usize, BatchHeader)>, AppendError> {
        if batches.is_empty() {
            return Err(AppendError::InvalidRecord {
                dir: self.dir.clone(),
                position: 0,
                reason: "no record batch".into(),
            });
        }
        let mut out = Vec::new();
        let mut position = 0;
        while position < batches.len() {
            let rest = &batches[position..];
            let h = batch::check_header(&rest[..rest.len().min(HEADER_LEN)], rest.len())
                .map_err(|f| batch_error(&self.dir, position, f))?;
            if h.size() as u64 > config.max_message_bytes {
                return Err(AppendError::MessageTooLarge {
                    dir: self.dir.clone(),
                    size: h.size() as u64,
                    max: config.max_message_bytes,
                });
            }
            let computed = batch::compute_crc(&rest[..h.size()]);
            if computed != h.crc {
                return Err(batch_error(
                    &self.dir,
                    position,
                    BatchFault::Crc {
                        stored: h.crc,
                        computed,
                    },
                ));
            }
            self.check_batch_rules(position, &h, config)?;
            out.push((position, h));
            position += h.size();
        }
        Ok(out)
    }

    /// The checks of one client batch that depend on the topic's config and on nothing
    /// the CRC covers being recomputed: no control batch, a producer id for a
    /// transactional batch, a known codec, a valid CreateTime timestamp.
    fn check_batch_rules(
        &self,
        position: usize,
        h: &BatchHeader,
        config: &LogConfig,
    ) -> Result<(), AppendError> {
        if h.is_control() {
            return Err(AppendError::InvalidRecord {
                dir: self.dir.clone(),
                position,
                reason: "clients may not write control batches".into(),
            });
        }
        if h.is_transactional() && !h.has_producer_id() {
            return Err(AppendError::InvalidRecord {
                dir: self.dir.clone(),
                position,
                reason: "transactional batch without a producer id".into(),
            });
        }
        if h.compression() > 4 {
            return Err(AppendError::CorruptMessage {
                dir: self.dir.clone(),
                position,
                reason: format!("unknown compression codec {}", h.compression()),
            });
        }
        if config.timestamp_type == TimestampType::CreateTime && h.max_timestamp < -1 {
            return Err(AppendError::InvalidTimestamp {
                dir: self.dir.clone(),
                position,
                timestamp: h.max_timestamp,
            });
        }
        Ok(())
    }

    /// Appends one batch whose header, CRC and records the caller checked
    /// ([`CheckedBatch::check`]), without computing the CRC again; otherwise as
    /// [`Log::append`].
    pub fn append_checked_batch(
        &self,
        batch: CheckedBatch<'_>,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        self.append_one_checked(batch, now_ms, None)
    }

    /// [`Log::append_checked_batch`], for a batch verified under `verified` if given.
    fn append_one_checked(
        &self,
        batch: CheckedBatch<'_>,
        now_ms: i64,
        verified: Option<VerificationGuard>,
    ) -> Result<AppendInfo, AppendError> {
        self.check_online()?;
        let config = self.config();
        let header = *batch.header();
        if header.size() as u64 > config.max_message_bytes {
            return Err(AppendError::MessageTooLarge {
                dir: self.dir.clone(),
                size: header.size() as u64,
                max: config.max_message_bytes,
            });
        }
        self.check_batch_rules(0, &header, &config)?;
        self.append_checked(
            batch.bytes(),
            &[(0, header)],
            &config,
            now_ms,
            None,
            verified,
        )
    }

    /// Starts (or joins) the verification of `producer_id`'s transactional writes here
    /// (Kafka's `maybeStartTransactionVerification`): the broker takes the guard, then
    /// checks with the transaction coordinator that the producer's transaction is ongoing
    /// and includes this partition, then appends with
    /// [`Log::append_verified_batch`]. See [`crate::producer_state`].
    pub fn start_txn_verification(&self, producer_id: i64, now_ms: i64) -> VerificationGuard {
        lock(&self.state)
            .producers
            .start_verification(producer_id, now_ms)
    }

    /// [`Log::append_checked_batch`] for a transactional batch whose transaction was
    /// verified after `guard` was taken. Refused with INVALID_TXN_STATE
    /// ([`AppendError::TxnVerificationLost`]) if a marker of the producer was appended here
    /// since: checked under the append lock, so the batch lands before the marker that ends
    /// its transaction or not at all.
    pub fn append_verified_batch(
        &self,
        batch: CheckedBatch<'_>,
        now_ms: i64,
        guard: VerificationGuard,
    ) -> Result<AppendInfo, AppendError> {
        self.append_one_checked(batch, now_ms, Some(guard))
    }

    /// Validates then appends one or more client batches (bytes exactly as received).
    /// Writes base offsets into bytes 0..8 (the rest is written from `batches` as is);
    /// LogAppendTime rewrites timestamps + CRC in a copy. Schedules a group-commit flush; with
    /// `flush.messages` / `flush.ms` reached, flushes before returning.
    ///
    /// Transactional batches (Kafka's rules): the producer's first one opens a transaction
    /// at its base offset, which holds back the last stable offset until
    /// [`Log::append_marker`] ends it; a non-transactional batch from a producer with an
    /// open transaction is INVALID_TXN_STATE.
    pub fn append(&self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, AppendError> {
        self.check_online()?;
        let config = self.config();
        let headers = self.validate(batches, &config)?;
        self.append_checked(batches, &headers, &config, now_ms, None, None)
    }

    /// Appends a transaction marker (a control batch, see [`crate::batch::control_batch`])
    /// for the producer and ends its open transaction here. An abort records an
    /// [`crate::AbortedTxn`] (persisted in the segment's `.txnindex` before the durable
    /// offset passes the marker). Always appends, even when the producer has no open
    /// transaction here (the coordinator re-sends markers after a crash; a second marker is
    /// harmless). Errors: INVALID_PRODUCER_EPOCH if `producer_epoch` is older than the
    /// producer's epoch here; TRANSACTION_COORDINATOR_FENCED if `coordinator_epoch` is older
    /// than the one of the producer's last marker here. A higher producer epoch becomes the
    /// producer's epoch (older epochs are fenced; its sequences restart at 0). Schedules a
    /// flush like [`Log::append`]; callers `wait_durable(info.last_offset + 1)`.
    pub fn append_marker(
        &self,
        marker: &TxnMarker,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        self.check_online()?;
        let config = self.config();
        let bytes = batch::control_batch(
            marker.producer_id,
            marker.producer_epoch,
            marker.coordinator_epoch,
            marker.commit,
            now_ms,
        );
        let header = batch::check_batch(&bytes).map_err(|f| batch_error(&self.dir, 0, f))?;
        self.append_checked(&bytes, &[(0, header)], &config, now_ms, Some(*marker), None)
    }

    /// The append proper, for validated client batches (`marker` None) or one marker;
    /// `verified`: the batches' transaction was verified under this guard.
    fn append_checked(
        &self,
        batches: &[u8],
        headers: &[(usize, BatchHeader)],
        config: &LogConfig,
        now_ms: i64,
        marker: Option<TxnMarker>,
        verified: Option<VerificationGuard>,
    ) -> Result<AppendInfo, AppendError> {
        let total_bytes: u64 = headers.iter().map(|(_, h)| h.size() as u64).sum();
        let total_records: i64 = headers.iter().map(|(_, h)| i64::from(h.record_count)).sum();
        let log_append = config.timestamp_type == TimestampType::LogAppendTime;

        let append_guard = lock(&self.append_lock);
        self.check_online()?;
        let idempotent = marker.is_none() && headers.iter().any(|(_, h)| h.has_producer_id());
        let mut pending = match marker {
            Some(m) => Pending::Marker(m),
            None => Pending::Batches(Updates::Nothing),
        };
        let (file, position, base_offset, roll_snapshot, leader_epoch, new_epochs) = {
            let mut st = lock(&self.state);
            if st.closed {
                return Err(StorageError::Closed {
                    dir: self.dir.clone(),
                }
                .into());
            }
            if let Some(m) = &marker {
                if let Err(fault) =
                    st.producers
                        .check_marker(m.producer_id, m.producer_epoch, m.coordinator_epoch)
                {
                    return Err(marker_error(&self.dir, m, fault));
                }
            }
            // Idempotent producers: check sequences and epochs against the offsets the
            // batches will get (the log end cannot move while `append_lock` is held).
            if idempotent {
                let table = &st.producers;
                let mut next = st.log_end_offset();
                let planned = headers.iter().filter_map(|(pos, h)| {
                    let first_offset = next;
                    next += i64::from(h.last_offset_delta) + 1;
                    ProducerBatch::of(h).map(|batch| PlannedBatch {
                        position: *pos,
                        batch,
                        first_offset,
                        last_offset: next - 1,
                        timestamp: if log_append { now_ms } else { h.max_timestamp },
                    })
                });
                match table.check_request(planned) {
                    Ok(RequestVerdict::Append(updates)) => pending = Pending::Batches(updates),
                    Ok(RequestVerdict::Duplicate(original)) => {
                        tracing::debug!(dir = %self.dir.display(), first_offset = original.first_offset,
                                        first_sequence = original.first_sequence, "duplicate batch not appended");
                        return Ok(AppendInfo {
                            base_offset: original.first_offset,
                            last_offset: original.last_offset,
                            log_append_time: log_append.then_some(original.timestamp),
                            log_start_offset: st.log_start_offset,
                            duplicate: true,
                        });
                    }
                    Err((position, batch, fault)) => {
                        return Err(producer_error(&self.dir, position, &batch, fault))
                    }
                }
            }
            if let Some(guard) = &verified {
                let lost = headers
                    .iter()
                    .any(|(_, h)| !st.producers.verifies(h.producer_id, guard));
                if lost {
                    return Err(AppendError::TxnVerificationLost {
                        dir: self.dir.clone(),
                        producer_id: guard.producer_id(),
                    });
                }
            }
            let segments_before = st.segments.len();
            self.maybe_roll(
                &mut st,
                total_bytes,
                headers.len() as u64,
                total_records,
                now_ms,
            )?;
            // The first batch of a new leader epoch starts an entry in the leader-epoch
            // cache, written out before the batch.
            let leader_epoch = st.leader_epoch;
            let new_epochs = if st.epochs.latest().is_none_or(|l| l.epoch != leader_epoch) {
                let mut epochs = st.epochs.clone();
                epochs
                    .assign(leader_epoch, st.log_end_offset())
                    .then_some(epochs)
            } else {
                None
            };
            let roll_snapshot = st.roll_snapshot(segments_before);
            let active = st.active();
            (
                Arc::clone(&active.log),
                active.size,
                active.next_offset,
                roll_snapshot,
                leader_epoch,
                new_epochs,
            )
        };
        self.write_before_append(roll_snapshot, new_epochs.as_ref())?;

        // Assign offsets and describe each batch as it will sit on disk.
        let mut stored = Vec::with_capacity(headers.len());
        let mut next = base_offset;
        for (_, h) in headers {
            let mut s = *h;
            s.base_offset = next;
            s.partition_leader_epoch = leader_epoch;
            if log_append {
                s.attributes |= ATTR_LOG_APPEND_TIME;
                s.max_timestamp = now_ms;
            }
            next = s.next_offset();
            stored.push(s);
        }
        let offset_bytes: Vec<[u8; 8]> =
            stored.iter().map(|s| s.base_offset.to_be_bytes()).collect();
        let epoch_bytes = leader_epoch.to_be_bytes();
        let mut stamped: Vec<Vec<u8>> = Vec::new();
        if log_append {
            for ((pos, h), bytes) in headers.iter().zip(&offset_bytes) {
                let mut copy = batches[*pos..*pos + h.size()].to_vec();
                copy[..8].copy_from_slice(bytes);
                copy[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
                    .copy_from_slice(&epoch_bytes);
                batch::set_log_append_time(&mut copy, now_ms);
                stamped.push(copy);
            }
        }
        let write_result = {
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(headers.len() * 4);
            if log_append {
                slices.extend(stamped.iter().map(|b| IoSlice::new(b)));
            } else {
                for ((pos, h), bytes) in headers.iter().zip(&offset_bytes) {
                    // baseOffset and partitionLeaderEpoch are outside the CRC: both are
                    // written from the log's values, the rest as received.
                    let batch = &batches[*pos..*pos + h.size()];
                    slices.push(IoSlice::new(bytes));
                    slices.push(IoSlice::new(&batch[LENGTH..PARTITION_LEADER_EPOCH]));
                    slices.push(IoSlice::new(&epoch_bytes));
                    slices.push(IoSlice::new(&batch[PARTITION_LEADER_EPOCH + 4..]));
                }
            }
            file.append_all(&mut slices, position)
        };
        if let Err(e) = write_result {
            // Cut a partial write so the file ends on a batch boundary again; if even that
            // fails, the file's tail is unknown and the log goes offline.
            if let Err(cut) = file.truncate(position) {
                self.go_offline(&cut);
            }
            return Err(e.into());
        }

        let (info, force_flush) = {
            let mut st = lock(&self.state);
            if let Some(epochs) = new_epochs {
                st.replace_epochs(epochs);
            }
            match pending {
                Pending::Batches(updates) => st.producers.apply(updates),
                Pending::Marker(m) => {
                    let timestamp = stored.first().map_or(now_ms, |s| s.max_timestamp);
                    if let Some(aborted) = st.producers.complete_txn(
                        m.producer_id,
                        m.producer_epoch,
                        m.coordinator_epoch,
                        m.commit,
                        base_offset,
                        timestamp,
                    ) {
                        st.active_mut().txn_index.push(aborted);
                    }
                }
            }
            let interval = st.config.index_interval_bytes;
            let seg = st.active_mut();
            let mut p = position;
            for s in &stored {
                seg.note_batch(p, s, interval);
                p += s.size() as u64;
            }
            if seg.created_ms.is_none() {
                seg.created_ms = Some(now_ms);
            }
            let force = st.note_unflushed(total_records as u64, now_ms);
            let info = AppendInfo {
                base_offset,
                last_offset: next - 1,
                log_append_time: log_append.then_some(now_ms),
                log_start_offset: st.log_start_offset,
                duplicate: false,
            };
            (info, force)
        };
        drop(append_guard);
        self.sync_now_or_schedule(force_flush)?;
        Ok(info)
    }

    /// Writes what must be on disk before an append's batches, outside the state lock: the
    /// producer snapshot of a roll (Kafka snapshots at every roll, so recovery replays at
    /// most the active segment; a failure only makes a later recovery replay more), then
    /// the leader-epoch cache when the batches start a new epoch.
    pub(super) fn write_before_append(
        &self,
        roll: Option<RollSnapshot>,
        epochs: Option<&LeaderEpochCache>,
    ) -> Result<(), StorageError> {
        if let Some(roll) = roll {
            if roll.txn_unsynced {
                self.sync()?;
            }
            if let Err(error) =
                producer_state::write_snapshot(&self.dir, &roll.producers, roll.base_offset)
            {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot write producer snapshot at roll");
            }
        }
        if let Some(epochs) = epochs {
            leader_epoch::write(&self.dir, epochs)?;
        }
        Ok(())
    }

    /// Syncs now (`flush.messages` / `flush.ms` reached) or leaves it to the flusher.
    pub(super) fn sync_now_or_schedule(&self, now: bool) -> Result<(), StorageError> {
        if now {
            self.sync()
        } else {
            self.schedule_sync()
        }
    }

    /// Rolls to a new active segment when the incoming append would break `segment.bytes`,
    /// `segment.ms`, the index size or the u32 relative offsets / positions of the indexes.
    pub(super) fn maybe_roll(
        &self,
        st: &mut LogState,
        incoming_bytes: u64,
        incoming_batches: u64,
        incoming_records: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let cfg = &st.config;
        let active = st.active();
        if active.is_empty() {
            return Ok(());
        }
        let new_size = active.size + incoming_bytes;
        let reason = if new_size > cfg.segment_bytes {
            Some("segment.bytes")
        } else if cfg
            .segment_ms
            .zip(active.created_ms)
            .is_some_and(|(ms, created)| {
                now_ms.saturating_sub(created) >= i64::try_from(ms).unwrap_or(i64::MAX)
            })
        {
            Some("segment.ms")
        } else if !active.index_has_room(cfg.segment_index_bytes, incoming_batches) {
            Some("segment.index.bytes")
        } else if active.next_offset + incoming_records - 1 - active.base_offset
            > i64::from(i32::MAX)
            || new_size > u64::from(u32::MAX)
        {
            Some("index range")
        } else {
            None
        };
        let Some(reason) = reason else {
            return Ok(());
        };
        let new_base = st.log_end_offset();
        let new = Segment::create(&self.dir, new_base)?;
        st.active_mut().seal();
        tracing::debug!(dir = %self.dir.display(), new_base, reason, "rolled segment");
        st.segments.push(new);
        st.dir_dirty = true;
        st.checkpoint_due = true;
        Ok(())
    }

    pub(super) fn schedule_sync(&self) -> Result<(), StorageError> {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let queued = match self.self_ref.upgrade() {
            Some(me) => self.flusher.schedule(me),
            None => false,
        };
        if !queued {
            self.scheduled.store(false, Ordering::Release);
            self.sync()?;
        }
        Ok(())
    }
}
