//! End-to-end tests of `strata-offsets transactions` against a Strata broker started in this
//! process on 127.0.0.1:0, with rdkafka's transactional producer holding a transaction open.
//! Each command's stdout is echoed to stderr (`--nocapture` shows real output).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::Value;
use strata::Config;
use strata_tools::offsets::transactions::is_open;

const PATIENCE: Duration = Duration::from_secs(60);
const TOPIC: &str = "payments";
/// Plain (non-transactional) records per partition written before the transaction.
const BEFORE: i64 = 5;
/// Records per partition the open transaction writes to partitions 0 and 1.
const IN_TXN: i64 = 4;
/// `transaction.timeout.ms` of the transactional producer.
const TXN_TIMEOUT_MS: i64 = 120_000;

/// Output of one run of the binary.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        serde_json::from_str(self.stdout.trim()).expect("one JSON document")
    }
}

fn offsets_cli(bootstrap: &str, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_strata-offsets"))
        .arg("--bootstrap")
        .arg(bootstrap)
        .args(args)
        .output()
        .expect("run strata-offsets");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
    };
    eprintln!(
        "$ strata-offsets {}\n{}{}[exit {}]",
        args.join(" "),
        run.stdout,
        run.stderr,
        run.code
    );
    run
}

async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    for r in results {
        r.expect("topic created");
    }
}

fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().unwrap()
}

async fn send(producer: &FutureProducer, partition: i32, value: &str) {
    producer
        .send(
            FutureRecord::to(TOPIC)
                .partition(partition)
                .key("k")
                .payload(value),
            PATIENCE,
        )
        .await
        .map_err(|(e, _)| e)
        .expect("delivered");
}

/// The `transactions` array of a `--json transactions ...` answer.
fn transactions(run: &Run) -> Vec<Value> {
    run.json()["transactions"]
        .as_array()
        .expect("transactions array")
        .clone()
}

