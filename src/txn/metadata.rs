//! The state of one transactional id and its transitions, pure: no I/O, no clock (the
//! caller passes `now_ms`), no locks. Each `plan_*` function answers what Kafka's
//! `TransactionCoordinator` answers for the same state and request: either an error, or
//! the next [`TxnMetadata`] that the coordinator must make durable before it becomes the
//! current state.
//!
//! States and moves (Kafka's `TransactionState`):
//!
//! ```text
//! Empty ──AddPartitions/AddOffsets──▶ Ongoing ──EndTxn──▶ PrepareCommit ──markers──▶ CompleteCommit
//!   ▲                                   │  └──EndTxn/timeout/InitProducerId──▶ PrepareAbort ──markers──▶ CompleteAbort
//!   └──────────── InitProducerId (epoch bump) ◀──── Complete* / Empty ◀───────────────┘
//! ```
//!
//! Epochs: every InitProducerId bumps the epoch (fencing the previous instance); a
//! transaction aborted by the coordinator (timeout, or InitProducerId finding it ongoing)
//! is aborted with a bumped epoch too, so the producer that owned it is fenced. An epoch
//! at `i16::MAX - 1` is exhausted: the next InitProducerId moves to a new producer id.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};

/// The producer id of a transactional id that has none yet.
pub const NO_PRODUCER_ID: i64 = -1;
/// The epoch of a producer id that was never handed out.
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Cost (see [`TxnMetadata::cost`]) of a transactional id's state besides its strings.
pub const TXN_OVERHEAD: u64 = 320;
/// Cost of one partition or group of a transaction besides its name.
pub const TXN_MEMBER_OVERHEAD: u64 = 64;

/// Kafka's transaction states, with the names DescribeTransactions / ListTransactions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxnState {
    /// No transaction in progress (after InitProducerId).
    Empty,
    /// A transaction holds partitions or groups; it ends by EndTxn or by timing out.
    Ongoing,
    /// Commit decided and durable; markers are being written.
    PrepareCommit,
    /// Abort decided and durable; markers are being written.
    PrepareAbort,
    /// Every commit marker is written.
    CompleteCommit,
    /// Every abort marker is written.
    CompleteAbort,
    /// The transactional id expired (never held in memory; kept for ListTransactions filters).
    Dead,
}

impl TxnState {
    /// Every state, in Kafka's order.
    pub const ALL: [TxnState; 7] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
    ];

    /// Kafka's name of the state (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
        }
    }

    /// The state named `name` (exact, as Kafka's admin client sends it).
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// PrepareCommit or PrepareAbort: the outcome is decided, markers are pending.
    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// Why a transactional request is refused. Each maps to one Kafka error code
/// ([`TxnError::response_error`]); `ProducerFenced` becomes INVALID_PRODUCER_EPOCH for
/// request versions older than the ones that know PRODUCER_FENCED ([`TxnError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error(
        "transaction timeout {timeout_ms} ms is not in 1..={max_ms} (transaction.max.timeout.ms)"
    )]
    InvalidTransactionTimeout { timeout_ms: i32, max_ms: i32 },
    #[error("producer id {given} is not the one of this transactional id ({current})")]
    InvalidProducerIdMapping { given: i64, current: i64 },
    #[error("producer epoch {given} is fenced: the current epoch is {current}")]
    ProducerFenced { given: i16, current: i16 },
    #[error("producer epoch {given} is not the current epoch {current}")]
    InvalidProducerEpoch { given: i16, current: i16 },
    #[error("another operation on this transaction is in progress")]
    ConcurrentTransactions,
    #[error("{action} is not allowed in state {}", state.name())]
    InvalidTxnState {
        state: TxnState,
        action: &'static str,
    },
    #[error("the transaction coordinator cannot serve the request now")]
    CoordinatorNotAvailable,
    #[error("the transaction coordinator holds transaction.state.max.bytes ({max_bytes}) of state: no more transactional ids, partitions or groups")]
    StateFull { max_bytes: u64 },
}

