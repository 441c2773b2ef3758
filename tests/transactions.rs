//! Transactions through librdkafka (rdkafka's BaseProducer and BaseConsumer) against an
//! in-process broker:
//! - an aborted transaction over 3 partitions is invisible to read_committed consumers
//!   (also when a committed transaction follows it), visible to read_uncommitted ones, and
//!   its abort markers take an offset but never reach the application;
//! - a committed transaction becomes visible to a read_committed consumer that was already
//!   polling while it was open (and saw nothing then), and while it is open
//!   ListOffsets answers the last stable offset to read_committed clients;
//! - a second producer with the same `transactional.id` fences the first: the zombie's
//!   later records are refused, its next operation fails fatally and its open transaction
//!   ends aborted;
//! - `send_offsets_to_transaction`: the group's committed offsets change only when the
//!   transaction commits (abort leaves them; while open they are pending, and OffsetFetch
//!   with require_stable does not answer with them); an offsets-only transaction commits;
//!   offsets sent with the metadata of an older group generation are refused (abortable);
//! - a transaction left open past its `transaction.timeout.ms` is aborted by the broker, so
//!   the last stable offset moves on and read_committed consumers progress;
//! - an open transaction survives a graceful broker restart (the LSO still held) and then
//!   commits or aborts; the aborted range is still skipped after another restart;
//! - two transactions interleaved in one partition with plain records: the younger one's
//!   commit stays invisible while the older is open; the older one's abort drops only its
//!   own records;
//! - a transaction one of whose topics is deleted before the commit still commits (the
//!   rest of it), and its transactional id goes on working;
//! - with 1 KiB segments, an aborted transaction interleaved with a committed one spans
//!   many segments: read_committed from the start or from inside the aborted range reads
//!   exactly the committed records, before and after a restart (also with one-batch
//!   fetches); DeleteRecords into the aborted range drops the segments where it began, and
//!   the rest of it stays hidden;
//! - six producers committing and aborting at random, concurrently: read_committed reads
//!   exactly the committed records; a `transaction.timeout.ms` above the broker's
//!   `transaction.max.timeout.ms` is refused;
//! - a transactional batch for a partition not added to the transaction, or sent after
//!   the transaction was aborted, is refused with INVALID_TXN_STATE and leaves nothing;
//! - (ignored until appends leave the tokio workers) a transactional append held inside
//!   its write (a slow disk) does not hold up the commit of an unrelated transaction.
//!
//! The clients block, so each test drives them from its own thread while the broker runs
//! on a tokio runtime owned by the test.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{TestBroker, PATIENCE};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use strata::Config;
use strata_storage::fault::{set_injector, FileOp};

/// How long a test watches for something that must NOT happen (records of an open
/// transaction reaching a read_committed consumer): 20 polls of up to 100 ms, each at
/// least one fetch round trip (fetch.wait.max.ms = 100).
const QUIET_POLLS: usize = 20;

/// A broker on its own runtime; shut down when dropped.
struct Env {
    runtime: tokio::runtime::Runtime,
    broker: Option<TestBroker>,
}

impl Env {
    /// A broker with default settings.
    fn start() -> Env {
        Self::start_with_properties("")
    }

    /// A broker whose settings come from a Kafka-style properties text (Kafka's key names),
    /// loaded exactly as the binary loads `--config FILE`.
    fn start_with_properties(properties: &str) -> Env {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.properties");
        std::fs::write(&file, properties).unwrap();
        let broker = runtime.block_on(TestBroker::start_with(|config| {
            let args = [
                "strata".to_string(),
                "--listen".to_string(),
                config.listen.to_string(),
                "--data-dir".to_string(),
                config.data_dir.display().to_string(),
                "--config".to_string(),
                file.display().to_string(),
            ];
            *config = Config::load_from(args)
                .unwrap_or_else(|e| panic!("broker properties {properties:?}: {e}"));
        }));
        Env {
            runtime,
            broker: Some(broker),
        }
    }

    fn bootstrap(&self) -> String {
        self.broker.as_ref().unwrap().bootstrap()
    }

    fn data_dir(&self) -> PathBuf {
        self.broker.as_ref().unwrap().data_dir().to_path_buf()
    }

    /// Graceful shutdown and a new broker on the same data dir and address (clients
    /// reconnect to it), with default settings.
    fn restart(&mut self) {
        let broker = self.broker.take().unwrap();
        let addr = broker.addr();
        let next = self
            .runtime
            .block_on(broker.restart(move |config| config.listen = addr));
        self.broker = Some(next);
    }

    fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .unwrap();
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = self
            .runtime
            .block_on(admin.create_topics([&new], &AdminOptions::new()))
            .unwrap();
        for r in results {
            r.unwrap_or_else(|e| panic!("create {topic}: {e:?}"));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(broker) = self.broker.take() {
            self.runtime.block_on(broker.shutdown());
        }
    }
}

/// A transactional producer (librdkafka makes it idempotent with acks=all).
fn txn_producer(bootstrap: &str, transactional_id: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", transactional_id)
        .set("linger.ms", "5");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("transactional producer")
}

/// Enqueues `value` for `partition` of `topic` (keyed by the value).
fn send(producer: &BaseProducer, topic: &str, partition: i32, value: &str) {
    producer
        .send(
            BaseRecord::to(topic)
                .partition(partition)
                .key(value)
                .payload(value),
        )
        .unwrap_or_else(|(e, _)| panic!("enqueue {value}: {e}"));
}

/// A consumer with explicitly assigned partitions (no group membership) at `isolation`.
fn assigned_consumer(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
    eof: bool,
) -> BaseConsumer {
    let consumer = common::consumer(
        bootstrap,
        &[
            ("isolation.level", isolation),
            ("enable.partition.eof", if eof { "true" } else { "false" }),
        ],
    );
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

/// One record as an application saw it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    partition: i32,
    offset: i64,
    value: String,
}

fn seen(m: &rdkafka::message::BorrowedMessage<'_>) -> Seen {
    Seen {
        partition: m.partition(),
        offset: m.offset(),
        value: String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap(),
    }
}

