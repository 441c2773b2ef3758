//! What replication calls on a log: the leader epoch the log stamps into its appends, the
//! leader-epoch cache and its `end_offset_for_epoch` (OffsetsForLeaderEpoch, KIP-101/279),
//! and the follower's append, which keeps the leader's offsets and epochs.

use std::io::IoSlice;
use std::sync::Arc;

use super::{AppendInfo, Log};
use crate::batch::{self, BatchFault, BatchHeader, HEADER_LEN};
use crate::error::{AppendError, StorageError};
use crate::flusher::lock;
use crate::leader_epoch::{self, EpochEntry};

impl Log {
    /// The epoch stamped into the `partitionLeaderEpoch` field of every batch this log
    /// appends as leader ([`Log::append`], markers). 0 on a log that was never told
    /// otherwise (a single node), else the latest epoch of its cache at open.
    pub fn leader_epoch(&self) -> i32 {
        lock(&self.state).leader_epoch
    }

    /// Makes `epoch` the leader epoch of this log from the next append on, and records in
    /// the leader-epoch cache (durably) that it starts at the current log end, as Kafka's
    /// `maybeAssignEpochStartOffset` does when a replica becomes leader. An epoch older than
    /// the latest one the cache holds is FENCED_LEADER_EPOCH.
    pub fn set_leader_epoch(&self, epoch: i32) -> Result<(), StorageError> {
        // `append_lock` keeps appends and truncations out while the file is written
        // without the state lock.
        let _append = lock(&self.append_lock);
        self.check_online()?;
        let changed = {
            let st = lock(&self.state);
            let latest = st.epochs.latest().map_or(-1, |e| e.epoch);
            if epoch < 0 || epoch < latest {
                return Err(StorageError::FencedLeaderEpoch {
                    dir: self.dir.clone(),
                    epoch,
                    latest,
                });
            }
            let mut epochs = st.epochs.clone();
            epochs.assign(epoch, st.log_end_offset()).then_some(epochs)
        };
        if let Some(epochs) = &changed {
            leader_epoch::write(&self.dir, epochs)?;
        }
        let mut st = lock(&self.state);
        if let Some(epochs) = changed {
            st.replace_epochs(epochs);
        }
        st.leader_epoch = epoch;
        Ok(())
    }

