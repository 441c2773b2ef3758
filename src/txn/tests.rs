//! The coordinator against a real broker (partition logs in a temp dir) and group
//! service: markers, offsets, fencing, timeouts, restarts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use strata_storage::producer_state::VerificationGuard;
use strata_storage::records::{CheckedBatch, RecordRules};
use strata_storage::testing::txn_batch;
use tokio::sync::watch;

use super::log::{TxnLog, TxnRecord};
use super::metadata::{ExpectedProducer, TxnError, TxnMetadata, TxnState};
use super::{TxnConfig, TxnCoordinator};
use crate::broker::{now_ms, Broker};
use crate::config::Config;
use crate::group::offsets::CommittedOffset;
use crate::group::{GroupService, GroupServiceConfig};

struct Node {
    broker: Arc<Broker>,
    groups: GroupService,
    txns: TxnCoordinator,
    _shutdown: watch::Sender<bool>,
}

/// A broker with topic "t" (3 partitions) and its coordinators. The cleanup task never
/// runs by itself; tests call `cleanup` with the time they want.
async fn node(dir: &std::path::Path) -> Node {
    node_with(dir, |_| {}).await
}

/// [`node`] with `adjust` applied to the transaction coordinator's settings.
async fn node_with(dir: &std::path::Path, adjust: impl FnOnce(&mut TxnConfig)) -> Node {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let broker = Broker::open(Config::with_defaults(addr, dir), addr).unwrap();
    if broker.topic("t").is_none() {
        broker.create_topic("t", 3, BTreeMap::new()).unwrap();
    }
    let (tx, rx) = watch::channel(false);
    let groups = GroupService::start(
        GroupServiceConfig::default(),
        broker.state_dir(),
        rx.clone(),
    )
    .await
    .unwrap();
    let mut config = TxnConfig {
        cleanup_interval_ms: 3_600_000,
        ..TxnConfig::default()
    };
    adjust(&mut config);
    let txns = TxnCoordinator::start(config, broker.clone(), groups.clone(), rx)
        .await
        .unwrap();
    Node {
        broker,
        groups,
        txns,
        _shutdown: tx,
    }
}

/// Appends a transactional batch of 3 records under `guard`, as Produce does once the
/// batch is verified.
fn append_verified(
    log: &strata_storage::Log,
    pid: i64,
    epoch: i16,
    seq: i32,
    guard: VerificationGuard,
) -> Result<strata_storage::AppendInfo, strata_storage::AppendError> {
    let bytes = txn_batch(3, pid, epoch, seq, now_ms());
    let rules = RecordRules {
        keys_required: false,
        max_inflated_bytes: 1 << 20,
    };
    let checked = CheckedBatch::check(&bytes, &rules).expect("a valid batch");
    log.append_verified_batch(checked, now_ms(), guard)
}

/// The fault injector is global to the process: tests that install one take this first.
static FAULTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn parts(list: &[i32]) -> Vec<(String, i32)> {
    list.iter().map(|p| ("t".to_string(), *p)).collect()
}

fn offset(n: i64) -> CommittedOffset {
    CommittedOffset {
        offset: n,
        leader_epoch: -1,
        metadata: None,
        commit_timestamp_ms: now_ms(),
    }
}

impl Node {
    fn log(&self, partition: i32) -> Arc<strata_storage::Log> {
        self.broker
            .topic("t")
            .unwrap()
            .partition(partition)
            .unwrap()
            .log()
            .clone()
    }

    /// Verifies and appends a transactional batch of 3 records, as Produce does.
    fn produce(&self, pid: i64, epoch: i16, partition: i32, seq: i32) -> Result<(), ResponseError> {
        let log = self.log(partition);
        let guard = self.txns.verify_produce(&log, pid, epoch, "t", partition)?;
        append_verified(&log, pid, epoch, seq, guard).unwrap();
        Ok(())
    }

    fn state(&self, id: &str) -> TxnMetadata {
        TxnMetadata::clone(&self.txns.describe(&[id.to_string()])[0].clone().unwrap())
    }