/// Everything a fresh consumer at `isolation` reads from every partition of `topic`, from
/// the beginning until it reports the end of every partition (for read_committed the end
/// is the last stable offset). Sorted by partition and offset.
fn read_all(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Vec<Seen> {
    let consumer = assigned_consumer(bootstrap, topic, partitions, isolation, true);
    let mut at_end = BTreeSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while at_end.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "{isolation} reader of {topic}: only partitions {at_end:?} reached their end; \
             read so far {out:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                out.push(seen(&m));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("{isolation} reader of {topic}: {e}"),
            None => {}
        }
    }
    out.sort();
    out
}

fn values(records: &[Seen]) -> BTreeSet<String> {
    records.iter().map(|s| s.value.clone()).collect()
}

fn expect_set(prefix: &str, range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

/// End offset of every partition as ListOffsets (latest) answers a client at `isolation`:
/// the high watermark for read_uncommitted, the last stable offset for read_committed.
fn end_offsets(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Vec<i64> {
    let consumer = common::consumer(bootstrap, &[("isolation.level", isolation)]);
    (0..partitions)
        .map(|p| consumer.fetch_watermarks(topic, p, PATIENCE).unwrap().1)
        .collect()
}

fn high_watermarks(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    end_offsets(bootstrap, topic, partitions, "read_uncommitted")
}

/// Asserts `result` is the failure of a fenced producer: fatal for the client, and named
/// as fencing (or the stale epoch Kafka answers a fenced producer with).
fn assert_fenced(what: &str, result: Result<(), KafkaError>) {
    let err = match result {
        Ok(()) => panic!("{what} succeeded for a fenced producer"),
        Err(e) => e,
    };
    let KafkaError::Transaction(txn) = &err else {
        panic!("{what}: expected a transaction error, got {err}");
    };
    assert!(
        txn.is_fatal(),
        "{what}: fencing must be fatal for the old producer, got {err} (code {:?})",
        txn.code()
    );
    assert!(
        matches!(
            txn.code(),
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        ),
        "{what}: expected a fencing error, got {err} (code {:?})",
        txn.code()
    );
}

#[test]
fn aborted_transaction_is_invisible_to_read_committed_and_visible_to_read_uncommitted() {
    let env = Env::start();
    let bootstrap = env.bootstrap();
    let topic = "txn-abort";
    env.create_topic(topic, 3);

    let producer = txn_producer(&bootstrap, "tx-abort", &[]);
    producer.init_transactions(PATIENCE).unwrap();
    producer.begin_transaction().unwrap();
    for i in 0..30 {
        send(&producer, topic, i % 3, &format!("aborted-{i}"));
    }
    // Flush first so every record is in the log before the abort (as rdkafka's own test).
    producer.flush(PATIENCE).unwrap();
    producer.abort_transaction(PATIENCE).unwrap();

    assert_eq!(
        read_all(&bootstrap, topic, 3, "read_committed"),
        vec![],
        "read_committed sees nothing of an aborted transaction"
    );
    let uncommitted = read_all(&bootstrap, topic, 3, "read_uncommitted");
    assert_eq!(values(&uncommitted), expect_set("aborted", 0..30));
    assert_eq!(
        uncommitted.len(),
        30,
        "no record twice, no marker delivered"
    );
    for p in 0..3 {
        let offsets: Vec<i64> = uncommitted
            .iter()
            .filter(|s| s.partition == p)
            .map(|s| s.offset)
            .collect();
        assert_eq!(offsets, (0..10).collect::<Vec<_>>(), "partition {p}");
    }
    // Each partition holds 10 records and the abort marker (a control batch at offset 10),
    // which the consumer skipped.
    assert_eq!(high_watermarks(&bootstrap, topic, 3), vec![11, 11, 11]);

    // A committed transaction after the aborted one: read_committed reads past the aborted
    // range (the fetch lists it as aborted) to the committed records.
    producer.begin_transaction().unwrap();
    for p in 0..3 {
        send(&producer, topic, p, &format!("committed-{p}"));
    }
    producer.commit_transaction(PATIENCE).unwrap();
    let committed = read_all(&bootstrap, topic, 3, "read_committed");
    assert_eq!(
        committed,
        (0..3)
            .map(|p| Seen {
                partition: p,
                offset: 11,
                value: format!("committed-{p}"),
            })
            .collect::<Vec<_>>()
    );
    let uncommitted = read_all(&bootstrap, topic, 3, "read_uncommitted");
    assert_eq!(uncommitted.len(), 33, "markers are never delivered");
    assert_eq!(high_watermarks(&bootstrap, topic, 3), vec![13, 13, 13]);
}

#[test]
fn commit_makes_the_transaction_visible_to_a_read_committed_consumer_already_polling() {
    let env = Env::start();
    let bootstrap = env.bootstrap();
    let topic = "txn-commit";
    env.create_topic(topic, 3);

    let watcher = assigned_consumer(&bootstrap, topic, 3, "read_committed", false);
    for _ in 0..5 {
        if let Some(Ok(m)) = watcher.poll(Duration::from_millis(100)) {
            panic!("read_committed saw {:?} in an empty topic", seen(&m));
        }
    }

    let producer = txn_producer(&bootstrap, "tx-commit", &[]);
    producer.init_transactions(PATIENCE).unwrap();
    producer.begin_transaction().unwrap();
    for i in 0..30 {
        send(&producer, topic, i % 3, &format!("c-{i}"));
    }
    producer.flush(PATIENCE).unwrap();
    // The records are in the log (a read_uncommitted reader sees them all) ...
    let uncommitted = read_all(&bootstrap, topic, 3, "read_uncommitted");
    assert_eq!(values(&uncommitted), expect_set("c", 0..30));
    // ... but not below the last stable offset, so the polling read_committed consumer gets
    // none of them while the transaction is open.
    for _ in 0..QUIET_POLLS {
        if let Some(Ok(m)) = watcher.poll(Duration::from_millis(100)) {
            panic!(
                "read_committed saw {:?} of a transaction still open",
                seen(&m)
            );
        }
    }
    assert_eq!(read_all(&bootstrap, topic, 3, "read_committed"), vec![]);
    // ListOffsets: latest is the LSO (held at the transaction's first offset) for
    // read_committed, the high watermark for read_uncommitted.
    assert_eq!(end_offsets(&bootstrap, topic, 3, "read_committed"), [0; 3]);
    assert_eq!(
        end_offsets(&bootstrap, topic, 3, "read_uncommitted"),
        [10; 3]
    );

    producer.commit_transaction(PATIENCE).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while got.len() < 30 {
        assert!(
            Instant::now() < deadline,
            "after commit the polling consumer got only {got:?}"
        );
        match watcher.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => got.push(seen(&m)),
            Some(Err(e)) => panic!("read_committed consumer: {e}"),
            None => {}
        }
    }
    assert_eq!(values(&got), expect_set("c", 0..30));
    // Nothing more arrives: the commit markers are not delivered.
    for _ in 0..QUIET_POLLS / 2 {
        if let Some(Ok(m)) = watcher.poll(Duration::from_millis(100)) {
            panic!("extra record after the transaction: {:?}", seen(&m));
        }
    }
    got.sort();
    assert_eq!(
        got, uncommitted,
        "same records, same offsets at both levels"
    );
    assert_eq!(high_watermarks(&bootstrap, topic, 3), vec![11, 11, 11]);
    assert_eq!(end_offsets(&bootstrap, topic, 3, "read_committed"), [11; 3]);
}

#[test]
fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let env = Env::start();
    let bootstrap = env.bootstrap();
    let topic = "txn-fence";
    env.create_topic(topic, 3);

    let first = txn_producer(&bootstrap, "tx-fence", &[]);
    first.init_transactions(PATIENCE).unwrap();
    first.begin_transaction().unwrap();
    for i in 0..9 {
        send(&first, topic, i % 3, &format!("first-{i}"));
    }
    first.flush(PATIENCE).unwrap();

    // The second instance's InitProducerId bumps the epoch and aborts the open transaction.
    let second = txn_producer(&bootstrap, "tx-fence", &[]);
    second.init_transactions(PATIENCE).unwrap();

    // The zombie keeps writing in its (now aborted) transaction: the broker refuses the
    // stale epoch, so none of these records lands.
    for i in 0..3 {
        send(&first, topic, i % 3, &format!("late-{i}"));
    }
    let _ = first.flush(Duration::from_secs(10));
    assert_fenced(
        "commit by the fenced producer",
        first.commit_transaction(PATIENCE),
    );
    assert!(
        first.begin_transaction().is_err(),
        "a fenced producer cannot begin another transaction"
    );

    second.begin_transaction().unwrap();
    for i in 0..9 {
        send(&second, topic, i % 3, &format!("second-{i}"));
    }
    second.commit_transaction(PATIENCE).unwrap();

    let committed = read_all(&bootstrap, topic, 3, "read_committed");
    assert_eq!(
        values(&committed),
        expect_set("second", 0..9),
        "the fenced producer's transaction ended aborted"
    );
    assert_eq!(committed.len(), 9);
    let uncommitted = read_all(&bootstrap, topic, 3, "read_uncommitted");
    let mut both = expect_set("first", 0..9);
    both.extend(expect_set("second", 0..9));
    assert_eq!(
        values(&uncommitted),
        both,
        "nothing the fenced producer sent after the fencing is in the log"
    );
    assert_eq!(uncommitted.len(), 18);
}

