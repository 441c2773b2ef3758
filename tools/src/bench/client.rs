//! A lean Kafka client: one TCP connection, requests encoded with `kafka-protocol`, and the
//! few metadata/admin calls the benchmark needs. Pipelining is done by the callers with
//! [`Connection::into_split`]: Kafka answers requests on a connection in order.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, MetadataRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

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

/// Encodes `[length][header][body]` for `request` into `buf` (appending).
pub fn encode_request<R: Request>(
    buf: &mut BytesMut,
    correlation_id: i32,
    request: &R,
    version: i16,
) -> Result<()> {
    let start = buf.len();
    buf.put_i32(0);
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    header
        .encode(buf, R::header_version(version))
        .and_then(|()| request.encode(buf, version))
        .map_err(|e| BenchError::Codec {
            what: "request",
            message: format!("{e:#}"),
        })?;
    let len = (buf.len() - start - 4) as i32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Reads one length-prefixed frame.
pub async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> Result<Bytes> {
    let len = reader.read_i32().await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_RESPONSE)
        .ok_or_else(|| BenchError::Protocol(format!("response frame length {len}")))?;
    // Filled straight from the socket buffer: no zeroing pass over a large fetch response.
    let mut body = BytesMut::with_capacity(len);
    while body.len() < len {
        let want = (len - body.len()) as u64;
        if (&mut *reader).take(want).read_buf(&mut body).await? == 0 {
            return Err(BenchError::Protocol(
                "connection closed mid-response".into(),
            ));
        }
    }
    Ok(body.freeze())
}

/// Decodes a response frame; returns its correlation id and body.
pub fn decode_response<R: Decodable + HeaderVersion>(
    mut frame: Bytes,
    version: i16,
) -> Result<(i32, R)> {
    let header = ResponseHeader::decode(&mut frame, R::header_version(version)).map_err(|e| {
        BenchError::Codec {
            what: "response header",
            message: format!("{e:#}"),
        }
    })?;
    let body = R::decode(&mut frame, version).map_err(|e| BenchError::Codec {
        what: "response body",
        message: format!("{e:#}"),
    })?;
    Ok((header.correlation_id, body))
}

/// One connection to a broker.
pub struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_correlation: i32,
    buf: BytesMut,
}

impl Connection {
    /// Connects with TCP_NODELAY (latency is measured; Nagle would add delay).
    pub async fn connect(addr: &str) -> Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(Connection {
            reader: BufReader::with_capacity(256 * 1024, r),
            writer: w,
            next_correlation: 1,
            buf: BytesMut::with_capacity(4096),
        })
    }

    /// Sends `request` and waits for its response.
    pub async fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let corr = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        self.buf.clear();
        encode_request(&mut self.buf, corr, request, version)?;
        self.writer.write_all(&self.buf).await?;
        let frame = read_frame(&mut self.reader).await?;
        let (got, response) = decode_response::<R::Response>(frame, version)?;
        if got != corr {
            return Err(BenchError::Protocol(format!(
                "correlation id {got}, expected {corr}"
            )));
        }
        Ok(response)
    }

    /// The halves for pipelined use, and the next correlation id to use.
    pub fn into_split(self) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf, i32) {
        (self.reader, self.writer, self.next_correlation)
    }
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