    /// Waits (bounded) until `id` reaches `state`; the background tasks are not timed.
    async fn wait_for(&self, id: &str, state: TxnState) -> TxnMetadata {
        for _ in 0..10_000 {
            let m = self.state(id);
            if m.state == state {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("{id} never reached {state:?}: {:?}", self.state(id));
    }
}

#[tokio::test]
async fn init_bumps_the_epoch_durably_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (pid, epochs) = {
        let n = node(dir.path()).await;
        let (pid, e0) = n
            .txns
            .init_producer_id("a".into(), 60_000, None)
            .await
            .unwrap();
        let (pid2, e1) = n
            .txns
            .init_producer_id("a".into(), 60_000, None)
            .await
            .unwrap();
        assert_eq!(pid, pid2);
        let (other, _) = n
            .txns
            .init_producer_id("b".into(), 60_000, None)
            .await
            .unwrap();
        assert_ne!(other, pid);
        (pid, (e0, e1))
    };
    assert_eq!(epochs, (0, 1));
    let n = node(dir.path()).await;
    assert_eq!(
        n.txns.init_producer_id("a".into(), 60_000, None).await,
        Ok((pid, 2))
    );
    // KIP-360 with a stale epoch is fenced; with the current one it bumps.
    let stale = Some(ExpectedProducer {
        producer_id: pid,
        epoch: 0,
    });
    assert!(matches!(
        n.txns.init_producer_id("a".into(), 60_000, stale).await,
        Err(TxnError::ProducerFenced { .. })
    ));
    let current = Some(ExpectedProducer {
        producer_id: pid,
        epoch: 2,
    });
    assert_eq!(
        n.txns.init_producer_id("a".into(), 60_000, current).await,
        Ok((pid, 3))
    );
}

#[tokio::test]
async fn init_refuses_bad_timeouts_and_empty_ids() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path()).await;
    assert!(matches!(
        n.txns.init_producer_id("a".into(), 900_001, None).await,
        Err(TxnError::InvalidTransactionTimeout { .. })
    ));
    assert!(matches!(
        n.txns.init_producer_id("a".into(), 0, None).await,
        Err(TxnError::InvalidTransactionTimeout { .. })
    ));
    assert!(matches!(
        n.txns.init_producer_id(String::new(), 1000, None).await,
        Err(TxnError::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn commit_writes_markers_everywhere_and_applies_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path()).await;
    let (pid, epoch) = n
        .txns
        .init_producer_id("tx".into(), 60_000, None)
        .await
        .unwrap();
    // Not yet in a transaction: refused, nothing appended.
    assert_eq!(
        n.produce(pid, epoch, 0, 0),
        Err(ResponseError::InvalidTxnState)
    );
    n.txns
        .add_partitions("tx".into(), pid, epoch, parts(&[0, 1]))
        .await
        .unwrap();
    n.produce(pid, epoch, 0, 0).unwrap();
    n.produce(pid, epoch, 1, 0).unwrap();
    // A partition not added is refused.
    assert_eq!(
        n.produce(pid, epoch, 2, 0),
        Err(ResponseError::InvalidTxnState)
    );
    assert_eq!(n.log(0).open_transactions().len(), 1);

    // Offsets need AddOffsetsToTxn first.
    assert_eq!(
        n.txns
            .txn_offset_commit(
                "tx".into(),
                "g".into(),
                pid,
                epoch,
                None,
                vec![("t".into(), 0, offset(5))]
            )
            .await,
        Err(ResponseError::InvalidTxnState)
    );
    n.txns
        .add_offsets("tx".into(), pid, epoch, "g".into())
        .await
        .unwrap();
    n.txns
        .txn_offset_commit(
            "tx".into(),
            "g".into(),
            pid,
            epoch,
            None,
            vec![("t".into(), 0, offset(5))],
        )
        .await
        .unwrap();
    assert!(
        n.groups.committed("g", "t", 0).is_none(),
        "pending until commit"
    );

    let m = n.state("tx");
    assert_eq!(m.state, TxnState::Ongoing);
    assert_eq!(m.partitions.len(), 2);

    n.txns.end_txn("tx".into(), pid, epoch, true).await.unwrap();
    let m = n.state("tx");
    assert_eq!(m.state, TxnState::CompleteCommit);
    assert!(m.partitions.is_empty() && m.groups.is_empty());
    for p in [0, 1] {
        let log = n.log(p);
        assert!(
            log.open_transactions().is_empty(),
            "partition {p} still open"
        );
        assert_eq!(
            log.log_end_offset(),
            4,
            "3 records + the marker in partition {p}"
        );
        assert_eq!(log.durable_offset(), 4);
        assert!(log.aborted_transactions(0, 4).is_empty());
        assert_eq!(log.last_stable_offset(), 4);
    }
    assert_eq!(
        n.log(2).log_end_offset(),
        0,
        "no marker where nothing was added"
    );
    assert_eq!(n.groups.committed("g", "t", 0).map(|o| o.offset), Some(5));

    // The transaction is over: its producer can no longer write without adding again.
    assert_eq!(
        n.produce(pid, epoch, 0, 1),
        Err(ResponseError::InvalidTxnState)
    );
    // Retries: the same outcome succeeds, the other is invalid.
    assert_eq!(n.txns.end_txn("tx".into(), pid, epoch, true).await, Ok(()));
    assert!(matches!(
        n.txns.end_txn("tx".into(), pid, epoch, false).await,
        Err(TxnError::InvalidTxnState { .. })
    ));
}

#[tokio::test]
async fn abort_records_the_aborted_range_and_drops_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path()).await;
    let (pid, epoch) = n
        .txns
        .init_producer_id("tx".into(), 60_000, None)
        .await
        .unwrap();
    n.txns
        .add_partitions("tx".into(), pid, epoch, parts(&[0]))
        .await
        .unwrap();
    n.txns
        .add_offsets("tx".into(), pid, epoch, "g".into())
        .await
        .unwrap();
    n.produce(pid, epoch, 0, 0).unwrap();
    n.txns
        .txn_offset_commit(
            "tx".into(),
            "g".into(),
            pid,
            epoch,
            None,
            vec![("t".into(), 0, offset(9))],
        )
        .await
        .unwrap();
    n.txns
        .end_txn("tx".into(), pid, epoch, false)
        .await
        .unwrap();
    assert_eq!(n.state("tx").state, TxnState::CompleteAbort);
    let aborted = n.log(0).aborted_transactions(0, 10);
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (
            aborted[0].producer_id,
            aborted[0].first_offset,
            aborted[0].last_offset
        ),
        (pid, 0, 3)
    );
    assert!(n.groups.committed("g", "t", 0).is_none());

    // The next transaction of the same producer starts cleanly.
    n.txns
        .add_partitions("tx".into(), pid, epoch, parts(&[0]))
        .await
        .unwrap();
    n.produce(pid, epoch, 0, 3).unwrap();
    n.txns.end_txn("tx".into(), pid, epoch, true).await.unwrap();
    assert_eq!(n.log(0).log_end_offset(), 8);
    assert_eq!(n.log(0).aborted_transactions(0, 10).len(), 1);
}

