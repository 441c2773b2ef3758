//! The idempotent producer: InitProducerId, duplicate retries answered with their original
//! offsets (and not appended), sequence gaps and stale epochs refused, across a graceful
//! restart and a SIGKILL; and librdkafka's idempotent producer end to end.

mod common;

use std::collections::HashSet;

use bytes::Bytes;
use common::process::BrokerProcess;
use common::raw::RawClient;
use common::{consume, producer, TestBroker, PATIENCE};
use futures::future::join_all;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, InitProducerIdRequest, InitProducerIdResponse,
    ProduceRequest, ProduceResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use strata_storage::testing::producer_batch;

const NONE: i16 = 0;
const INVALID_REQUEST: i16 = 42;
const INVALID_TXN_STATE: i16 = 48;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const UNKNOWN_PRODUCER_ID: i16 = 59;

/// InitProducerId v`version`; `current` = the id and epoch the producer already has.
async fn init_producer_id(
    client: &mut RawClient,
    version: i16,
    current: Option<(i64, i16)>,
) -> InitProducerIdResponse {
    let (pid, epoch) = current.unwrap_or((-1, -1));
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch);
    client.call(ApiKey::InitProducerId, version, &request).await
}

/// Produce v9, acks=all, one batch to partition 0 of `topic`: (error code, base offset).
async fn produce(client: &mut RawClient, topic: &str, records: Vec<u8>) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records)))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request).await;
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_producer_id_every_version_epoch_bump_and_transactional_ids() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let versions: ApiVersionsResponse = client
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    let advertised = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::InitProducerId as i16)
        .expect("InitProducerId advertised");
    assert_eq!((advertised.min_version, advertised.max_version), (0, 5));

    let mut ids = HashSet::new();
    for version in 0..=5 {
        let r = init_producer_id(&mut client, version, None).await;
        assert_eq!(r.error_code, NONE, "v{version}");
        assert_eq!(r.producer_epoch, 0);
        assert!(*r.producer_id >= 0);
        assert!(ids.insert(*r.producer_id), "v{version} reused an id");
    }

    // KIP-360: the current id and epoch bump the epoch; a repeat gets the same answer.
    let first = init_producer_id(&mut client, 4, None).await;
    let pid = *first.producer_id;
    let bumped = init_producer_id(&mut client, 4, Some((pid, 0))).await;
    assert_eq!(
        (
            bumped.error_code,
            *bumped.producer_id,
            bumped.producer_epoch
        ),
        (NONE, pid, 1)
    );
    let repeated = init_producer_id(&mut client, 3, Some((pid, 0))).await;
    assert_eq!((*repeated.producer_id, repeated.producer_epoch), (pid, 1));
    let wrong = init_producer_id(&mut client, 4, Some((pid, 9))).await;
    assert_eq!(wrong.error_code, INVALID_PRODUCER_EPOCH);
    assert_eq!(*wrong.producer_id, -1);

    // A transactional id is served by the transaction coordinator (tests/transactions.rs);
    // only one of producer id / epoch being -1 is malformed, as in Kafka.
    let txn = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx-1"))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let given: InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &txn).await;
    assert_eq!((given.error_code, given.producer_epoch), (NONE, 0));
    assert!(*given.producer_id > pid, "a fresh producer id");
    let malformed = txn.with_producer_epoch(3);
    let refused: InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &malformed).await;
    assert_eq!(refused.error_code, INVALID_REQUEST);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_retry_is_answered_with_the_original_offset_and_bad_sequences_are_refused() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let init = init_producer_id(&mut client, 4, None).await;
    let (pid, epoch) = (*init.producer_id, init.producer_epoch);

    // Another producer's record first, so the idempotent batch does not start at 0.
    let other = init_producer_id(&mut client, 4, None).await;
    client.auto_create("idem").await;
    let ts = 1_700_000_000_000;
    assert_eq!(
        produce(
            &mut client,
            "idem",
            producer_batch(1, *other.producer_id, 0, 0, ts)
        )
        .await,
        (NONE, 0)
    );

    let batch = producer_batch(3, pid, epoch, 0, ts);
    assert_eq!(produce(&mut client, "idem", batch.clone()).await, (NONE, 1));
    assert_eq!(produce(&mut client, "idem", batch.clone()).await, (NONE, 1));
    let log = broker
        .running()
        .broker()
        .topic("idem")
        .unwrap()
        .partition(0)
        .unwrap()
        .clone();
    assert_eq!(log.log_end_offset(), 4, "the retry was not appended");

    // A gap (sequence 5 after 0..=2).
    let gap = producer_batch(1, pid, epoch, 5, ts);
    assert_eq!(
        produce(&mut client, "idem", gap).await.0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(
        produce(&mut client, "idem", producer_batch(2, pid, epoch, 3, ts)).await,
        (NONE, 4)
    );

    // Epoch bump: the new epoch starts at 0 and fences the old one.
    let bumped = init_producer_id(&mut client, 4, Some((pid, epoch))).await;
    assert_eq!(bumped.producer_epoch, epoch + 1);
    assert_eq!(
        produce(
            &mut client,
            "idem",
            producer_batch(1, pid, epoch + 1, 0, ts)
        )
        .await,
        (NONE, 6)
    );
    let stale = producer_batch(1, pid, epoch, 5, ts);
    assert_eq!(
        produce(&mut client, "idem", stale).await.0,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(log.log_end_offset(), 7);
    broker.shutdown().await;
}

/// Issue 14: a client that writes first under the producer id the next InitProducerId
/// will hand out (epoch 0, sequence 0) is refused, so the real producer's first batch is
/// appended rather than answered as a duplicate of the impostor's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_issued_producer_id_is_refused_and_cannot_shadow_the_real_producer() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let mut client = RawClient::connect(broker.addr()).await;
    let ts = 1_700_000_000_000;
    client.auto_create("claimed").await;
    // A fresh data dir hands out 0 first.
    let impostor = producer_batch(1, 0, 0, 0, ts);
    assert_eq!(
        produce(&mut client, "claimed", impostor).await,
        (UNKNOWN_PRODUCER_ID, -1)
    );
    let log = broker
        .running()
        .broker()
        .topic("claimed")
        .unwrap()
        .partition(0)
        .unwrap()
        .clone();
    assert_eq!(log.log_end_offset(), 0, "nothing appended");
    assert!(log.producer_state(0).is_none());

    // librdkafka's idempotent producer now gets id 0; its first record is stored.
    let producer = producer(&bootstrap, &[("enable.idempotence", "true")]);
    producer
        .send(
            FutureRecord::<(), _>::to("claimed")
                .partition(0)
                .payload("real"),
            PATIENCE,
        )
        .await
        .expect("delivered");
    drop(producer);
    assert!(
        log.producer_state(0).is_some(),
        "the real producer has id 0"
    );
    let messages = tokio::task::spawn_blocking(move || consume(&bootstrap, "claimed", 1, 1))
        .await
        .unwrap();
    assert_eq!(messages[0].payload(), Some(&b"real"[..]));
    assert_eq!(log.log_end_offset(), 1);

    // An id far above anything issued, and the next one, are refused too; a
    // transactional batch from a never-issued id has no transaction (INVALID_TXN_STATE).
    for pid in [1, i64::MAX] {
        assert_eq!(
            produce(&mut client, "claimed", producer_batch(1, pid, 0, 0, ts))
                .await
                .0,
            UNKNOWN_PRODUCER_ID,
            "producer id {pid}"
        );
    }
    let txn = strata_storage::testing::txn_batch(1, 1, 0, 0, ts);
    assert_eq!(
        produce(&mut client, "claimed", txn).await.0,
        INVALID_TXN_STATE
    );
    assert_eq!(log.log_end_offset(), 1);
    broker.shutdown().await;
}

