//! End-to-end tests of the `strata-offsets` binary against a Strata broker started in this
//! process on 127.0.0.1:0, with rdkafka (librdkafka) as the independent producer/consumer.
//! Each command's stdout is echoed to stderr (`--nocapture` shows real output).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use strata::{Config, RunningBroker};
use strata_tools::murmur2::partition_for_key;

const PATIENCE: Duration = Duration::from_secs(60);
const HOUR: i64 = 3_600_000;
/// Records per partition of the `orders` topic.
const PER_PARTITION: i64 = 10;

struct Broker {
    running: Option<RunningBroker>,
    bootstrap: String,
    dir: tempfile::TempDir,
}

impl Broker {
    async fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::with_defaults("127.0.0.1:0".parse().unwrap(), dir.path());
        config.group_initial_rebalance_delay_ms = 0;
        config.auto_create_topics = false;
        let running = strata::start(config).await.expect("broker starts");
        let bootstrap = running.local_addr().to_string();
        Broker {
            running: Some(running),
            bootstrap,
            dir,
        }
    }

    async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.dir.path().join(format!("{topic}-{partition}"))
    }
}

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

    fn json_lines(&self) -> Vec<Value> {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
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
    create_topic_with(bootstrap, topic, partitions, &[]).await
}

async fn create_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new_topic = new_topic.set(k, v);
    }
    let results = admin
        .create_topics(&[new_topic], &AdminOptions::new())
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

/// Value of record `i` of partition `p` of `orders`.
fn value_of(p: i32, i: i64) -> String {
    format!("order {p}-{i}")
}

/// Produces `orders`: 3 partitions x 10 records, one batch per record, record i of each
/// partition stamped `base + i hours`, key `key-<p>-<i>`, header `n: <i>`. Returns `base`.
async fn produce_orders(bootstrap: &str) -> i64 {
    create_topic(bootstrap, "orders", 3).await;
    produce_records(bootstrap, "orders", 3).await
}

/// Produces the `orders` records (see [`produce_orders`]) to an existing topic.
async fn produce_records(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = (now - PER_PARTITION * HOUR) / 1000 * 1000;
    let producer = producer(bootstrap, &[]);
    for p in 0..partitions {
        for i in 0..PER_PARTITION {
            let key = format!("key-{p}-{i}");
            let value = value_of(p, i);
            let n = i.to_string();
            producer
                .send(
                    FutureRecord::to(topic)
                        .partition(p)
                        .key(&key)
                        .payload(&value)
                        .timestamp(base + i * HOUR)
                        .headers(OwnedHeaders::new().insert(Header {
                            key: "n",
                            value: Some(&n),
                        })),
                    PATIENCE,
                )
                .await
                .map_err(|(e, _)| e)
                .expect("delivered");
        }
    }
    base
}

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("session.timeout.ms", "10000")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap()
}

