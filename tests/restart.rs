//! Durability across restarts: a graceful restart keeps topics (ids, partitions, configs)
//! and records; a SIGKILL'd broker process keeps every record it acknowledged with
//! acks=all.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::process::BrokerProcess;
use common::{consume, producer, values_by_partition, TestBroker, PATIENCE};
use futures::future::join_all;
use rdkafka::producer::FutureRecord;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_and_records_survive_a_graceful_restart() {
    let broker = TestBroker::start_with(|c| c.num_partitions = 3).await;
    let bootstrap = broker.bootstrap();
    let producer1 = producer(&bootstrap, &[("acks", "1")]);
    let sends = (0..300).map(|i| {
        let p = &producer1;
        async move {
            let value = format!("before-{i}");
            p.send(
                FutureRecord::to("durable")
                    .key(&format!("k{i}"))
                    .payload(&value),
                PATIENCE,
            )
            .await
            .map(|d| (d.partition, d.offset, value))
            .map_err(|(e, _)| e)
        }
    });
    let acked: Vec<_> = join_all(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    drop(producer1);
    let configs: BTreeMap<String, String> =
        [("retention.ms".to_string(), "3600000".to_string())].into();
    let created = broker
        .running()
        .broker()
        .create_topic("configured", 2, configs.clone())
        .unwrap();
    let id_before = broker.running().broker().topic("durable").unwrap().id;

    let broker = broker.restart(|c| c.num_partitions = 3).await;
    let state = broker.running().broker();
    let durable = state.topic("durable").expect("topic survives restart");
    assert_eq!(durable.id, id_before);
    assert_eq!(durable.partitions.len(), 3);
    let configured = state.topic("configured").expect("created topic survives");
    assert_eq!(configured.id, created.id);
    assert_eq!(configured.partitions.len(), 2);
    assert_eq!(configured.configs, configs);
    assert_eq!(state.topic_by_id(created.id).unwrap().name, "configured");

    // Offsets continue after the restart.
    let bootstrap = broker.bootstrap();
    let producer2 = producer(&bootstrap, &[]);
    let after = producer2
        .send(
            FutureRecord::to("durable").key("k0").payload("after"),
            PATIENCE,
        )
        .await
        .unwrap();
    let before_in_partition = acked
        .iter()
        .filter(|(p, _, _)| *p == after.partition)
        .count() as i64;
    assert_eq!(after.offset, before_in_partition);

    let messages = tokio::task::spawn_blocking(move || consume(&bootstrap, "durable", 3, 301))
        .await
        .unwrap();
    let got = values_by_partition(&messages);
    for (partition, offset, value) in &acked {
        let found = got[partition]
            .iter()
            .find(|(o, _)| o == offset)
            .map(|(_, v)| v);
        assert_eq!(found, Some(value));
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleted_topic_stays_deleted_after_restart() {
    let broker = TestBroker::start().await;
    let state = broker.running().broker().clone();
    let topic = state.create_topic("doomed", 2, BTreeMap::new()).unwrap();
    let dir = broker.data_dir().join("doomed-0");
    assert!(dir.exists());
    state.delete_topic("doomed").unwrap();
    assert!(!dir.exists(), "partition files removed");
    assert!(state.topic_by_id(topic.id).is_none());
    drop(state);
    // A deletion cut short by a crash leaves a renamed `-delete` directory (Kafka's
    // scheme): the next start removes it.
    let leftover = broker.data_dir().join("doomed-1.5f3a-delete");
    std::fs::create_dir(&leftover).unwrap();
    std::fs::write(leftover.join("00000000000000000000.log"), b"old").unwrap();
    let broker = broker.restart(|_| {}).await;
    assert!(broker.running().broker().topic("doomed").is_none());
    assert!(
        !leftover.exists(),
        "a -delete directory is removed at start"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acks_all_records_survive_sigkill() {
    const KILL_AFTER: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let process = BrokerProcess::spawn(dir.path());
    let producer = Arc::new(producer(
        &process.bootstrap(),
        &[
            ("acks", "all"),
            ("linger.ms", "2"),
            ("message.timeout.ms", "5000"),
        ],
    ));
    let acked: Arc<Mutex<Vec<(i32, i64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Keep windows of sends in flight until the broker dies under them.
    let writer = tokio::spawn({
        let (producer, acked, stop) = (producer.clone(), acked.clone(), stop.clone());
        async move {
            let mut next = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let window: Vec<_> = (next..next + 200)
                    .map(|i| {
                        let value = format!("record-{i}");
                        let producer = producer.clone();
                        async move {
                            producer
                                .send(
                                    FutureRecord::to("crash")
                                        .key(&format!("k{}", i % 7))
                                        .payload(&value),
                                    PATIENCE,
                                )
                                .await
                                .map(|d| (d.partition, d.offset, value))
                        }
                    })
                    .collect();
                next += 200;
                // Failed sends (the broker died under them) are not acked: skip them.
                for ack in join_all(window).await.into_iter().flatten() {
                    acked.lock().unwrap().push(ack);
                }
            }
        }
    });
    while acked.lock().unwrap().len() < KILL_AFTER {
        assert!(!writer.is_finished(), "producer stopped early");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    process.sigkill();
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    drop(producer);
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= KILL_AFTER);

    let process = BrokerProcess::spawn(dir.path());
    let addr = process.bootstrap();
    let highest = acked.iter().map(|(_, o, _)| *o).max().unwrap();
    // Everything acked is below the high watermark; read at least that many records.
    let messages =
        tokio::task::spawn_blocking(move || consume(&addr, "crash", 1, highest as usize + 1))
            .await
            .unwrap();
    let got: HashMap<i64, String> = values_by_partition(&messages)
        .remove(&0)
        .unwrap()
        .into_iter()
        .collect();
    for (partition, offset, value) in &acked {
        assert_eq!(*partition, 0);
        assert_eq!(
            got.get(offset),
            Some(value),
            "acked record at offset {offset} lost"
        );
    }
    drop(process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_shuts_down_cleanly_and_keeps_acks_1_records() {
    let dir = tempfile::tempdir().unwrap();
    let process = BrokerProcess::spawn(dir.path());
    let producer = producer(&process.bootstrap(), &[("acks", "1")]);
    let sends = (0..500).map(|i| {
        let p = &producer;
        async move {
            let value = format!("v{i}");
            p.send(
                FutureRecord::to("graceful").key("k").payload(&value),
                PATIENCE,
            )
            .await
            .map(|d| (d.offset, value))
            .map_err(|(e, _)| e)
        }
    });
    let acked: Vec<_> = join_all(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    drop(producer);
    assert!(process.sigterm(), "strata exits with status 0 on SIGTERM");

    let process = BrokerProcess::spawn(dir.path());
    let addr = process.bootstrap();
    let messages = tokio::task::spawn_blocking(move || consume(&addr, "graceful", 1, 500))
        .await
        .unwrap();
    let got: HashMap<i64, String> = values_by_partition(&messages)
        .remove(&0)
        .unwrap()
        .into_iter()
        .collect();
    for (offset, value) in &acked {
        assert_eq!(got.get(offset), Some(value));
    }
    drop(process);
}