/// Ids issued before a restart keep producing (they are below the block the new run
/// starts from); the ids the new run has not handed out yet are refused until it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_issued_before_a_restart_keep_producing_and_new_ones_only_once_issued() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let ts = 1_700_000_000_000;
    client.auto_create("restarted").await;
    let pid = *init_producer_id(&mut client, 4, None).await.producer_id;
    assert_eq!(
        produce(&mut client, "restarted", producer_batch(2, pid, 0, 0, ts)).await,
        (NONE, 0)
    );
    drop(client);

    let broker = broker.restart(|_| {}).await;
    let mut client = RawClient::connect(broker.addr()).await;
    assert_eq!(
        produce(&mut client, "restarted", producer_batch(1, pid, 0, 2, ts)).await,
        (NONE, 2),
        "an id from before the restart continues its sequence"
    );
    // KIP-360 after the restart: the bump request gets a fresh id, which works at once.
    let bumped = init_producer_id(&mut client, 4, Some((pid, 0))).await;
    let next = *bumped.producer_id;
    assert!(next > pid);
    let unissued = producer_batch(1, next + 1, 0, 0, ts);
    assert_eq!(
        produce(&mut client, "restarted", unissued.clone()).await.0,
        UNKNOWN_PRODUCER_ID
    );
    assert_eq!(
        produce(&mut client, "restarted", producer_batch(1, next, 0, 0, ts)).await,
        (NONE, 3)
    );
    assert_eq!(
        *init_producer_id(&mut client, 4, None).await.producer_id,
        next + 1
    );
    assert_eq!(produce(&mut client, "restarted", unissued).await, (NONE, 4));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_graceful_restart_is_still_a_duplicate() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let init = init_producer_id(&mut client, 4, None).await;
    let pid = *init.producer_id;
    let batch = producer_batch(5, pid, 0, 0, 1_700_000_000_000);
    client.auto_create("graceful").await;
    assert_eq!(
        produce(&mut client, "graceful", batch.clone()).await,
        (NONE, 0)
    );
    drop(client);

    let broker = broker.restart(|_| {}).await;
    let mut client = RawClient::connect(broker.addr()).await;
    assert_eq!(produce(&mut client, "graceful", batch).await, (NONE, 0));
    let next = producer_batch(1, pid, 0, 5, 1_700_000_000_000);
    assert_eq!(produce(&mut client, "graceful", next).await, (NONE, 5));
    let fresh = init_producer_id(&mut client, 4, None).await;
    assert!(
        *fresh.producer_id > pid,
        "ids are never reused after a restart"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_sigkill_is_still_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let process = BrokerProcess::spawn(dir.path());
    let mut client = RawClient::connect(process.addr()).await;
    let init = init_producer_id(&mut client, 4, None).await;
    let pid = *init.producer_id;
    let ts = 1_700_000_000_000;
    client.auto_create("killed").await;
    // Several batches, so the retried one is not the producer's only batch.
    let mut last = Vec::new();
    for i in 0..4 {
        last = producer_batch(10, pid, 0, i * 10, ts);
        assert_eq!(
            produce(&mut client, "killed", last.clone()).await,
            (NONE, i64::from(i) * 10)
        );
    }
    drop(client);
    process.sigkill(); // acks=all: the batch is on disk; its response could have been lost

    let process = BrokerProcess::spawn(dir.path());
    let mut client = RawClient::connect(process.addr()).await;
    assert_eq!(
        produce(&mut client, "killed", last).await,
        (NONE, 30),
        "retry is a duplicate"
    );
    let gap = producer_batch(1, pid, 0, 41, ts);
    assert_eq!(
        produce(&mut client, "killed", gap).await.0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    let next = producer_batch(1, pid, 0, 40, ts);
    assert_eq!(
        produce(&mut client, "killed", next).await,
        (NONE, 40),
        "log holds 40 records"
    );
    let fresh = init_producer_id(&mut client, 4, None).await;
    assert!(
        *fresh.producer_id > pid,
        "ids are never reused after a crash"
    );
    drop(process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rdkafka_idempotent_producer_delivers_exactly_once_in_order() {
    const PARTITIONS: i32 = 4;
    const RECORDS: usize = 200_000;
    let broker = TestBroker::start_with(|c| c.num_partitions = PARTITIONS).await;
    let bootstrap = broker.bootstrap();
    let producer = producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("linger.ms", "5"),
            ("queue.buffering.max.messages", "1000000"),
        ],
    );
    let mut acked = 0usize;
    for window in (0..RECORDS).collect::<Vec<_>>().chunks(20_000) {
        let sends = window.iter().map(|&i| {
            let value = i.to_string();
            let producer = &producer;
            async move {
                let partition = (i % PARTITIONS as usize) as i32;
                producer
                    .send(
                        FutureRecord::<(), _>::to("exactly-once")
                            .partition(partition)
                            .payload(&value),
                        PATIENCE,
                    )
                    .await
                    .map_err(|(e, _)| e)
            }
        });
        for result in join_all(sends).await {
            result.expect("idempotent send");
            acked += 1;
        }
    }
    assert_eq!(acked, RECORDS);
    drop(producer);

    let topic = broker.running().broker().topic("exactly-once").unwrap();
    let ends: Vec<i64> = topic
        .partitions
        .iter()
        .map(|l| l.log_end_offset())
        .collect();
    assert_eq!(
        ends.iter().sum::<i64>(),
        RECORDS as i64,
        "no duplicates: {ends:?}"
    );
    assert!(
        topic.partitions.iter().all(|l| l.producer_count() == 1),
        "batches carried a producer id"
    );

    let messages = tokio::task::spawn_blocking(move || {
        consume(&bootstrap, "exactly-once", PARTITIONS, RECORDS)
    })
    .await
    .unwrap();
    assert_eq!(messages.len(), RECORDS);
    let mut seen = vec![false; RECORDS];
    let mut last_per_partition = vec![-1i64; PARTITIONS as usize];
    let mut sorted = messages;
    sorted.sort_by_key(|m| (m.partition(), m.offset()));
    for m in &sorted {
        let value: usize = std::str::from_utf8(m.payload().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        let p = m.partition();
        assert_eq!(value % PARTITIONS as usize, p as usize);
        assert!(
            !std::mem::replace(&mut seen[value], true),
            "duplicate {value}"
        );
        let last = &mut last_per_partition[p as usize];
        assert!(value as i64 > *last, "partition {p}: {value} after {last}");
        *last = value as i64;
    }
    assert!(seen.iter().all(|s| *s));
    broker.shutdown().await;
}

/// A TCP proxy in front of the broker that cuts each of its first `max_cuts` connections
/// after forwarding `cut_after` bytes from the client: requests already forwarded are
/// appended by the broker but their responses are lost, so the client retries them.
async fn flaky_proxy(
    listener: tokio::net::TcpListener,
    upstream: std::net::SocketAddr,
    cut_after: usize,
    max_cuts: usize,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut connections = 0usize;
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        connections += 1;
        let budget = (connections <= max_cuts).then_some(cut_after);
        let cuts = cuts.clone();
        tokio::spawn(async move {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                return;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let upward = async {
                let mut forwarded = 0usize;
                let mut buf = vec![0u8; 16 << 10];
                loop {
                    let n = match client_read.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let n = match budget {
                        Some(b) if forwarded + n >= b => {
                            let rest = b - forwarded;
                            let _ = server_write.write_all(&buf[..rest]).await;
                            cuts.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        _ => n,
                    };
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    forwarded += n;
                }
            };
            let downward = tokio::io::copy(&mut server_read, &mut client_write);
            // Whichever side ends first ends the connection (both sockets are dropped).
            tokio::select! {
                _ = upward => {}
                _ = downward => {}
            }
        });
    }
}

/// librdkafka retries requests whose responses the proxy dropped; the broker must answer
/// the retries of batches it already appended without appending them again. (With the
/// duplicate check disabled this failed in 3 of 4 runs: whether a cut falls while an
/// appended request awaits its response is up to timing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rdkafka_retries_after_lost_responses_leave_no_duplicates() {
    const PARTITIONS: i32 = 3;
    const RECORDS: usize = 60_000;
    const MAX_CUTS: usize = 6;
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let broker = TestBroker::start_with(|c| {
        c.num_partitions = PARTITIONS;
        c.advertised_port = Some(proxy_addr.port());
    })
    .await;
    let cuts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let proxy_task = tokio::spawn(flaky_proxy(
        proxy,
        broker.addr(),
        150_000,
        MAX_CUTS,
        cuts.clone(),
    ));
    let bootstrap = proxy_addr.to_string();
    let producer = producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("linger.ms", "2"),
            ("batch.num.messages", "500"),
            ("queue.buffering.max.messages", "1000000"),
        ],
    );
    let sends = (0..RECORDS).map(|i| {
        let value = format!("{i:08}");
        let producer = &producer;
        async move {
            producer
                .send(
                    FutureRecord::<(), _>::to("lossy")
                        .partition((i % PARTITIONS as usize) as i32)
                        .payload(&value),
                    PATIENCE,
                )
                .await
                .map_err(|(e, _)| e)
        }
    });
    for result in join_all(sends).await {
        result.expect("idempotent send survives lost responses");
    }
    drop(producer);
    let cut = cuts.load(std::sync::atomic::Ordering::SeqCst);
    assert!(cut >= 3, "the proxy cut {cut} connections mid-stream");

    let topic = broker.running().broker().topic("lossy").unwrap();
    let total: i64 = topic.partitions.iter().map(|l| l.log_end_offset()).sum();
    assert_eq!(total, RECORDS as i64, "every retried batch was recognised");
    let messages = tokio::task::spawn_blocking({
        let bootstrap = broker.bootstrap();
        move || consume(&bootstrap, "lossy", PARTITIONS, RECORDS)
    })
    .await
    .unwrap();
    let mut sorted = messages;
    sorted.sort_by_key(|m| (m.partition(), m.offset()));
    let mut seen = HashSet::new();
    let mut last = vec![-1i64; PARTITIONS as usize];
    for m in &sorted {
        let value: i64 = std::str::from_utf8(m.payload().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert!(seen.insert(value), "duplicate {value}");
        let p = m.partition() as usize;
        assert!(value > last[p], "partition {p}: {value} after {}", last[p]);
        last[p] = value;
    }
    assert_eq!(seen.len(), RECORDS);
    proxy_task.abort();
    broker.shutdown().await;
}