impl TxnError {
    /// The Kafka error of this refusal, PRODUCER_FENCED included.
    pub fn response_error(&self) -> ResponseError {
        match self {
            TxnError::InvalidRequest(_) => ResponseError::InvalidRequest,
            TxnError::InvalidTransactionTimeout { .. } => ResponseError::InvalidTransactionTimeout,
            TxnError::InvalidProducerIdMapping { .. } => ResponseError::InvalidProducerIdMapping,
            TxnError::ProducerFenced { .. } => ResponseError::ProducerFenced,
            TxnError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
            TxnError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
            TxnError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
            // Kafka has no such limit; POLICY_VIOLATION says a broker policy refused it.
            TxnError::StateFull { .. } => ResponseError::PolicyViolation,
        }
    }

    /// The error code for a request of `version`, where the API knows PRODUCER_FENCED
    /// from `fenced_since` on (Kafka's KafkaApis: InitProducerId v4, AddPartitionsToTxn,
    /// AddOffsetsToTxn and EndTxn v2); older versions get INVALID_PRODUCER_EPOCH.
    pub fn code(&self, version: i16, fenced_since: i16) -> i16 {
        match self {
            TxnError::ProducerFenced { .. } if version < fenced_since => {
                ResponseError::InvalidProducerEpoch.code()
            }
            other => other.response_error().code(),
        }
    }
}

/// A producer id and epoch a client already holds (InitProducerId v3+, KIP-360).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedProducer {
    pub producer_id: i64,
    pub epoch: i16,
}

/// Everything the coordinator knows of one transactional id. This whole struct is the
/// record of the transaction log: the last record of an id is its state. The id is an
/// `Arc<str>` shared with the coordinator's indexes (it encodes as a string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    pub transactional_id: Arc<str>,
    /// The producer id handed to this transactional id, or [`NO_PRODUCER_ID`].
    pub producer_id: i64,
    /// The producer id before the last rotation (epoch exhausted), or [`NO_PRODUCER_ID`].
    pub last_producer_id: i64,
    /// The current epoch; [`NO_PRODUCER_EPOCH`] before the first InitProducerId completes.
    pub producer_epoch: i16,
    /// The epoch the last InitProducerId bumped from (answers a retried bump), or
    /// [`NO_PRODUCER_EPOCH`] after the coordinator fenced the producer itself.
    pub last_producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer, in ms.
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions written in the current transaction (empty unless Ongoing / Prepare*).
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups whose offsets are committed in the current transaction.
    pub groups: BTreeSet<String>,
    /// When the current (or last) transaction started, Unix ms; -1 before the first.
    pub txn_start_ms: i64,
    /// When this state was entered, Unix ms.
    pub last_update_ms: i64,
}

/// What InitProducerId must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitPlan {
    /// Make this Empty state durable, then answer its producer id and epoch.
    Ready(TxnMetadata),
    /// The epoch is exhausted: allocate a producer id and make
    /// [`TxnMetadata::rotated`] durable.
    NeedNewProducerId { record_last_epoch: bool },
    /// A transaction is ongoing: make this PrepareAbort (epoch fenced) durable, write its
    /// markers, complete it, then plan again.
    AbortFirst(TxnMetadata),
}

/// What EndTxn must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndPlan {
    /// A retry of an EndTxn already completed: answer success, change nothing.
    AlreadyDone,
    /// Make this Prepare* state durable, write the markers, then complete it.
    Prepare(TxnMetadata),
}

/// An epoch from which no bump is possible: the next InitProducerId takes a new id.
pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