#[tokio::test]
async fn a_new_instance_aborts_the_old_ones_transaction_and_fences_it() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path()).await;
    let (pid, old) = n
        .txns
        .init_producer_id("tx".into(), 60_000, None)
        .await
        .unwrap();
    n.txns
        .add_partitions("tx".into(), pid, old, parts(&[0, 2]))
        .await
        .unwrap();
    n.produce(pid, old, 0, 0).unwrap();

    let (pid2, new) = n
        .txns
        .init_producer_id("tx".into(), 60_000, None)
        .await
        .unwrap();
    assert_eq!(pid2, pid);
    assert_eq!(
        new,
        old + 2,
        "one bump to fence and abort, one for the new instance"
    );
    assert_eq!(n.log(0).aborted_transactions(0, 10).len(), 1);
    assert!(n.log(0).open_transactions().is_empty());
    assert_eq!(
        n.log(2).log_end_offset(),
        1,
        "an abort marker even where nothing was written"
    );

    // The old instance: Produce says INVALID_PRODUCER_EPOCH, the coordinator PRODUCER_FENCED.
    assert_eq!(
        n.produce(pid, old, 0, 3),
        Err(ResponseError::InvalidProducerEpoch)
    );
    assert!(matches!(
        n.txns
            .add_partitions("tx".into(), pid, old, parts(&[1]))
            .await,
        Err(TxnError::ProducerFenced { .. })
    ));
    assert!(matches!(
        n.txns.end_txn("tx".into(), pid, old, true).await,
        Err(TxnError::ProducerFenced { .. })
    ));
    assert_eq!(
        n.txns
            .txn_offset_commit("tx".into(), "g".into(), pid, old, None, vec![])
            .await,
        Err(ResponseError::InvalidProducerEpoch)
    );
    // The new one works.
    n.txns
        .add_partitions("tx".into(), pid, new, parts(&[0]))
        .await
        .unwrap();
    n.produce(pid, new, 0, 0).unwrap();
    n.txns.end_txn("tx".into(), pid, new, true).await.unwrap();
}

#[tokio::test]
async fn transactions_past_their_timeout_are_aborted_and_their_producer_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path()).await;
    let (pid, epoch) = n
        .txns
        .init_producer_id("slow".into(), 1_000, None)
        .await
        .unwrap();
    let (fast_pid, fast_epoch) = n
        .txns
        .init_producer_id("fast".into(), 60_000, None)
        .await
        .unwrap();
    n.txns
        .add_partitions("slow".into(), pid, epoch, parts(&[1]))
        .await
        .unwrap();
    n.txns
        .add_partitions("fast".into(), fast_pid, fast_epoch, parts(&[2]))
        .await
        .unwrap();
    n.produce(pid, epoch, 1, 0).unwrap();
    let start = n.state("slow").txn_start_ms;

    n.txns.cleanup(start + 1_000);
    tokio::task::yield_now().await;
    assert_eq!(
        n.state("slow").state,
        TxnState::Ongoing,
        "not yet past its timeout"
    );

    n.txns.cleanup(start + 1_001);
    let aborted = n.wait_for("slow", TxnState::CompleteAbort).await;
    assert_eq!(aborted.producer_epoch, epoch + 1);
    assert_eq!(n.log(1).aborted_transactions(0, 10).len(), 1);
    assert_eq!(
        n.state("fast").state,
        TxnState::Ongoing,
        "within its timeout"
    );
    assert!(matches!(
        n.txns.end_txn("slow".into(), pid, epoch, true).await,
        Err(TxnError::ProducerFenced { .. })
    ));
}

#[tokio::test]
async fn a_decided_transaction_is_completed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pid = 777_000;
    {
        // A crash after PrepareCommit was made durable, before any marker.
        let n = node(dir.path()).await;
        n.log(0)
            .append(&txn_batch(3, pid, 0, 0, now_ms()), now_ms())
            .unwrap();
        n.log(0).flush().unwrap();
        let mut m = TxnMetadata::new("crashed".into(), pid, 60_000, now_ms());
        m.producer_epoch = 0;
        m.state = TxnState::PrepareCommit;
        m.partitions.insert(("t".into(), 0));
        let (mut log, _) =
            TxnLog::open(&super::coordinator::log_dir(n.broker.state_dir()), 1 << 20).unwrap();
        log.append(&[TxnRecord::State(m.into())]).unwrap();
        n.broker.close();
    }
    let n = node(dir.path()).await;
    let done = n.wait_for("crashed", TxnState::CompleteCommit).await;
    assert!(done.partitions.is_empty());
    let log = n.log(0);
    // The marker's durability is awaited before CompleteCommit is written.
    assert!(log.open_transactions().is_empty());
    assert_eq!(log.log_end_offset(), 4);
    assert!(log.aborted_transactions(0, 10).is_empty());
}