/// A group member subscribed to `topic`, once it has been assigned all `partitions`.
fn joined_member(bootstrap: &str, group: &str, topic: &str, partitions: usize) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while consumer.assignment().unwrap().count() < partitions {
        assert!(
            Instant::now() < deadline,
            "{group} never got its assignment"
        );
        let _ = consumer.poll(Duration::from_millis(100));
    }
    consumer
}

/// The group's committed offsets of `topic` as OffsetFetch answers a fresh, non-member
/// client at `isolation` (read_committed sets require_stable).
fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
    timeout: Duration,
) -> Result<Vec<Offset>, KafkaError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, timeout)?;
    Ok((0..partitions)
        .map(|p| got.find_partition(topic, p).unwrap().offset())
        .collect())
}

fn offsets_list(topic: &str, partitions: i32, offset: i64) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(offset))
            .unwrap();
    }
    tpl
}

#[test]
fn offsets_sent_to_a_transaction_are_committed_only_when_it_commits() {
    let env = Env::start();
    let bootstrap = env.bootstrap();
    let (input, output, group) = ("txn-offsets-in", "txn-offsets-out", "txn-group");
    env.create_topic(input, 3);
    env.create_topic(output, 1);
    let seed = common::producer(&bootstrap, &[]);
    for i in 0..30 {
        let value = format!("in-{i}");
        env.runtime
            .block_on(
                seed.send(
                    rdkafka::producer::FutureRecord::to(input)
                        .partition(i % 3)
                        .payload(&value)
                        .key(&value),
                    PATIENCE,
                ),
            )
            .unwrap();
    }

    let member = joined_member(&bootstrap, group, input, 3);
    member
        .commit(&offsets_list(input, 3, 5), CommitMode::Sync)
        .unwrap();
    let at = |offset: i64| vec![Offset::Offset(offset); 3];
    let stable = |isolation: &str| {
        committed_offsets(&bootstrap, group, input, 3, isolation, PATIENCE).unwrap()
    };
    assert_eq!(stable("read_committed"), at(5));

    let producer = txn_producer(&bootstrap, "tx-offsets", &[]);
    producer.init_transactions(PATIENCE).unwrap();

    // Aborted: the offsets sent with the transaction are dropped.
    producer.begin_transaction().unwrap();
    send(&producer, output, 0, "out-aborted");
    producer
        .send_offsets_to_transaction(
            &offsets_list(input, 3, 8),
            &member.group_metadata().unwrap(),
            PATIENCE,
        )
        .unwrap();
    producer.flush(PATIENCE).unwrap();
    // While the transaction is open the offsets are pending: a plain OffsetFetch still
    // answers the old ones, and one with require_stable gets no answer (the broker says
    // UNSTABLE_OFFSET_COMMIT, librdkafka retries until its timeout).
    assert_eq!(stable("read_uncommitted"), at(5));
    let pending = committed_offsets(
        &bootstrap,
        group,
        input,
        3,
        "read_committed",
        Duration::from_secs(3),
    );
    assert!(
        pending.is_err(),
        "require_stable OffsetFetch answered {pending:?} while offsets are pending"
    );
    producer.abort_transaction(PATIENCE).unwrap();
    assert_eq!(stable("read_committed"), at(5), "abort drops the offsets");
    assert_eq!(stable("read_uncommitted"), at(5));

    // Committed: the offsets become the group's.
    producer.begin_transaction().unwrap();
    send(&producer, output, 0, "out-committed");
    producer
        .send_offsets_to_transaction(
            &offsets_list(input, 3, 8),
            &member.group_metadata().unwrap(),
            PATIENCE,
        )
        .unwrap();
    producer.commit_transaction(PATIENCE).unwrap();
    assert_eq!(
        stable("read_committed"),
        at(8),
        "commit applies the offsets"
    );
    assert_eq!(stable("read_uncommitted"), at(8));
    let as_member = member.committed(PATIENCE).unwrap();
    for p in 0..3 {
        assert_eq!(
            as_member.find_partition(input, p).unwrap().offset(),
            Offset::Offset(8),
            "the member sees the transaction's offset for partition {p}"
        );
    }
    assert_eq!(
        values(&read_all(&bootstrap, output, 1, "read_committed")),
        BTreeSet::from(["out-committed".to_string()])
    );

    // A transaction of offsets only (no records).
    producer.begin_transaction().unwrap();
    producer
        .send_offsets_to_transaction(
            &offsets_list(input, 3, 12),
            &member.group_metadata().unwrap(),
            PATIENCE,
        )
        .unwrap();
    producer.commit_transaction(PATIENCE).unwrap();
    assert_eq!(stable("read_committed"), at(12), "offsets-only commit");
}

