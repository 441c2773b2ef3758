//! Topic administration through librdkafka's AdminClient (rdkafka): create (with configs,
//! validate_only), delete, create partitions, describe and alter configs, DeleteRecords,
//! and the errors for invalid names and configs. IncrementalAlterConfigs and
//! DescribeCluster, which rdkafka 0.39 does not expose, are sent as raw requests encoded
//! with kafka-protocol, and their effect is checked through rdkafka.

mod common;

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use common::{consumer, producer, TestBroker, PATIENCE};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    alter_configs_request, AlterConfigsRequest, AlterConfigsResponse, ApiKey,
    DescribeClusterRequest, DescribeClusterResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigEntry, ConfigResource, ConfigSource,
    NewPartitions, NewTopic, OwnedResourceSpecifier, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Admin = AdminClient<DefaultClientContext>;

/// Admin tests run with auto-creation off, so a metadata lookup never creates a topic.
async fn start() -> TestBroker {
    TestBroker::start_with(|c| c.auto_create_topics = false).await
}

fn admin(broker: &TestBroker) -> Admin {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("admin client")
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(PATIENCE))
}

/// Partition count of `topic` per the broker's Metadata, None when it does not exist.
fn partition_count(admin: &Admin, topic: &str) -> Option<usize> {
    let metadata = admin.inner().fetch_metadata(None, PATIENCE).unwrap();
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
}

async fn create(
    admin: &Admin,
    topic: NewTopic<'_>,
    opts: &AdminOptions,
) -> Result<(), RDKafkaErrorCode> {
    let results = admin.create_topics([&topic], opts).await.unwrap();
    assert_eq!(results.len(), 1);
    results
        .into_iter()
        .next()
        .unwrap()
        .map(|_| ())
        .map_err(|(_, code)| code)
}

async fn describe_topic(admin: &Admin, topic: &str) -> ConfigResource {
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts())
        .await
        .unwrap();
    results
        .into_iter()
        .next()
        .unwrap()
        .expect("describe succeeds")
}

fn value<'a>(resource: &'a ConfigResource, name: &str) -> Option<&'a str> {
    resource.get(name).and_then(|e| e.value.as_deref())
}

/// Every config of broker 0 (DescribeConfigs on the broker resource).
async fn describe_broker(admin: &Admin) -> ConfigResource {
    let results = admin
        .describe_configs([&ResourceSpecifier::Broker(0)], &opts())
        .await
        .unwrap();
    results
        .into_iter()
        .next()
        .unwrap()
        .expect("broker resource")
}

/// Sends one request over a fresh connection and decodes the response.
async fn raw_request<Req: Encodable, Resp: Decodable>(
    broker: &TestBroker,
    api: ApiKey,
    version: i16,
    request: &Req,
) -> Resp {
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("admin-test")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api.request_header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.unwrap();
    let len = stream.read_i32().await.unwrap();
    let mut response = vec![0u8; len as usize];
    stream.read_exact(&mut response).await.unwrap();
    let mut response = bytes::Bytes::from(response);
    let header =
        ResponseHeader::decode(&mut response, api.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 42);
    let decoded = Resp::decode(&mut response, version).unwrap();
    assert_eq!(response.remaining(), 0, "whole response decoded");
    decoded
}

async fn incremental_alter(
    broker: &TestBroker,
    topic: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> (i16, Option<String>) {
    let resource = AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(topic.to_owned()))
        .with_configs(
            ops.iter()
                .map(|(name, op, value)| {
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string((*name).to_owned()))
                        .with_config_operation(*op)
                        .with_value(value.map(|v| StrBytes::from_string(v.to_owned())))
                })
                .collect(),
        );
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![resource]);
    let response: IncrementalAlterConfigsResponse =
        raw_request(broker, ApiKey::IncrementalAlterConfigs, 1, &request).await;
    let result = &response.responses[0];
    (
        result.error_code,
        result.error_message.as_ref().map(|m| m.as_str().to_owned()),
    )
}

