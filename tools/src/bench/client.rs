//! The benchmark's connections: the workspace's Kafka client (`strata-client`) at fixed
//! API versions, and the few metadata/admin calls the benchmark needs. Pipelining is done
//! by the callers with [`Connection::into_split`]: Kafka answers requests on a connection
//! in order.

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
pub use strata_client::Connection;
use strata_client::{Config, TrailingBytes};

use super::{BenchError, Result};

/// API versions this client uses: non-flexible ones that Kafka 2.1 through 4.x and Strata
/// all answer.
pub mod versions {
    pub const PRODUCE: i16 = 8;
    pub const FETCH: i16 = 11;
    pub const LIST_OFFSETS: i16 = 5;
    pub const METADATA: i16 = 8;
    pub const CREATE_TOPICS: i16 = 4;
    pub const FIND_COORDINATOR: i16 = 2;
    pub const JOIN_GROUP: i16 = 5;
    pub const SYNC_GROUP: i16 = 3;
    pub const HEARTBEAT: i16 = 3;
    pub const LEAVE_GROUP: i16 = 3;
    pub const OFFSET_COMMIT: i16 = 7;
    pub const OFFSET_FETCH: i16 = 5;
}

const CLIENT_ID: &str = "strata-bench";
/// Largest response frame accepted (a fetch is bounded by its max_bytes, 50 MiB default).
const MAX_RESPONSE: usize = 256 << 20;

/// Connects with TCP_NODELAY (latency is measured; Nagle would add delay). No request
/// timeout (a stalled broker shows in the latencies) and no ApiVersions: the versions are
/// fixed ([`versions`]).
pub async fn connect(addr: &str) -> Result<Connection> {
    let mut config = Config::new(CLIENT_ID);
    config.request_timeout = None;
    config.max_response_bytes = MAX_RESPONSE;
    config.trailing_bytes = TrailingBytes::Ignore;
    config.read_buffer_bytes = 256 * 1024;
    Ok(Connection::connect(addr, config).await?)
}

/// Partition count of `topic`, creating it with `partitions` partitions when missing.
/// An existing topic keeps its count (which is returned).
pub async fn ensure_topic(conn: &mut Connection, topic: &str, partitions: i32) -> Result<i32> {
    if let Some(n) = partition_count(conn, topic).await? {
        return Ok(n);
    }
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(30_000);
    let response = conn.call(&request, versions::CREATE_TOPICS).await?;
    for t in &response.topics {
        // 36: TOPIC_ALREADY_EXISTS (a concurrent creator) is fine.
        if t.error_code != 0 && t.error_code != 36 {
            return Err(BenchError::Broker {
                api: "CreateTopics",
                code: t.error_code,
                detail: t
                    .error_message
                    .as_ref()
                    .map(|m| format!(": {}", m.as_str()))
                    .unwrap_or_default(),
            });
        }
    }
    // Metadata may lag creation briefly on a real Kafka controller.
    for _ in 0..50 {
        if let Some(n) = partition_count(conn, topic).await? {
            return Ok(n);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(BenchError::Protocol(format!(
        "topic {topic} created but not in metadata"
    )))
}

/// Partition count of `topic` from Metadata, None if it does not exist.
pub async fn partition_count(conn: &mut Connection, topic: &str) -> Result<Option<i32>> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]))
        .with_allow_auto_topic_creation(false);
    let response = conn.call(&request, versions::METADATA).await?;
    let Some(t) = response.topics.first() else {
        return Ok(None);
    };
    match t.error_code {
        0 if !t.partitions.is_empty() => Ok(Some(t.partitions.len() as i32)),
        0 | 3 | 5 => Ok(None), // UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE (creating)
        code => Err(BenchError::Broker {
            api: "Metadata",
            code,
            detail: String::new(),
        }),
    }
}