#[test]
fn a_transaction_open_past_its_timeout_is_aborted_by_the_broker() {
    let env = Env::start_with_properties(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=200\n",
    );
    let bootstrap = env.bootstrap();
    let topic = "txn-timeout";
    env.create_topic(topic, 3);

    let stale = txn_producer(
        &bootstrap,
        "tx-timeout",
        &[("transaction.timeout.ms", "2000")],
    );
    stale.init_transactions(PATIENCE).unwrap();
    stale.begin_transaction().unwrap();
    for i in 0..9 {
        send(&stale, topic, i % 3, &format!("stale-{i}"));
    }
    stale.flush(PATIENCE).unwrap();

    // Non-transactional records after the open transaction: held back by the LSO until the
    // broker aborts the transaction, then delivered to read_committed.
    let plain = common::producer(&bootstrap, &[("enable.idempotence", "true")]);
    for p in 0..3 {
        let value = format!("after-{p}");
        env.runtime
            .block_on(
                plain.send(
                    rdkafka::producer::FutureRecord::to(topic)
                        .partition(p)
                        .payload(&value)
                        .key(&value),
                    PATIENCE,
                ),
            )
            .unwrap();
    }

    let watcher = assigned_consumer(&bootstrap, topic, 3, "read_committed", false);
    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while got.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the timed-out transaction still holds back read_committed (got {got:?})"
        );
        match watcher.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => got.push(seen(&m)),
            Some(Err(e)) => panic!("read_committed consumer: {e}"),
            None => {}
        }
    }
    got.sort();
    assert_eq!(
        got.iter().map(|s| s.value.clone()).collect::<Vec<_>>(),
        vec!["after-0", "after-1", "after-2"],
        "read_committed skips the aborted records"
    );
    // Each partition: 3 stale records (offsets 0..=2), then the plain record and the
    // broker's abort marker, in the order they arrived (the plain record is normally sent
    // well within the 2 s, so at 3).
    for s in &got {
        assert!(s.offset == 3 || s.offset == 4, "{s:?}");
    }

    // The producer learns its transaction is gone: committing it must fail.
    let commit = stale.commit_transaction(PATIENCE);
    assert!(
        commit.is_err(),
        "a transaction the broker aborted on timeout was committed"
    );
    assert_eq!(
        values(&read_all(&bootstrap, topic, 3, "read_committed")),
        expect_set("after", 0..3)
    );
    let uncommitted = read_all(&bootstrap, topic, 3, "read_uncommitted");
    let mut all = expect_set("stale", 0..9);
    all.extend(expect_set("after", 0..3));
    assert_eq!(values(&uncommitted), all);

    // The transactional id is still usable: a new instance commits.
    let fresh = txn_producer(
        &bootstrap,
        "tx-timeout",
        &[("transaction.timeout.ms", "2000")],
    );
    fresh.init_transactions(PATIENCE).unwrap();
    fresh.begin_transaction().unwrap();
    send(&fresh, topic, 0, "fresh-0");
    fresh.commit_transaction(PATIENCE).unwrap();
    let committed = read_all(&bootstrap, topic, 3, "read_committed");
    assert!(committed.iter().any(|s| s.value == "fresh-0"));
    assert_eq!(committed.len(), 4);
}

#[test]
fn an_open_transaction_survives_a_broker_restart_and_then_commits_or_aborts() {
    let mut env = Env::start();
    let bootstrap = env.bootstrap();
    let topic = "txn-restart";
    env.create_topic(topic, 3);

    let producer = txn_producer(
        &bootstrap,
        "tx-restart",
        &[
            ("reconnect.backoff.ms", "20"),
            ("reconnect.backoff.max.ms", "200"),
        ],
    );
    producer.init_transactions(PATIENCE).unwrap();

    // Open across a restart, then committed.
    producer.begin_transaction().unwrap();
    for i in 0..9 {
        send(&producer, topic, i % 3, &format!("kept-{i}"));
    }
    producer.flush(PATIENCE).unwrap();
    env.restart();
    assert_eq!(
        end_offsets(&bootstrap, topic, 3, "read_committed"),
        [0; 3],
        "after the restart the open transaction still holds back the LSO"
    );
    assert_eq!(read_all(&bootstrap, topic, 3, "read_committed"), vec![]);
    assert_eq!(high_watermarks(&bootstrap, topic, 3), [3; 3]);
    producer.commit_transaction(PATIENCE).unwrap();
    assert_eq!(
        values(&read_all(&bootstrap, topic, 3, "read_committed")),
        expect_set("kept", 0..9)
    );
    assert_eq!(end_offsets(&bootstrap, topic, 3, "read_committed"), [4; 3]);

    // Open across a restart, then aborted.
    producer.begin_transaction().unwrap();
    for i in 0..9 {
        send(&producer, topic, i % 3, &format!("dropped-{i}"));
    }
    producer.flush(PATIENCE).unwrap();
    env.restart();
    producer.abort_transaction(PATIENCE).unwrap();
    let committed = read_all(&bootstrap, topic, 3, "read_committed");
    assert_eq!(values(&committed), expect_set("kept", 0..9));
    assert_eq!(committed.len(), 9);
    let mut all = expect_set("kept", 0..9);
    all.extend(expect_set("dropped", 0..9));
    assert_eq!(
        values(&read_all(&bootstrap, topic, 3, "read_uncommitted")),
        all
    );
    assert_eq!(end_offsets(&bootstrap, topic, 3, "read_committed"), [8; 3]);

    // After one more restart the aborted range is still known (persisted in the
    // .txnindex or rebuilt): read_committed still skips it.
    env.restart();
    assert_eq!(
        values(&read_all(&bootstrap, topic, 3, "read_committed")),
        expect_set("kept", 0..9)
    );
}