impl TxnMetadata {
    /// A transactional id seen for the first time: `producer_id` at no epoch yet, Empty.
    pub fn new(transactional_id: Arc<str>, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id,
            producer_id,
            last_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            txn_start_ms: -1,
            last_update_ms: now_ms,
        }
    }

    /// What this state costs the coordinator (`transaction.state.max.bytes`): its id,
    /// the topic names of its partitions and its group ids, plus fixed overheads.
    pub fn cost(&self) -> u64 {
        TXN_OVERHEAD
            + self.transactional_id.len() as u64
            + self
                .partitions
                .iter()
                .map(|(topic, _)| TXN_MEMBER_OVERHEAD + topic.len() as u64)
                .sum::<u64>()
            + self
                .groups
                .iter()
                .map(|group| TXN_MEMBER_OVERHEAD + group.len() as u64)
                .sum::<u64>()
    }

    /// InitProducerId with this transactional id. `busy`: another operation on it is
    /// being made durable. `expected`: the id and epoch the client holds (v3+).
    pub fn plan_init(
        &self,
        busy: bool,
        expected: Option<ExpectedProducer>,
        timeout_ms: i32,
        now_ms: i64,
    ) -> Result<InitPlan, TxnError> {
        if busy {
            return Err(TxnError::ConcurrentTransactions);
        }
        if let Some(e) = expected {
            // Kafka's isValidProducerId: a brand-new id, the current id (the epoch is
            // checked below), or the previous id with an exhausted epoch (a retry of the
            // rotation whose answer was lost).
            let valid = self.producer_epoch == NO_PRODUCER_EPOCH
                || e.producer_id == self.producer_id
                || (e.producer_id == self.last_producer_id && is_epoch_exhausted(e.epoch));
            if !valid {
                return Err(TxnError::ProducerFenced {
                    given: e.epoch,
                    current: self.producer_epoch,
                });
            }
        }
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing => Ok(InitPlan::AbortFirst(self.fenced_abort(now_ms))),
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Dead => {
                let (epoch, last_epoch) = match expected.map(|e| e.epoch) {
                    Some(given)
                        if self.producer_epoch != NO_PRODUCER_EPOCH
                            && given != self.producer_epoch =>
                    {
                        if given == self.last_producer_epoch {
                            // The bump already happened; its answer was lost.
                            (self.producer_epoch, self.last_producer_epoch)
                        } else {
                            return Err(TxnError::ProducerFenced {
                                given,
                                current: self.producer_epoch,
                            });
                        }
                    }
                    given => {
                        if is_epoch_exhausted(self.producer_epoch) {
                            return Ok(InitPlan::NeedNewProducerId {
                                record_last_epoch: given.is_some(),
                            });
                        }
                        let last = if given.is_some() {
                            self.producer_epoch
                        } else {
                            NO_PRODUCER_EPOCH
                        };
                        (self.producer_epoch + 1, last)
                    }
                };
                Ok(InitPlan::Ready(TxnMetadata {
                    producer_epoch: epoch,
                    last_producer_epoch: last_epoch,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    groups: BTreeSet::new(),
                    txn_start_ms: -1,
                    last_update_ms: now_ms,
                    ..self.clone()
                }))
            }
        }
    }

    /// The Empty state under a new producer id at epoch 0 (the old epoch is exhausted).
    /// `record_last_epoch`: remember the old epoch so a retried request is recognised.
    pub fn rotated(
        &self,
        new_producer_id: i64,
        timeout_ms: i32,
        record_last_epoch: bool,
        now_ms: i64,
    ) -> TxnMetadata {
        TxnMetadata {
            producer_id: new_producer_id,
            last_producer_id: self.producer_id,
            producer_epoch: 0,
            last_producer_epoch: if record_last_epoch {
                self.producer_epoch
            } else {
                NO_PRODUCER_EPOCH
            },
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            txn_start_ms: -1,
            last_update_ms: now_ms,
            transactional_id: self.transactional_id.clone(),
        }
    }

    /// PrepareAbort of the ongoing transaction by the coordinator, under a bumped epoch so
    /// the producer that owned it is fenced (Kafka's PrepareEpochFence + abort).
    pub fn fenced_abort(&self, now_ms: i64) -> TxnMetadata {
        let epoch = if self.producer_epoch < i16::MAX {
            self.producer_epoch + 1
        } else {
            self.producer_epoch
        };
        TxnMetadata {
            producer_epoch: epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            state: TxnState::PrepareAbort,
            last_update_ms: now_ms,
            ..self.clone()
        }
    }

    /// Checks the producer of a request on the ongoing transaction: Kafka's order is the
    /// producer id, the epoch, then whether another operation is in progress.
    fn check_producer(&self, busy: bool, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::InvalidProducerIdMapping {
                given: producer_id,
                current: self.producer_id,
            });
        }
        if epoch != self.producer_epoch {
            return Err(TxnError::ProducerFenced {
                given: epoch,
                current: self.producer_epoch,
            });
        }
        if busy {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(())
    }

    /// AddPartitionsToTxn. `Ok(None)`: every partition is already in the ongoing
    /// transaction (nothing to write).
    pub fn plan_add_partitions(
        &self,
        busy: bool,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<Option<TxnMetadata>, TxnError> {
        self.plan_add(busy, producer_id, epoch, partitions, &[], now_ms)
    }

    /// AddOffsetsToTxn: the group's offsets join the transaction.
    pub fn plan_add_group(
        &self,
        busy: bool,
        producer_id: i64,
        epoch: i16,
        group: &str,
        now_ms: i64,
    ) -> Result<Option<TxnMetadata>, TxnError> {
        self.plan_add(busy, producer_id, epoch, &[], &[group.to_string()], now_ms)
    }

    fn plan_add(
        &self,
        busy: bool,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        groups: &[String],
        now_ms: i64,
    ) -> Result<Option<TxnMetadata>, TxnError> {
        self.check_producer(busy, producer_id, epoch)?;
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Dead => Err(TxnError::InvalidTxnState {
                state: self.state,
                action: "adding to a transaction",
            }),
            TxnState::Ongoing
                if partitions.iter().all(|p| self.partitions.contains(p))
                    && groups.iter().all(|g| self.groups.contains(g)) =>
            {
                Ok(None)
            }
            TxnState::Ongoing
            | TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort => {
                let starting = self.state != TxnState::Ongoing;
                let mut next = TxnMetadata {
                    state: TxnState::Ongoing,
                    txn_start_ms: if starting { now_ms } else { self.txn_start_ms },
                    last_update_ms: now_ms,
                    ..self.clone()
                };
                if starting {
                    next.partitions.clear();
                    next.groups.clear();
                }
                next.partitions.extend(partitions.iter().cloned());
                next.groups.extend(groups.iter().cloned());
                Ok(Some(next))
            }
        }
    }

    /// TxnOffsetCommit: the producer must be the current one and the group part of the
    /// ongoing transaction (AddOffsetsToTxn first). A stale epoch is INVALID_PRODUCER_EPOCH
    /// here, what Kafka's offsets-log append answers.
    pub fn check_offset_commit(
        &self,
        busy: bool,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::InvalidProducerIdMapping {
                given: producer_id,
                current: self.producer_id,
            });
        }
        if epoch != self.producer_epoch {
            return Err(TxnError::InvalidProducerEpoch {
                given: epoch,
                current: self.producer_epoch,
            });
        }
        if busy {
            return Err(TxnError::ConcurrentTransactions);
        }
        if self.state != TxnState::Ongoing || !self.groups.contains(group) {
            return Err(TxnError::InvalidTxnState {
                state: self.state,
                action: "TxnOffsetCommit for a group not added with AddOffsetsToTxn",
            });
        }
        Ok(())
    }

    /// EndTxn from the client (strict epoch equality). Retries of a completed EndTxn with
    /// the same outcome succeed; the other outcome is INVALID_TXN_STATE.
    pub fn plan_end(
        &self,
        busy: bool,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<EndPlan, TxnError> {
        self.check_producer(busy, producer_id, epoch)?;
        let invalid = |state| TxnError::InvalidTxnState {
            state,
            action: if commit {
                "EndTxn commit"
            } else {
                "EndTxn abort"
            },
        };
        match (self.state, commit) {
            (TxnState::Ongoing, _) => Ok(EndPlan::Prepare(TxnMetadata {
                state: if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                },
                last_update_ms: now_ms,
                ..self.clone()
            })),
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                Ok(EndPlan::AlreadyDone)
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::ConcurrentTransactions)
            }
            (state, _) => Err(invalid(state)),
        }
    }

    /// The coordinator's abort of an Ongoing transaction older than its timeout:
    /// PrepareAbort under a fenced epoch, or None when it has not timed out.
    pub fn plan_timeout_abort(&self, now_ms: i64) -> Option<TxnMetadata> {
        let expired = self.state == TxnState::Ongoing
            && self.txn_start_ms.saturating_add(i64::from(self.timeout_ms)) < now_ms;
        expired.then(|| self.fenced_abort(now_ms))
    }

    /// Complete* after every marker of a Prepare* state is written; the transaction's
    /// partitions and groups are forgotten. Other states are returned unchanged.
    pub fn completed(&self, now_ms: i64) -> TxnMetadata {
        let state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return self.clone(),
        };
        TxnMetadata {
            state,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            last_update_ms: now_ms,
            ..self.clone()
        }
    }

    /// Produce of a transactional batch by this transactional id's producer id: only into
    /// a partition of the Ongoing transaction, with the current epoch.
    pub fn check_produce(&self, epoch: i16, topic: &str, partition: i32) -> Result<(), TxnError> {
        if epoch < self.producer_epoch {
            return Err(TxnError::InvalidProducerEpoch {
                given: epoch,
                current: self.producer_epoch,
            });
        }
        let included = self.state == TxnState::Ongoing
            && epoch == self.producer_epoch
            && self
                .partitions
                .iter()
                .any(|(t, p)| t == topic && *p == partition);
        if included {
            Ok(())
        } else {
            Err(TxnError::InvalidTxnState {
                state: self.state,
                action: "a transactional write to a partition not added with AddPartitionsToTxn",
            })
        }
    }

    /// Whether the id may be forgotten: no transaction open or deciding, and unused for
    /// `expiration_ms` (`transactional.id.expiration.ms`).
    pub fn is_expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        matches!(
            self.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        ) && self.last_update_ms.saturating_add(expiration_ms) <= now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: i64 = 1000;

    fn fresh() -> TxnMetadata {
        TxnMetadata::new("tx".into(), PID, 60_000, 1)
    }

    fn ready(plan: Result<InitPlan, TxnError>) -> TxnMetadata {
        match plan {
            Ok(InitPlan::Ready(m)) => m,
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    /// Empty at epoch 0, as after the first InitProducerId.
    fn initialized() -> TxnMetadata {
        ready(fresh().plan_init(false, None, 60_000, 2))
    }

    fn ongoing(parts: &[(&str, i32)]) -> TxnMetadata {
        let m = initialized();
        let parts: Vec<_> = parts.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        m.plan_add_partitions(false, PID, 0, &parts, 10)
            .unwrap()
            .unwrap()
    }

    fn expected(producer_id: i64, epoch: i16) -> Option<ExpectedProducer> {
        Some(ExpectedProducer { producer_id, epoch })
    }

    #[test]
    fn first_init_gives_epoch_zero_and_each_init_bumps() {
        let m = initialized();
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.state),
            (PID, 0, TxnState::Empty)
        );
        assert_eq!(m.last_producer_epoch, NO_PRODUCER_EPOCH);
        let again = ready(m.plan_init(false, None, 5_000, 3));
        assert_eq!(again.producer_epoch, 1);
        assert_eq!(again.timeout_ms, 5_000);
        assert_eq!(again.last_update_ms, 3);
    }

    #[test]
    fn init_with_the_current_epoch_bumps_and_a_retry_gets_the_same_answer() {
        let m = initialized();
        let bumped = ready(m.plan_init(false, expected(PID, 0), 60_000, 3));
        assert_eq!((bumped.producer_epoch, bumped.last_producer_epoch), (1, 0));
        // The answer was lost: the client asks again with epoch 0.
        let retried = ready(bumped.plan_init(false, expected(PID, 0), 60_000, 4));
        assert_eq!(retried.producer_epoch, 1);
        // An epoch that was never current here is fenced.
        let fenced = bumped.plan_init(false, expected(PID, 7), 60_000, 5);
        assert!(matches!(
            fenced,
            Err(TxnError::ProducerFenced {
                given: 7,
                current: 1
            })
        ));
        // Another producer id is fenced.
        let other = bumped.plan_init(false, expected(PID + 1, 1), 60_000, 5);
        assert!(matches!(other, Err(TxnError::ProducerFenced { .. })));
    }

    #[test]
    fn init_while_busy_or_preparing_is_concurrent() {
        let m = initialized();
        assert_eq!(
            m.plan_init(true, None, 1, 3),
            Err(TxnError::ConcurrentTransactions)
        );
        let EndPlan::Prepare(prepare) = ongoing(&[("t", 0)])
            .plan_end(false, PID, 0, true, 20)
            .unwrap()
        else {
            panic!("expected Prepare")
        };
        assert_eq!(
            prepare.plan_init(false, None, 1, 30),
            Err(TxnError::ConcurrentTransactions)
        );
    }

    #[test]
    fn init_during_a_transaction_aborts_it_under_a_fenced_epoch_first() {
        let m = ongoing(&[("t", 0), ("t", 1)]);
        let plan = m.plan_init(false, None, 60_000, 50).unwrap();
        let InitPlan::AbortFirst(abort) = plan else {
            panic!("expected AbortFirst, got {plan:?}")
        };
        assert_eq!(abort.state, TxnState::PrepareAbort);
        assert_eq!(abort.producer_epoch, 1);
        assert_eq!(abort.last_producer_epoch, NO_PRODUCER_EPOCH);
        assert_eq!(abort.partitions.len(), 2);
        let done = abort.completed(60);
        assert_eq!(done.state, TxnState::CompleteAbort);
        assert!(done.partitions.is_empty());
        // Planning again (the new instance) bumps once more.
        let next = ready(done.plan_init(false, None, 60_000, 70));
        assert_eq!(next.producer_epoch, 2);
        // The old instance, asking with its epoch 0, is fenced.
        assert!(matches!(
            done.plan_init(false, expected(PID, 0), 60_000, 70),
            Err(TxnError::ProducerFenced { .. })
        ));
    }

    #[test]
    fn exhausted_epoch_rotates_the_producer_id_and_a_retry_is_recognised() {
        let mut m = initialized();
        m.producer_epoch = i16::MAX - 1;
        let plan = m.plan_init(false, expected(PID, i16::MAX - 1), 60_000, 3);
        assert_eq!(
            plan,
            Ok(InitPlan::NeedNewProducerId {
                record_last_epoch: true
            })
        );
        let rotated = m.rotated(PID + 1, 60_000, true, 3);
        assert_eq!((rotated.producer_id, rotated.producer_epoch), (PID + 1, 0));
        assert_eq!(rotated.last_producer_id, PID);
        // The same request again (its answer was lost): the rotated id, unchanged.
        let retried = ready(rotated.plan_init(false, expected(PID, i16::MAX - 1), 60_000, 4));
        assert_eq!((retried.producer_id, retried.producer_epoch), (PID + 1, 0));
        // A new instance without an expected id also rotates.
        assert_eq!(
            m.plan_init(false, None, 60_000, 3),
            Ok(InitPlan::NeedNewProducerId {
                record_last_epoch: false
            })
        );
    }

    #[test]
    fn add_partitions_starts_and_extends_a_transaction() {
        let m = initialized();
        let first = m
            .plan_add_partitions(false, PID, 0, &[("t".into(), 0)], 10)
            .unwrap()
            .unwrap();
        assert_eq!(first.state, TxnState::Ongoing);
        assert_eq!(first.txn_start_ms, 10);
        // Already included: nothing to write.
        assert_eq!(
            first.plan_add_partitions(false, PID, 0, &[("t".into(), 0)], 11),
            Ok(None)
        );
        let more = first
            .plan_add_partitions(false, PID, 0, &[("t".into(), 1)], 12)
            .unwrap()
            .unwrap();
        assert_eq!(more.partitions.len(), 2);
        assert_eq!(more.txn_start_ms, 10, "the start time is the first add's");
        let with_group = more
            .plan_add_group(false, PID, 0, "g", 13)
            .unwrap()
            .unwrap();
        assert!(with_group.groups.contains("g"));
        assert_eq!(with_group.plan_add_group(false, PID, 0, "g", 14), Ok(None));
    }

    #[test]
    fn add_partitions_refusals_in_kafka_order() {
        let m = ongoing(&[("t", 0)]);
        let add =
            |busy, pid, epoch| m.plan_add_partitions(busy, pid, epoch, &[("t".into(), 9)], 20);
        assert!(matches!(
            add(true, PID + 1, 0),
            Err(TxnError::InvalidProducerIdMapping { .. })
        ));
        assert!(matches!(
            add(true, PID, 3),
            Err(TxnError::ProducerFenced {
                given: 3,
                current: 0
            })
        ));
        assert_eq!(add(true, PID, 0), Err(TxnError::ConcurrentTransactions));
        let EndPlan::Prepare(prepare) = m.plan_end(false, PID, 0, false, 20).unwrap() else {
            panic!()
        };
        assert_eq!(
            prepare.plan_add_partitions(false, PID, 0, &[("t".into(), 0)], 21),
            Err(TxnError::ConcurrentTransactions)
        );
    }

    #[test]
    fn a_completed_transaction_makes_way_for_the_next() {
        let m = ongoing(&[("t", 0)]);
        let EndPlan::Prepare(prepare) = m.plan_end(false, PID, 0, true, 20).unwrap() else {
            panic!()
        };
        let done = prepare.completed(21);
        let next = done
            .plan_add_partitions(false, PID, 0, &[("u".into(), 2)], 30)
            .unwrap()
            .unwrap();
        assert_eq!(next.state, TxnState::Ongoing);
        assert_eq!(next.txn_start_ms, 30);
        assert_eq!(
            next.partitions.len(),
            1,
            "the previous transaction's partitions are gone"
        );
    }

    #[test]
    fn end_txn_commit_and_abort_and_their_retries() {
        let m = ongoing(&[("t", 0)]);
        let EndPlan::Prepare(commit) = m.plan_end(false, PID, 0, true, 20).unwrap() else {
            panic!()
        };
        assert_eq!(commit.state, TxnState::PrepareCommit);
        // While the markers are written: the same outcome is concurrent, the other invalid.
        assert_eq!(
            commit.plan_end(false, PID, 0, true, 21),
            Err(TxnError::ConcurrentTransactions)
        );
        assert!(matches!(
            commit.plan_end(false, PID, 0, false, 21),
            Err(TxnError::InvalidTxnState {
                state: TxnState::PrepareCommit,
                ..
            })
        ));
        let done = commit.completed(22);
        assert_eq!(done.state, TxnState::CompleteCommit);
        // A retried commit succeeds without doing anything; an abort is invalid.
        assert_eq!(
            done.plan_end(false, PID, 0, true, 23),
            Ok(EndPlan::AlreadyDone)
        );
        assert!(matches!(
            done.plan_end(false, PID, 0, false, 23),
            Err(TxnError::InvalidTxnState {
                state: TxnState::CompleteCommit,
                ..
            })
        ));

        let EndPlan::Prepare(abort) = m.plan_end(false, PID, 0, false, 20).unwrap() else {
            panic!()
        };
        assert_eq!(abort.state, TxnState::PrepareAbort);
        assert_eq!(
            abort.plan_end(false, PID, 0, false, 21),
            Err(TxnError::ConcurrentTransactions)
        );
        let aborted = abort.completed(22);
        assert_eq!(
            aborted.plan_end(false, PID, 0, false, 23),
            Ok(EndPlan::AlreadyDone)
        );
        assert!(matches!(
            aborted.plan_end(false, PID, 0, true, 23),
            Err(TxnError::InvalidTxnState { .. })
        ));
    }

    #[test]
    fn end_txn_refusals() {
        let empty = initialized();
        assert!(matches!(
            empty.plan_end(false, PID, 0, true, 5),
            Err(TxnError::InvalidTxnState {
                state: TxnState::Empty,
                ..
            })
        ));
        let m = ongoing(&[("t", 0)]);
        assert!(matches!(
            m.plan_end(false, PID + 5, 0, true, 5),
            Err(TxnError::InvalidProducerIdMapping { .. })
        ));
        assert!(matches!(
            m.plan_end(false, PID, 1, true, 5),
            Err(TxnError::ProducerFenced {
                given: 1,
                current: 0
            })
        ));
        assert_eq!(
            m.plan_end(true, PID, 0, true, 5),
            Err(TxnError::ConcurrentTransactions)
        );
    }

    #[test]
    fn timeouts_abort_only_expired_ongoing_transactions_and_fence() {
        let m = ongoing(&[("t", 0)]); // started at 10, timeout 60 s
        assert_eq!(m.plan_timeout_abort(60_010), None);
        let abort = m.plan_timeout_abort(60_011).unwrap();
        assert_eq!(
            (abort.state, abort.producer_epoch),
            (TxnState::PrepareAbort, 1)
        );
        // The fenced producer's own EndTxn now fails with PRODUCER_FENCED.
        assert!(matches!(
            abort
                .completed(60_012)
                .plan_end(false, PID, 0, true, 60_013),
            Err(TxnError::ProducerFenced { .. })
        ));
        assert_eq!(initialized().plan_timeout_abort(i64::MAX), None);
    }

    #[test]
    fn offset_commits_need_the_group_in_the_ongoing_transaction() {
        let m = ongoing(&[("t", 0)]);
        assert!(matches!(
            m.check_offset_commit(false, PID, 0, "g"),
            Err(TxnError::InvalidTxnState { .. })
        ));
        let with = m.plan_add_group(false, PID, 0, "g", 11).unwrap().unwrap();
        assert_eq!(with.check_offset_commit(false, PID, 0, "g"), Ok(()));
        assert!(matches!(
            with.check_offset_commit(false, PID, 1, "g"),
            Err(TxnError::InvalidProducerEpoch { .. })
        ));
        assert!(matches!(
            with.check_offset_commit(false, 7, 0, "g"),
            Err(TxnError::InvalidProducerIdMapping { .. })
        ));
        assert_eq!(
            with.check_offset_commit(true, PID, 0, "g"),
            Err(TxnError::ConcurrentTransactions)
        );
    }

    #[test]
    fn produce_is_verified_against_the_ongoing_transaction() {
        let m = ongoing(&[("t", 0)]);
        assert_eq!(m.check_produce(0, "t", 0), Ok(()));
        assert!(matches!(
            m.check_produce(0, "t", 1),
            Err(TxnError::InvalidTxnState { .. })
        ));
        let bumped = ready(initialized().plan_init(false, None, 1, 3));
        assert!(matches!(
            bumped.check_produce(0, "t", 0),
            Err(TxnError::InvalidProducerEpoch {
                given: 0,
                current: 1
            })
        ));
        let EndPlan::Prepare(prepare) = m.plan_end(false, PID, 0, true, 20).unwrap() else {
            panic!()
        };
        assert!(matches!(
            prepare.check_produce(0, "t", 0),
            Err(TxnError::InvalidTxnState {
                state: TxnState::PrepareCommit,
                ..
            })
        ));
    }

    #[test]
    fn fenced_codes_follow_the_request_version() {
        let fenced = TxnError::ProducerFenced {
            given: 0,
            current: 1,
        };
        assert_eq!(fenced.code(1, 2), 47);
        assert_eq!(fenced.code(2, 2), 90);
        assert_eq!(TxnError::ConcurrentTransactions.code(0, 2), 51);
        assert_eq!(
            TxnError::InvalidTxnState {
                state: TxnState::Empty,
                action: "x"
            }
            .code(0, 2),
            48
        );
        assert_eq!(
            TxnError::InvalidProducerIdMapping {
                given: 1,
                current: 2
            }
            .code(0, 2),
            49
        );
        assert_eq!(
            TxnError::InvalidTransactionTimeout {
                timeout_ms: 0,
                max_ms: 1
            }
            .code(0, 2),
            50
        );
    }

    #[test]
    fn expiry_and_state_names() {
        let m = initialized();
        assert!(!m.is_expired(100, 1000));
        assert!(m.is_expired(1002, 1000));
        assert!(!ongoing(&[("t", 0)]).is_expired(i64::MAX, 0));
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
        assert_eq!(TxnState::from_name("ongoing"), None);
    }
}
