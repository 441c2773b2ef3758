//! The tool's view of a cluster: connections of the workspace's Kafka client
//! (`strata-client`, API versions negotiated from ApiVersions) and a [`Cluster`] that routes
//! requests to partition leaders and group coordinators found through Metadata and
//! FindCoordinator.
//!
//! Every request uses the highest version that both the broker (from its ApiVersions answer)
//! and this tool (see [`tool_range`]) support, so the same binary works against Strata and
//! against Apache Kafka brokers old and new.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::{
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FindCoordinatorRequest, ListOffsetsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
pub use strata_client::{negotiate, Connection};
use strata_client::{Config, TrailingBytes};

use super::error::{Result, ToolError};

/// How long a TCP connect may take before the broker counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may wait for its response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response frame accepted (bytes); protects against garbage length prefixes.
const MAX_FRAME: usize = 512 << 20;
/// client.id sent in every request header.
const CLIENT_ID: &str = "strata-offsets";

/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR.
const RETRIABLE_COORDINATOR_ERRORS: [i16; 3] = [14, 15, 16];
/// FindCoordinator attempts while the coordinator is not ready.
const COORDINATOR_ATTEMPTS: u32 = 20;
/// Pause between those attempts.
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(250);

/// ListOffsets timestamp that asks for the log end offset.
pub const LATEST: i64 = -1;
/// ListOffsets timestamp that asks for the log start offset.
pub const EARLIEST: i64 = -2;
/// ListOffsets `isolation_level`: every record up to the high watermark.
pub const READ_UNCOMMITTED: i8 = 0;
/// ListOffsets `isolation_level`: only records below the last stable offset (v2+).
pub const READ_COMMITTED: i8 = 1;

/// FindCoordinator `key_type` of a consumer group.
const GROUP_KEY: i8 = 0;
/// FindCoordinator `key_type` of a transactional id (v1+).
const TRANSACTION_KEY: i8 = 1;

/// The versions of an API this tool can encode and interpret, `(min, max)`. The maxima stop
/// before versions that change a field this tool relies on (Fetch v13 and Produce v13 drop
/// topic names for ids; OffsetFetch v8 batches groups; FindCoordinator v4 batches keys).
pub fn tool_range(key: ApiKey) -> (i16, i16) {
    match key {
        ApiKey::ApiVersions => (0, 3),
        ApiKey::Metadata => (1, 12),
        ApiKey::ListOffsets => (1, 7),
        ApiKey::FindCoordinator => (0, 3),
        ApiKey::DescribeGroups => (0, 5),
        ApiKey::ListGroups => (0, 4),
        ApiKey::OffsetFetch => (2, 7),
        ApiKey::OffsetCommit => (2, 8),
        ApiKey::Fetch => (4, 12),
        ApiKey::Produce => (3, 9),
        ApiKey::ListTransactions => (0, 1),
        ApiKey::DescribeTransactions => (0, 0),
        _ => (0, -1),
    }
}

/// The client configuration of the tool's connections: [`tool_range`] caps the versions,
/// and bytes after a response (a newer broker's layout) are ignored, not fatal.
fn config() -> Config {
    let mut config = Config::new(CLIENT_ID);
    config.connect_timeout = CONNECT_TIMEOUT;
    config.request_timeout = Some(REQUEST_TIMEOUT);
    config.max_response_bytes = MAX_FRAME;
    config.trailing_bytes = TrailingBytes::Ignore;
    config.version_caps = Some(tool_range);
    config
}

/// Connects to `addr` (`host:port`) and learns its API versions (ApiVersions v0, which
/// every broker answers).
pub async fn connect(addr: &str) -> Result<Connection> {
    Ok(Connection::connect_negotiated(addr, config()).await?)
}

/// Topic name as the protocol type.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// What Metadata said about one topic: partition -> leader node id.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub partitions: BTreeMap<i32, i32>,
}

/// Connections to the brokers of one cluster, opened on demand.
pub struct Cluster {
    bootstrap: String,
    /// address -> open connection.
    conns: HashMap<String, Connection>,
    /// node id -> `host:port`, from the last Metadata response.
    brokers: HashMap<i32, String>,
}

impl Cluster {
    /// Connects to the bootstrap broker (so an unreachable broker fails fast).
    pub async fn connect(bootstrap: &str) -> Result<Cluster> {
        let conn = connect(bootstrap).await?;
        let mut conns = HashMap::new();
        conns.insert(bootstrap.to_string(), conn);
        Ok(Cluster {
            bootstrap: bootstrap.to_string(),
            conns,
            brokers: HashMap::new(),
        })
    }