#[tokio::test]
async fn concurrent_operations_on_one_id_are_refused_not_interleaved() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path()).await;
    let (pid, epoch) = n
        .txns
        .init_producer_id("tx".into(), 60_000, None)
        .await
        .unwrap();
    n.txns
        .add_partitions("tx".into(), pid, epoch, parts(&[0]))
        .await
        .unwrap();
    // Many clients (a misbehaving one) ending and extending at once: every request gets
    // a Kafka answer, and the end state is a completed commit.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let txns = n.txns.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                txns.end_txn("tx".into(), pid, epoch, true).await
            } else {
                txns.add_partitions("tx".into(), pid, epoch, parts(&[1]))
                    .await
            }
        }));
    }
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) | Err(TxnError::ConcurrentTransactions) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    let m = n.state("tx");
    assert!(
        matches!(m.state, TxnState::CompleteCommit | TxnState::Ongoing),
        "{m:?}"
    );
    if m.state == TxnState::Ongoing {
        n.txns.end_txn("tx".into(), pid, epoch, true).await.unwrap();
    }
    assert_eq!(n.state("tx").state, TxnState::CompleteCommit);
    assert!(n.log(0).open_transactions().is_empty());
}

#[tokio::test]
async fn expired_ids_are_forgotten_durably() {
    let dir = tempfile::tempdir().unwrap();
    {
        let n = node(dir.path()).await;
        n.txns
            .init_producer_id("old".into(), 60_000, None)
            .await
            .unwrap();
        let (pid, epoch) = n
            .txns
            .init_producer_id("busy".into(), 60_000, None)
            .await
            .unwrap();
        n.txns
            .add_partitions("busy".into(), pid, epoch, parts(&[0]))
            .await
            .unwrap();
        // A week later: "old" expires, "busy" (Ongoing) is aborted instead of forgotten.
        n.txns.cleanup(now_ms() + 604_800_001);
        for _ in 0..10_000 {
            if n.txns.describe(&["old".to_string()])[0].is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(n.txns.describe(&["old".to_string()])[0].is_none());
        n.wait_for("busy", TxnState::CompleteAbort).await;
        // Let the removal record reach the log.
        n.txns
            .init_producer_id("sync".into(), 60_000, None)
            .await
            .unwrap();
    }
    let n = node(dir.path()).await;
    let listed: Vec<String> = n
        .txns
        .list()
        .into_iter()
        .map(|m| m.transactional_id.to_string())
        .collect();
    assert_eq!(listed, vec!["busy".to_string(), "sync".to_string()]);
}

/// `node` with a transaction log compacted past `threshold` bytes.
async fn node_compacting(dir: &std::path::Path, threshold: u64) -> Node {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let broker = Broker::open(Config::with_defaults(addr, dir), addr).unwrap();
    if broker.topic("t").is_none() {
        broker.create_topic("t", 3, BTreeMap::new()).unwrap();
    }
    let (tx, rx) = watch::channel(false);
    let groups = GroupService::start(
        GroupServiceConfig::default(),
        broker.state_dir(),
        rx.clone(),
    )
    .await
    .unwrap();
    let config = TxnConfig {
        cleanup_interval_ms: 3_600_000,
        compact_threshold_bytes: threshold,
        ..TxnConfig::default()
    };
    let txns = TxnCoordinator::start(config, broker.clone(), groups.clone(), rx)
        .await
        .unwrap();
    Node {
        broker,
        groups,
        txns,
        _shutdown: tx,
    }
}

#[tokio::test]
async fn an_ongoing_transaction_survives_a_restart_until_its_timeout_aborts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (pid, epoch) = {
        let n = node(dir.path()).await;
        let (pid, epoch) = n
            .txns
            .init_producer_id("tx".into(), 5_000, None)
            .await
            .unwrap();
        n.txns
            .add_partitions("tx".into(), pid, epoch, parts(&[0, 1]))
            .await
            .unwrap();
        n.produce(pid, epoch, 0, 0).unwrap();
        n.log(0).flush().unwrap();
        (pid, epoch)
    };
    let n = node(dir.path()).await;
    let m = n.state("tx");
    assert_eq!((m.state, m.partitions.len()), (TxnState::Ongoing, 2));
    // Its producer may go on writing after the restart.
    n.produce(pid, epoch, 1, 0).unwrap();
    n.txns.cleanup(m.txn_start_ms + 5_001);
    let done = n.wait_for("tx", TxnState::CompleteAbort).await;
    assert_eq!(done.producer_epoch, epoch + 1);
    for p in [0, 1] {
        assert!(n.log(p).open_transactions().is_empty(), "partition {p}");
        assert_eq!(
            n.log(p).aborted_transactions(0, 10).len(),
            1,
            "partition {p}"
        );
    }
}