    /// The leader-epoch cache: each epoch and the offset of its first batch, ascending.
    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        lock(&self.state).epochs.entries().to_vec()
    }

    /// `(epoch, end offset)` for a follower whose latest epoch is `epoch`, exactly as
    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: the log end for the latest epoch; the
    /// start of the next higher epoch otherwise, paired with the largest epoch at or below
    /// `epoch`; `(-1, -1)` when `epoch` is undefined or above every known epoch.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let st = lock(&self.state);
        st.epochs.end_offset_for(epoch, st.log_end_offset())
    }

    /// Appends batches a leader sent (a fetch response), keeping their base offsets and
    /// `partitionLeaderEpoch` fields. Each batch must have a valid header and CRC and start
    /// exactly where the log (or the previous batch) ends: anything else is
    /// CORRUPT_MESSAGE or `UnexpectedAppendOffset`, and nothing is appended. Control
    /// batches are accepted; producer state is updated as recovery replays it (the leader
    /// checked the sequences), and aborted transactions go to `.txnindex`. A batch whose
    /// epoch is above the cache's latest starts a new entry (written before the batch).
    /// Durability as [`Log::append`]: a group commit is scheduled (or, with `flush.messages`
    /// / `flush.ms` reached, the append syncs before it returns). `now_ms` starts the
    /// `segment.ms` clock of a new segment.
    pub fn append_as_follower(
        &self,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        self.check_online()?;
        let mut headers: Vec<(usize, BatchHeader)> = Vec::new();
        let mut position = 0;
        while position < batches.len() {
            let rest = &batches[position..];
            let corrupt = |fault: BatchFault| AppendError::CorruptMessage {
                dir: self.dir.clone(),
                position,
                reason: fault.to_string(),
            };
            let h = batch::check_header(&rest[..rest.len().min(HEADER_LEN)], rest.len())
                .map_err(corrupt)?;
            let computed = batch::compute_crc(&rest[..h.size()]);
            if computed != h.crc {
                return Err(corrupt(BatchFault::Crc {
                    stored: h.crc,
                    computed,
                }));
            }
            if let Some((_, prev)) = headers.last() {
                if h.base_offset != prev.next_offset() {
                    return Err(AppendError::UnexpectedAppendOffset {
                        dir: self.dir.clone(),
                        position,
                        expected: prev.next_offset(),
                        found: h.base_offset,
                    });
                }
            }
            headers.push((position, h));
            position += h.size();
        }
        let (Some((_, first)), Some((_, last))) = (headers.first(), headers.last()) else {
            return Err(AppendError::InvalidRecord {
                dir: self.dir.clone(),
                position: 0,
                reason: "no record batch".into(),
            });
        };
        let (first, last) = (*first, *last);
        let total_bytes = batches.len() as u64;

        let append_guard = lock(&self.append_lock);
        self.check_online()?;
        let (file, file_position, roll_snapshot, epochs) = {
            let mut st = lock(&self.state);
            if st.closed {
                return Err(StorageError::Closed {
                    dir: self.dir.clone(),
                }
                .into());
            }
            let end = st.log_end_offset();
            if first.base_offset != end {
                return Err(AppendError::UnexpectedAppendOffset {
                    dir: self.dir.clone(),
                    position: 0,
                    expected: end,
                    found: first.base_offset,
                });
            }
            let mut epochs = st.epochs.clone();
            let mut epochs_changed = false;
            for (_, h) in &headers {
                let epoch = h.partition_leader_epoch;
                if epoch >= 0 && epochs.latest().is_none_or(|l| epoch > l.epoch) {
                    epochs_changed |= epochs.assign(epoch, h.base_offset);
                }
            }
            let segments_before = st.segments.len();
            self.maybe_roll(
                &mut st,
                total_bytes,
                headers.len() as u64,
                last.next_offset() - first.base_offset,
                now_ms,
            )?;
            let roll_snapshot = st.roll_snapshot(segments_before);
            let active = st.active();
            (
                Arc::clone(&active.log),
                active.size,
                roll_snapshot,
                epochs_changed.then_some(epochs),
            )
        };
        // The cache names every epoch the log holds: its file is written first.
        self.write_before_append(roll_snapshot, epochs.as_ref())?;
        if let Err(e) = file.append_all(&mut [IoSlice::new(batches)], file_position) {
            if let Err(cut) = file.truncate(file_position) {
                self.go_offline(&cut);
            }
            return Err(e.into());
        }
        let (info, force_flush) = {
            let mut st = lock(&self.state);
            if let Some(epochs) = epochs {
                st.replace_epochs(epochs);
            }
            let interval = st.config.index_interval_bytes;
            let mut p = file_position;
            for (pos, h) in &headers {
                let control = if h.is_control() {
                    batch::control_record(&batches[*pos..*pos + h.size()])
                } else {
                    None
                };
                if let Some(aborted) = st.producers.replay(h, control) {
                    st.active_mut().txn_index.push(aborted);
                }
                st.active_mut().note_batch(p, h, interval);
                p += h.size() as u64;
            }
            let seg = st.active_mut();
            if seg.created_ms.is_none() {
                seg.created_ms = Some(now_ms);
            }
            let records: u64 = headers
                .iter()
                .map(|(_, h)| u64::try_from(h.record_count).unwrap_or(0))
                .sum();
            let force = st.note_unflushed(records, now_ms);
            let info = AppendInfo {
                base_offset: first.base_offset,
                last_offset: last.last_offset(),
                log_append_time: None,
                log_start_offset: st.log_start_offset,
                duplicate: false,
            };
            (info, force)
        };
        drop(append_guard);
        // `flush.messages` / `flush.ms` apply to a follower's log as to a leader's.
        self.sync_now_or_schedule(force_flush)?;
        Ok(info)
    }
}