/// `(topic, partition, high_watermark, last_stable_offset, held_back)` of a transaction.
fn partitions(txn: &Value) -> Vec<(String, i64, i64, i64, i64)> {
    txn["partitions"]
        .as_array()
        .expect("partitions array")
        .iter()
        .map(|p| {
            (
                p["topic"].as_str().unwrap().to_string(),
                p["partition"].as_i64().unwrap(),
                p["high_watermark"].as_i64().unwrap(),
                p["last_stable_offset"].as_i64().unwrap(),
                p["held_back"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Polls `transactions list` until exactly `count` transactions are open and returns them.
/// As in Kafka, a coordinator may answer EndTxn once PrepareCommit is durable and write
/// the markers after, so a just-committed transaction can stay open for a moment.
async fn wait_for_open(bs: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let run = offsets_cli(bs, &["--json", "transactions", "list"]);
        let open = transactions(&run);
        if open.len() == count {
            return open;
        }
        assert!(Instant::now() < deadline, "still open: {}", run.stdout);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_transaction_is_shown_with_the_offsets_it_holds_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_defaults("127.0.0.1:0".parse().unwrap(), dir.path());
    config.auto_create_topics = false;
    let broker = strata::start(config).await.expect("broker starts");
    let bs = broker.local_addr().to_string();
    create_topic(&bs, TOPIC, 3).await;

    // Nothing transactional yet.
    let run = offsets_cli(&bs, &["transactions", "list"]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "No open transactions.\n");

    let plain = producer(&bs, &[]);
    for p in 0..3 {
        for i in 0..BEFORE {
            send(&plain, p, &format!("plain {p}-{i}")).await;
        }
    }

    let timeout = TXN_TIMEOUT_MS.to_string();
    let txn = producer(
        &bs,
        &[
            ("transactional.id", "billing-1"),
            ("transaction.timeout.ms", &timeout),
        ],
    );
    let started_after = chrono::Utc::now().timestamp_millis();
    tokio::task::block_in_place(|| {
        txn.init_transactions(PATIENCE).expect("init_transactions");
        txn.begin_transaction().expect("begin_transaction");
    });
    for p in 0..2 {
        for i in 0..IN_TXN {
            send(&txn, p, &format!("txn {p}-{i}")).await;
        }
    }

    // The open transaction: its two partitions' last stable offsets stop at its first
    // record, BEFORE, while their high watermarks include its records.
    let run = offsets_cli(&bs, &["--json", "transactions", "list"]);
    let open = transactions(&run);
    assert_eq!(open.len(), 1, "{open:?}");
    let t = &open[0];
    assert_eq!(t["transactional_id"], "billing-1");
    assert_eq!(t["state"], "Ongoing");
    assert!(t["producer_id"].as_i64().unwrap() >= 0, "{t}");
    assert!(t["producer_epoch"].as_i64().unwrap() >= 0, "{t}");
    assert_eq!(t["timeout_ms"].as_i64(), Some(TXN_TIMEOUT_MS));
    let start = t["start_time_ms"].as_i64().unwrap();
    assert!(
        start >= started_after - 1_000,
        "start {start} < {started_after}"
    );
    assert!(t["age_ms"].as_i64().unwrap() >= 0, "{t}");
    assert_eq!(t["coordinator"], bs);
    assert_eq!(
        partitions(t),
        vec![
            (TOPIC.to_string(), 0, BEFORE + IN_TXN, BEFORE, IN_TXN),
            (TOPIC.to_string(), 1, BEFORE + IN_TXN, BEFORE, IN_TXN),
        ]
    );
    let producer_id = t["producer_id"].as_i64().unwrap();

    // The same in the table form.
    let run = offsets_cli(&bs, &["transactions", "list"]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("TRANSACTIONAL-ID  PRODUCER-ID  EPOCH  STATE"));
    assert!(lines[1].starts_with("billing-1"), "{}", run.stdout);
    assert!(lines[1].contains(" Ongoing "), "{}", run.stdout);
    assert!(
        lines[1].contains(&format!(" {producer_id} ")),
        "{}",
        run.stdout
    );
    let rows: Vec<Vec<&str>> = lines[3..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec![
                "TRANSACTIONAL-ID",
                "TOPIC",
                "PARTITION",
                "HIGH-WATERMARK",
                "LAST-STABLE",
                "HELD-BACK"
            ],
            vec!["billing-1", TOPIC, "0", "9", "5", "4"],
            vec!["billing-1", TOPIC, "1", "9", "5", "4"],
        ]
    );

    // describe by id answers the same; an unknown id is a one-line error.
    let described = transactions(&offsets_cli(
        &bs,
        &["--json", "transactions", "describe", "billing-1"],
    ));
    assert_eq!(described.len(), 1);
    assert_eq!(described[0]["state"], "Ongoing");
    assert_eq!(partitions(&described[0]), partitions(t));
    let unknown = offsets_cli(&bs, &["transactions", "describe", "nobody"]);
    assert_eq!(unknown.code, 1);
    assert_eq!(
        unknown.stderr,
        "strata-offsets: error: unknown transactional id 'nobody'\n"
    );

    // A second transaction on partition 1: both show partition 1's last stable offset at
    // billing-1's first record, since the oldest open transaction decides it.
    let txn2 = producer(&bs, &[("transactional.id", "billing-2")]);
    tokio::task::block_in_place(|| {
        txn2.init_transactions(PATIENCE).expect("init_transactions");
        txn2.begin_transaction().expect("begin_transaction");
    });
    send(&txn2, 1, "second 0").await;
    send(&txn2, 1, "second 1").await;
    let open = transactions(&offsets_cli(&bs, &["--json", "transactions", "list"]));
    let ids: Vec<&str> = open
        .iter()
        .map(|t| t["transactional_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["billing-1", "billing-2"]);
    let p1_end = BEFORE + IN_TXN + 2;
    assert_eq!(
        partitions(&open[0]),
        vec![
            (TOPIC.to_string(), 0, BEFORE + IN_TXN, BEFORE, IN_TXN),
            (TOPIC.to_string(), 1, p1_end, BEFORE, p1_end - BEFORE),
        ]
    );
    assert_eq!(
        partitions(&open[1]),
        vec![(TOPIC.to_string(), 1, p1_end, BEFORE, p1_end - BEFORE)]
    );
    assert_ne!(open[1]["producer_id"].as_i64(), Some(producer_id));
    offsets_cli(&bs, &["transactions", "list"]);

    // Commit billing-1 (one marker in each of its partitions): billing-2 now holds
    // partition 1 back from its own first record, offset BEFORE + IN_TXN.
    tokio::task::block_in_place(|| txn.commit_transaction(PATIENCE).expect("commit"));
    let open = wait_for_open(&bs, 1).await;
    assert_eq!(open[0]["transactional_id"], "billing-2");
    let p1_end = p1_end + 1;
    assert_eq!(
        partitions(&open[0]),
        vec![(
            TOPIC.to_string(),
            1,
            p1_end,
            BEFORE + IN_TXN,
            p1_end - BEFORE - IN_TXN
        )]
    );
    offsets_cli(&bs, &["transactions", "list"]);

    // Commit billing-2: nothing is open any more.
    tokio::task::block_in_place(|| txn2.commit_transaction(PATIENCE).expect("commit"));
    wait_for_open(&bs, 0).await;
    let run = offsets_cli(&bs, &["transactions", "list"]);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "No open transactions.\n");
    // --all still shows the finished transactions, no longer open; whatever partitions
    // they still list hold nothing back.
    let all = transactions(&offsets_cli(
        &bs,
        &["--json", "transactions", "list", "--all"],
    ));
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["transactional_id"], "billing-1");
    assert_eq!(all[0]["producer_id"].as_i64(), Some(producer_id));
    for t in &all {
        let state = t["state"].as_str().unwrap();
        assert!(!is_open(state), "{state}");
        for (_, _, hw, lso, held) in partitions(t) {
            assert_eq!((lso, held), (hw, 0));
        }
    }

    drop(txn2);
    drop(txn);
    broker.shutdown().await;
    // An unreachable broker: one line, exit 1.
    let down = offsets_cli(&bs, &["transactions", "list"]);
    assert_eq!(down.code, 1);
    assert!(
        down.stderr
            .starts_with(&format!("strata-offsets: error: broker {bs} unreachable")),
        "{}",
        down.stderr
    );
}

/// API key -> highest version the proxy lets through; a negative cap hides the API.
type Caps = std::sync::Arc<std::sync::Mutex<BTreeMap<i16, i16>>>;

async fn read_frame(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame).await.ok()?;
    Some(frame)
}

async fn write_frame(stream: &mut tokio::net::TcpStream, frame: &[u8]) -> Option<()> {
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(&(frame.len() as i32).to_be_bytes())
        .await
        .ok()?;
    stream.write_all(frame).await.ok()
}

/// A proxy in front of `upstream` that rewrites ApiVersions answers with the current
/// `caps` (read when each ApiVersions passes, so later connections see later caps).
fn capping_proxy(listener: tokio::net::TcpListener, upstream: std::net::SocketAddr, caps: Caps) {
    use kafka_protocol::messages::ApiVersionsResponse;
    use kafka_protocol::protocol::{Decodable, Encodable};
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let caps = caps.clone();
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                while let Some(request) = read_frame(&mut client).await {
                    let key = i16::from_be_bytes([request[0], request[1]]);
                    let version = i16::from_be_bytes([request[2], request[3]]);
                    if write_frame(&mut server, &request).await.is_none() {
                        return;
                    }
                    let Some(mut response) = read_frame(&mut server).await else {
                        return;
                    };
                    if key == 18 {
                        // ApiVersions responses always use response header v0.
                        let mut body = bytes::Bytes::copy_from_slice(&response[4..]);
                        let mut decoded = ApiVersionsResponse::decode(&mut body, version).unwrap();
                        let caps = caps.lock().unwrap().clone();
                        decoded
                            .api_keys
                            .retain(|k| caps.get(&k.api_key).is_none_or(|cap| *cap >= 0));
                        for k in decoded.api_keys.iter_mut() {
                            if let Some(cap) = caps.get(&k.api_key) {
                                k.max_version = k.max_version.min(*cap);
                            }
                        }
                        let mut out = bytes::BytesMut::from(&response[..4]);
                        decoded.encode(&mut out, version).unwrap();
                        response = out.to_vec();
                    }
                    if write_frame(&mut client, &response).await.is_none() {
                        return;
                    }
                }
            });
        }
    });
}

