//! One TCP connection to one broker.
//!
//! Invariants: correlation ids are handed out in increasing order (wrapping) by the
//! [`RequestWriter`], and the [`ResponseReader`] is told which one it expects next; Kafka
//! answers the requests of a connection in order, so a different id is a protocol error,
//! never skipped. A response frame longer than [`Config::max_response_bytes`] is refused
//! before any buffer is sized from its length.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::frame::{self, FrameError, RequestMeta};
use crate::versions::{api_name, negotiate, ApiVersionTable};

/// What to do with bytes left in a response frame after its decoded body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailingBytes {
    /// An error: the two sides disagree on the layout (tests, a replica fetcher).
    Reject,
    /// Logged at debug and ignored (tools talking to brokers of other releases).
    Ignore,
}

/// Limits of a connection chosen by its user.
#[derive(Debug, Clone)]
pub struct Config {
    /// `client.id` sent in every request header.
    pub client_id: String,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// How long [`Connection::call`] waits for its response; `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// Largest response frame accepted, in bytes.
    pub max_response_bytes: usize,
    pub trailing_bytes: TrailingBytes,
    /// Size of the read buffer.
    pub read_buffer_bytes: usize,
    /// Caps per API on the versions [`Connection::version_of`] picks, `(min, max)`
    /// (the user's own limits, e.g. versions it knows how to interpret); `None`: the
    /// whole range `kafka-protocol` encodes.
    pub version_caps: Option<fn(ApiKey) -> (i16, i16)>,
}

impl Config {
    /// Defaults: 10 s connect, 30 s per request, 256 MiB frames, trailing bytes rejected.
    pub fn new(client_id: impl Into<String>) -> Config {
        Config {
            client_id: client_id.into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Some(Duration::from_secs(30)),
            max_response_bytes: 256 << 20,
            trailing_bytes: TrailingBytes::Reject,
            read_buffer_bytes: 64 * 1024,
            version_caps: None,
        }
    }
}

/// One connection: a writer and a reader of the same socket, and the API versions the
/// broker advertised (empty until [`Connection::negotiate_versions`]).
pub struct Connection {
    writer: RequestWriter,
    reader: ResponseReader,
    versions: ApiVersionTable,
    config: Arc<Config>,
}

impl Connection {
    /// Opens a TCP connection to `addr` (`host:port`) with TCP_NODELAY. Sends nothing.
    pub async fn connect(addr: &str, config: Config) -> Result<Connection> {
        let unreachable = |reason: String| Error::Unreachable {
            addr: addr.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable(format!("no connection within {:?}", config.connect_timeout)))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let config = Arc::new(config);
        let (read, write) = stream.into_split();
        let addr: Arc<str> = addr.into();
        Ok(Connection {
            writer: RequestWriter {
                addr: addr.clone(),
                writer: write,
                buf: BytesMut::with_capacity(4096),
                next_correlation: 1,
                client_id: StrBytes::from_string(config.client_id.clone()),
            },
            reader: ResponseReader {
                addr,
                reader: BufReader::with_capacity(config.read_buffer_bytes, read),
                max_response_bytes: config.max_response_bytes,
                trailing_bytes: config.trailing_bytes,
            },
            versions: ApiVersionTable::default(),
            config,
        })
    }

    /// [`Connection::connect`], then [`Connection::negotiate_versions`].
    pub async fn connect_negotiated(addr: &str, config: Config) -> Result<Connection> {
        let mut conn = Connection::connect(addr, config).await?;
        conn.negotiate_versions().await?;
        Ok(conn)
    }

    /// Asks the broker for its API versions (ApiVersions v0, which every broker answers)
    /// and keeps them for [`Connection::version_of`].
    pub async fn negotiate_versions(&mut self) -> Result<&ApiVersionTable> {
        let response = self.call(&ApiVersionsRequest::default(), 0).await?;
        if response.error_code != 0 {
            return Err(Error::ApiVersions {
                addr: self.addr().to_string(),
                code: response.error_code,
            });
        }
        self.versions = ApiVersionTable::from_response(&response);
        tracing::debug!(
            addr = self.addr(),
            apis = self.versions.len(),
            "api versions"
        );
        Ok(&self.versions)
    }

    /// The broker's address as given to [`Connection::connect`].
    pub fn addr(&self) -> &str {
        &self.writer.addr
    }

    /// The versions the broker advertised.
    pub fn versions(&self) -> &ApiVersionTable {
        &self.versions
    }

