//! strata-bench's built-in client against an in-process Strata broker: topic creation,
//! keyed produce with every acks setting, group consume of everything produced, and
//! end-to-end timestamps read back from the values.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use strata::Config;
use strata_tools::bench::batch::Compression;
use strata_tools::bench::client::{connect, ensure_topic};
use strata_tools::bench::consume::{run_consumer, ConsumeOptions, GroupState};
use strata_tools::bench::produce::{run_producer, ProduceOptions};
use strata_tools::bench::report::Counters;

fn produce_opts(topic: &str, acks: i16, records: u64, compression: Compression) -> ProduceOptions {
    ProduceOptions {
        topic: topic.to_string(),
        partitions: 4,
        record_size: 100,
        acks,
        batch_bytes: 4096,
        linger: Duration::from_millis(1),
        compression,
        keys: Some(16),
        rate: None,
        records: Some(records),
        deadline: None,
        embed_timestamp: true,
        max_in_flight: 3,
        producer_index: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_consume_everything_in_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let broker = strata::start(Config::with_defaults(
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
    ))
    .await
    .unwrap();
    let addr = broker.local_addr().to_string();
    let mut conn = connect(&addr).await.unwrap();
    assert_eq!(ensure_topic(&mut conn, "t", 4).await.unwrap(), 4);
    // Existing topic: its partition count wins.
    assert_eq!(ensure_topic(&mut conn, "t", 9).await.unwrap(), 4);

    let mut produced = 0;
    for (acks, compression) in [
        (1, Compression::None),
        (-1, Compression::Lz4),
        (0, Compression::None),
    ] {
        let counters = Arc::new(Counters::default());
        let out = run_producer(
            &addr,
            produce_opts("t", acks, 500, compression),
            counters.clone(),
        )
        .await
        .unwrap();
        assert_eq!(out.records, 500, "acks={acks}");
        assert_eq!(out.errors, 0);
        assert_eq!(out.histogram.len(), 500);
        assert_eq!(counters.records.load(Ordering::Relaxed), 500);
        produced += 500;
    }

    let counters = Arc::new(Counters::default());
    let state = GroupState::new(2);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let opts = ConsumeOptions {
        topic: "t".into(),
        group: "g".into(),
        record_size: 100,
        fetch_max_bytes: 1 << 20,
        partition_max_bytes: 1 << 16,
        max_wait_ms: 100,
        end_to_end: true,
        start_at_latest: false,
    };
    let consumers: Vec<_> = (0..2)
        .map(|i| {
            let (addr, opts, state, counters, rx) = (
                addr.clone(),
                opts.clone(),
                state.clone(),
                counters.clone(),
                stop_rx.clone(),
            );
            tokio::spawn(async move { run_consumer(&addr, opts, 4, i, state, counters, rx).await })
        })
        .collect();
    // acks=0 records may still be in flight to the log; wait until all arrived (bounded).
    for _ in 0..300 {
        if counters.records.load(Ordering::Relaxed) >= produced {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    let mut consumed = 0;
    let mut delivered = 0;
    for c in consumers {
        let out = c.await.unwrap().unwrap();
        consumed += out.records;
        delivered += out.delivery_latency.len();
        assert_eq!(out.errors, 0);
    }
    // A rebalance may hand a partition over before its offsets were committed, so a
    // record can be read twice, but none may be missing.
    assert!(consumed >= produced, "consumed {consumed} of {produced}");
    assert!(delivered >= produced);
    broker.shutdown().await;
}