#[tokio::test]
async fn the_compacted_log_replays_the_same_states() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let n = node_compacting(dir.path(), 512).await;
        for round in 0..40 {
            let id = format!("id-{}", round % 4);
            let (pid, epoch) = n
                .txns
                .init_producer_id(id.clone(), 60_000, None)
                .await
                .unwrap();
            n.txns
                .add_partitions(id.clone(), pid, epoch, parts(&[round % 3]))
                .await
                .unwrap();
            if round % 5 != 0 {
                n.txns
                    .end_txn(id, pid, epoch, round % 2 == 0)
                    .await
                    .unwrap();
            }
        }
        n.txns.list()
    };
    let files: Vec<String> =
        std::fs::read_dir(super::coordinator::log_dir(&dir.path().join("_strata")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_ne!(
        files[0], "transactions-00000000000000000000.log",
        "compacted at least once"
    );
    let n = node_compacting(dir.path(), 512).await;
    assert_eq!(n.txns.list(), before);
}

#[tokio::test]
async fn an_exhausted_epoch_moves_the_id_to_a_new_producer_id() {
    let dir = tempfile::tempdir().unwrap();
    {
        let n = node(dir.path()).await;
        let (_, _) = n
            .txns
            .init_producer_id("old".into(), 60_000, None)
            .await
            .unwrap();
        let mut m = n.state("old");
        m.producer_epoch = i16::MAX - 1;
        let (mut log, _) =
            TxnLog::open(&super::coordinator::log_dir(n.broker.state_dir()), 1 << 20).unwrap();
        log.append(&[TxnRecord::State(m.into())]).unwrap();
    }
    let n = node(dir.path()).await;
    let m = n.state("old");
    let expected = Some(ExpectedProducer {
        producer_id: m.producer_id,
        epoch: i16::MAX - 1,
    });
    let (pid, epoch) = n
        .txns
        .init_producer_id("old".into(), 60_000, expected)
        .await
        .unwrap();
    assert_ne!(pid, m.producer_id);
    assert_eq!(epoch, 0);
    // The lost-answer retry gets the same new id.
    assert_eq!(
        n.txns
            .init_producer_id("old".into(), 60_000, expected)
            .await,
        Ok((pid, 0))
    );
    // The new id is the one Produce is verified against.
    n.txns
        .add_partitions("old".into(), pid, 0, parts(&[2]))
        .await
        .unwrap();
    n.produce(pid, 0, 2, 0).unwrap();
    assert_eq!(
        n.produce(m.producer_id, i16::MAX - 1, 2, 0),
        Err(ResponseError::InvalidTxnState)
    );
}

#[tokio::test]
async fn a_marker_that_cannot_be_written_in_one_partition_does_not_hold_back_the_others() {
    use strata_storage::fault::{set_injector, FileOp};
    let _faults = FAULTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path()).await;
    let (pid, epoch) = n
        .txns
        .init_producer_id("tx".into(), 60_000, None)
        .await
        .unwrap();
    n.txns
        .add_partitions("tx".into(), pid, epoch, parts(&[0, 1, 2]))
        .await
        .unwrap();
    for p in 0..3 {
        n.produce(pid, epoch, p, 0).unwrap();
    }
    // Partition 0 (the first the coordinator visits) refuses every write for now.
    let broken = n.log(0).dir().to_path_buf();
    set_injector(Some(Arc::new(move |op, path: &std::path::Path| {
        (op == FileOp::Write && path.starts_with(&broken))
            .then(|| std::io::Error::other("injected write failure"))
    })));
    let ended = n.txns.end_txn("tx".into(), pid, epoch, true).await;
    set_injector(None);
    ended.unwrap();
    assert_eq!(n.state("tx").state, TxnState::PrepareCommit);
    // The decision is durable: the healthy partitions have their markers (durable when
    // EndTxn answered), so their LSO is not held back by the broken one.
    for p in [1, 2] {
        let log = n.log(p);
        assert_eq!(
            log.open_transactions(),
            vec![],
            "partition {p} still has the transaction open"
        );
        assert_eq!(log.last_stable_offset(), log.log_end_offset());
    }
    assert_eq!(n.log(0).open_transactions().len(), 1);
    // Once partition 0 takes writes again, the cleanup task completes the commit.
    n.txns.cleanup(now_ms());
    n.wait_for("tx", TxnState::CompleteCommit).await;
    assert_eq!(n.log(0).open_transactions(), vec![]);
}

#[tokio::test]
async fn a_transaction_the_log_does_not_account_for_is_aborted_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let owned_pid = {
        let n = node(dir.path()).await;
        // A transaction the coordinator knows: it must stay open across the restart.
        let (pid, epoch) = n
            .txns
            .init_producer_id("kept".into(), 60_000, None)
            .await
            .unwrap();
        n.txns
            .add_partitions("kept".into(), pid, epoch, parts(&[1]))
            .await
            .unwrap();
        n.produce(pid, epoch, 1, 0).unwrap();
        // One it does not (as a damaged or lost transaction log would leave): appended
        // without the coordinator, so nothing would ever end it.
        n.log(0)
            .append(&txn_batch(3, 4242, 0, 0, now_ms()), now_ms())
            .unwrap();
        n.log(0).flush().unwrap();
        assert_eq!(n.log(0).last_stable_offset(), 0);
        pid
    };
    let n = node(dir.path()).await;
    let orphaned = n.log(0);
    assert!(orphaned.open_transactions().is_empty());
    orphaned.flush().unwrap();
    assert_eq!(orphaned.last_stable_offset(), orphaned.log_end_offset());
    assert_eq!(
        orphaned.aborted_transactions(0, orphaned.log_end_offset()),
        vec![strata_storage::AbortedTxn {
            producer_id: 4242,
            first_offset: 0,
            last_offset: 3,
        }]
    );
    let kept = n.log(1).open_transactions();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].producer_id, owned_pid);
}