#[test]
fn interleaved_transactions_each_decide_only_their_own_records() {
    let env = Env::start();
    let bootstrap = env.bootstrap();
    let topic = "txn-interleave";
    env.create_topic(topic, 1);

    let a = txn_producer(&bootstrap, "tx-a", &[]);
    let b = txn_producer(&bootstrap, "tx-b", &[]);
    let plain = common::producer(&bootstrap, &[("enable.idempotence", "true")]);
    a.init_transactions(PATIENCE).unwrap();
    b.init_transactions(PATIENCE).unwrap();
    a.begin_transaction().unwrap();
    b.begin_transaction().unwrap();
    // The log interleaves them: a-0 b-0 plain-0 a-1 b-1 plain-1 ...
    for i in 0..5 {
        send(&a, topic, 0, &format!("a-{i}"));
        a.flush(PATIENCE).unwrap();
        send(&b, topic, 0, &format!("b-{i}"));
        b.flush(PATIENCE).unwrap();
        let value = format!("plain-{i}");
        env.runtime
            .block_on(
                plain.send(
                    rdkafka::producer::FutureRecord::to(topic)
                        .partition(0)
                        .payload(&value)
                        .key(&value),
                    PATIENCE,
                ),
            )
            .unwrap();
    }
    let order: Vec<String> = read_all(&bootstrap, topic, 1, "read_uncommitted")
        .into_iter()
        .map(|s| s.value)
        .collect();
    let expected_order: Vec<String> = (0..5)
        .flat_map(|i| [format!("a-{i}"), format!("b-{i}"), format!("plain-{i}")])
        .collect();
    assert_eq!(order, expected_order);
    assert_eq!(end_offsets(&bootstrap, topic, 1, "read_committed"), [0]);

    // b commits first: its records are committed but still above the LSO, which the
    // older open transaction (a, from offset 0) holds back.
    b.commit_transaction(PATIENCE).unwrap();
    assert_eq!(end_offsets(&bootstrap, topic, 1, "read_committed"), [0]);
    assert_eq!(read_all(&bootstrap, topic, 1, "read_committed"), vec![]);

    // a aborts: the LSO moves to the end, and read_committed drops exactly a's records
    // (the aborted range a-0..=abort marker spans b's and the plain records).
    a.abort_transaction(PATIENCE).unwrap();
    assert_eq!(end_offsets(&bootstrap, topic, 1, "read_committed"), [17]);
    let committed: Vec<String> = read_all(&bootstrap, topic, 1, "read_committed")
        .into_iter()
        .map(|s| s.value)
        .collect();
    let expected_committed: Vec<String> = (0..5)
        .flat_map(|i| [format!("b-{i}"), format!("plain-{i}")])
        .collect();
    assert_eq!(committed, expected_committed);
}

#[test]
fn offsets_from_a_stale_group_generation_are_refused() {
    let env = Env::start();
    let bootstrap = env.bootstrap();
    let (input, output, group) = ("txn-gen-in", "txn-gen-out", "txn-gen-group");
    env.create_topic(input, 2);
    env.create_topic(output, 1);

    let first = joined_member(&bootstrap, group, input, 2);
    let stale = first.group_metadata().unwrap();
    // A second member joins: the group rebalances into a new generation.
    let second: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    second.subscribe(&[input]).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let _ = first.poll(Duration::from_millis(50));
        let _ = second.poll(Duration::from_millis(50));
        let a = first.assignment().unwrap().count();
        let b = second.assignment().unwrap().count();
        if a == 1 && b == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rebalance to two members ({a} + {b})"
        );
    }

    let producer = txn_producer(&bootstrap, "tx-gen", &[]);
    producer.init_transactions(PATIENCE).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, output, 0, "from-the-old-generation");
    producer.flush(PATIENCE).unwrap();
    let refused =
        producer.send_offsets_to_transaction(&offsets_list(input, 2, 7), &stale, PATIENCE);
    match &refused {
        Err(KafkaError::Transaction(e)) => assert!(
            e.txn_requires_abort() && !e.is_fatal(),
            "a stale generation is an abortable error, got {e} ({:?})",
            e.code()
        ),
        other => panic!("offsets of generation-old metadata accepted: {other:?}"),
    }
    producer.abort_transaction(PATIENCE).unwrap();
    assert_eq!(
        committed_offsets(&bootstrap, group, input, 2, "read_committed", PATIENCE).unwrap(),
        vec![Offset::Invalid; 2],
        "nothing committed"
    );

    // With the current generation the same offsets commit.
    producer.begin_transaction().unwrap();
    send(&producer, output, 0, "from-the-current-generation");
    producer
        .send_offsets_to_transaction(
            &offsets_list(input, 2, 7),
            &first.group_metadata().unwrap(),
            PATIENCE,
        )
        .unwrap();
    producer.commit_transaction(PATIENCE).unwrap();
    assert_eq!(
        committed_offsets(&bootstrap, group, input, 2, "read_committed", PATIENCE).unwrap(),
        vec![Offset::Offset(7); 2]
    );
    assert_eq!(
        values(&read_all(&bootstrap, output, 1, "read_committed")),
        BTreeSet::from(["from-the-current-generation".to_string()])
    );
}

