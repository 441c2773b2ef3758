//! Consumer groups through real clients (librdkafka via rdkafka StreamConsumers):
//! queue semantics with rebalances, pub/sub across groups, cooperative-sticky
//! incremental rebalancing, committed offsets across restarts and SIGKILL,
//! and the group admin APIs (rdkafka and raw kafka-protocol requests).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::process::BrokerProcess;
use common::{TestBroker, PATIENCE};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// One record as a consumer saw it.
#[derive(Debug, Clone)]
struct Seen {
    consumer: usize,
    partition: i32,
    offset: i64,
    key: String,
    seq: u32,
}

fn group_config(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("fetch.wait.max.ms", "100")
        .set("enable.partition.eof", "false");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config
}

fn group_consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> Arc<StreamConsumer> {
    Arc::new(
        group_config(bootstrap, group, extra)
            .create()
            .expect("consumer"),
    )
}

/// A consumer task started by [`run_consumer`].
struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the task and waits until its consumer is closed (it left the group).
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("consumer task");
    }
}

/// Runs `consumer.recv()` until stopped, forwarding every record; the consumer
/// is closed (it leaves the group) when the task ends, unless other handles to
/// it are still alive.
fn run_consumer<C: ConsumerContext + 'static>(
    index: usize,
    consumer: Arc<StreamConsumer<C>>,
    topic: &str,
    out: mpsc::UnboundedSender<Seen>,
) -> Running {
    consumer.subscribe(&[topic]).expect("subscribe");
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                received = consumer.recv() => match received {
                    Ok(m) => {
                        let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                        let (key, seq) = value.split_once(':').expect("key:seq payload");
                        let _ = out.send(Seen {
                            consumer: index,
                            partition: m.partition(),
                            offset: m.offset(),
                            key: key.to_string(),
                            seq: seq.parse().expect("seq"),
                        });
                    }
                    Err(e) => eprintln!("consumer {index}: {e}"),
                },
            }
        }
        drop(consumer);
    });
    Running {
        stop: stop_tx,
        task,
    }
}

async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

/// Produces `seqs` of every key ("key-N:seq"), each key's records in order.
async fn produce(producer: &FutureProducer, topic: &str, keys: usize, seqs: std::ops::Range<u32>) {
    for seq in seqs {
        for k in 0..keys {
            let key = format!("key-{k}");
            let value = format!("{key}:{seq}");
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .expect("produced");
        }
    }
}

/// Polls `check` every 100 ms until it holds; panics after PATIENCE with `what`.
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assigned<C: ConsumerContext>(consumer: &StreamConsumer<C>) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// The consumers' assignments are disjoint and cover `0..partitions`, and each
/// consumer has at least one partition.
fn covers<C: ConsumerContext>(consumers: &[&StreamConsumer<C>], partitions: i32) -> bool {
    let sets: Vec<BTreeSet<i32>> = consumers.iter().map(|c| assigned(c)).collect();
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    sets.iter().all(|s| !s.is_empty())
        && total == partitions as usize
        && union == (0..partitions).collect()
}

/// Receives until every (key, seq) in `expected` has been seen.
async fn collect_until(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    seen: &mut Vec<Seen>,
    expected: &BTreeSet<(String, u32)>,
) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let have: BTreeSet<(String, u32)> = seen.iter().map(|s| (s.key.clone(), s.seq)).collect();
        if expected.is_subset(&have) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(s)) => seen.push(s),
            _ => panic!(
                "only {} of {} records arrived",
                expected.intersection(&have).count(),
                expected.len()
            ),
        }
    }
}

fn expected(keys: usize, seqs: std::ops::Range<u32>) -> BTreeSet<(String, u32)> {
    seqs.flat_map(|s| (0..keys).map(move |k| (format!("key-{k}"), s)))
        .collect()
}