#[tokio::test]
async fn pending_group_offsets_the_log_does_not_account_for_are_aborted_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let kept_pid = {
        let n = node(dir.path()).await;
        // Pending offsets of a transaction the coordinator knows: they stay pending.
        let (pid, epoch) = n
            .txns
            .init_producer_id("kept".into(), 60_000, None)
            .await
            .unwrap();
        n.txns
            .add_offsets("kept".into(), pid, epoch, "g".into())
            .await
            .unwrap();
        n.txns
            .txn_offset_commit(
                "kept".into(),
                "g".into(),
                pid,
                epoch,
                None,
                vec![("t".into(), 1, offset(7))],
            )
            .await
            .unwrap();
        // Pending offsets of a producer the coordinator does not know (as a damaged or
        // lost transaction log would leave): nothing would ever decide them.
        n.groups
            .commit_txn_offsets("g".into(), 4242, 0, None, vec![("t".into(), 0, offset(5))])
            .await
            .unwrap();
        assert_eq!(n.groups.pending_txn_offsets().len(), 2);
        pid
    };
    let n = node(dir.path()).await;
    for _ in 0..10_000 {
        if n.groups.pending_txn_offsets().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        n.groups.pending_txn_offsets(),
        vec![(std::sync::Arc::from("g"), kept_pid)]
    );
    assert_eq!(
        n.groups.committed("g", "t", 0),
        None,
        "aborted, not committed"
    );
}

/// A new instance's InitProducerId finds the previous instance's transaction open (records
/// in two partitions, offsets pending for a group) and aborts it; the broker dies after the
/// PrepareAbort is durable, before (`markers_written` false) or after the markers and the
/// group's decision are. After the restart the abort is finished: no partition holds its
/// LSO back, the group's offsets are no longer pending (a require_stable OffsetFetch would
/// otherwise answer UNSTABLE_OFFSET_COMMIT forever), and the retried InitProducerId gets
/// the next epoch.
#[tokio::test]
async fn an_init_abort_cut_short_by_a_crash_is_finished_after_the_restart() {
    for markers_written in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (pid, old) = {
            let n = node(dir.path()).await;
            let (pid, old) = n
                .txns
                .init_producer_id("app".into(), 60_000, None)
                .await
                .unwrap();
            n.txns
                .add_partitions("app".into(), pid, old, parts(&[0, 1]))
                .await
                .unwrap();
            n.txns
                .add_offsets("app".into(), pid, old, "g".into())
                .await
                .unwrap();
            n.produce(pid, old, 0, 0).unwrap();
            n.txns
                .txn_offset_commit(
                    "app".into(),
                    "g".into(),
                    pid,
                    old,
                    None,
                    vec![("t".into(), 2, offset(9))],
                )
                .await
                .unwrap();
            // What InitProducerId makes durable before its first marker.
            let abort = n.state("app").fenced_abort(now_ms());
            assert_eq!(abort.state, TxnState::PrepareAbort);
            let (mut log, _) =
                TxnLog::open(&super::coordinator::log_dir(n.broker.state_dir()), 1 << 20).unwrap();
            log.append(&[TxnRecord::State(abort.clone().into())])
                .unwrap();
            if markers_written {
                for p in [0, 1] {
                    let marker = strata_storage::TxnMarker {
                        producer_id: pid,
                        producer_epoch: abort.producer_epoch,
                        coordinator_epoch: super::coordinator::COORDINATOR_EPOCH,
                        commit: false,
                    };
                    n.log(p).append_marker(&marker, now_ms()).unwrap();
                }
                n.groups.complete_txn("g".into(), pid, false).await.unwrap();
            }
            for p in [0, 1] {
                n.log(p).flush().unwrap();
            }
            (pid, old)
        };
        let n = node(dir.path()).await;
        let done = n.wait_for("app", TxnState::CompleteAbort).await;
        assert_eq!(done.producer_epoch, old + 1, "markers {markers_written}");
        for p in [0, 1] {
            assert!(
                n.log(p).open_transactions().is_empty(),
                "partition {p}, markers {markers_written}"
            );
            assert_eq!(
                n.log(p).last_stable_offset(),
                n.log(p).log_end_offset(),
                "partition {p}, markers {markers_written}"
            );
        }
        assert!(n.groups.pending_txn_offsets().is_empty());
        assert!(!n.groups.has_pending_txn_offset("g", "t", 2));
        assert_eq!(
            n.groups.committed("g", "t", 2),
            None,
            "aborted, not committed"
        );
        let (pid2, new) = n
            .txns
            .init_producer_id("app".into(), 60_000, None)
            .await
            .unwrap();
        assert_eq!((pid2, new), (pid, old + 2), "markers {markers_written}");
        assert_eq!(
            n.produce(pid, old, 0, 3),
            Err(ResponseError::InvalidProducerEpoch),
            "the old instance stays fenced"
        );
    }
}

/// Bytes of the transaction log file(s).
fn txn_log_len(n: &Node) -> u64 {
    std::fs::read_dir(super::coordinator::log_dir(n.broker.state_dir()))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[tokio::test]
async fn transactional_ids_beyond_id_max_bytes_are_refused_and_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let n = node_with(dir.path(), |c| c.id_max_bytes = 64).await;
    let long = "x".repeat(65);
    let refused = n.txns.init_producer_id(long.clone(), 60_000, None).await;
    assert!(
        matches!(refused, Err(TxnError::InvalidRequest(_))),
        "{refused:?}"
    );
    assert_eq!(
        refused.unwrap_err().response_error(),
        ResponseError::InvalidRequest
    );
    assert!(n.txns.describe(&[long]).remove(0).is_none());
    assert_eq!(txn_log_len(&n), 0, "nothing was logged");
    let at = "y".repeat(64);
    n.txns
        .init_producer_id(at.clone(), 60_000, None)
        .await
        .unwrap();
    assert!(n.txns.describe(&[at]).remove(0).is_some());
}