/// Commits `offsets` (partition -> offset of `orders`) for `group` without joining it.
fn commit(bootstrap: &str, group: &str, offsets: &[(i32, i64)]) {
    let consumer = group_consumer(bootstrap, group);
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset("orders", *p, Offset::Offset(*o))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

/// The group's committed offsets of `orders` as rdkafka reads them (OffsetFetch).
fn committed(bootstrap: &str, group: &str) -> Vec<i64> {
    let consumer = group_consumer(bootstrap, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition("orders", p);
    }
    let found = consumer.committed_offsets(tpl, PATIENCE).unwrap();
    (0..3)
        .map(
            |p| match found.find_partition("orders", p).unwrap().offset() {
                Offset::Offset(o) => o,
                other => panic!("partition {p}: {other:?}"),
            },
        )
        .collect()
}

/// Joins `group`, subscribed to `orders`, and returns the first offset it reads from each
/// partition (it starts at the committed offsets). Leaves the group when done.
fn first_offsets_read(bootstrap: &str, group: &str) -> BTreeMap<i32, i64> {
    let consumer = group_consumer(bootstrap, group);
    consumer.subscribe(&["orders"]).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut first = BTreeMap::new();
    while first.len() < 3 {
        assert!(Instant::now() < deadline, "only read {first:?}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("no consumer error");
            first.entry(m.partition()).or_insert(m.offset());
        }
    }
    first
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn reset(bootstrap: &str, group: &str, scope: &[&str], target: &[&str]) -> Run {
    let mut args = vec!["--json", "groups", "reset", group];
    args.extend_from_slice(scope);
    args.extend_from_slice(target);
    args.push("--execute");
    offsets_cli(bootstrap, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lag_and_every_reset_mode() {
    let mut broker = Broker::start().await;
    let bs = broker.bootstrap.clone();
    let base = produce_orders(&bs).await;
    commit(&bs, "billing", &[(0, 4), (1, 7), (2, 10)]);

    // Lag: committed 4/7/10 of 10 each.
    let described = offsets_cli(&bs, &["--json", "groups", "describe", "billing"]).json();
    assert_eq!(described["state"], "Empty");
    let rows = described["partitions"].as_array().unwrap();
    let lag: Vec<(i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["committed"].as_i64().unwrap(),
                r["log_end"].as_i64().unwrap(),
                r["lag"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lag, vec![(4, 10, 6), (7, 10, 3), (10, 10, 0)]);
    assert_eq!(described["total_lag"]["orders"], 9);
    let table = offsets_cli(&bs, &["groups", "describe", "billing"]);
    assert_eq!(table.code, 0);
    assert!(table.stdout.contains("STATE Empty"), "{}", table.stdout);
    let listed = offsets_cli(&bs, &["--json", "groups", "list"]).json();
    assert!(listed["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["group"] == "billing"));
    offsets_cli(&bs, &["groups", "list"]);

    // Deleting a topic removes the groups' offsets of it (as Kafka's coordinator does):
    // the group has nothing left to describe.
    create_topic(&bs, "gone", 1).await;
    {
        let consumer = group_consumer(&bs, "leftover");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("gone", 0, Offset::Offset(0))
            .unwrap();
        consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .create()
        .unwrap();
    for r in admin
        .delete_topics(&["gone"], &AdminOptions::new())
        .await
        .unwrap()
    {
        r.expect("deleted");
    }
    let leftover = offsets_cli(&bs, &["--json", "groups", "describe", "leftover"]).json();
    assert_eq!(leftover["partitions"], serde_json::json!([]));

    // Dry run: a plan, nothing committed.
    let dry = offsets_cli(
        &bs,
        &[
            "groups",
            "reset",
            "billing",
            "--topic",
            "orders",
            "--to-earliest",
        ],
    );
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stdout.contains("Dry run"), "{}", dry.stdout);
    assert_eq!(committed(&bs, "billing"), vec![4, 7, 10]);

    let cases: Vec<(Vec<&str>, Vec<String>, Vec<i64>)> = vec![
        (
            vec!["--topic", "orders"],
            vec!["--to-earliest".into()],
            vec![0, 0, 0],
        ),
        (
            vec!["--all-topics"],
            vec!["--to-latest".into()],
            vec![10, 10, 10],
        ),
        (
            vec!["--topic", "orders:1"],
            vec!["--to-offset".into(), "5".into()],
            vec![10, 5, 10],
        ),
        (
            vec!["--topic", "orders:0,2"],
            vec!["--shift-by".into(), "-3".into()],
            vec![7, 5, 7],
        ),
        (
            vec!["--all-topics"],
            vec!["--shift-by".into(), "-6".into()],
            vec![1, 0, 1],
        ),
        (
            vec!["--all-topics"],
            vec!["--shift-by".into(), "+2".into()],
            vec![3, 2, 3],
        ),
        (
            vec!["--topic", "orders"],
            vec!["--to-offset".into(), "99".into()],
            vec![10, 10, 10],
        ),
        (
            vec!["--topic", "orders"],
            vec!["--to-datetime".into(), rfc3339(base + 4 * HOUR + HOUR / 2)],
            vec![5, 5, 5],
        ),
        (
            vec!["--topic", "orders"],
            // now - 7.5h lies between records 2 (now-8h) and 3 (now-7h).
            vec!["--by-duration".into(), "PT7H30M".into()],
            vec![3, 3, 3],
        ),
    ];
    for (scope, target, want) in &cases {
        let target: Vec<&str> = target.iter().map(String::as_str).collect();
        let run = reset(&bs, "billing", scope, &target);
        let plan = run.json();
        assert_eq!(plan["executed"], true);
        assert_eq!(
            &committed(&bs, "billing"),
            want,
            "{scope:?} {target:?}: {}",
            run.stdout
        );
    }

    // A consumer of the group re-reads from the reset offsets.
    let run = reset(
        &bs,
        "billing",
        &["--topic", "orders"],
        &["--to-offset", "6"],
    );
    assert_eq!(run.code, 0);
    let first = first_offsets_read(&bs, "billing");
    assert_eq!(first, BTreeMap::from([(0, 6), (1, 6), (2, 6)]));

    // Errors: one line, non-zero exit.
    let unknown = offsets_cli(&bs, &["groups", "describe", "nobody"]);
    assert_eq!(unknown.code, 1);
    assert_eq!(
        unknown.stderr.trim(),
        "strata-offsets: error: unknown group 'nobody'"
    );
    let bad_topic = offsets_cli(
        &bs,
        &[
            "groups",
            "reset",
            "billing",
            "--topic",
            "nope",
            "--to-latest",
        ],
    );
    assert_eq!(bad_topic.code, 1);
    assert_eq!(
        bad_topic.stderr.trim(),
        "strata-offsets: error: unknown topic 'nope'"
    );
    let bad_time = offsets_cli(
        &bs,
        &[
            "groups",
            "reset",
            "billing",
            "--topic",
            "orders",
            "--to-datetime",
            "noon",
        ],
    );
    assert_eq!(bad_time.code, 1);
    assert!(
        bad_time
            .stderr
            .starts_with("strata-offsets: error: invalid time 'noon'"),
        "{}",
        bad_time.stderr
    );
    assert_eq!(bad_time.stderr.trim().lines().count(), 1);
    let bad_duration = offsets_cli(
        &bs,
        &[
            "groups",
            "reset",
            "billing",
            "--all-topics",
            "--by-duration",
            "1H",
        ],
    );
    assert_eq!(bad_duration.code, 1);
    assert!(
        bad_duration
            .stderr
            .starts_with("strata-offsets: error: invalid time '1H': must start with P"),
        "{}",
        bad_duration.stderr
    );
    let bad_partition = offsets_cli(
        &bs,
        &[
            "groups",
            "reset",
            "billing",
            "--topic",
            "orders:7",
            "--to-latest",
        ],
    );
    assert_eq!(bad_partition.code, 1);
    assert_eq!(
        bad_partition.stderr.trim(),
        "strata-offsets: error: unknown partition orders:7"
    );
    // Exactly one target is required (a usage error, exit 2).
    let two_targets = offsets_cli(
        &bs,
        &[
            "groups",
            "reset",
            "billing",
            "--all-topics",
            "--to-latest",
            "--to-earliest",
        ],
    );
    assert_eq!(two_targets.code, 2);
    // Nothing above changed the committed offsets.
    assert_eq!(committed(&bs, "billing"), vec![6, 6, 6]);

    broker.stop().await;
    let unreachable = offsets_cli(&bs, &["groups", "list"]);
    assert_eq!(unreachable.code, 1);
    assert!(
        unreachable
            .stderr
            .starts_with(&format!("strata-offsets: error: broker {bs} unreachable")),
        "{}",
        unreachable.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_is_refused_while_the_group_is_active() {
    let mut broker = Broker::start().await;
    let bs = broker.bootstrap.clone();
    produce_orders(&bs).await;
    commit(&bs, "live", &[(0, 2), (1, 2), (2, 2)]);
    let consumer = group_consumer(&bs, "live");
    consumer.subscribe(&["orders"]).unwrap();
    // Wait until the member has its assignment (a record arrives).
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "no record arrived");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            m.expect("no consumer error");
            break;
        }
    }
    let described = offsets_cli(&bs, &["--json", "groups", "describe", "live"]).json();
    assert_eq!(described["state"], "Stable");
    assert_eq!(described["members"].as_array().unwrap().len(), 1);
    let owned: Vec<&Value> = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["member_id"].is_string())
        .collect();
    assert_eq!(owned.len(), 3, "every partition shows its owner");
    offsets_cli(&bs, &["groups", "describe", "live"]);

    let refused = offsets_cli(
        &bs,
        &[
            "groups",
            "reset",
            "live",
            "--topic",
            "orders",
            "--to-earliest",
            "--execute",
        ],
    );
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("active member"),
        "{}",
        refused.stderr
    );
    // Keep polling so the member stays alive, then check nothing moved.
    consumer.poll(Duration::from_millis(100));
    assert_eq!(committed(&bs, "live"), vec![2, 2, 2]);
    // The dry run still works while active.
    let dry = offsets_cli(
        &bs,
        &[
            "groups",
            "reset",
            "live",
            "--topic",
            "orders",
            "--to-earliest",
        ],
    );
    assert_eq!(dry.code, 0);
    drop(consumer);
    broker.stop().await;
}

fn offsets_of(lines: &[Value]) -> Vec<(i64, i64)> {
    lines
        .iter()
        .map(|l| {
            (
                l["partition"].as_i64().unwrap(),
                l["offset"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_ranges_and_republish() {
    let mut broker = Broker::start().await;
    let bs = broker.bootstrap.clone();
    let base = produce_orders(&bs).await;

    // Offset range, one partition: [2, 6).
    let lines = offsets_cli(
        &bs,
        &[
            "replay",
            "--topic",
            "orders",
            "--partition",
            "1",
            "--from-offset",
            "2",
            "--to-offset",
            "6",
        ],
    )
    .json_lines();
    assert_eq!(offsets_of(&lines), vec![(1, 2), (1, 3), (1, 4), (1, 5)]);
    for l in &lines {
        let i = l["offset"].as_i64().unwrap();
        assert_eq!(l["key"], format!("key-1-{i}"));
        assert_eq!(l["value"], value_of(1, i));
        assert_eq!(l["timestamp"], base + i * HOUR);
        assert_eq!(l["headers"][0]["key"], "n");
        assert_eq!(l["headers"][0]["value"], i.to_string());
    }
    // Time range [base+2h, base+5h) on every partition: offsets 2, 3, 4 of each.
    let lines = offsets_cli(
        &bs,
        &[
            "replay",
            "--topic",
            "orders",
            "--from-datetime",
            &rfc3339(base + 2 * HOUR),
            "--to-datetime",
            &rfc3339(base + 5 * HOUR),
        ],
    )
    .json_lines();
    let want: Vec<(i64, i64)> = (0..3).flat_map(|p| (2..5).map(move |o| (p, o))).collect();
    assert_eq!(offsets_of(&lines), want);
    // --count across partitions, text and raw formats.
    let lines = offsets_cli(
        &bs,
        &[
            "replay",
            "--topic",
            "orders",
            "--from-offset",
            "8",
            "--count",
            "3",
        ],
    )
    .json_lines();
    assert_eq!(offsets_of(&lines), vec![(0, 8), (0, 9), (1, 8)]);
    let raw = offsets_cli(
        &bs,
        &[
            "replay",
            "--topic",
            "orders",
            "--partition",
            "2",
            "--from-offset",
            "7",
            "--format",
            "raw",
        ],
    );
    assert_eq!(raw.stdout, "order 2-7\norder 2-8\norder 2-9\n");
    // stdout is a pipe here: no progress bar (nor anything else) on stderr.
    assert_eq!(raw.stderr, "");
    let text = offsets_cli(
        &bs,
        &[
            "replay",
            "--topic",
            "orders",
            "--partition",
            "0",
            "--from-offset",
            "9",
            "--format",
            "text",
        ],
    );
    assert!(text.stdout.starts_with("p0 @9 "), "{}", text.stdout);
    assert!(text.stdout.contains("key=key-0-9 value=order 0-9 n:9"));

    // On a terminal (a pty from util-linux `script`) a progress bar is drawn on stderr;
    // every record is still printed.
    let command = format!(
        "{} --bootstrap {bs} replay --topic orders --from-offset 0",
        env!("CARGO_BIN_EXE_strata-offsets")
    );
    let tty = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("run script(1)");
    let seen = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{seen}");
    assert!(seen.contains("/30 records"), "no progress bar in {seen:?}");
    for p in 0..3 {
        for i in 0..PER_PARTITION {
            assert!(
                seen.contains(&format!("\"value\":\"{}\"", value_of(p, i))),
                "{p}-{i}"
            );
        }
    }

    // Compressed batches and non-UTF-8 bytes decode.
    create_topic(&bs, "zipped", 1).await;
    // Values are compressible (librdkafka sends a batch uncompressed when compression does
    // not shrink it) and the three records of a codec share one batch (linger).
    let zipped_value = |codec: &str, i: u8| [codec.as_bytes(), &[0xff, i], &[b'z'; 2000]].concat();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let producer = producer(&bs, &[("compression.codec", codec), ("linger.ms", "200")]);
        let values: Vec<Vec<u8>> = (0..3u8).map(|i| zipped_value(codec, i)).collect();
        let pending: Vec<_> = values
            .iter()
            .map(|v| {
                producer
                    .send_result(FutureRecord::<(), _>::to("zipped").partition(0).payload(v))
                    .map_err(|(e, _)| e)
                    .unwrap()
            })
            .collect();
        for p in pending {
            p.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    }
    let lines =
        offsets_cli(&bs, &["replay", "--topic", "zipped", "--from-offset", "0"]).json_lines();
    assert_eq!(lines.len(), 12);
    use base64::Engine;
    for (n, l) in lines.iter().enumerate() {
        let codec = ["gzip", "snappy", "lz4", "zstd"][n / 3];
        let want = zipped_value(codec, (n % 3) as u8);
        let got = base64::engine::general_purpose::STANDARD
            .decode(l["value_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(got, want, "record {n}");
        assert!(l["key"].is_null());
    }
    let dump = offsets_cli(
        &bs,
        &[
            "--json",
            "log",
            "dump",
            broker.partition_dir("zipped", 0).to_str().unwrap(),
        ],
    );
    let codecs: Vec<String> = dump
        .json_lines()
        .iter()
        .map(|b| b["compression"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        codecs,
        vec!["gzip", "snappy", "lz4", "zstd"],
        "one batch per codec"
    );

    // --to-topic: every keyed record lands on its murmur2 partition, keeping key, value,
    // headers and timestamp. librdkafka's murmur2_random partitioner (the Java default)
    // places the same keys independently for comparison.
    create_topic(&bs, "copy", 5).await;
    let published = offsets_cli(
        &bs,
        &[
            "--json",
            "replay",
            "--topic",
            "orders",
            "--from-offset",
            "0",
            "--to-topic",
            "copy",
        ],
    )
    .json();
    assert_eq!(published["records"], 30);
    create_topic(&bs, "javalike", 5).await;
    let java = producer(&bs, &[("partitioner", "murmur2_random")]);
    let mut java_partition = BTreeMap::new();
    for p in 0..3 {
        for i in 0..PER_PARTITION {
            let key = format!("key-{p}-{i}");
            let delivery = java
                .send(
                    FutureRecord::to("javalike").key(&key).payload("x"),
                    PATIENCE,
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
            java_partition.insert(key, delivery.partition);
        }
    }
    let copied =
        offsets_cli(&bs, &["replay", "--topic", "copy", "--from-offset", "0"]).json_lines();
    assert_eq!(copied.len(), 30);
    for l in &copied {
        let key = l["key"].as_str().unwrap();
        let partition = l["partition"].as_i64().unwrap() as i32;
        assert_eq!(partition, partition_for_key(key.as_bytes(), 5), "{key}");
        assert_eq!(
            partition, java_partition[key],
            "{key} vs librdkafka murmur2"
        );
        let (p, i) = key["key-".len()..].split_once('-').unwrap();
        let (p, i): (i32, i64) = (p.parse().unwrap(), i.parse().unwrap());
        assert_eq!(l["value"], value_of(p, i));
        assert_eq!(l["timestamp"], base + i * HOUR);
        assert_eq!(l["headers"][0]["value"], i.to_string());
    }
    let spread: std::collections::BTreeSet<i64> = copied
        .iter()
        .map(|l| l["partition"].as_i64().unwrap())
        .collect();
    assert!(spread.len() > 1, "keys spread over partitions");

    // A header key may repeat; replay and re-publishing keep every header in order.
    create_topic(&bs, "dupes", 1).await;
    create_topic(&bs, "dupes-copy", 1).await;
    producer(&bs, &[])
        .send(
            FutureRecord::to("dupes").key("k").payload("v").headers(
                OwnedHeaders::new()
                    .insert(Header {
                        key: "trace",
                        value: Some("1"),
                    })
                    .insert(Header {
                        key: "trace",
                        value: Some("2"),
                    })
                    .insert(Header::<&str> {
                        key: "none",
                        value: None,
                    }),
            ),
            PATIENCE,
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let want = serde_json::json!([
        {"key": "trace", "value": "1"},
        {"key": "trace", "value": "2"},
        {"key": "none", "value": null}
    ]);
    let lines =
        offsets_cli(&bs, &["replay", "--topic", "dupes", "--from-offset", "0"]).json_lines();
    assert_eq!(lines[0]["headers"], want);
    let copied = offsets_cli(
        &bs,
        &[
            "replay",
            "--topic",
            "dupes",
            "--from-offset",
            "0",
            "--to-topic",
            "dupes-copy",
        ],
    );
    assert_eq!(copied.code, 0, "{}", copied.stderr);
    let lines = offsets_cli(
        &bs,
        &["replay", "--topic", "dupes-copy", "--from-offset", "0"],
    )
    .json_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["headers"], want);

    // An unknown topic is one line and exit 1.
    let missing = offsets_cli(&bs, &["replay", "--topic", "ghost", "--from-offset", "0"]);
    assert_eq!(missing.code, 1);
    assert_eq!(
        missing.stderr.trim(),
        "strata-offsets: error: unknown topic 'ghost'"
    );
    broker.stop().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Runs `log verify` on `dir` and returns its one-line error (asserting exit 1).
fn verify_fails(bs: &str, dir: &Path) -> String {
    let run = offsets_cli(bs, &["log", "verify", dir.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(run.stderr.trim().lines().count(), 1);
    run.stderr.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_dump_and_verify() {
    let mut broker = Broker::start().await;
    let bs = broker.bootstrap.clone();
    // Small segments (3 batches of 88 bytes each) and an index entry after every batch, so
    // there are sealed segments with real index files to check.
    create_topic_with(
        &bs,
        "orders",
        1,
        &[("segment.bytes", "300"), ("index.interval.bytes", "1")],
    )
    .await;
    produce_records(&bs, "orders", 1).await;
    broker.stop().await;
    let dir = broker.partition_dir("orders", 0);
    let dir_s = dir.to_str().unwrap();

    let ok = offsets_cli(&bs, &["log", "verify", dir_s]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(
        ok.stdout
            .contains(": OK: 4 segment(s), 10 batch(es), 10 record(s), offsets 0..9, 6 index and "),
        "{}",
        ok.stdout
    );
    let verified = offsets_cli(&bs, &["--json", "log", "verify", dir_s]).json();
    assert!(verified["summary"]["time_index_entries"].as_u64().unwrap() >= 4);
    let batches = offsets_cli(&bs, &["--json", "log", "dump", dir_s]).json_lines();
    assert_eq!(batches.len(), 10);
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(b["base_offset"], i as i64);
        assert_eq!(b["crc_ok"], true);
        assert_eq!(b["compression"], "none");
        assert_eq!(b["position"], (i as u64 % 3) * 88);
    }
    offsets_cli(&bs, &["log", "dump", dir_s]);
    let one = dir.join("00000000000000000003.log");
    let with_records = offsets_cli(&bs, &["log", "dump", "--records", one.to_str().unwrap()]);
    assert_eq!(with_records.code, 0);
    assert!(
        with_records
            .stdout
            .contains("key=key-0-4 value=order 0-4 n:4"),
        "{}",
        with_records.stdout
    );

    let bad = tempfile::tempdir().unwrap();
    let bad_dir = bad.path().join("orders-0");
    let seg = |base: i64, suffix: &str| bad_dir.join(format!("{base:020}.{suffix}"));

    // One flipped byte inside the records of offset 4 (second segment, byte 88).
    copy_dir(&dir, &bad_dir);
    let mut bytes = std::fs::read(seg(3, "log")).unwrap();
    bytes[88 + 70] ^= 0x40;
    std::fs::write(seg(3, "log"), &bytes).unwrap();
    let error = verify_fails(&bs, &bad_dir);
    let prefix = format!(
        "strata-offsets: error: {}: byte 88: CRC-32C mismatch: stored {}, computed 0x",
        seg(3, "log").display(),
        batches[4]["crc"].as_str().unwrap()
    );
    assert!(error.starts_with(&prefix), "{error}");
    let dumped = offsets_cli(&bs, &["log", "dump", seg(3, "log").to_str().unwrap()]);
    assert_eq!(dumped.code, 1);
    assert!(dumped.stdout.contains("BAD("), "{}", dumped.stdout);

    // A torn last batch: its length points past the end of the file.
    copy_dir(&dir, &bad_dir);
    let mut bytes = std::fs::read(seg(9, "log")).unwrap();
    bytes.truncate(bytes.len() - 5);
    std::fs::write(seg(9, "log"), &bytes).unwrap();
    let error = verify_fails(&bs, &bad_dir);
    assert!(
        error.contains(&format!(
            "{}: byte 0: batch length 76 does not fit",
            seg(9, "log").display()
        )),
        "{error}"
    );

    // An offset index entry that points into the middle of a batch.
    copy_dir(&dir, &bad_dir);
    let mut entries = std::fs::read(seg(0, "index")).unwrap();
    // Kafka's rule: an entry once more than index.interval.bytes were appended since the
    // last one, so every batch but a segment's first: (1, 88) and (2, 176).
    assert_eq!(entries.len(), 2 * 8);
    assert_eq!(&entries[8..16], &[0, 0, 0, 2, 0, 0, 0, 176]);
    entries[12..16].copy_from_slice(&89u32.to_be_bytes());
    std::fs::write(seg(0, "index"), &entries).unwrap();
    let error = verify_fails(&bs, &bad_dir);
    assert!(
        error.contains(&format!(
            "{}: byte 8: position 89 is not the start of a batch",
            seg(0, "index").display()
        )),
        "{error}"
    );

    // A time index entry later than any batch it covers.
    copy_dir(&dir, &bad_dir);
    let mut entries = std::fs::read(seg(0, "timeindex")).unwrap();
    assert!(!entries.is_empty());
    let ts = i64::from_be_bytes(entries[0..8].try_into().unwrap()) + 24 * HOUR;
    entries[0..8].copy_from_slice(&ts.to_be_bytes());
    std::fs::write(seg(0, "timeindex"), &entries).unwrap();
    let error = verify_fails(&bs, &bad_dir);
    assert!(
        error.contains(&format!(
            "{}: byte 0: timestamp {ts}",
            seg(0, "timeindex").display()
        )),
        "{error}"
    );

    // Segments that overlap: the third segment's batches copied over the second's name.
    copy_dir(&dir, &bad_dir);
    std::fs::copy(seg(0, "log"), seg(3, "log")).unwrap();
    let error = verify_fails(&bs, &bad_dir);
    assert!(
        error.contains(&format!(
            "{}: byte 0: batch base offset 0 below the segment base 3",
            seg(3, "log").display()
        )),
        "{error}"
    );
}

/// `(client id, api key) -> versions` seen by [`capping_proxy`].
type Seen =
    std::sync::Arc<std::sync::Mutex<BTreeMap<(String, i16), std::collections::BTreeSet<i16>>>>;

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

/// A proxy in front of `upstream` that answers like an older broker: it lowers the maximum
/// versions in every ApiVersions response to `caps` (api key -> max) and records the
/// version of every request it forwards, by client id.
fn capping_proxy(
    listener: tokio::net::TcpListener,
    upstream: std::net::SocketAddr,
    caps: BTreeMap<i16, i16>,
    seen: Seen,
) {
    use kafka_protocol::messages::ApiVersionsResponse;
    use kafka_protocol::protocol::{Decodable, Encodable};
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let caps = caps.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                while let Some(request) = read_frame(&mut client).await {
                    let key = i16::from_be_bytes([request[0], request[1]]);
                    let version = i16::from_be_bytes([request[2], request[3]]);
                    let id_len = i16::from_be_bytes([request[8], request[9]]).max(0) as usize;
                    let client_id = String::from_utf8_lossy(&request[10..10 + id_len]).to_string();
                    seen.lock()
                        .unwrap()
                        .entry((client_id, key))
                        .or_default()
                        .insert(version);
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

/// Against a broker that advertises only Kafka 1.0's versions (non-flexible everywhere),
/// the tool negotiates down to them and every command still gives the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negotiates_down_to_an_older_brokers_versions() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_defaults("127.0.0.1:0".parse().unwrap(), dir.path());
    config.group_initial_rebalance_delay_ms = 0;
    config.auto_create_topics = false;
    config.advertised_host = Some("127.0.0.1".to_string());
    config.advertised_port = Some(proxy_addr.port());
    let running = strata::start(config).await.expect("broker starts");
    // Kafka 1.0: Produce 5, Fetch 6, ListOffsets 2, Metadata 5, OffsetCommit 3,
    // OffsetFetch 3, FindCoordinator 1, ListGroups 1, DescribeGroups 1, ApiVersions 1.
    let caps = BTreeMap::from([
        (0, 5),
        (1, 6),
        (2, 2),
        (3, 5),
        (8, 3),
        (9, 3),
        (10, 1),
        (15, 1),
        (16, 1),
        (18, 1),
    ]);
    let seen: Seen = Default::default();
    capping_proxy(listener, running.local_addr(), caps, seen.clone());
    let bs = proxy_addr.to_string();

    let base = produce_orders(&bs).await;
    commit(&bs, "old", &[(0, 3), (1, 3), (2, 3)]);
    let described = offsets_cli(&bs, &["--json", "groups", "describe", "old"]).json();
    assert_eq!(described["total_lag"]["orders"], 21);
    offsets_cli(&bs, &["--json", "groups", "list"]).json();
    reset(&bs, "old", &["--all-topics"], &["--to-offset", "5"]).json();
    assert_eq!(committed(&bs, "old"), vec![5, 5, 5]);
    let lines = offsets_cli(
        &bs,
        &[
            "replay",
            "--topic",
            "orders",
            "--partition",
            "0",
            "--from-offset",
            "8",
        ],
    )
    .json_lines();
    assert_eq!(offsets_of(&lines), vec![(0, 8), (0, 9)]);
    assert_eq!(lines[1]["timestamp"], base + 9 * HOUR);
    create_topic(&bs, "copy", 4).await;
    let published = offsets_cli(
        &bs,
        &[
            "--json",
            "replay",
            "--topic",
            "orders",
            "--from-offset",
            "0",
            "--to-topic",
            "copy",
        ],
    )
    .json();
    assert_eq!(published["records"], 30);
    let copied =
        offsets_cli(&bs, &["replay", "--topic", "copy", "--from-offset", "0"]).json_lines();
    assert_eq!(copied.len(), 30);
    for l in &copied {
        let key = l["key"].as_str().unwrap();
        assert_eq!(
            l["partition"].as_i64().unwrap() as i32,
            partition_for_key(key.as_bytes(), 4)
        );
    }

    let seen = seen.lock().unwrap().clone();
    let used = |key: i16| {
        seen.get(&("strata-offsets".to_string(), key))
            .cloned()
            .unwrap_or_default()
    };
    for (key, version) in [
        (0, 5),
        (1, 6),
        (2, 2),
        (3, 5),
        (8, 3),
        (9, 3),
        (10, 1),
        (15, 1),
        (16, 1),
    ] {
        assert_eq!(
            used(key),
            std::collections::BTreeSet::from([version]),
            "api {key}: the broker's maximum, nothing else"
        );
    }
    assert_eq!(used(18), std::collections::BTreeSet::from([0]));
    running.shutdown().await;
}