/// Within each consumer, each key's records arrive in order: dropping the
/// records it had already received (a partition handed back after a
/// rebalance is re-read from the last commit), the sequence numbers increase.
fn assert_per_key_order(seen: &[Seen]) {
    let mut last: HashMap<(usize, String), u32> = HashMap::new();
    let mut had: BTreeSet<(usize, String, u32)> = BTreeSet::new();
    for s in seen {
        if !had.insert((s.consumer, s.key.clone(), s.seq)) {
            continue;
        }
        if let Some(prev) = last.insert((s.consumer, s.key.clone()), s.seq) {
            assert!(
                s.seq > prev,
                "consumer {} saw {} seq {} after seq {prev}",
                s.consumer,
                s.key,
                s.seq
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_group_shares_partitions_and_takes_over_on_join_and_leave() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let topic = "work-queue";
    create_topic(&bootstrap, topic, 6).await;
    let producer = common::producer(&bootstrap, &[]);
    let (tx, mut rx) = mpsc::unbounded_channel();

    let consumers: Vec<Arc<StreamConsumer>> = (0..3)
        .map(|_| group_consumer(&bootstrap, "workers", &[]))
        .collect();
    let mut running: Vec<Option<Running>> = consumers
        .iter()
        .enumerate()
        .map(|(i, c)| Some(run_consumer(i, c.clone(), topic, tx.clone())))
        .collect();
    wait_until("3 consumers split 6 partitions", || {
        covers(&consumers.iter().map(|c| c.as_ref()).collect::<Vec<_>>(), 6)
    })
    .await;
    let first_assignment: Vec<BTreeSet<i32>> = consumers.iter().map(|c| assigned(c)).collect();
    assert!(
        first_assignment.iter().all(|s| s.len() == 2),
        "{first_assignment:?}"
    );

    // Phase 1: a stable group of 3.
    let keys = 24;
    produce(&producer, topic, keys, 0..10).await;
    let mut seen = Vec::new();
    collect_until(&mut rx, &mut seen, &expected(keys, 0..10)).await;
    assert_eq!(
        seen.len(),
        keys * 10,
        "a stable group delivers each record once"
    );
    for s in &seen {
        assert!(
            first_assignment[s.consumer].contains(&s.partition),
            "consumer {} got partition {} outside its assignment",
            s.consumer,
            s.partition
        );
    }
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    for s in &seen {
        let expected = next_offset.entry(s.partition).or_insert(0);
        assert_eq!(
            s.offset, *expected,
            "partition {} read in order, without gaps",
            s.partition
        );
        *expected += 1;
    }
    let per_consumer: BTreeMap<usize, usize> = seen.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.consumer).or_default() += 1;
        m
    });
    assert_eq!(
        per_consumer.len(),
        3,
        "every consumer received records: {per_consumer:?}"
    );

    // A fourth member joins: the partitions are spread over four.
    let mut consumers = consumers;
    consumers.push(group_consumer(&bootstrap, "workers", &[]));
    running.push(Some(run_consumer(
        3,
        consumers[3].clone(),
        topic,
        tx.clone(),
    )));
    wait_until("4 consumers split 6 partitions", || {
        covers(&consumers.iter().map(|c| c.as_ref()).collect::<Vec<_>>(), 6)
    })
    .await;

    // Member 0 leaves (its consumer is closed): the other three take over.
    let rest: Vec<Arc<StreamConsumer>> = consumers[1..].to_vec();
    drop(consumers);
    if let Some(first) = running[0].take() {
        first.stop().await;
    }
    wait_until(
        "the remaining 3 consumers take over all 6 partitions",
        || covers(&rest.iter().map(|c| c.as_ref()).collect::<Vec<_>>(), 6),
    )
    .await;

    // Phase 2: nothing is lost across the rebalances and key order holds.
    produce(&producer, topic, keys, 10..20).await;
    collect_until(&mut rx, &mut seen, &expected(keys, 0..20)).await;
    assert_per_key_order(&seen);
    let phase2_consumers: BTreeSet<usize> = seen
        .iter()
        .filter(|s| s.seq >= 10)
        .map(|s| s.consumer)
        .collect();
    assert!(phase2_consumers.contains(&3), "the new member consumed");

    drop(rest);
    for r in running.into_iter().flatten() {
        r.stop().await;
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_groups_each_receive_every_record() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let topic = "pub-sub";
    create_topic(&bootstrap, topic, 3).await;
    let producer = common::producer(&bootstrap, &[]);
    produce(&producer, topic, 10, 0..6).await;

    let (tx_a, mut rx_a) = mpsc::unbounded_channel();
    let (tx_b, mut rx_b) = mpsc::unbounded_channel();
    let a = run_consumer(
        0,
        group_consumer(&bootstrap, "subscriber-a", &[]),
        topic,
        tx_a,
    );
    let b = run_consumer(
        1,
        group_consumer(&bootstrap, "subscriber-b", &[]),
        topic,
        tx_b,
    );
    let all = expected(10, 0..6);
    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    collect_until(&mut rx_a, &mut seen_a, &all).await;
    collect_until(&mut rx_b, &mut seen_b, &all).await;
    assert_eq!(seen_a.len(), all.len());
    assert_eq!(seen_b.len(), all.len());
    assert_per_key_order(&seen_a);
    assert_per_key_order(&seen_b);
    a.stop().await;
    b.stop().await;
    broker.shutdown().await;
}

/// One rebalance callback: (assigned rather than revoked, partitions).
type RebalanceEvent = (bool, BTreeSet<i32>);

/// Records every rebalance callback of one consumer.
#[derive(Default, Clone)]
struct RebalanceLog {
    events: Arc<Mutex<Vec<RebalanceEvent>>>,
}

impl ClientContext for RebalanceLog {}

impl ConsumerContext for RebalanceLog {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (assign, tpl) = match rebalance {
            Rebalance::Assign(tpl) => (true, *tpl),
            Rebalance::Revoke(tpl) => (false, *tpl),
            Rebalance::Error(_) => return,
        };
        let partitions = tpl.elements().iter().map(|e| e.partition()).collect();
        if let Ok(mut events) = self.events.lock() {
            events.push((assign, partitions));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cooperative_sticky_moves_only_the_partitions_it_must() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let topic = "cooperative";
    create_topic(&bootstrap, topic, 6).await;
    let extra = [("partition.assignment.strategy", "cooperative-sticky")];
    let (tx, _rx) = mpsc::unbounded_channel();

    let log1 = RebalanceLog::default();
    let c1: Arc<StreamConsumer<RebalanceLog>> = Arc::new(
        group_config(&bootstrap, "sticky", &extra)
            .create_with_context(log1.clone())
            .expect("consumer"),
    );
    let stop1 = run_consumer(0, c1.clone(), topic, tx.clone());
    wait_until("the first member owns all partitions", || {
        assigned(&c1).len() == 6
    })
    .await;

    let log2 = RebalanceLog::default();
    let c2: Arc<StreamConsumer<RebalanceLog>> = Arc::new(
        group_config(&bootstrap, "sticky", &extra)
            .create_with_context(log2.clone())
            .expect("consumer"),
    );
    let stop2 = run_consumer(1, c2.clone(), topic, tx.clone());
    wait_until("two members split the partitions", || {
        covers(&[c1.as_ref(), c2.as_ref()], 6)
    })
    .await;
    assert_eq!(assigned(&c1).len(), 3);
    assert_eq!(assigned(&c2).len(), 3);

    let events1 = log1.events.lock().unwrap().clone();
    let revoked: Vec<&BTreeSet<i32>> = events1.iter().filter(|(a, _)| !a).map(|(_, p)| p).collect();
    assert!(
        !revoked.is_empty(),
        "the first member gave partitions up: {events1:?}"
    );
    for r in &revoked {
        assert!(
            r.len() < 6,
            "an incremental rebalance revokes only what moves: {events1:?}"
        );
    }
    let revoked_all: BTreeSet<i32> = revoked.iter().flat_map(|r| r.iter().copied()).collect();
    assert_eq!(
        revoked_all,
        assigned(&c2),
        "exactly the moved partitions were revoked"
    );
    let events2 = log2.events.lock().unwrap().clone();
    assert!(
        events2.iter().all(|(assign, _)| *assign),
        "the new member only gains: {events2:?}"
    );

    drop((c1, c2));
    stop1.stop().await;
    stop2.stop().await;
    broker.shutdown().await;
}

/// Consumes from `topic` (one partition) in `group` without auto-commit, and
/// returns the first record's offset.
async fn first_offset(bootstrap: &str, group: &str, topic: &str) -> i64 {
    let consumer = group_consumer(bootstrap, group, &[("enable.auto.commit", "false")]);
    consumer.subscribe(&[topic]).unwrap();
    let m = tokio::time::timeout(PATIENCE, consumer.recv())
        .await
        .expect("a record arrives")
        .expect("no consumer error");
    m.offset()
}

fn commit_list(topic: &str, offset: i64, metadata: &str) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    if let Some(mut e) = tpl.find_partition(topic, 0) {
        e.set_metadata(metadata);
    }
    tpl
}

fn committed(bootstrap: &str, group: &str, topic: &str) -> (Offset, String) {
    let consumer: BaseConsumer = group_config(bootstrap, group, &[]).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let found = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .expect("OffsetFetch");
    let e = found.find_partition(topic, 0).expect("partition in answer");
    (e.offset(), e.metadata().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_offsets_and_metadata_survive_a_restart() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let topic = "resume";
    create_topic(&bootstrap, topic, 1).await;
    let producer = common::producer(&bootstrap, &[]);
    produce(&producer, topic, 1, 0..10).await;
    drop(producer);

    assert_eq!(first_offset(&bootstrap, "resumer", topic).await, 0);
    {
        let consumer = group_consumer(&bootstrap, "resumer", &[("enable.auto.commit", "false")]);
        consumer.subscribe(&[topic]).unwrap();
        for _ in 0..4 {
            tokio::time::timeout(PATIENCE, consumer.recv())
                .await
                .expect("record")
                .expect("no error");
        }
        consumer
            .commit(
                &commit_list(topic, 4, "checkpoint after 4"),
                CommitMode::Sync,
            )
            .expect("commit");
    }
    assert_eq!(
        committed(&bootstrap, "resumer", topic),
        (Offset::Offset(4), "checkpoint after 4".to_string())
    );

    let broker = broker.restart(|_| {}).await;
    let bootstrap = broker.bootstrap();
    assert_eq!(
        committed(&bootstrap, "resumer", topic),
        (Offset::Offset(4), "checkpoint after 4".to_string()),
        "offset and metadata are durable"
    );
    assert_eq!(first_offset(&bootstrap, "resumer", topic).await, 4);
    broker.shutdown().await;
}

/// Kafka drops the committed offsets of a deleted topic's partitions (the coordinator's
/// onPartitionsDeleted), so a topic created again under the same name is read from
/// `auto.offset.reset`, not from an offset that belonged to the old log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_topic_forgets_its_committed_offsets() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let topic = "recreated";
    create_topic(&bootstrap, topic, 1).await;
    {
        let consumer: BaseConsumer = group_config(&bootstrap, "forgetful", &[]).create().unwrap();
        consumer
            .commit(&commit_list(topic, 5, "old log"), CommitMode::Sync)
            .expect("commit");
    }
    assert_eq!(
        committed(&bootstrap, "forgetful", topic),
        (Offset::Offset(5), "old log".to_string())
    );

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin");
    let deleted = admin
        .delete_topics(&[topic], &AdminOptions::new())
        .await
        .expect("delete topics");
    assert_eq!(deleted, vec![Ok(topic.to_owned())]);
    create_topic(&bootstrap, topic, 1).await;
    assert_eq!(committed(&bootstrap, "forgetful", topic).0, Offset::Invalid);

    let broker = broker.restart(|_| {}).await;
    assert_eq!(
        committed(&broker.bootstrap(), "forgetful", topic).0,
        Offset::Invalid,
        "the removal is durable"
    );
    broker.shutdown().await;
}

/// Copies the directory `from` (files only, as the offsets log is) to `to`.
fn copy_files(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        assert!(entry.file_type().unwrap().is_file(), "{:?}", entry.path());
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A crash between DeleteTopics' durable removal of the topic and the durable removal of
/// its group offsets leaves offsets of a topic that no longer exists. The start-up sweep
/// removes them (durably), so a topic created again under the name starts from
/// `auto.offset.reset`. The crash is built by putting back a copy of the offsets log taken
/// before the DeleteTopics.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offsets_of_a_topic_deleted_before_a_crash_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let bootstrap = broker.bootstrap();
    let (gone, kept) = ("swept", "kept");
    create_topic(&bootstrap, gone, 1).await;
    create_topic(&bootstrap, kept, 1).await;
    {
        let consumer: BaseConsumer = group_config(&bootstrap, "survivor", &[]).create().unwrap();
        consumer
            .commit(&commit_list(gone, 2, "old log"), CommitMode::Sync)
            .expect("commit");
        consumer
            .commit(&commit_list(kept, 3, "still here"), CommitMode::Sync)
            .expect("commit");
    }
    let offsets_dir = broker.running().broker().state_dir().join("offsets");
    let before_delete = tempfile::tempdir().unwrap();
    // Acknowledged commits are fsync'd, so the files hold them now.
    copy_files(&offsets_dir, before_delete.path());

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin");
    let deleted = admin
        .delete_topics(&[gone], &AdminOptions::new())
        .await
        .expect("delete topics");
    assert_eq!(deleted, vec![Ok(gone.to_owned())]);
    drop(admin);
    broker.shutdown().await;

    std::fs::remove_dir_all(&offsets_dir).unwrap();
    copy_files(before_delete.path(), &offsets_dir);
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    let bootstrap = broker.bootstrap();
    assert_eq!(
        committed(&bootstrap, "survivor", gone).0,
        Offset::Invalid,
        "the deleted topic's offset is gone"
    );
    assert_eq!(
        committed(&bootstrap, "survivor", kept),
        (Offset::Offset(3), "still here".to_string())
    );

    // Once the topic exists again no sweep would remove an old offset: only a durable
    // removal keeps it from coming back at this restart.
    create_topic(&bootstrap, gone, 1).await;
    let broker = broker.restart(|_| {}).await;
    let bootstrap = broker.bootstrap();
    assert_eq!(
        committed(&bootstrap, "survivor", gone).0,
        Offset::Invalid,
        "the removal is durable"
    );
    let producer = common::producer(&bootstrap, &[]);
    produce(&producer, gone, 1, 0..5).await;
    assert_eq!(
        first_offset(&bootstrap, "survivor", gone).await,
        0,
        "the group reads the new topic from auto.offset.reset, not the old offset 2"
    );
    broker.shutdown().await;
}

/// The same crash while a transaction that sent offsets of the deleted topic is open:
/// the start-up sweep removes its pending offset of that topic before the transaction
/// coordinator looks at pending offsets, so OffsetFetch with `require_stable` (librdkafka's
/// read_committed default) answers at once with no offset instead of
/// UNSTABLE_OFFSET_COMMIT until the transaction ends, and the commit marker that ends the
/// transaction later commits only its offset of the topic that still exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_offsets_of_a_topic_deleted_before_a_crash_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path(), |_| {}).await;
    // The restarted broker listens on the same port, so the producer carries on.
    let addr = broker.addr();
    let bootstrap = broker.bootstrap();
    let (gone, kept, group) = ("swept-txn", "kept-txn", "txn-survivor");
    create_topic(&bootstrap, gone, 1).await;
    create_topic(&bootstrap, kept, 1).await;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", "sweep-txn")
        .create()
        .expect("transactional producer");
    producer.init_transactions(PATIENCE).unwrap();
    producer.begin_transaction().unwrap();
    let outside: BaseConsumer = group_config(&bootstrap, group, &[]).create().unwrap();
    let mut offsets = commit_list(gone, 2, "");
    offsets
        .add_partition_offset(kept, 0, Offset::Offset(3))
        .unwrap();
    producer
        .send_offsets_to_transaction(&offsets, &outside.group_metadata().unwrap(), PATIENCE)
        .unwrap();
    let offsets_dir = broker.running().broker().state_dir().join("offsets");
    let before_delete = tempfile::tempdir().unwrap();
    copy_files(&offsets_dir, before_delete.path());

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin");
    let deleted = admin
        .delete_topics(&[gone], &AdminOptions::new())
        .await
        .expect("delete topics");
    assert_eq!(deleted, vec![Ok(gone.to_owned())]);
    drop(admin);
    broker.shutdown().await;

    std::fs::remove_dir_all(&offsets_dir).unwrap();
    copy_files(before_delete.path(), &offsets_dir);
    let broker = TestBroker::start_in(dir.path(), |config| config.listen = addr).await;
    let bootstrap = broker.bootstrap();
    assert_eq!(
        committed(&bootstrap, group, gone).0,
        Offset::Invalid,
        "require_stable answers: nothing of the deleted topic is pending"
    );

    producer.commit_transaction(PATIENCE).unwrap();
    assert_eq!(committed(&bootstrap, group, kept).0, Offset::Offset(3));
    assert_eq!(committed(&bootstrap, group, gone).0, Offset::Invalid);
    create_topic(&bootstrap, gone, 1).await;
    let broker = broker.restart(|config| config.listen = addr).await;
    assert_eq!(
        committed(&broker.bootstrap(), group, gone).0,
        Offset::Invalid
    );
    drop(producer);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_acknowledged_commit_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let first = BrokerProcess::spawn(dir.path());
    create_topic(&first.bootstrap(), "killed", 1).await;
    let producer = common::producer(&first.bootstrap(), &[("acks", "all")]);
    produce(&producer, "killed", 1, 0..5).await;
    drop(producer);
    {
        let consumer: BaseConsumer = group_config(&first.bootstrap(), "survivor", &[])
            .create()
            .unwrap();
        for n in 1..=3 {
            consumer
                .commit(
                    &commit_list("killed", n, &format!("n={n}")),
                    CommitMode::Sync,
                )
                .expect("commit acknowledged");
        }
    }
    first.sigkill();

    let second = BrokerProcess::spawn(dir.path());
    assert_eq!(
        committed(&second.bootstrap(), "survivor", "killed"),
        (Offset::Offset(3), "n=3".to_string())
    );
    assert_eq!(
        first_offset(&second.bootstrap(), "survivor", "killed").await,
        3
    );
    second.sigkill();
}

