//! A minimal Kafka client for tests, on the workspace's client crate (`strata-client`):
//! for exercising every advertised API version, which librdkafka alone would not do. Every
//! failure panics with the client's error (tests want the message, not a `Result`).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strata_client::{Config, Connection, TrailingBytes};

use super::PATIENCE;

pub struct RawClient {
    conn: Connection,
}

impl RawClient {
    pub async fn connect(addr: std::net::SocketAddr) -> RawClient {
        let mut config = Config::new("raw-test");
        config.request_timeout = Some(PATIENCE);
        config.trailing_bytes = TrailingBytes::Reject;
        let conn = Connection::connect(&addr.to_string(), config)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        RawClient { conn }
    }

    /// Auto-creates `topic` (with the broker's default partition count) through a Metadata
    /// request, which is answered once the topic exists. For tests that write to a new
    /// topic with raw Produce requests: a Produce to an unknown topic only queues its
    /// creation and answers UNKNOWN_TOPIC_OR_PARTITION, as real clients expect.
    pub async fn auto_create(&mut self, topic: &str) {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_owned())),
            ))]))
            .with_allow_auto_topic_creation(true);
        let response: MetadataResponse = self.call(ApiKey::Metadata, 12, &request).await;
        let code = response.topics[0].error_code;
        // LEADER_NOT_AVAILABLE from the request that created it, as in Kafka.
        assert!(
            code == 0 || code == 5,
            "auto-creating {topic}: error {code}"
        );
    }

    /// Sends `request` as `api` v`version` and decodes the response at the same version,
    /// checking the correlation id and that no bytes are left over.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        self.conn
            .call_api(api, version, request)
            .await
            .unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"))
    }

    /// Sends a request without waiting for its response; returns its correlation id.
    pub async fn send<Req: Encodable>(&mut self, api: ApiKey, version: i16, request: &Req) -> i32 {
        self.conn
            .send_api(api, version, request)
            .await
            .unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"))
    }

    /// Reads the next response, which must be the one for `correlation_id` (responses
    /// come in request order).
    pub async fn receive<Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Resp {
        tokio::time::timeout(
            PATIENCE,
            self.conn.receive_api(api, version, correlation_id),
        )
        .await
        .expect("response within patience")
        .unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"))
    }
}

/// One uncompressed RecordBatch v2 holding `values` (no keys, CreateTime `timestamp`).
pub fn batch(values: &[&str], timestamp: i64) -> Bytes {
    batch_with_epoch(values, timestamp, 0)
}

/// [`batch`] with `partition_leader_epoch` in its header (producers send -1).
#[allow(dead_code)]
pub fn batch_with_epoch(values: &[&str], timestamp: i64, partition_leader_epoch: i32) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1, // keeps offset - sequence constant: one batch
            timestamp,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}