    /// The version of `R` to send: the highest that the broker advertised, `kafka-protocol`
    /// encodes and [`Config::version_caps`] allows.
    pub fn version_of<R: Request>(&self) -> Result<i16> {
        let api = api_name(R::KEY);
        let (mut min, mut max) = (R::VERSIONS.min, R::VERSIONS.max);
        if let (Some(caps), Ok(key)) = (self.config.version_caps, ApiKey::try_from(R::KEY)) {
            let (cap_min, cap_max) = caps(key);
            (min, max) = (min.max(cap_min), max.min(cap_max));
        }
        let (broker_min, broker_max) =
            self.versions
                .range(R::KEY)
                .ok_or_else(|| Error::Unsupported {
                    addr: self.addr().to_string(),
                    api,
                })?;
        negotiate((min, max), (broker_min, broker_max)).ok_or_else(|| Error::NoCommonVersion {
            addr: self.addr().to_string(),
            api,
            broker_min,
            broker_max,
            client_min: min,
            client_max: max,
        })
    }

    /// Sends `request` at the negotiated version; the response and the version used.
    pub async fn send<R: Request>(&mut self, request: &R) -> Result<(R::Response, i16)> {
        let version = self.version_of::<R>()?;
        Ok((self.call(request, version).await?, version))
    }

    /// Sends `request` as `version` and waits (at most [`Config::request_timeout`]) for
    /// its response. After any error the connection's request/response pairing is
    /// unknown (a late answer may still come): drop it and connect again.
    pub async fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let header_versions = (
            R::header_version(version),
            <R::Response as HeaderVersion>::header_version(version),
        );
        self.round_trip(R::KEY, version, header_versions, request)
            .await
    }

    /// [`Connection::call`] for a body named by its [`ApiKey`] (any `Encodable`, e.g. a
    /// request built by hand at a version the typed API would not pick).
    pub async fn call_api<Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &impl Encodable,
    ) -> Result<Resp> {
        let header_versions = (
            api.request_header_version(version),
            api.response_header_version(version),
        );
        self.round_trip(api as i16, version, header_versions, request)
            .await
    }

    async fn round_trip<Resp: Decodable>(
        &mut self,
        api_key: i16,
        version: i16,
        (request_header, response_header): (i16, i16),
        request: &impl Encodable,
    ) -> Result<Resp> {
        let exchange = async {
            let correlation_id =
                self.writer
                    .queue_encodable(api_key, version, request_header, request)?;
            self.writer.flush().await?;
            self.reader
                .receive_decodable(api_key, version, response_header, correlation_id)
                .await
        };
        match self.config.request_timeout {
            None => exchange.await,
            Some(timeout) => {
                tokio::time::timeout(timeout, exchange)
                    .await
                    .map_err(|_| Error::Timeout {
                        addr: self.writer.addr.to_string(),
                        api_key,
                        timeout,
                    })?
            }
        }
    }

    /// Sends a request without waiting for its response; its correlation id, for
    /// [`Connection::receive_api`].
    pub async fn send_api(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &impl Encodable,
    ) -> Result<i32> {
        let correlation_id = self.writer.queue_encodable(
            api as i16,
            version,
            api.request_header_version(version),
            request,
        )?;
        self.writer.flush().await?;
        Ok(correlation_id)
    }

    /// Reads the next response, which must answer `correlation_id` (no timeout: wrap it).
    pub async fn receive_api<Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<Resp> {
        self.reader
            .receive_decodable(
                api as i16,
                version,
                api.response_header_version(version),
                correlation_id,
            )
            .await
    }

    /// The two halves, for pipelining: one task writes requests, another reads the
    /// responses in the same order.
    pub fn into_split(self) -> (RequestWriter, ResponseReader) {
        (self.writer, self.reader)
    }
}

/// The writing half: encodes requests with increasing correlation ids.
pub struct RequestWriter {
    addr: Arc<str>,
    writer: OwnedWriteHalf,
    /// Encoded requests not written yet.
    buf: BytesMut,
    next_correlation: i32,
    /// Shared by every request header (a reference count, not a copy, per request).
    client_id: StrBytes,
}

impl RequestWriter {
    /// Encodes `request` as `version` behind the requests already queued; its
    /// correlation id. Nothing is written before [`RequestWriter::flush`].
    pub fn queue<R: Request>(&mut self, request: &R, version: i16) -> Result<i32> {
        self.queue_encodable(R::KEY, version, R::header_version(version), request)
    }

    fn queue_encodable(
        &mut self,
        api_key: i16,
        version: i16,
        header_version: i16,
        request: &impl Encodable,
    ) -> Result<i32> {
        let correlation_id = self.next_correlation;
        let meta = RequestMeta {
            api_key,
            version,
            header_version,
            correlation_id,
            client_id: &self.client_id,
        };
        frame::encode_request(&mut self.buf, meta, request).map_err(|message| Error::Encode {
            addr: self.addr.to_string(),
            api_key,
            version,
            message,
        })?;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        Ok(correlation_id)
    }

