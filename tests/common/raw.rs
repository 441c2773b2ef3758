//! A minimal Kafka client over raw TCP, encoding with the kafka-protocol crate: for
//! exercising every advertised API version, which librdkafka alone would not do.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::PATIENCE;

pub struct RawClient {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl RawClient {
    pub async fn connect(addr: std::net::SocketAddr) -> RawClient {
        RawClient {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_correlation_id: 1,
        }
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
        let correlation_id = self.send(api, version, request).await;
        self.receive(api, version, correlation_id).await
    }

    /// Sends a request without waiting for its response; returns its correlation id.
    pub async fn send<Req: Encodable>(&mut self, api: ApiKey, version: i16, request: &Req) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        request.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await.unwrap();
        correlation_id
    }

    /// Reads the next response, which must be the one for `correlation_id`.
    pub async fn receive<Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Resp {
        let mut body = tokio::time::timeout(PATIENCE, async {
            let len = self.stream.read_i32().await.unwrap();
            let mut body = vec![0u8; len as usize];
            self.stream.read_exact(&mut body).await.unwrap();
            Bytes::from(body)
        })
        .await
        .expect("response within patience");
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .unwrap_or_else(|e| panic!("{api:?} v{version} response header: {e}"));
        assert_eq!(
            header.correlation_id, correlation_id,
            "responses in request order"
        );
        let response = Resp::decode(&mut body, version)
            .unwrap_or_else(|e| panic!("{api:?} v{version} response: {e:#}"));
        assert!(
            body.is_empty(),
            "{api:?} v{version}: {} bytes left after the response",
            body.len()
        );
        response
    }
}

/// One uncompressed RecordBatch v2 holding `values` (no keys, CreateTime `timestamp`).
pub fn batch(values: &[&str], timestamp: i64) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
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
