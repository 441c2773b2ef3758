//! Upgrading a data dir written by the version before the metadata log (commit 9afad0f):
//! its `topics.bin`, `broker_configs.bin` and `producer_ids` become the metadata log on the
//! first start and are kept as `*.migrated`; nothing stored is lost. The old files are
//! written by `common::legacy`, byte for byte as that version wrote them.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::legacy::{self, LegacyTopic};
use common::raw::RawClient;
use common::{producer, TestBroker, PATIENCE};
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use rdkafka::producer::FutureRecord;
use uuid::Uuid;

fn pairs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Produces `n` records to each partition of `topic`.
async fn produce(bootstrap: &str, topic: &str, partitions: i32, n: usize) {
    let producer = producer(bootstrap, &[("acks", "all"), ("linger.ms", "0")]);
    for p in 0..partitions {
        for i in 0..n {
            let value = format!("{topic}-{p}-{i}");
            producer
                .send(
                    FutureRecord::<(), _>::to(topic)
                        .payload(&value)
                        .partition(p),
                    PATIENCE,
                )
                .await
                .expect("produce acknowledged");
        }
    }
}

/// A fresh producer id from InitProducerId (no transactional id), over the raw client.
async fn init_producer_id(broker: &TestBroker) -> i64 {
    let mut client = RawClient::connect(broker.addr()).await;
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response: InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &request).await;
    assert_eq!(response.error_code, 0);
    *response.producer_id
}

/// Builds what the previous version left in `data`: partition directories with records
/// (written by a broker of this version, whose partition format is unchanged) and the
/// three state files, in place of the metadata log. Returns the topic ids.
async fn previous_version_data_dir(data: &Path) -> (Uuid, Uuid) {
    let broker = TestBroker::start_in(data, |_| {}).await;
    let state = broker.running().broker().clone();
    tokio::task::spawn_blocking(move || {
        state.create_topic("orders", 3, BTreeMap::new()).unwrap();
        state.create_topic("a.b", 2, BTreeMap::new()).unwrap();
    })
    .await
    .unwrap();
    produce(&broker.bootstrap(), "orders", 3, 4).await;
    produce(&broker.bootstrap(), "a.b", 2, 2).await;
    let orders = broker.running().broker().topic("orders").unwrap().id;
    let ab = broker.running().broker().topic("a.b").unwrap().id;
    broker.shutdown().await;

    std::fs::remove_dir_all(data.join("_strata").join("metadata")).unwrap();
    let topics = [
        LegacyTopic {
            name: "orders".into(),
            id: orders,
            partitions: 3,
            configs: pairs(&[("retention.ms", "86400000"), ("cleanup.policy", "delete")]),
        },
        LegacyTopic {
            name: "a.b".into(),
            id: ab,
            partitions: 2,
            configs: pairs(&[("max.message.bytes", "200000")]),
        },
    ];
    legacy::write(
        data,
        "topics.bin",
        &legacy::topics_bin("legacy-cluster", &topics),
    );
    legacy::write(
        data,
        "broker_configs.bin",
        &legacy::broker_configs_bin(
            0,
            &pairs(&[("log.retention.ms", "5000000")]),
            &pairs(&[("log.roll.ms", "6000000")]),
        ),
    );
    legacy::write(data, "producer_ids", &legacy::producer_ids(7000));
    (orders, ab)
}

/// Everything the previous version stored is there after the upgrade: the cluster id,
/// topic names, ids, partition counts and config overrides, the node's and the
/// cluster-wide dynamic broker configs, every record, and producer ids above every id the
/// old version may have handed out. The old files are kept as `*.migrated`, and a second
/// start (from the log alone) sees the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_from_the_previous_version_keeps_everything_it_stored() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path();
    let (orders, ab) = previous_version_data_dir(data).await;

    for start in ["migrating", "from the log"] {
        let broker = TestBroker::start_in(data, |_| {}).await;
        let state = broker.running().broker().clone();
        assert_eq!(state.cluster_id(), "legacy-cluster", "{start}");
        let t = state.topic("orders").expect("orders kept");
        assert_eq!((t.id, t.partitions.len()), (orders, 3), "{start}");
        assert_eq!(
            t.configs,
            pairs(&[("retention.ms", "86400000"), ("cleanup.policy", "delete")])
        );
        let t = state.topic("a.b").expect("a.b kept");
        assert_eq!((t.id, t.partitions.len()), (ab, 2), "{start}");
        assert_eq!(t.configs, pairs(&[("max.message.bytes", "200000")]));
        let defaults = state.default_log_config();
        assert_eq!(defaults.retention_ms, Some(5_000_000), "{start}");
        assert_eq!(defaults.segment_ms, Some(6_000_000), "{start}");
        for (topic, partitions, n) in [("orders", 3, 4), ("a.b", 2, 2)] {
            let messages = tokio::task::block_in_place(|| {
                common::consume(
                    &broker.bootstrap(),
                    topic,
                    partitions,
                    partitions as usize * n,
                )
            });
            let by_partition = common::values_by_partition(&messages);
            for p in 0..partitions {
                let want: Vec<(i64, String)> = (0..n)
                    .map(|i| (i as i64, format!("{topic}-{p}-{i}")))
                    .collect();
                assert_eq!(by_partition[&p], want, "{start}: {topic}-{p}");
            }
        }
        let id = init_producer_id(&broker).await;
        assert!(id >= 7000, "{start}: producer id {id} may reuse an old one");
        for name in ["topics.bin", "broker_configs.bin", "producer_ids"] {
            let state_dir = data.join("_strata");
            assert!(!state_dir.join(name).exists(), "{start}: {name} retired");
            assert!(
                state_dir.join(format!("{name}.migrated")).is_file(),
                "{start}: {name} kept as {name}.migrated"
            );
        }
        broker.shutdown().await;
    }
}

/// A damaged old file stops the upgrade with an error naming it, as it stopped the
/// previous version's start: no log is written and nothing is deleted. Restored, the
/// upgrade goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_old_file_stops_the_upgrade_and_deletes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path();
    let (orders, _) = previous_version_data_dir(data).await;

    // (file, bytes in it, damaged bytes that still parse or decode)
    let cases: [(&str, &[u8], &[u8]); 3] = [
        ("topics.bin", b"orders", b"orsers"),
        ("producer_ids", b"7000", b"0000"),
        ("broker_configs.bin", b"5000000", b"1000000"),
    ];
    for (file, from, to) in cases {
        let path = data.join("_strata").join(file);
        let good = std::fs::read(&path).unwrap();
        let at = good
            .windows(from.len())
            .position(|w| w == from)
            .unwrap_or_else(|| panic!("value in {file}"));
        let mut bad = good.clone();
        bad[at..at + to.len()].copy_from_slice(to);
        std::fs::write(&path, &bad).unwrap();
        let config = strata::Config::with_defaults("127.0.0.1:0".parse().unwrap(), data);
        let err = match strata::start(config).await {
            Ok(_) => panic!("a broker started on a damaged {file}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(file), "error names the file: {err}");
        assert_eq!(std::fs::read(&path).unwrap(), bad, "{file} left as it was");
        assert!(
            !data.join("_strata").join("metadata").exists(),
            "no log written"
        );
        assert!(data.join("orders-2").is_dir(), "partition data kept");
        std::fs::write(&path, &good).unwrap();
    }
    let broker = TestBroker::start_in(data, |_| {}).await;
    assert_eq!(
        broker.running().broker().topic("orders").unwrap().id,
        orders
    );
    broker.shutdown().await;
}