/// `--producer-id-expiration-ms` reaches the partitions through the retention loop: an
/// idle producer is forgotten, then its old batch is accepted again (as in Kafka).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_producers_expire_after_producer_id_expiration_ms() {
    let broker = TestBroker::start_with(|c| {
        c.producer_id_expiration_ms = 60_000;
        c.log_retention_check_interval_ms = 50;
    })
    .await;
    let mut client = RawClient::connect(broker.addr()).await;
    let init = init_producer_id(&mut client, 4, None).await;
    let pid = *init.producer_id;
    let other = *init_producer_id(&mut client, 4, None).await.producer_id;
    assert_eq!(other, pid + 1);
    let now = strata::broker::now_ms();
    let fresh = producer_batch(1, pid + 1, 0, 0, now);
    let old = producer_batch(2, pid, 0, 0, now - 3_600_000);
    client.auto_create("expiry").await;
    assert_eq!(produce(&mut client, "expiry", old.clone()).await, (NONE, 0));
    assert_eq!(produce(&mut client, "expiry", fresh).await, (NONE, 2));
    let log = broker
        .running()
        .broker()
        .topic("expiry")
        .unwrap()
        .partition(0)
        .unwrap()
        .clone();
    let deadline = std::time::Instant::now() + PATIENCE;
    while log.producer_state(pid).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "producer {pid} never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        log.producer_state(pid + 1).is_some(),
        "an active producer is kept"
    );
    assert_eq!(
        produce(&mut client, "expiry", old).await,
        (NONE, 3),
        "unknown again"
    );
    broker.shutdown().await;
}