/// A broker without ListTransactions, and one whose ListOffsets has no isolation level
/// (v1), give one-line errors naming what is missing; with every API back the same broker
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn older_brokers_get_a_readable_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_defaults("127.0.0.1:0".parse().unwrap(), dir.path());
    config.auto_create_topics = false;
    config.advertised_host = Some("127.0.0.1".to_string());
    config.advertised_port = Some(proxy_addr.port());
    let broker = strata::start(config).await.expect("broker starts");
    let caps: Caps = Default::default();
    capping_proxy(listener, broker.local_addr(), caps.clone());
    let bs = proxy_addr.to_string();
    create_topic(&bs, TOPIC, 1).await;

    let txn = producer(&bs, &[("transactional.id", "old-broker")]);
    tokio::task::block_in_place(|| {
        txn.init_transactions(PATIENCE).expect("init_transactions");
        txn.begin_transaction().expect("begin_transaction");
    });
    send(&txn, 0, "in a transaction").await;

    // ListTransactions (66) hidden, as on Kafka before 3.0.
    caps.lock().unwrap().insert(66, -1);
    let run = offsets_cli(&bs, &["transactions", "list"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!("strata-offsets: error: broker {bs} does not support ListTransactions\n")
    );

    // ListOffsets (2) only up to v1: no read_committed, so no last stable offset.
    caps.lock().unwrap().clear();
    caps.lock().unwrap().insert(2, 1);
    let run = offsets_cli(&bs, &["transactions", "describe", "old-broker"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!(
            "strata-offsets: error: broker {bs} speaks ListOffsets v1, which has no isolation level (v2+ needed for the last stable offset)\n"
        )
    );

    caps.lock().unwrap().clear();
    let open = transactions(&offsets_cli(&bs, &["--json", "transactions", "list"]));
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["transactional_id"], "old-broker");
    assert_eq!(partitions(&open[0]), vec![(TOPIC.to_string(), 0, 1, 0, 1)]);

    tokio::task::block_in_place(|| txn.abort_transaction(PATIENCE).expect("abort"));
    drop(txn);
    broker.shutdown().await;
}