/// Sends one request on a fresh connection and decodes the response.
async fn raw<Req: Encodable, Resp: Decodable>(
    addr: std::net::SocketAddr,
    api: ApiKey,
    version: i16,
    request: &Req,
) -> Resp {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut body = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("raw-test")));
    header
        .encode(&mut body, api.request_header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.unwrap();
    let len = stream.read_i32().await.unwrap();
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await.unwrap();
    let mut buf = Bytes::from(buf);
    let header = ResponseHeader::decode(&mut buf, api.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    let response = Resp::decode(&mut buf, version).unwrap();
    assert_eq!(buf.remaining(), 0, "the whole response was read");
    response
}

async fn list_groups(addr: std::net::SocketAddr, states: &[&str]) -> Vec<(String, String)> {
    let request = ListGroupsRequest::default().with_states_filter(
        states
            .iter()
            .map(|s| StrBytes::from_string(s.to_string()))
            .collect(),
    );
    let response: ListGroupsResponse = raw(addr, ApiKey::ListGroups, 4, &request).await;
    assert_eq!(response.error_code, 0);
    response
        .groups
        .iter()
        .map(|g| (g.group_id.to_string(), g.group_state.to_string()))
        .collect()
}

async fn offset_delete(
    addr: std::net::SocketAddr,
    group: &str,
    topic: &str,
    partition: i32,
) -> (i16, i16) {
    let request = OffsetDeleteRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(partition)
            ])]);
    let response: OffsetDeleteResponse = raw(addr, ApiKey::OffsetDelete, 0, &request).await;
    let partition_error = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .map_or(-1, |p| p.error_code);
    (response.error_code, partition_error)
}