#[tokio::test]
async fn transaction_state_max_bytes_refuses_growth_and_never_what_is_under_way() {
    let dir = tempfile::tempdir().unwrap();
    let n = node_with(dir.path(), |c| c.state_max_bytes = 2_000).await;
    let mut ids = Vec::new();
    let full = loop {
        let id = format!("id-{}", ids.len());
        match n.txns.init_producer_id(id.clone(), 60_000, None).await {
            Ok((pid, epoch)) => ids.push((id, pid, epoch)),
            Err(e) => break e,
        }
    };
    assert_eq!(full, TxnError::StateFull { max_bytes: 2_000 });
    assert_eq!(full.code(4, 4), ResponseError::PolicyViolation.code());
    assert!(ids.len() >= 2, "{} ids", ids.len());
    // The refused id was neither kept nor logged.
    let refused = format!("id-{}", ids.len());
    assert!(n.txns.describe(&[refused]).remove(0).is_none());
    // Known ids go on: InitProducerId again (an epoch bump costs nothing more) ...
    let (id, pid, epoch) = ids[0].clone();
    let (pid2, epoch2) = n
        .txns
        .init_producer_id(id.clone(), 60_000, None)
        .await
        .unwrap();
    assert_eq!((pid2, epoch2), (pid, epoch + 1));
    // ... but a transaction cannot take partitions beyond the limit ...
    let log_len = txn_log_len(&n);
    let grown = n
        .txns
        .add_partitions(id.clone(), pid, epoch2, parts(&[0, 1, 2]))
        .await;
    assert_eq!(grown, Err(TxnError::StateFull { max_bytes: 2_000 }));
    assert_eq!(txn_log_len(&n), log_len, "nothing was logged");
    // ... until ids expire and free their room.
    n.txns.cleanup(now_ms() + 604_800_000 + 1);
    for _ in 0..10_000 {
        if n.txns.list().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (pid, epoch) = n
        .txns
        .init_producer_id(id.clone(), 60_000, None)
        .await
        .unwrap();
    n.txns
        .add_partitions(id, pid, epoch, parts(&[0, 1, 2]))
        .await
        .unwrap();
}

/// Issue 15 (Kafka's verification guard, KIP-890 part 1): Produce no longer holds the
/// coordinator's table across its appends, so a batch can be verified while its
/// transaction is Ongoing and reach the partition only after the transaction ended there.
/// The marker invalidated the guard the batch was verified under: the late batch is
/// refused with INVALID_TXN_STATE and leaves no transaction open for nothing to end.
#[tokio::test]
async fn a_batch_verified_before_an_abort_and_appended_after_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path()).await;
    let (pid, epoch) = n
        .txns
        .init_producer_id("late".into(), 60_000, None)
        .await
        .unwrap();
    n.txns
        .add_partitions("late".into(), pid, epoch, parts(&[0, 1]))
        .await
        .unwrap();
    n.produce(pid, epoch, 0, 0).unwrap();
    let log = n.log(1);
    // Verified while the transaction is Ongoing (partition 1 has no batch of it yet)...
    let guard = n.txns.verify_produce(&log, pid, epoch, "t", 1).unwrap();
    // ...then the transaction is aborted, its marker written in both partitions...
    n.txns
        .end_txn("late".into(), pid, epoch, false)
        .await
        .unwrap();
    assert_eq!(n.state("late").state, TxnState::CompleteAbort);
    let end = log.log_end_offset();
    // ...and only then does the batch reach the partition.
    let err = append_verified(&log, pid, epoch, 0, guard).unwrap_err();
    assert_eq!(
        err.error_code(),
        ResponseError::InvalidTxnState.code(),
        "{err}"
    );
    assert_eq!(log.log_end_offset(), end, "nothing appended");
    assert_eq!(log.open_transactions(), vec![], "no hanging transaction");
    assert_eq!(log.last_stable_offset(), log.durable_offset());
    // Verification now fails at the coordinator, and the next transaction verifies anew.
    assert_eq!(
        n.txns.verify_produce(&log, pid, epoch, "t", 1).err(),
        Some(ResponseError::InvalidTxnState)
    );
    n.txns
        .add_partitions("late".into(), pid, epoch, parts(&[1]))
        .await
        .unwrap();
    n.produce(pid, epoch, 1, 0).unwrap();
    assert_eq!(log.open_transactions().len(), 1);
}

/// Holds every write into one file inside the write (a stalled disk) until released or
/// dropped (a failing test must not leave a thread stuck), counting the writes started.
struct HeldWrites {
    state: Arc<(std::sync::Mutex<(usize, bool)>, std::sync::Condvar)>,
}

impl HeldWrites {
    fn install(file: std::path::PathBuf) -> HeldWrites {
        use strata_storage::fault::{set_injector, FileOp};
        let state = Arc::new((std::sync::Mutex::new((0, false)), std::sync::Condvar::new()));
        let seen = Arc::clone(&state);
        set_injector(Some(Arc::new(move |op, path: &std::path::Path| {
            if op == FileOp::Write && path == file {
                let (m, cv) = &*seen;
                let mut s = m.lock().unwrap();
                s.0 += 1;
                cv.notify_all();
                while !s.1 {
                    s = cv.wait(s).unwrap();
                }
            }
            None
        })));
        HeldWrites { state }
    }