    /// Writes every queued request.
    pub async fn flush(&mut self) -> Result<()> {
        let written = self.writer.write_all(&self.buf).await;
        self.buf.clear();
        written.map_err(|source| Error::Io {
            addr: self.addr.to_string(),
            source,
        })
    }

    /// [`RequestWriter::queue`] then [`RequestWriter::flush`].
    pub async fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<i32> {
        let correlation_id = self.queue(request, version)?;
        self.flush().await?;
        Ok(correlation_id)
    }
}

/// The reading half: response frames, in request order.
pub struct ResponseReader {
    addr: Arc<str>,
    reader: BufReader<OwnedReadHalf>,
    max_response_bytes: usize,
    trailing_bytes: TrailingBytes,
}

impl ResponseReader {
    /// Reads the response to the request of type `R` sent as `version` with
    /// `correlation_id` (which must be the next one answered).
    pub async fn receive<R: Request>(
        &mut self,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response> {
        let header_version = <R::Response as HeaderVersion>::header_version(version);
        self.receive_decodable(R::KEY, version, header_version, correlation_id)
            .await
    }

    /// The next response frame, undecoded (header included).
    pub async fn read_frame(&mut self) -> Result<Bytes> {
        frame::read_frame(&mut self.reader, self.max_response_bytes)
            .await
            .map_err(|e| match e {
                FrameError::Io(source) => Error::Io {
                    addr: self.addr.to_string(),
                    source,
                },
                FrameError::Length(len) => Error::FrameLength {
                    addr: self.addr.to_string(),
                    len,
                    max: self.max_response_bytes,
                },
            })
    }

    /// Decodes a frame from [`ResponseReader::read_frame`] as the response to the
    /// request of type `R` sent as `version` with `correlation_id`.
    pub fn decode<R: Request>(
        &self,
        frame: Bytes,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response> {
        let header_version = <R::Response as HeaderVersion>::header_version(version);
        self.decode_frame(frame, R::KEY, version, header_version, correlation_id)
    }

    async fn receive_decodable<Resp: Decodable>(
        &mut self,
        api_key: i16,
        version: i16,
        header_version: i16,
        correlation_id: i32,
    ) -> Result<Resp> {
        let frame = self.read_frame().await?;
        self.decode_frame(frame, api_key, version, header_version, correlation_id)
    }

    fn decode_frame<Resp: Decodable>(
        &self,
        frame: Bytes,
        api_key: i16,
        version: i16,
        header_version: i16,
        correlation_id: i32,
    ) -> Result<Resp> {
        let decoded =
            frame::decode_response::<Resp>(frame, header_version, version).map_err(|message| {
                Error::Decode {
                    addr: self.addr.to_string(),
                    api_key,
                    version,
                    message,
                }
            })?;
        if decoded.correlation_id != correlation_id {
            return Err(Error::Correlation {
                addr: self.addr.to_string(),
                expected: correlation_id,
                got: decoded.correlation_id,
            });
        }
        if decoded.trailing > 0 {
            match self.trailing_bytes {
                TrailingBytes::Reject => {
                    return Err(Error::TrailingBytes {
                        addr: self.addr.to_string(),
                        api_key,
                        version,
                        left: decoded.trailing,
                    })
                }
                TrailingBytes::Ignore => {
                    tracing::debug!(
                        api_key,
                        left = decoded.trailing,
                        "response had trailing bytes"
                    )
                }
            }
        }
        Ok(decoded.response)
    }
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{
        ApiVersionsResponse, FetchRequest, MetadataRequest, MetadataResponse, ProduceRequest,
        ResponseHeader,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A response frame: `header` (v0: the correlation id) then `body` at `version`.
    fn response_frame(correlation_id: i32, body: &impl Encodable, version: i16) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut out, 0)
            .unwrap();
        body.encode(&mut out, version).unwrap();
        let len = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        out.to_vec()
    }

    /// A broker on a local port that answers each request (api key, version, correlation
    /// id) with the bytes `answer` returns; it reads requests until the client goes away.
    async fn fake_broker(
        answer: impl Fn(i16, i16, i32) -> Vec<u8> + Send + 'static,
    ) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            loop {
                let Ok(len) = socket.read_i32().await else {
                    return;
                };
                let mut request = vec![0u8; len as usize];
                socket.read_exact(&mut request).await.unwrap();
                let api_key = i16::from_be_bytes([request[0], request[1]]);
                let version = i16::from_be_bytes([request[2], request[3]]);
                let correlation = i32::from_be_bytes(request[4..8].try_into().unwrap());
                let reply = answer(api_key, version, correlation);
                if socket.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
        addr
    }

    fn api_versions() -> ApiVersionsResponse {
        let api = |key: ApiKey, min, max| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        };
        ApiVersionsResponse::default().with_api_keys(vec![
            api(ApiKey::ApiVersions, 0, 3),
            api(ApiKey::Metadata, 0, 12),
            api(ApiKey::Fetch, 4, 17),
        ])
    }