/// OffsetFetch v8 for several groups at once: (group, partition) → offset.
async fn offset_fetch_v8(
    addr: std::net::SocketAddr,
    groups: &[&str],
    topic: &str,
    partitions: &[i32],
) -> BTreeMap<(String, i32), i64> {
    let request = OffsetFetchRequest::default().with_groups(
        groups
            .iter()
            .map(|g| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(g.to_string())))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partition_indexes(partitions.to_vec())]))
            })
            .collect(),
    );
    let response: OffsetFetchResponse = raw(addr, ApiKey::OffsetFetch, 8, &request).await;
    let mut out = BTreeMap::new();
    for g in &response.groups {
        assert_eq!(g.error_code, 0);
        for t in &g.topics {
            for p in &t.partitions {
                assert_eq!(p.error_code, 0);
                out.insert(
                    (g.group_id.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn describe_list_delete_groups_and_offset_delete() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let addr = broker.addr();
    let topic = "admin-topic";
    create_topic(&bootstrap, topic, 2).await;

    let consumer = group_consumer(&bootstrap, "inspected", &[("enable.auto.commit", "false")]);
    let (tx, _rx) = mpsc::unbounded_channel();
    let stop = run_consumer(0, consumer.clone(), topic, tx);
    wait_until("the member owns both partitions", || {
        assigned(&consumer).len() == 2
    })
    .await;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))
        .unwrap();
    tpl.add_partition_offset(topic, 1, Offset::Offset(0))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");

    // Describe through librdkafka (ListGroups + DescribeGroups).
    let groups = consumer
        .fetch_group_list(Some("inspected"), Duration::from_secs(30))
        .expect("group list");
    let group = &groups.groups()[0];
    assert_eq!(group.name(), "inspected");
    assert_eq!(group.state(), "Stable");
    assert_eq!(group.protocol_type(), "consumer");
    assert_eq!(group.protocol(), "range");
    assert_eq!(group.members().len(), 1);
    let member = &group.members()[0];
    assert_eq!(member.client_id(), "rdkafka");
    assert!(
        member.client_host().contains("127.0.0.1"),
        "{}",
        member.client_host()
    );
    assert!(member.assignment().is_some_and(|a| !a.is_empty()));
    assert!(member.metadata().is_some_and(|m| !m.is_empty()));

    assert!(list_groups(addr, &["Stable"])
        .await
        .contains(&("inspected".into(), "Stable".into())));
    assert!(list_groups(addr, &["Empty"]).await.is_empty());

    // A consumed topic's offsets cannot be deleted; the group cannot either.
    assert_eq!(offset_delete(addr, "inspected", topic, 0).await, (0, 86));
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let deleted = admin
        .delete_groups(&["inspected"], &AdminOptions::new())
        .await
        .unwrap();
    assert!(
        matches!(&deleted[0], Err((g, code)) if g == "inspected"
            && *code == rdkafka::types::RDKafkaErrorCode::NonEmptyGroup),
        "{deleted:?}"
    );

    // The member leaves: now the offsets and the group can go.
    drop(consumer);
    stop.stop().await;
    let mut empty = Vec::new();
    for _ in 0..600 {
        empty = list_groups(addr, &["Empty"]).await;
        if !empty.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(empty, vec![("inspected".to_string(), "Empty".to_string())]);
    assert_eq!(offset_delete(addr, "inspected", topic, 0).await, (0, 0));
    assert_eq!(offset_delete(addr, "no-such-group", topic, 0).await.0, 69);
    assert_eq!(
        offset_delete(addr, "inspected", "no-such-topic", 0).await,
        (0, 3)
    );
    let fetched = offset_fetch_v8(addr, &["inspected", "never-committed"], topic, &[0, 1]).await;
    assert_eq!(fetched[&("inspected".to_string(), 0)], -1, "deleted");
    assert_eq!(fetched[&("inspected".to_string(), 1)], 0, "kept");
    assert_eq!(fetched[&("never-committed".to_string(), 0)], -1);

    let deleted = admin
        .delete_groups(&["inspected", "no-such-group"], &AdminOptions::new())
        .await
        .unwrap();
    assert_eq!(deleted[0], Ok("inspected".to_string()));
    assert!(
        matches!(&deleted[1], Err((_, code)) if *code == rdkafka::types::RDKafkaErrorCode::GroupIdNotFound),
        "{deleted:?}"
    );
    assert!(list_groups(addr, &[]).await.is_empty());
    let fetched = offset_fetch_v8(addr, &["inspected"], topic, &[1]).await;
    assert_eq!(
        fetched[&("inspected".to_string(), 1)],
        -1,
        "offsets went with the group"
    );
    broker.shutdown().await;
}

/// Every advertised version of every group API answers a raw request with a
/// response that decodes, and the group protocol works at each version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_group_api_version_round_trips() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{
        DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
        FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
        JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
        OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse,
    };

    let broker = TestBroker::start().await;
    let addr = broker.addr();
    create_topic(&broker.bootstrap(), "versions", 1).await;
    let s = |v: &str| StrBytes::from_string(v.to_string());

    for version in 0..=4 {
        let request = FindCoordinatorRequest::default()
            .with_key(if version < 4 { s("g") } else { s("") })
            .with_coordinator_keys(if version >= 4 {
                vec![s("g"), s("h")]
            } else {
                vec![]
            });
        let response: FindCoordinatorResponse =
            raw(addr, ApiKey::FindCoordinator, version, &request).await;
        if version >= 4 {
            assert_eq!(response.coordinators.len(), 2);
            assert!(response
                .coordinators
                .iter()
                .all(|c| c.error_code == 0 && c.port == addr.port() as i32));
        } else {
            assert_eq!(
                (response.error_code, response.port),
                (0, addr.port() as i32)
            );
        }
    }

    for version in 0..=9i16 {
        let group = format!("v{version}");
        let gid = GroupId(s(&group));
        let join = |member: &str| {
            JoinGroupRequest::default()
                .with_group_id(gid.clone())
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(if version >= 1 { 10_000 } else { 0 })
                .with_member_id(s(member))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(b"subscription"))])
        };
        let mut joined: JoinGroupResponse = raw(addr, ApiKey::JoinGroup, version, &join("")).await;
        if version >= 4 {
            assert_eq!(joined.error_code, 79, "v{version}: MEMBER_ID_REQUIRED");
            let id = joined.member_id.to_string();
            joined = raw(addr, ApiKey::JoinGroup, version, &join(&id)).await;
        }
        assert_eq!(joined.error_code, 0, "v{version}");
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader, joined.member_id);
        assert_eq!(joined.members.len(), 1);
        assert_eq!(
            joined.members[0].metadata,
            Bytes::from_static(b"subscription")
        );
        assert_eq!(
            joined.protocol_name.as_deref().map(|p| p.to_string()),
            Some("range".to_string())
        );
        let member = joined.member_id.clone();

        let sync_version = version.min(5);
        let sync = SyncGroupRequest::default()
            .with_group_id(gid.clone())
            .with_generation_id(1)
            .with_member_id(member.clone())
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(member.clone())
                .with_assignment(Bytes::from_static(b"assignment"))]);
        let synced: SyncGroupResponse = raw(addr, ApiKey::SyncGroup, sync_version, &sync).await;
        assert_eq!(synced.error_code, 0);
        assert_eq!(synced.assignment, Bytes::from_static(b"assignment"));

        let heartbeat = HeartbeatRequest::default()
            .with_group_id(gid.clone())
            .with_generation_id(1)
            .with_member_id(member.clone());
        let beat: HeartbeatResponse =
            raw(addr, ApiKey::Heartbeat, version.min(4), &heartbeat).await;
        assert_eq!(beat.error_code, 0);

        let describe = DescribeGroupsRequest::default().with_groups(vec![gid.clone()]);
        let described: DescribeGroupsResponse =
            raw(addr, ApiKey::DescribeGroups, version.min(5), &describe).await;
        assert_eq!(described.groups[0].group_state.to_string(), "Stable");
        assert_eq!(
            described.groups[0].members[0].member_assignment,
            Bytes::from_static(b"assignment")
        );

        let leave_version = version.min(5);
        let leave = if leave_version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(gid.clone())
                .with_members(vec![
                    MemberIdentity::default().with_member_id(member.clone())
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(gid.clone())
                .with_member_id(member.clone())
        };
        let left: LeaveGroupResponse = raw(addr, ApiKey::LeaveGroup, leave_version, &leave).await;
        assert_eq!(left.error_code, 0);
        if leave_version >= 3 {
            assert_eq!(left.members[0].error_code, 0);
        }
    }

    for version in 2..=8i16 {
        let group = GroupId(s(&format!("simple-{version}")));
        let mut partition = OffsetCommitRequestPartition::default()
            .with_partition_index(0)
            .with_committed_offset(40 + version as i64)
            .with_committed_metadata(Some(s("meta")));
        if version >= 6 {
            partition = partition.with_committed_leader_epoch(0);
        }
        let commit = OffsetCommitRequest::default()
            .with_group_id(group.clone())
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(s(""))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("versions")))
                .with_partitions(vec![partition])]);
        let committed: OffsetCommitResponse =
            raw(addr, ApiKey::OffsetCommit, version, &commit).await;
        assert_eq!(
            committed.topics[0].partitions[0].error_code, 0,
            "v{version}"
        );
    }
    for version in 1..=7i16 {
        let group = GroupId(s(&format!("simple-{}", version.max(2))));
        let fetch = OffsetFetchRequest::default()
            .with_group_id(group)
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("versions")))
                .with_partition_indexes(vec![0])]));
        let fetched: OffsetFetchResponse = raw(addr, ApiKey::OffsetFetch, version, &fetch).await;
        let p = &fetched.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.committed_offset),
            (0, 40 + version.max(2) as i64),
            "v{version}"
        );
        assert_eq!(
            p.metadata.as_deref().map(|m| m.to_string()),
            Some("meta".to_string())
        );
    }
    let fetched = offset_fetch_v8(addr, &["simple-8", "simple-3"], "versions", &[0]).await;
    assert_eq!(fetched[&("simple-8".to_string(), 0)], 48);
    assert_eq!(fetched[&("simple-3".to_string(), 0)], 43);

    for version in 0..=4 {
        let listed: ListGroupsResponse = raw(
            addr,
            ApiKey::ListGroups,
            version,
            &ListGroupsRequest::default(),
        )
        .await;
        assert_eq!(listed.groups.len(), 10 + 7, "v{version}");
    }
    for version in 0..=2 {
        let delete = DeleteGroupsRequest::default().with_groups_names(vec![
            GroupId(s(&format!("v{version}"))),
            GroupId(s("absent")),
        ]);
        let deleted: DeleteGroupsResponse = raw(addr, ApiKey::DeleteGroups, version, &delete).await;
        assert_eq!(deleted.results[0].error_code, 0);
        assert_eq!(deleted.results[1].error_code, 69, "GROUP_ID_NOT_FOUND");
    }
    broker.shutdown().await;
}