    fn wait_started(&self) {
        let (m, cv) = &*self.state;
        let (_s, timeout) = cv
            .wait_timeout_while(m.lock().unwrap(), Duration::from_secs(60), |s| s.0 == 0)
            .unwrap();
        assert!(!timeout.timed_out(), "the held write never started");
    }

    fn release(&self) {
        let (m, cv) = &*self.state;
        m.lock().unwrap().1 = true;
        cv.notify_all();
    }
}

impl Drop for HeldWrites {
    fn drop(&mut self) {
        self.release();
        strata_storage::fault::set_injector(None);
    }
}

/// Issue 15: Produce used to verify transactional batches under a read guard of the whole
/// transaction table held through the append, so one append stuck in its write (a slow
/// disk) kept every EndTxn (a writer of the table) waiting, and a waiting writer of a std
/// `RwLock` blocks new readers: every transactional produce to any partition after it
/// too. Now the verification is per partition and no coordinator lock is held across an
/// append: while producer A's append to partition 0 is held inside its write, producer B
/// commits its transaction in partition 1 and appends to partition 1 again.
#[test]
fn a_held_transactional_append_holds_up_neither_end_txn_nor_other_partitions() {
    let _faults = FAULTS.blocking_lock();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = Arc::new(rt.block_on(node(dir.path())));
    let begin = |id: &str, partition: i32| {
        rt.block_on(async {
            let (pid, epoch) = n
                .txns
                .init_producer_id(id.into(), 60_000, None)
                .await
                .unwrap();
            n.txns
                .add_partitions(id.into(), pid, epoch, parts(&[partition]))
                .await
                .unwrap();
            (pid, epoch)
        })
    };
    let (a, a_epoch) = begin("a", 0);
    let (b, b_epoch) = begin("b", 1);
    n.produce(b, b_epoch, 1, 0).unwrap();

    let held = HeldWrites::install(n.log(0).dir().join("00000000000000000000.log"));
    let held_append = {
        let n = Arc::clone(&n);
        std::thread::spawn(move || n.produce(a, a_epoch, 0, 0))
    };
    held.wait_started();

    // B's commit and B's next transaction, each on the runtime, answered through a
    // channel so that a blocked worker cannot keep the test from failing.
    let (done, results) = std::sync::mpsc::channel();
    {
        let n = Arc::clone(&n);
        rt.spawn(async move {
            let committed = n.txns.end_txn("b".into(), b, b_epoch, true).await;
            let _ = done.send(("commit", committed.is_ok()));
            n.txns
                .add_partitions("b".into(), b, b_epoch, parts(&[1]))
                .await
                .unwrap();
            let produced = tokio::task::spawn_blocking(move || n.produce(b, b_epoch, 1, 3))
                .await
                .unwrap();
            let _ = done.send(("produce", produced.is_ok()));
        });
    }
    for step in ["commit", "produce"] {
        let got = results.recv_timeout(Duration::from_secs(30));
        assert_eq!(
            got,
            Ok((step, true)),
            "{step} of producer B while A's append to partition 0 is held"
        );
    }
    assert_eq!(n.state("b").state, TxnState::Ongoing);

    held.release();
    held_append.join().unwrap().unwrap();
    drop(held);
    rt.block_on(n.txns.end_txn("a".into(), a, a_epoch, true))
        .unwrap();
    assert_eq!(n.log(0).open_transactions(), vec![]);
    assert_eq!(n.log(1).open_transactions().len(), 1);
}

/// Issue 15: the cleanup task measures transaction timeouts on the coordinator's
/// monotonic clock (tokio's, paused here), so a step of the wall clock neither aborts
/// every open transaction at once nor keeps a stuck one open. With time stopped and
/// advanced by hand, a transaction with a 60 s timeout is still open at 59 s and is
/// aborted by the cleanup task (every 100 ms) once its timeout has passed, long before
/// 60 s of wall time could.
#[tokio::test(start_paused = true)]
async fn the_cleanup_task_aborts_a_transaction_once_its_timeout_has_elapsed_on_the_monotonic_clock()
{
    let dir = tempfile::tempdir().unwrap();
    let n = node_with(dir.path(), |c| c.cleanup_interval_ms = 100).await;
    let (pid, epoch) = n
        .txns
        .init_producer_id("slow".into(), 60_000, None)
        .await
        .unwrap();
    n.txns
        .add_partitions("slow".into(), pid, epoch, parts(&[0]))
        .await
        .unwrap();
    n.produce(pid, epoch, 0, 0).unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(n.state("slow").state, TxnState::Ongoing);
    tokio::time::advance(Duration::from_secs(2)).await;
    // The abort's transaction-log write is real I/O; paused sleeps cost no real time.
    let mut state = n.state("slow").state;
    for _ in 0..10_000 {
        if state != TxnState::Ongoing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        state = n.state("slow").state;
    }
    assert!(
        matches!(state, TxnState::PrepareAbort | TxnState::CompleteAbort),
        "the transaction is aborted once its timeout has passed: {state:?}"
    );
    // Writing the markers takes real fsyncs: let real time run for them.
    tokio::time::resume();
    n.wait_for("slow", TxnState::CompleteAbort).await;
    assert_eq!(n.log(0).open_transactions(), vec![]);
}