/// InitProducerId without a transactional id: ids come from a block recorded in the
/// metadata log ahead of use (one record per 1000 ids, appended by the admin thread, not
/// by the request), and idle producers are forgotten by the retention loop on its own,
/// with no InitProducerId call to trigger a scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_come_from_blocks_recorded_ahead_and_idle_ones_expire_on_their_own() {
    const BLOCK: i64 = 1000;
    let broker = TestBroker::start_with(|c| {
        c.producer_id_expiration_ms = 300;
        c.log_retention_check_interval_ms = 50;
    })
    .await;
    let state = broker.running().broker().clone();
    let mut client = RawClient::connect(broker.addr()).await;
    let first = *init_producer_id(&mut client, 4, None).await.producer_id;
    // The first id starts the block recorded at start-up; taking it asked for the next.
    let deadline = std::time::Instant::now() + PATIENCE;
    while state.image().next_producer_id < first + 2 * BLOCK {
        assert!(std::time::Instant::now() < deadline, "block never recorded");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let offset_before = state.image().next_offset;
    let mut last = first;
    for _ in 1..(2 * BLOCK + 10) {
        let init = init_producer_id(&mut client, 4, None).await;
        assert_eq!(init.error_code, NONE);
        assert_eq!(*init.producer_id, last + 1, "ids follow each other");
        last = *init.producer_id;
    }
    // Two blocks were taken into use: two records, each for the block after.
    while state.image().next_offset < offset_before + 2 {
        assert!(std::time::Instant::now() < deadline, "block never recorded");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        state.image().next_offset,
        offset_before + 2,
        "one record per block"
    );
    assert!(
        state.image().next_producer_id > last + BLOCK / 2,
        "a block is recorded ahead of the one in use"
    );
    assert!(!state.producer_ids().never_issued(last));
    assert!(state.producer_ids().never_issued(last + 1));

    assert!(state.producer_ids().remembered() > 0);
    while state.producer_ids().remembered() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "idle producers never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Forgotten: asking to bump the epoch gets a fresh id at epoch 0.
    let again = init_producer_id(&mut client, 4, Some((last, 0))).await;
    assert_eq!((again.error_code, again.producer_epoch), (NONE, 0));
    assert_eq!(*again.producer_id, last + 1);
    broker.shutdown().await;
}