/// A group member spoken to with raw requests, so that it can fall silent.
struct RawMember {
    stream: TcpStream,
    correlation: i32,
}

impl RawMember {
    async fn connect(addr: std::net::SocketAddr) -> RawMember {
        RawMember {
            stream: TcpStream::connect(addr).await.unwrap(),
            correlation: 0,
        }
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        self.correlation += 1;
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw-member")))
            .encode(&mut body, api.request_header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        self.stream.write_i32(body.len() as i32).await.unwrap();
        self.stream.write_all(&body).await.unwrap();
        let len = self.stream.read_i32().await.unwrap();
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf).await.unwrap();
        let mut buf = Bytes::from(buf);
        let header =
            ResponseHeader::decode(&mut buf, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation);
        Resp::decode(&mut buf, version).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_member_is_evicted_after_its_session_timeout() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{
        ConsumerProtocolAssignment, ConsumerProtocolSubscription, JoinGroupRequest,
        JoinGroupResponse, SyncGroupRequest, SyncGroupResponse,
    };

    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let topic = "silence";
    create_topic(&bootstrap, topic, 6).await;
    let consumer = group_consumer(&bootstrap, "evicting", &[]);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let running = run_consumer(0, consumer.clone(), topic, tx);
    wait_until("the rdkafka member owns all partitions", || {
        assigned(&consumer).len() == 6
    })
    .await;

    // A second member joins with a 1 s session (the broker's minimum) and syncs.
    let mut subscription = BytesMut::new();
    subscription.put_i16(0);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str(topic)])
        .encode(&mut subscription, 0)
        .unwrap();
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("evicting")))
            .with_session_timeout_ms(1_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(subscription.clone().freeze())])
    };
    let mut raw_member = RawMember::connect(broker.addr()).await;
    let first: JoinGroupResponse = raw_member.call(ApiKey::JoinGroup, 5, &join("")).await;
    assert_eq!(first.error_code, 79);
    let member_id = first.member_id.to_string();
    let joined: JoinGroupResponse = raw_member
        .call(ApiKey::JoinGroup, 5, &join(&member_id))
        .await;
    assert_eq!(joined.error_code, 0);
    assert_ne!(
        joined.leader.to_string(),
        member_id,
        "the rdkafka member leads"
    );
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("evicting")))
        .with_generation_id(joined.generation_id)
        .with_member_id(StrBytes::from_string(member_id.clone()));
    let synced: SyncGroupResponse = raw_member.call(ApiKey::SyncGroup, 3, &sync).await;
    assert_eq!(synced.error_code, 0);
    let mut assignment = synced.assignment.clone();
    let version = assignment.get_i16();
    let assignment = ConsumerProtocolAssignment::decode(&mut assignment, version).unwrap();
    let raw_partitions: usize = assignment
        .assigned_partitions
        .iter()
        .map(|t| t.partitions.len())
        .sum();
    assert_eq!(
        raw_partitions, 3,
        "the leader's range assignment reached the raw member"
    );
    // The raw member falls silent: after its session it is evicted and the
    // rdkafka member takes every partition back and reads them all.
    wait_until("the rdkafka member owns all partitions again", || {
        assigned(&consumer).len() == 6
    })
    .await;
    let producer = common::producer(&bootstrap, &[]);
    produce(&producer, topic, 12, 0..3).await;
    let mut seen = Vec::new();
    collect_until(&mut rx, &mut seen, &expected(12, 0..3)).await;
    let partitions: BTreeSet<i32> = seen.iter().map(|s| s.partition).collect();
    assert!(
        partitions.len() > 3,
        "records from the evicted member's partitions arrive"
    );
    drop(consumer);
    running.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_static_member_restarts_without_a_rebalance() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let topic = "static";
    create_topic(&bootstrap, topic, 4).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let static_config = |instance: &str| {
        group_config(
            &bootstrap,
            "statics",
            &[
                ("group.instance.id", instance),
                ("session.timeout.ms", "10000"),
            ],
        )
    };

    let log_b = RebalanceLog::default();
    let b: Arc<StreamConsumer<RebalanceLog>> = Arc::new(
        static_config("instance-b")
            .create_with_context(log_b.clone())
            .unwrap(),
    );
    let a: Arc<StreamConsumer<RebalanceLog>> = Arc::new(
        static_config("instance-a")
            .create_with_context(RebalanceLog::default())
            .unwrap(),
    );
    let run_a = run_consumer(0, a.clone(), topic, tx.clone());
    let run_b = run_consumer(1, b.clone(), topic, tx.clone());
    wait_until("two static members split 4 partitions", || {
        covers(&[a.as_ref(), b.as_ref()], 4)
    })
    .await;
    let a_partitions = assigned(&a);
    let b_events_before = log_b.events.lock().unwrap().len();

    // a restarts: closing a static member sends no LeaveGroup, and the new
    // consumer with the same instance id takes its place in the stable group.
    drop(a);
    run_a.stop().await;
    let a2: Arc<StreamConsumer<RebalanceLog>> = Arc::new(
        static_config("instance-a")
            .create_with_context(RebalanceLog::default())
            .unwrap(),
    );
    let run_a2 = run_consumer(2, a2.clone(), topic, tx.clone());
    wait_until("the restarted member gets its partitions back", || {
        assigned(&a2) == a_partitions
    })
    .await;
    let producer = common::producer(&bootstrap, &[]);
    produce(&producer, topic, 8, 0..3).await;
    let mut seen = Vec::new();
    collect_until(&mut rx, &mut seen, &expected(8, 0..3)).await;
    assert!(
        seen.iter().all(|s| s.consumer != 0),
        "the closed consumer read nothing"
    );
    assert_eq!(
        log_b.events.lock().unwrap().len(),
        b_events_before,
        "the other member saw no rebalance"
    );
    let group = b
        .fetch_group_list(Some("statics"), Duration::from_secs(30))
        .unwrap();
    assert_eq!(group.groups()[0].state(), "Stable");
    assert_eq!(group.groups()[0].members().len(), 2);
    drop((a2, b));
    run_a2.stop().await;
    run_b.stop().await;
    broker.shutdown().await;
}