    /// The connection to `addr`, opened if needed.
    pub async fn conn(&mut self, addr: &str) -> Result<&mut Connection> {
        if !self.conns.contains_key(addr) {
            let conn = connect(addr).await?;
            self.conns.insert(addr.to_string(), conn);
        }
        self.conns
            .get_mut(addr)
            .ok_or_else(|| ToolError::Unreachable {
                addr: addr.to_string(),
                reason: "connection lost".to_string(),
            })
    }

    /// The bootstrap broker's connection.
    pub async fn bootstrap(&mut self) -> Result<&mut Connection> {
        let addr = self.bootstrap.clone();
        self.conn(&addr).await
    }

    /// The connection to broker `node` (known from a previous Metadata call).
    pub async fn node(&mut self, node: i32) -> Result<&mut Connection> {
        let addr = self
            .brokers
            .get(&node)
            .cloned()
            .ok_or_else(|| ToolError::Usage(format!("no known address for broker {node}")))?;
        self.conn(&addr).await
    }

    /// Addresses of every broker from the last Metadata call (the bootstrap if none).
    pub fn broker_addrs(&self) -> Vec<String> {
        let mut out: Vec<String> = self.brokers.values().cloned().collect();
        out.sort();
        out.dedup();
        if out.is_empty() {
            out.push(self.bootstrap.clone());
        }
        out
    }