#[test]
fn a_transaction_whose_topic_is_deleted_still_ends() {
    let env = Env::start();
    let bootstrap = env.bootstrap();
    let (doomed, kept) = ("txn-doomed", "txn-kept");
    env.create_topic(doomed, 3);
    env.create_topic(kept, 1);

    let producer = txn_producer(&bootstrap, "tx-doomed", &[]);
    producer.init_transactions(PATIENCE).unwrap();
    producer.begin_transaction().unwrap();
    for p in 0..3 {
        send(&producer, doomed, p, &format!("doomed-{p}"));
    }
    send(&producer, kept, 0, "kept-0");
    producer.flush(PATIENCE).unwrap();

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for r in env
        .runtime
        .block_on(admin.delete_topics(&[doomed], &AdminOptions::new()))
        .unwrap()
    {
        r.unwrap();
    }

    // The coordinator skips the partitions that no longer exist and marks the rest.
    producer.commit_transaction(PATIENCE).unwrap();
    assert_eq!(
        values(&read_all(&bootstrap, kept, 1, "read_committed")),
        BTreeSet::from(["kept-0".to_string()])
    );
    // The transactional id is not stuck: the next transaction commits.
    producer.begin_transaction().unwrap();
    send(&producer, kept, 0, "kept-1");
    producer.commit_transaction(PATIENCE).unwrap();
    assert_eq!(
        values(&read_all(&bootstrap, kept, 1, "read_committed")),
        BTreeSet::from(["kept-0".to_string(), "kept-1".to_string()])
    );
}

/// What a fresh consumer at `isolation` reads from `offset` of partition 0 of `topic` up
/// to the partition's end.
fn read_from(bootstrap: &str, topic: &str, offset: i64, isolation: &str) -> Vec<Seen> {
    read_from_with(bootstrap, topic, offset, isolation, &[])
}

fn read_from_with(
    bootstrap: &str,
    topic: &str,
    offset: i64,
    isolation: &str,
    extra: &[(&str, &str)],
) -> Vec<Seen> {
    let mut settings = vec![
        ("isolation.level", isolation),
        ("enable.partition.eof", "true"),
    ];
    settings.extend_from_slice(extra);
    let consumer = common::consumer(bootstrap, &settings);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "never reached the end: {out:?}");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(seen(&m)),
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("{isolation} reader of {topic}: {e}"),
            None => {}
        }
    }
}

#[test]
fn aborted_transactions_spanning_many_segments_stay_hidden_across_a_restart() {
    // Segments of 1 KiB: each transaction below spans several.
    let mut env = Env::start_with_properties("log.segment.bytes=1024\n");
    let bootstrap = env.bootstrap();
    let topic = "txn-segments";
    env.create_topic(topic, 1);

    let aborted = txn_producer(&bootstrap, "tx-seg-abort", &[]);
    let committed = txn_producer(&bootstrap, "tx-seg-commit", &[]);
    aborted.init_transactions(PATIENCE).unwrap();
    committed.init_transactions(PATIENCE).unwrap();
    aborted.begin_transaction().unwrap();
    committed.begin_transaction().unwrap();
    for round in 0..6 {
        for i in 0..10 {
            send(
                &aborted,
                topic,
                0,
                &format!("aborted-{:02}-{}", round * 10 + i, "x".repeat(40)),
            );
        }
        aborted.flush(PATIENCE).unwrap();
        for i in 0..10 {
            send(&committed, topic, 0, &format!("kept-{:02}", round * 10 + i));
        }
        committed.flush(PATIENCE).unwrap();
    }
    aborted.abort_transaction(PATIENCE).unwrap();
    committed.commit_transaction(PATIENCE).unwrap();

    let segments = std::fs::read_dir(env.broker.as_ref().unwrap().data_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(topic))
        .flat_map(|dir| std::fs::read_dir(dir.path()).unwrap().flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".log"))
        .count();
    assert!(segments >= 5, "only {segments} segments");

    let kept: Vec<String> = (0..60).map(|i| format!("kept-{i:02}")).collect();
    for round in 0..2 {
        let all = read_from(&bootstrap, topic, 0, "read_uncommitted");
        assert_eq!(all.len(), 120, "round {round}");
        let from_start: Vec<String> = read_from(&bootstrap, topic, 0, "read_committed")
            .into_iter()
            .map(|s| s.value)
            .collect();
        assert_eq!(from_start, kept, "round {round}: read_committed from 0");
        // From inside the aborted transaction, several segments after it began.
        for start in [35, 77, 110] {
            let want: Vec<String> = all
                .iter()
                .filter(|s| s.offset >= start && s.value.starts_with("kept-"))
                .map(|s| s.value.clone())
                .collect();
            let got: Vec<String> = read_from(&bootstrap, topic, start, "read_committed")
                .into_iter()
                .map(|s| s.value)
                .collect();
            assert_eq!(got, want, "round {round}: read_committed from {start}");
            // Fetches of about one batch each: every response covers a little of the
            // aborted range, and must still list the transaction that began far before.
            let small: Vec<String> = read_from_with(
                &bootstrap,
                topic,
                start,
                "read_committed",
                &[
                    ("message.max.bytes", "1000"),
                    ("fetch.max.bytes", "1024"),
                    ("max.partition.fetch.bytes", "256"),
                ],
            )
            .into_iter()
            .map(|s| s.value)
            .collect();
            assert_eq!(small, want, "round {round}: small fetches from {start}");
        }
        if round == 0 {
            env.restart();
        }
    }
}