/// Member ids of `group` as DescribeGroups reports them, with the group state.
fn group_members<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    group: &str,
) -> (String, BTreeSet<String>) {
    let list = consumer
        .fetch_group_list(Some(group), Duration::from_secs(30))
        .expect("DescribeGroups");
    let g = &list.groups()[0];
    (
        g.state().to_string(),
        g.members().iter().map(|m| m.id().to_string()).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_membership_survives_a_broker_restart_without_a_rebalance() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let addr = broker.addr();
    let topic = "restart-members";
    let group = "steady";
    create_topic(&bootstrap, topic, 4).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let logs = [RebalanceLog::default(), RebalanceLog::default()];
    let consumers: Vec<Arc<StreamConsumer<RebalanceLog>>> = logs
        .iter()
        .map(|log| {
            Arc::new(
                group_config(&bootstrap, group, &[])
                    .create_with_context(log.clone())
                    .expect("consumer"),
            )
        })
        .collect();
    let running: Vec<Running> = consumers
        .iter()
        .enumerate()
        .map(|(i, c)| run_consumer(i, c.clone(), topic, tx.clone()))
        .collect();
    wait_until("two members split 4 partitions", || {
        covers(&[consumers[0].as_ref(), consumers[1].as_ref()], 4)
    })
    .await;
    let assignment: Vec<BTreeSet<i32>> = consumers.iter().map(|c| assigned(c)).collect();
    let producer = common::producer(&bootstrap, &[]);
    produce(&producer, topic, 8, 0..5).await;
    drop(producer);
    let mut seen = Vec::new();
    collect_until(&mut rx, &mut seen, &expected(8, 0..5)).await;
    let (state, members_before) = group_members(&consumers[0], group);
    assert_eq!((state.as_str(), members_before.len()), ("Stable", 2));
    let events_before: Vec<usize> = logs
        .iter()
        .map(|l| l.events.lock().unwrap().len())
        .collect();

    // Same data dir, same port: the clients reconnect to "the" coordinator.
    let broker = broker.restart(|c| c.listen = addr).await;
    let bootstrap = broker.bootstrap();
    let producer = common::producer(&bootstrap, &[]);
    produce(&producer, topic, 8, 5..10).await;
    let after_restart = seen.len();
    collect_until(&mut rx, &mut seen, &expected(8, 5..10)).await;
    for s in &seen[after_restart..] {
        assert!(
            assignment[s.consumer].contains(&s.partition),
            "partition {} moved to consumer {} after the restart",
            s.partition,
            s.consumer
        );
    }
    // Auto-commits after the restart carry the old member ids and generation:
    // they succeed only if the broker still knows the members.
    let ends: BTreeMap<i32, i64> = {
        let mut ends = BTreeMap::new();
        for s in &seen {
            let end = ends.entry(s.partition).or_insert(0);
            *end = (*end).max(s.offset + 1);
        }
        ends
    };
    let reader: BaseConsumer = group_config(&bootstrap, group, &[]).create().unwrap();
    wait_until(
        "the members' commits after the restart are accepted",
        || {
            let mut tpl = TopicPartitionList::new();
            for p in 0..4 {
                tpl.add_partition(topic, p);
            }
            let Ok(found) = reader.committed_offsets(tpl, Duration::from_secs(10)) else {
                return false;
            };
            found.elements().iter().all(|e| {
                e.offset() == Offset::Offset(ends.get(&e.partition()).copied().unwrap_or(0))
            })
        },
    )
    .await;
    // A few more heartbeat intervals with the restarted broker.
    produce(&producer, topic, 8, 10..12).await;
    collect_until(&mut rx, &mut seen, &expected(8, 10..12)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let events_after: Vec<usize> = logs
        .iter()
        .map(|l| l.events.lock().unwrap().len())
        .collect();
    assert_eq!(
        events_after, events_before,
        "no rebalance callback after the restart"
    );
    let (state, members_after) = group_members(&consumers[0], group);
    assert_eq!(state, "Stable");
    assert_eq!(members_after, members_before, "the same members, no rejoin");
    let assignment_after: Vec<BTreeSet<i32>> = consumers.iter().map(|c| assigned(c)).collect();
    assert_eq!(assignment_after, assignment);

    drop((consumers, producer, reader));
    for r in running {
        r.stop().await;
    }
    broker.shutdown().await;
}