    /// Answers ApiVersions and Metadata correctly.
    fn well_behaved(api_key: i16, version: i16, correlation: i32) -> Vec<u8> {
        if api_key == ApiKey::ApiVersions as i16 {
            response_frame(correlation, &api_versions(), version)
        } else {
            response_frame(correlation, &MetadataResponse::default(), version)
        }
    }

    #[tokio::test]
    async fn versions_are_the_highest_both_sides_and_the_caps_allow() {
        let addr = fake_broker(well_behaved).await;
        let mut config = Config::new("t");
        config.version_caps = Some(|key| match key {
            ApiKey::Metadata => (1, 8),
            _ => (0, -1),
        });
        let mut conn = Connection::connect_negotiated(&addr.to_string(), config)
            .await
            .unwrap();
        assert_eq!(conn.version_of::<MetadataRequest>().unwrap(), 8);
        assert!(matches!(
            conn.version_of::<FetchRequest>(),
            Err(Error::NoCommonVersion {
                broker_min: 4,
                broker_max: 17,
                ..
            })
        ));
        assert!(matches!(
            conn.version_of::<ProduceRequest>(),
            Err(Error::Unsupported { api: "Produce", .. })
        ));
        let (_, version) = conn.send(&MetadataRequest::default()).await.unwrap();
        assert_eq!(version, 8);
    }

    #[tokio::test]
    async fn a_response_out_of_request_order_is_an_error() {
        let addr =
            fake_broker(|key, version, correlation| well_behaved(key, version, correlation + 1))
                .await;
        let mut conn = Connection::connect(&addr.to_string(), Config::new("t"))
            .await
            .unwrap();
        let err = conn.call(&MetadataRequest::default(), 1).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Correlation {
                    expected: 1,
                    got: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_before_it_is_read() {
        let addr = fake_broker(|_, _, _| (i32::MAX).to_be_bytes().to_vec()).await;
        let mut config = Config::new("t");
        config.max_response_bytes = 1 << 20;
        let mut conn = Connection::connect(&addr.to_string(), config)
            .await
            .unwrap();
        let err = conn.call(&MetadataRequest::default(), 1).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::FrameLength {
                    len: i32::MAX,
                    max: 1048576,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn trailing_bytes_are_an_error_unless_ignored() {
        let answer = |key, version, correlation| {
            let mut frame = well_behaved(key, version, correlation);
            frame.push(0);
            let len = (frame.len() - 4) as i32;
            frame[..4].copy_from_slice(&len.to_be_bytes());
            frame
        };
        let addr = fake_broker(answer).await;
        let mut conn = Connection::connect(&addr.to_string(), Config::new("t"))
            .await
            .unwrap();
        let err = conn.call(&MetadataRequest::default(), 1).await.unwrap_err();
        assert!(matches!(err, Error::TrailingBytes { left: 1, .. }), "{err}");

        let addr = fake_broker(answer).await;
        let mut config = Config::new("t");
        config.trailing_bytes = TrailingBytes::Ignore;
        let mut conn = Connection::connect(&addr.to_string(), config)
            .await
            .unwrap();
        conn.call(&MetadataRequest::default(), 1).await.unwrap();
    }

    #[tokio::test]
    async fn a_broker_that_does_not_answer_times_out() {
        let addr = fake_broker(|_, _, _| Vec::new()).await;
        let mut config = Config::new("t");
        config.request_timeout = Some(Duration::from_millis(100));
        let mut conn = Connection::connect(&addr.to_string(), config)
            .await
            .unwrap();
        let err = conn.call(&MetadataRequest::default(), 1).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { api_key: 3, .. }), "{err}");
    }

    #[tokio::test]
    async fn split_halves_pipeline_requests_and_read_answers_in_order() {
        let addr = fake_broker(well_behaved).await;
        let conn = Connection::connect(&addr.to_string(), Config::new("t"))
            .await
            .unwrap();
        let (mut writer, mut reader) = conn.into_split();
        let ids: Vec<i32> = (0..3)
            .map(|_| writer.queue(&MetadataRequest::default(), 4).unwrap())
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);
        writer.flush().await.unwrap();
        for id in ids {
            reader.receive::<MetadataRequest>(4, id).await.unwrap();
        }
    }
}