#[test]
fn delete_records_into_an_aborted_range_keeps_its_records_hidden() {
    // Segments of 1 KiB, so DeleteRecords drops whole segments holding the start of the
    // aborted transaction; the rest of it must stay hidden from read_committed.
    let mut env = Env::start_with_properties("log.segment.bytes=1024\n");
    let bootstrap = env.bootstrap();
    let topic = "txn-delete-records";
    env.create_topic(topic, 1);

    let aborted = txn_producer(&bootstrap, "tx-del-abort", &[]);
    let committed = txn_producer(&bootstrap, "tx-del-commit", &[]);
    aborted.init_transactions(PATIENCE).unwrap();
    committed.init_transactions(PATIENCE).unwrap();
    aborted.begin_transaction().unwrap();
    committed.begin_transaction().unwrap();
    // Round r: aborted records at offsets 20r..20r+9, committed ones at 20r+10..20r+19.
    for round in 0..6 {
        for (producer, prefix) in [(&aborted, "aborted"), (&committed, "kept")] {
            for i in 0..10 {
                let n = round * 10 + i;
                send(
                    producer,
                    topic,
                    0,
                    &format!("{prefix}-{n:02}-{}", "x".repeat(40)),
                );
            }
            producer.flush(PATIENCE).unwrap();
        }
    }
    aborted.abort_transaction(PATIENCE).unwrap();
    committed.commit_transaction(PATIENCE).unwrap();

    let segment_files = |env: &Env| {
        let dir = env.broker.as_ref().unwrap().data_dir().to_path_buf();
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(topic))
            .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
            .filter(|f| f.file_name().to_string_lossy().ends_with(".log"))
            .count()
    };
    let before = segment_files(&env);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let mut upto = TopicPartitionList::new();
    upto.add_partition_offset(topic, 0, Offset::Offset(45))
        .unwrap();
    let result = env
        .runtime
        .block_on(admin.delete_records(&upto, &AdminOptions::new()))
        .unwrap();
    assert_eq!(
        result.find_partition(topic, 0).unwrap().offset(),
        Offset::Offset(45)
    );
    let after = segment_files(&env);
    assert!(
        after < before,
        "DeleteRecords dropped no segment ({before} -> {after})"
    );

    // Offset 45 is inside round 2's aborted records; the committed ones from offset 50 on
    // are kept-20 and later.
    let want: Vec<String> = (20..60)
        .map(|n| format!("kept-{n:02}-{}", "x".repeat(40)))
        .collect();
    for round in 0..2 {
        let got: Vec<String> = read_from(&bootstrap, topic, 45, "read_committed")
            .into_iter()
            .map(|s| s.value)
            .collect();
        assert_eq!(
            got, want,
            "round {round}: read_committed from the new log start"
        );
        let uncommitted = read_from(&bootstrap, topic, 45, "read_uncommitted");
        assert_eq!(uncommitted.first().map(|s| s.offset), Some(45));
        if round == 0 {
            env.restart();
        }
    }
}

#[test]
fn concurrent_producers_committing_and_aborting_at_random() {
    let env = Env::start();
    let bootstrap = env.bootstrap();
    let topic = "txn-concurrent";
    env.create_topic(topic, 3);

    const PRODUCERS: usize = 6;
    const TRANSACTIONS: usize = 12;
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let bootstrap = bootstrap.clone();
            std::thread::spawn(move || {
                let producer = txn_producer(&bootstrap, &format!("tx-concurrent-{id}"), &[]);
                producer.init_transactions(PATIENCE).unwrap();
                let mut committed = BTreeSet::new();
                let mut all = BTreeSet::new();
                // A fixed pattern per producer, different between producers.
                let mut state = 0x9E37_79B9u64.wrapping_mul(id as u64 + 1);
                for t in 0..TRANSACTIONS {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let commit = state % 3 != 0;
                    producer.begin_transaction().unwrap();
                    let mut values = Vec::new();
                    for i in 0..(1 + state % 7) as i32 {
                        let value = format!("p{id}-t{t}-r{i}");
                        send(&producer, topic, (i + id as i32) % 3, &value);
                        values.push(value);
                    }
                    producer.flush(PATIENCE).unwrap();
                    if commit {
                        producer.commit_transaction(PATIENCE).unwrap();
                        committed.extend(values.iter().cloned());
                    } else {
                        producer.abort_transaction(PATIENCE).unwrap();
                    }
                    all.extend(values);
                }
                (committed, all)
            })
        })
        .collect();
    let mut committed = BTreeSet::new();
    let mut all = BTreeSet::new();
    for t in threads {
        let (c, a) = t.join().unwrap();
        committed.extend(c);
        all.extend(a);
    }
    assert!(committed.len() < all.len() && !committed.is_empty());

    let read_committed = read_all(&bootstrap, topic, 3, "read_committed");
    assert_eq!(values(&read_committed), committed);
    assert_eq!(read_committed.len(), committed.len(), "no record twice");
    let read_uncommitted = read_all(&bootstrap, topic, 3, "read_uncommitted");
    assert_eq!(values(&read_uncommitted), all);
    assert_eq!(read_uncommitted.len(), all.len());
    // Nothing open any more: the LSO is the high watermark.
    assert_eq!(
        end_offsets(&bootstrap, topic, 3, "read_committed"),
        high_watermarks(&bootstrap, topic, 3)
    );
}

#[test]
fn a_transaction_timeout_above_the_broker_maximum_is_refused() {
    let env = Env::start_with_properties("transaction.max.timeout.ms=5000\n");
    let bootstrap = env.bootstrap();
    let greedy = txn_producer(
        &bootstrap,
        "tx-greedy",
        &[("transaction.timeout.ms", "10000")],
    );
    match greedy.init_transactions(PATIENCE) {
        Err(KafkaError::Transaction(e)) => assert!(
            e.is_fatal(),
            "INVALID_TRANSACTION_TIMEOUT is fatal for the producer, got {e} ({:?})",
            e.code()
        ),
        other => panic!("a 10 s timeout was accepted under a 5 s maximum: {other:?}"),
    }
    let modest = txn_producer(
        &bootstrap,
        "tx-modest",
        &[("transaction.timeout.ms", "5000")],
    );
    modest.init_transactions(PATIENCE).unwrap();
}

/// Holds every write into one file inside the write (as a slow or stalled disk would)
/// until released or dropped (a failing test must not leave the broker stuck).
struct HeldWrites {
    /// (writes started, released)
    state: Arc<(Mutex<(usize, bool)>, Condvar)>,
}