/// Produces `count` records with acks=all (so they are below the high watermark).
async fn produce(broker: &TestBroker, topic: &str, partition: i32, count: usize) {
    let producer = producer(&broker.bootstrap(), &[("acks", "all"), ("linger.ms", "0")]);
    for i in 0..count {
        let value = format!("record {i}");
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key("k")
                    .payload(&value),
                PATIENCE,
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

/// Offset and timestamp of the first record a consumer reading `topic`/`partition` from
/// the earliest offset receives (blocking; panics after PATIENCE).
fn first_record(bootstrap: &str, topic: &str, partition: i32) -> (i64, Timestamp) {
    let consumer = consumer(bootstrap, &[("group.id", "admin-test")]);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "no record from {topic}-{partition}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => return (m.offset(), m.timestamp()),
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_with_configs_and_validate_only() {
    let broker = start().await;
    let admin = admin(&broker);

    let dry = NewTopic::new("dry-run", 3, TopicReplication::Fixed(1)).set("retention.ms", "1000");
    create(&admin, dry, &opts().validate_only(true))
        .await
        .unwrap();
    assert_eq!(partition_count(&admin, "dry-run"), None);
    assert!(!broker.data_dir().join("dry-run-0").exists());

    let topic = NewTopic::new("orders", 3, TopicReplication::Fixed(1))
        .set("retention.ms", "3600000")
        .set("cleanup.policy", "compact,delete")
        .set("max.message.bytes", "2000000");
    create(&admin, topic, &opts()).await.unwrap();
    assert_eq!(partition_count(&admin, "orders"), Some(3));
    for p in 0..3 {
        assert!(broker.data_dir().join(format!("orders-{p}")).is_dir());
    }
    let configs = describe_topic(&admin, "orders").await;
    assert_eq!(value(&configs, "retention.ms"), Some("3600000"));
    assert_eq!(value(&configs, "cleanup.policy"), Some("compact,delete"));
    assert_eq!(value(&configs, "max.message.bytes"), Some("2000000"));

    // Default partition count (-1) and replication factor (-1).
    let defaults = NewTopic::new("defaults", -1, TopicReplication::Fixed(-1));
    create(&admin, defaults, &opts()).await.unwrap();
    assert_eq!(partition_count(&admin, "defaults"), Some(1));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_names_configs_and_counts_get_kafka_errors() {
    let broker = start().await;
    let admin = admin(&broker);
    create(
        &admin,
        NewTopic::new("taken", 1, TopicReplication::Fixed(1)),
        &opts(),
    )
    .await
    .unwrap();
    create(
        &admin,
        NewTopic::new("with.dot", 1, TopicReplication::Fixed(1)),
        &opts(),
    )
    .await
    .unwrap();
    let long_name = "n".repeat(250);
    let cases: Vec<(NewTopic<'_>, RDKafkaErrorCode)> = vec![
        (
            NewTopic::new("taken", 1, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::TopicAlreadyExists,
        ),
        (
            NewTopic::new("with_dot", 1, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::InvalidTopic,
        ),
        (
            NewTopic::new("bad name", 1, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::InvalidTopic,
        ),
        (
            NewTopic::new("..", 1, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::InvalidTopic,
        ),
        (
            NewTopic::new(&long_name, 1, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::InvalidTopic,
        ),
        (
            NewTopic::new("zero-partitions", 0, TopicReplication::Fixed(1)),
            RDKafkaErrorCode::InvalidPartitions,
        ),
        (
            NewTopic::new("three-replicas", 1, TopicReplication::Fixed(3)),
            RDKafkaErrorCode::InvalidReplicationFactor,
        ),
        (
            NewTopic::new("bad-value", 1, TopicReplication::Fixed(1))
                .set("retention.ms", "forever"),
            RDKafkaErrorCode::InvalidConfig,
        ),
        (
            NewTopic::new("bad-key", 1, TopicReplication::Fixed(1)).set("retention.weeks", "1"),
            RDKafkaErrorCode::InvalidConfig,
        ),
        (
            NewTopic::new("bad-policy", 1, TopicReplication::Fixed(1))
                .set("cleanup.policy", "shred"),
            RDKafkaErrorCode::InvalidConfig,
        ),
    ];
    for (topic, expected) in cases {
        let name = topic.name.to_owned();
        assert_eq!(
            create(&admin, topic, &opts()).await,
            Err(expected),
            "{name}"
        );
    }
    for name in [
        "with_dot",
        "zero-partitions",
        "three-replicas",
        "bad-value",
        "bad-key",
        "bad-policy",
    ] {
        assert_eq!(partition_count(&admin, name), None, "{name} must not exist");
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_topics_removes_metadata_and_files() {
    let broker = start().await;
    let admin = admin(&broker);
    create(
        &admin,
        NewTopic::new("doomed", 2, TopicReplication::Fixed(1)),
        &opts(),
    )
    .await
    .unwrap();
    produce(&broker, "doomed", 1, 3).await;
    assert!(broker.data_dir().join("doomed-1").is_dir());

    let results = admin
        .delete_topics(&["doomed", "never-existed"], &opts())
        .await
        .unwrap();
    assert_eq!(results[0], Ok("doomed".to_owned()));
    assert_eq!(
        results[1],
        Err((
            "never-existed".to_owned(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))
    );
    assert_eq!(partition_count(&admin, "doomed"), None);
    assert!(!broker.data_dir().join("doomed-0").exists());
    assert!(!broker.data_dir().join("doomed-1").exists());

    // The name is free again, and the new topic starts empty.
    create(
        &admin,
        NewTopic::new("doomed", 1, TopicReplication::Fixed(1)),
        &opts(),
    )
    .await
    .unwrap();
    let broker = broker.restart(|c| c.auto_create_topics = false).await;
    let admin = self::admin(&broker);
    assert_eq!(partition_count(&admin, "doomed"), Some(1));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_partitions_grows_only() {
    let broker = start().await;
    let admin = admin(&broker);
    create(
        &admin,
        NewTopic::new("growing", 1, TopicReplication::Fixed(1)),
        &opts(),
    )
    .await
    .unwrap();

    let dry = admin
        .create_partitions(
            [&NewPartitions::new("growing", 5)],
            &opts().validate_only(true),
        )
        .await
        .unwrap();
    assert_eq!(dry[0], Ok("growing".to_owned()));
    assert_eq!(partition_count(&admin, "growing"), Some(1));

    let grown = admin
        .create_partitions([&NewPartitions::new("growing", 4)], &opts())
        .await
        .unwrap();
    assert_eq!(grown[0], Ok("growing".to_owned()));
    assert_eq!(partition_count(&admin, "growing"), Some(4));
    produce(&broker, "growing", 3, 2).await;

    for count in [4, 2] {
        let refused = admin
            .create_partitions([&NewPartitions::new("growing", count)], &opts())
            .await
            .unwrap();
        assert_eq!(
            refused[0],
            Err(("growing".to_owned(), RDKafkaErrorCode::InvalidPartitions)),
            "to {count}"
        );
    }
    let unknown = admin
        .create_partitions([&NewPartitions::new("nowhere", 2)], &opts())
        .await
        .unwrap();
    assert_eq!(
        unknown[0],
        Err((
            "nowhere".to_owned(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))
    );

    let broker = broker.restart(|c| c.auto_create_topics = false).await;
    let admin = self::admin(&broker);
    assert_eq!(partition_count(&admin, "growing"), Some(4));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn describe_configs_reports_values_sources_and_defaults() {
    let broker = TestBroker::start_with(|c| {
        c.auto_create_topics = false;
        c.default_retention_bytes = 1 << 30;
    })
    .await;
    let admin = admin(&broker);
    let topic =
        NewTopic::new("described", 1, TopicReplication::Fixed(1)).set("segment.bytes", "1048576");
    create(&admin, topic, &opts()).await.unwrap();

    let configs = describe_topic(&admin, "described").await;
    let entry = |name: &str| configs.get(name).unwrap_or_else(|| panic!("{name} listed"));
    for name in [
        "retention.ms",
        "retention.bytes",
        "segment.bytes",
        "segment.ms",
        "segment.index.bytes",
        "index.interval.bytes",
        "cleanup.policy",
        "max.message.bytes",
        "message.timestamp.type",
        "flush.messages",
        "flush.ms",
        "min.insync.replicas",
    ] {
        assert!(!entry(name).is_read_only, "{name} is alterable");
    }
    let segment = entry("segment.bytes");
    assert_eq!(segment.value.as_deref(), Some("1048576"));
    assert_eq!(segment.source, ConfigSource::DynamicTopic);
    assert!(!segment.is_default);

    let retention_bytes = entry("retention.bytes");
    assert_eq!(retention_bytes.value.as_deref(), Some("1073741824"));
    assert_eq!(retention_bytes.source, ConfigSource::StaticBroker);
    assert!(!retention_bytes.is_default);

    let retention_ms = entry("retention.ms");
    assert_eq!(retention_ms.value.as_deref(), Some("604800000"));
    assert_eq!(retention_ms.source, ConfigSource::Default);
    assert!(retention_ms.is_default);
    assert_eq!(value(&configs, "cleanup.policy"), Some("delete"));
    assert_eq!(
        value(&configs, "message.timestamp.type"),
        Some("CreateTime")
    );

    let broker_results = admin
        .describe_configs([&ResourceSpecifier::Broker(0)], &opts())
        .await
        .unwrap();
    let node = broker_results
        .into_iter()
        .next()
        .unwrap()
        .expect("broker resource");
    assert_eq!(value(&node, "log.retention.bytes"), Some("1073741824"));
    assert_eq!(value(&node, "node.id"), Some("0"));
    assert_eq!(value(&node, "num.partitions"), Some("1"));

    // rdkafka 0.39 drops per-resource errors (the unit tests check the error code), so
    // an unknown topic shows up as a resource without entries.
    let missing = admin
        .describe_configs([&ResourceSpecifier::Topic("missing")], &opts())
        .await
        .unwrap();
    match missing.into_iter().next().unwrap() {
        Ok(resource) => assert!(resource.entries.is_empty()),
        Err(code) => assert_eq!(code, RDKafkaErrorCode::UnknownTopicOrPartition),
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alter_configs_is_live_and_survives_restart() {
    let broker = start().await;
    let admin = admin(&broker);
    create(
        &admin,
        NewTopic::new("stamped", 1, TopicReplication::Fixed(1)),
        &opts(),
    )
    .await
    .unwrap();

    let alter = AlterConfig::new(ResourceSpecifier::Topic("stamped"))
        .set("message.timestamp.type", "LogAppendTime")
        .set("retention.ms", "86400000");
    let results = admin.alter_configs([&alter], &opts()).await.unwrap();
    assert!(results[0].is_ok(), "{:?}", results[0]);

    // Live: a record produced now carries the broker's append time.
    let producer = producer(&broker.bootstrap(), &[("acks", "all")]);
    producer
        .send(
            FutureRecord::to("stamped")
                .key("k")
                .payload("v")
                .timestamp(1_000),
            PATIENCE,
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let bootstrap = broker.bootstrap();
    let (_, timestamp) =
        tokio::task::spawn_blocking(move || first_record(&bootstrap, "stamped", 0))
            .await
            .unwrap();
    match timestamp {
        Timestamp::LogAppendTime(ts) => assert!(ts > 1_000, "append time {ts}"),
        other => panic!("expected LogAppendTime, got {other:?}"),
    }

    // An invalid value changes nothing. (rdkafka 0.39 drops per-resource errors of
    // AlterConfigs; the unit tests check the INVALID_CONFIG code.)
    let bad = AlterConfig::new(ResourceSpecifier::Topic("stamped")).set("retention.ms", "-9");
    admin.alter_configs([&bad], &opts()).await.unwrap();
    let configs = describe_topic(&admin, "stamped").await;
    assert_eq!(value(&configs, "retention.ms"), Some("86400000"));
    // The same request on the wire answers INVALID_CONFIG with Kafka's message.
    let raw = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("stamped"))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("-9")))]),
    ]);
    let response: AlterConfigsResponse = raw_request(&broker, ApiKey::AlterConfigs, 2, &raw).await;
    assert_eq!(response.responses[0].error_code, 40);
    let message = response.responses[0].error_message.as_ref().unwrap();
    assert!(message.as_str().contains("retention.ms"), "{message:?}");

    let broker = broker.restart(|c| c.auto_create_topics = false).await;
    let admin = self::admin(&broker);
    let configs = describe_topic(&admin, "stamped").await;
    assert_eq!(
        value(&configs, "message.timestamp.type"),
        Some("LogAppendTime")
    );
    assert_eq!(value(&configs, "retention.ms"), Some("86400000"));
    assert_eq!(
        configs.get("retention.ms").unwrap().source,
        ConfigSource::DynamicTopic
    );

    // AlterConfigs replaces the whole override set.
    let replace = AlterConfig::new(ResourceSpecifier::Topic("stamped")).set("flush.messages", "1");
    let results = admin.alter_configs([&replace], &opts()).await.unwrap();
    assert!(results[0].is_ok());
    let configs = describe_topic(&admin, "stamped").await;
    assert_eq!(
        value(&configs, "message.timestamp.type"),
        Some("CreateTime")
    );
    assert!(configs.get("retention.ms").unwrap().is_default);
    assert_eq!(value(&configs, "flush.messages"), Some("1"));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incremental_alter_configs_is_live_and_survives_restart() {
    let broker = start().await;
    let admin = admin(&broker);
    let topic =
        NewTopic::new("tuned", 1, TopicReplication::Fixed(1)).set("segment.bytes", "1048576");
    create(&admin, topic, &opts()).await.unwrap();

    let (code, message) = incremental_alter(
        &broker,
        "tuned",
        &[
            ("max.message.bytes", 0, Some("200")),
            ("cleanup.policy", 2, Some("compact")),
        ],
    )
    .await;
    assert_eq!(code, 0, "{message:?}");
    let configs = describe_topic(&admin, "tuned").await;
    assert_eq!(value(&configs, "max.message.bytes"), Some("200"));
    assert_eq!(value(&configs, "cleanup.policy"), Some("delete,compact"));
    assert_eq!(
        value(&configs, "segment.bytes"),
        Some("1048576"),
        "other overrides kept"
    );

    // Live: a batch over 200 bytes is now refused.
    let producer = producer(
        &broker.bootstrap(),
        &[("acks", "all"), ("message.max.bytes", "100000")],
    );
    let big = "x".repeat(1_000);
    let refused = producer
        .send(FutureRecord::to("tuned").key("k").payload(&big), PATIENCE)
        .await
        .map_err(|(e, _)| e.rdkafka_error_code());
    assert_eq!(
        refused.unwrap_err(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
    );

    let (code, message) =
        incremental_alter(&broker, "tuned", &[("retention.ms", 2, Some("5"))]).await;
    assert_eq!(code, 40, "APPEND on a non-list config");
    assert!(message.unwrap().contains("retention.ms"));
    let (code, _) = incremental_alter(&broker, "tuned", &[("max.message.bytes", 1, None)]).await;
    assert_eq!(code, 0);

    let broker = broker.restart(|c| c.auto_create_topics = false).await;
    let admin = self::admin(&broker);
    let configs = describe_topic(&admin, "tuned").await;
    assert!(configs.get("max.message.bytes").unwrap().is_default);
    assert_eq!(value(&configs, "cleanup.policy"), Some("delete,compact"));
    assert_eq!(value(&configs, "segment.bytes"), Some("1048576"));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_records_moves_the_low_watermark() {
    let broker = start().await;
    let admin = admin(&broker);
    create(
        &admin,
        NewTopic::new("trimmed", 2, TopicReplication::Fixed(1)),
        &opts(),
    )
    .await
    .unwrap();
    produce(&broker, "trimmed", 0, 10).await;
    produce(&broker, "trimmed", 1, 4).await;

    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("trimmed", 0, Offset::Offset(6))
        .unwrap();
    offsets
        .add_partition_offset("trimmed", 1, Offset::End)
        .unwrap();
    let result = admin.delete_records(&offsets, &opts()).await.unwrap();
    let p0 = result.find_partition("trimmed", 0).unwrap();
    assert!(p0.error().is_ok(), "{:?}", p0.error());
    assert_eq!(p0.offset(), Offset::Offset(6));
    let p1 = result.find_partition("trimmed", 1).unwrap();
    assert!(p1.error().is_ok(), "{:?}", p1.error());
    assert_eq!(
        p1.offset(),
        Offset::Offset(4),
        "-1 deletes up to the high watermark"
    );

    // Beyond the high watermark: OFFSET_OUT_OF_RANGE, nothing changes.
    let mut beyond = TopicPartitionList::new();
    beyond
        .add_partition_offset("trimmed", 0, Offset::Offset(11))
        .unwrap();
    let result = admin.delete_records(&beyond, &opts()).await.unwrap();
    let p0 = result.find_partition("trimmed", 0).unwrap();
    assert!(p0.error().is_err());

    // A consumer from earliest starts at the new low watermark.
    let bootstrap = broker.bootstrap();
    let low = tokio::task::spawn_blocking(move || {
        let (low, high) = consumer(&bootstrap, &[("group.id", "admin-test")])
            .fetch_watermarks("trimmed", 0, PATIENCE)
            .expect("watermarks");
        assert_eq!(high, 10);
        let (first, _) = first_record(&bootstrap, "trimmed", 0);
        assert_eq!(first, 6);
        low
    })
    .await
    .unwrap();
    assert_eq!(low, 6);

    let broker = broker.restart(|c| c.auto_create_topics = false).await;
    let bootstrap = broker.bootstrap();
    let low = tokio::task::spawn_blocking(move || {
        consumer(&bootstrap, &[("group.id", "admin-test")])
            .fetch_watermarks("trimmed", 0, PATIENCE)
            .expect("watermarks")
            .0
    })
    .await
    .unwrap();
    assert_eq!(low, 6, "the log start offset survives a restart");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn describe_cluster_names_this_node() {
    let broker = start().await;
    let response: DescribeClusterResponse = raw_request(
        &broker,
        ApiKey::DescribeCluster,
        1,
        &DescribeClusterRequest::default(),
    )
    .await;
    assert_eq!(response.error_code, 0);
    assert_eq!(response.controller_id.0, 0);
    assert_eq!(response.brokers.len(), 1);
    assert_eq!(response.brokers[0].broker_id.0, 0);
    assert_eq!(response.brokers[0].port, i32::from(broker.addr().port()));
    let metadata = admin(&broker)
        .inner()
        .fetch_metadata(None, PATIENCE)
        .unwrap();
    assert_eq!(metadata.brokers()[0].id(), response.brokers[0].broker_id.0);
    assert!(!response.cluster_id.as_str().is_empty());
    broker.shutdown().await;
}

/// What rdkafka's own `test_configs` does against the broker resource, then a restart:
/// describe broker 0, set `log.flush.interval.messages` with AlterConfigs, see it reported
/// as a dynamic broker config, then set `log.flush.interval.ms` to the original value
/// (AlterConfigs replaces the broker's dynamic set, as in Kafka).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_configs_alter_like_rdkafka_test_configs_and_survive_restart() {
    let broker = start().await;
    let admin = admin(&broker);
    create(
        &admin,
        NewTopic::new("flushed", 1, TopicReplication::Fixed(1)),
        &opts(),
    )
    .await
    .unwrap();
    let node = ResourceSpecifier::Broker(0);
    let configs = describe_broker(&admin).await;
    let original = configs
        .get("log.flush.interval.messages")
        .expect("original config entry");
    assert_eq!(original.value.as_deref(), Some("9223372036854775807"));
    assert_eq!(original.source, ConfigSource::Default);
    assert!(original.is_default && !original.is_read_only);
    let flush_ms = configs.get("log.flush.interval.ms").unwrap();
    assert_eq!(flush_ms.value, None, "Kafka's null default");
    assert_eq!(value(&configs, "log.retention.hours"), Some("168"));
    assert_eq!(value(&configs, "broker.id"), Some("0"));
    assert!(configs.get("num.partitions").unwrap().is_read_only);

    let alter = AlterConfig::new(node).set("log.flush.interval.messages", "1234");
    let results = admin.alter_configs([&alter], &opts()).await.unwrap();
    assert_eq!(results, vec![Ok(OwnedResourceSpecifier::Broker(0))]);
    let configs = describe_broker(&admin).await;
    let expected = ConfigEntry {
        name: "log.flush.interval.messages".into(),
        value: Some("1234".into()),
        source: ConfigSource::DynamicBroker,
        is_read_only: false,
        is_default: false,
        is_sensitive: false,
    };
    assert_eq!(configs.get("log.flush.interval.messages"), Some(&expected));
    // Live for a topic without its own flush.messages.
    let topic = describe_topic(&admin, "flushed").await;
    assert_eq!(value(&topic, "flush.messages"), Some("1234"));
    assert_eq!(
        topic.get("flush.messages").unwrap().source,
        ConfigSource::DynamicBroker
    );

    let original_value = original.value.clone().unwrap();
    let alter = AlterConfig::new(node).set("log.flush.interval.ms", &original_value);
    let results = admin.alter_configs([&alter], &opts()).await.unwrap();
    assert_eq!(results, vec![Ok(OwnedResourceSpecifier::Broker(0))]);

    // A config Kafka does not let operators change at runtime is refused.
    let raw = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("0"))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("num.partitions"))
                .with_value(Some(StrBytes::from_static_str("5")))]),
    ]);
    let response: AlterConfigsResponse = raw_request(&broker, ApiKey::AlterConfigs, 2, &raw).await;
    assert_eq!(response.responses[0].error_code, 40);

    let broker = broker.restart(|c| c.auto_create_topics = false).await;
    let admin = self::admin(&broker);
    let configs = describe_broker(&admin).await;
    let flush_ms = configs.get("log.flush.interval.ms").unwrap();
    assert_eq!(flush_ms.value.as_deref(), Some(original_value.as_str()));
    assert_eq!(flush_ms.source, ConfigSource::DynamicBroker);
    assert!(!flush_ms.is_read_only);
    let messages = configs.get("log.flush.interval.messages").unwrap();
    assert_eq!(
        messages.source,
        ConfigSource::Default,
        "replaced by the second alter"
    );
    assert_eq!(value(&configs, "num.partitions"), Some("1"));
    let topic = describe_topic(&admin, "flushed").await;
    assert_eq!(value(&topic, "flush.ms"), Some(original_value.as_str()));
    assert_eq!(
        topic.get("flush.ms").unwrap().source,
        ConfigSource::DynamicBroker
    );
    broker.shutdown().await;
}