    /// Metadata for `topics` (all topics when `None`). An unknown topic named explicitly is
    /// an error; topics are never auto-created.
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
    ) -> Result<BTreeMap<String, TopicInfo>> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let (response, _) = self.bootstrap().await?.send(&request).await?;
        for b in &response.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        let mut out = BTreeMap::new();
        for t in response.topics {
            let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
            if t.error_code == 3 {
                return Err(ToolError::UnknownTopic(name));
            }
            ToolError::check(t.error_code, || format!("metadata of topic '{name}'"))?;
            let partitions = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            out.insert(name, TopicInfo { partitions });
        }
        if let Some(names) = topics {
            for n in names {
                if !out.contains_key(n) {
                    return Err(ToolError::UnknownTopic(n.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Metadata of one topic, which must exist.
    pub async fn topic(&mut self, topic: &str) -> Result<TopicInfo> {
        let mut all = self.metadata(Some(&[topic.to_string()])).await?;
        all.remove(topic)
            .ok_or_else(|| ToolError::UnknownTopic(topic.to_string()))
    }

    /// The address of `group`'s coordinator.
    pub async fn coordinator(&mut self, group: &str) -> Result<String> {
        self.find_coordinator(group, GROUP_KEY, "group").await
    }

    /// The address of the transaction coordinator of `transactional_id`.
    pub async fn transaction_coordinator(&mut self, transactional_id: &str) -> Result<String> {
        self.find_coordinator(transactional_id, TRANSACTION_KEY, "transactional id")
            .await
    }

    /// FindCoordinator for `key` of `key_type`; `what` names the key in errors.
    async fn find_coordinator(&mut self, key: &str, key_type: i8, what: &str) -> Result<String> {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(key.to_string()))
            .with_key_type(key_type);
        // A coordinator that is loading or moving answers with a retriable error; wait for
        // it a little, as Kafka's clients do.
        let mut attempt = 0;
        let response = loop {
            let (response, _) = self.bootstrap().await?.send(&request).await?;
            attempt += 1;
            if RETRIABLE_COORDINATOR_ERRORS.contains(&response.error_code)
                && attempt < COORDINATOR_ATTEMPTS
            {
                tracing::debug!(key, code = response.error_code, "coordinator not ready");
                tokio::time::sleep(COORDINATOR_BACKOFF).await;
                continue;
            }
            break response;
        };
        ToolError::check(response.error_code, || {
            format!("finding the coordinator of {what} '{key}'")
        })?;
        let addr = format!("{}:{}", response.host.as_str(), response.port);
        self.brokers.insert(response.node_id.0, addr.clone());
        Ok(addr)
    }

    /// ListOffsets for each `(topic, partition)` at `timestamp` ([`LATEST`], [`EARLIEST`]
    /// or milliseconds since the epoch), sent to each partition's leader. The answer is the
    /// offset, or `None` when no record has a timestamp at or after `timestamp`.
    /// `leaders` maps topic -> partition -> leader (from [`Cluster::metadata`]).
    pub async fn list_offsets(
        &mut self,
        partitions: &[(String, i32)],
        timestamp: i64,
        leaders: &BTreeMap<String, TopicInfo>,
    ) -> Result<BTreeMap<(String, i32), Option<i64>>> {
        self.list_offsets_isolated(partitions, timestamp, READ_UNCOMMITTED, leaders)
            .await
    }

    /// [`Cluster::list_offsets`] with an `isolation_level` ([`READ_UNCOMMITTED`] or
    /// [`READ_COMMITTED`]). With [`READ_COMMITTED`] and [`LATEST`] the answer is the last
    /// stable offset; a broker that only speaks ListOffsets v1 (no isolation level) is an
    /// error then.
    pub async fn list_offsets_isolated(
        &mut self,
        partitions: &[(String, i32)],
        timestamp: i64,
        isolation_level: i8,
        leaders: &BTreeMap<String, TopicInfo>,
    ) -> Result<BTreeMap<(String, i32), Option<i64>>> {
        let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        for (topic, partition) in partitions {
            let leader = leaders
                .get(topic)
                .ok_or_else(|| ToolError::UnknownTopic(topic.clone()))?
                .partitions
                .get(partition)
                .copied()
                .ok_or_else(|| ToolError::UnknownPartition {
                    topic: topic.clone(),
                    partition: *partition,
                })?;
            by_leader
                .entry(leader)
                .or_default()
                .entry(topic.clone())
                .or_default()
                .push(*partition);
        }
        let mut out = BTreeMap::new();
        for (leader, topics) in by_leader {
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(isolation_level)
                .with_topics(
                    topics
                        .iter()
                        .map(|(t, ps)| {
                            ListOffsetsTopic::default()
                                .with_name(topic_name(t))
                                .with_partitions(
                                    ps.iter()
                                        .map(|p| {
                                            ListOffsetsPartition::default()
                                                .with_partition_index(*p)
                                                .with_current_leader_epoch(-1)
                                                .with_timestamp(timestamp)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let conn = self.node(leader).await?;
            if isolation_level != READ_UNCOMMITTED {
                let version = conn.version_of::<ListOffsetsRequest>()?;
                if version < 2 {
                    return Err(ToolError::Usage(format!(
                        "broker {} speaks ListOffsets v{version}, which has no isolation level (v2+ needed for the last stable offset)",
                        conn.addr()
                    )));
                }
            }
            let (response, _) = conn.send(&request).await?;
            for t in response.topics {
                let topic = t.name.0.to_string();
                for p in t.partitions {
                    if p.error_code == 3 {
                        return Err(ToolError::UnknownPartition {
                            topic,
                            partition: p.partition_index,
                        });
                    }
                    ToolError::check(p.error_code, || {
                        format!("listing offsets of {topic}:{}", p.partition_index)
                    })?;
                    let offset = if p.offset < 0 { None } else { Some(p.offset) };
                    out.insert((topic.clone(), p.partition_index), offset);
                }
            }
        }
        Ok(out)
    }

    /// Log start and log end offsets of each partition: `(start, end)`.
    pub async fn offset_bounds(
        &mut self,
        partitions: &[(String, i32)],
        leaders: &BTreeMap<String, TopicInfo>,
    ) -> Result<BTreeMap<(String, i32), (i64, i64)>> {
        let starts = self.list_offsets(partitions, EARLIEST, leaders).await?;
        let ends = self.list_offsets(partitions, LATEST, leaders).await?;
        let mut out = BTreeMap::new();
        for key in partitions {
            let start = starts.get(key).copied().flatten().unwrap_or(0);
            let end = ends.get(key).copied().flatten().unwrap_or(start);
            out.insert(key.clone(), (start, end));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_the_tool_sends_has_a_range_inside_kafka_protocol() {
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::Request;
        fn check<R: Request>() {
            let key = ApiKey::try_from(R::KEY).unwrap();
            let (min, max) = tool_range(key);
            assert!(min <= max, "{key:?}");
            assert!(min >= R::VERSIONS.min && max <= R::VERSIONS.max, "{key:?}");
        }
        check::<ApiVersionsRequest>();
        check::<MetadataRequest>();
        check::<ListOffsetsRequest>();
        check::<FindCoordinatorRequest>();
        check::<DescribeGroupsRequest>();
        check::<ListGroupsRequest>();
        check::<OffsetFetchRequest>();
        check::<OffsetCommitRequest>();
        check::<FetchRequest>();
        check::<ProduceRequest>();
        check::<ListTransactionsRequest>();
        check::<DescribeTransactionsRequest>();
    }
}