impl HeldWrites {
    fn install(file: PathBuf) -> HeldWrites {
        let state = Arc::new((Mutex::new((0usize, false)), Condvar::new()));
        let seen = Arc::clone(&state);
        set_injector(Some(Arc::new(move |op, path: &Path| {
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
        let (s, timeout) = cv
            .wait_timeout_while(m.lock().unwrap(), PATIENCE, |s| s.0 == 0)
            .unwrap();
        assert!(!timeout.timed_out(), "the held write never started");
        drop(s);
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
        set_injector(None);
    }
}

/// Issue 15: Produce used to verify transactional batches under a read lock of the whole
/// transaction table, held through every append of the request, so an append stuck in its
/// write kept EndTxn of any other transaction (which takes the write lock) waiting — and a
/// waiting writer blocks new readers, so every transactional produce after it too. Now the
/// verification is per partition and nothing is held across an append: while one
/// producer's append is held inside its write (on the storage I/O pool, not a tokio
/// worker), another transactional producer commits.
#[test]
fn a_held_append_in_one_partition_does_not_hold_up_another_transactions_commit() {
    let env = Env::start();
    let bootstrap = env.bootstrap();
    env.create_topic("txn-held", 1);
    env.create_topic("txn-free", 1);

    let held_producer = txn_producer(&bootstrap, "tx-held", &[]);
    held_producer.init_transactions(PATIENCE).unwrap();
    let free_producer = txn_producer(&bootstrap, "tx-free", &[]);
    free_producer.init_transactions(PATIENCE).unwrap();
    free_producer.begin_transaction().unwrap();
    send(&free_producer, "txn-free", 0, "free-0");
    free_producer.flush(PATIENCE).unwrap();

    let held = HeldWrites::install(
        env.data_dir()
            .join("txn-held-0")
            .join("00000000000000000000.log"),
    );
    held_producer.begin_transaction().unwrap();
    send(&held_producer, "txn-held", 0, "held-0");
    held.wait_started();

    // The held append is inside its write now (it stays there until released).
    free_producer
        .commit_transaction(Duration::from_secs(30))
        .expect("an unrelated transaction commits while another partition's append is held");
    assert_eq!(
        read_all(&bootstrap, "txn-free", 1, "read_committed")
            .iter()
            .map(|s| s.value.as_str())
            .collect::<Vec<_>>(),
        vec!["free-0"]
    );

    held.release();
    held_producer.flush(PATIENCE).unwrap();
    held_producer.commit_transaction(PATIENCE).unwrap();
    drop(held);
    assert_eq!(
        values(&read_all(&bootstrap, "txn-held", 1, "read_committed")),
        BTreeSet::from(["held-0".to_string()])
    );
}

/// Issue 15 (per-partition verification): through a real socket, a transactional batch
/// for a partition the transaction did not add, and one sent after the transaction was
/// aborted, are refused with INVALID_TXN_STATE (as when Produce verified under the
/// coordinator's table lock), append nothing and leave no transaction open.
#[test]
fn transactional_batches_outside_an_ongoing_transaction_are_refused() {
    use bytes::Bytes;
    use common::raw::RawClient;
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, EndTxnRequest,
        EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest,
        ProduceResponse, ProducerId, TopicName, TransactionalId,
    };
    use kafka_protocol::protocol::StrBytes;
    const INVALID_TXN_STATE: i16 = 48;

    let env = Env::start();
    env.create_topic("txn-verify", 2);
    let broker = env.broker.as_ref().unwrap();
    let logs: Vec<_> = (0..2)
        .map(|p| {
            broker
                .running()
                .broker()
                .topic("txn-verify")
                .unwrap()
                .partition(p)
                .unwrap()
                .clone()
        })
        .collect();
    let tid = || TransactionalId(StrBytes::from_static_str("tx-verify"));
    let produce = |pid: i64, epoch: i16, partition: i32, seq: i32| {
        let records = strata_storage::testing::txn_batch(2, pid, epoch, seq, 1_700_000_000_000);
        ProduceRequest::default()
            .with_transactional_id(Some(tid()))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("txn-verify")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::from(records)))])])
    };
    let code = |r: &ProduceResponse| r.responses[0].partition_responses[0].error_code;

    env.runtime.block_on(async {
        let mut client = RawClient::connect(broker.addr()).await;
        let init: InitProducerIdResponse = client
            .call(
                ApiKey::InitProducerId,
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(tid()))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
            .await;
        assert_eq!(init.error_code, 0);
        let (pid, epoch) = (*init.producer_id, init.producer_epoch);
        let add: AddPartitionsToTxnResponse = client
            .call(
                ApiKey::AddPartitionsToTxn,
                3,
                &AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(tid())
                    .with_v3_and_below_producer_id(ProducerId(pid))
                    .with_v3_and_below_producer_epoch(epoch)
                    .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("txn-verify")))
                        .with_partitions(vec![0])]),
            )
            .await;
        assert_eq!(
            add.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
            0
        );

        let r: ProduceResponse = client
            .call(ApiKey::Produce, 9, &produce(pid, epoch, 1, 0))
            .await;
        assert_eq!(
            code(&r),
            INVALID_TXN_STATE,
            "a partition the transaction did not add"
        );
        let r: ProduceResponse = client
            .call(ApiKey::Produce, 9, &produce(pid, epoch, 0, 0))
            .await;
        assert_eq!(code(&r), 0, "the added partition");

        let end: EndTxnResponse = client
            .call(
                ApiKey::EndTxn,
                3,
                &EndTxnRequest::default()
                    .with_transactional_id(tid())
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_committed(false),
            )
            .await;
        assert_eq!(end.error_code, 0);
        let r: ProduceResponse = client
            .call(ApiKey::Produce, 9, &produce(pid, epoch, 0, 1))
            .await;
        assert_eq!(code(&r), INVALID_TXN_STATE, "a late batch after the abort");
    });
    // Partition 0 holds the batch and the abort marker, partition 1 nothing; neither has
    // a transaction open.
    assert_eq!(
        logs.iter().map(|l| l.log_end_offset()).collect::<Vec<_>>(),
        vec![3, 0]
    );
    for log in &logs {
        assert!(log.open_transactions().is_empty());
        assert_eq!(log.last_stable_offset(), log.log_end_offset());
    }
}
