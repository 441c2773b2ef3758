//! Hostile and unusual input over raw TCP: the broker answers with a Kafka error or closes
//! that one connection, and keeps serving every other client. Requests are encoded with
//! the kafka-protocol crate, independently of the broker's dispatch code.

mod common;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{consume, producer, TestBroker, PATIENCE};
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::producer::FutureRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn frame<R: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("hostile-test")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

/// A frame with a v1 header (key, version, correlation id, client id) and `body` bytes.
fn raw_frame(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("hostile-test")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header.encode(&mut buf, 1).unwrap();
    buf.put_slice(body);
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

/// Reads one response frame; None when the broker closed the connection.
async fn read_response(stream: &mut TcpStream) -> Option<Bytes> {
    let read = async {
        let len = stream.read_i32().await.ok()?;
        let mut body = vec![0u8; len as usize];
        stream.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("broker answered or closed")
}

async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
        .await
        .expect("broker closes the connection");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "expected a closed connection, read {n:?}"
    );
}

async fn api_versions(
    stream: &mut TcpStream,
    version: i16,
    correlation_id: i32,
) -> ApiVersionsResponse {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("test"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    stream
        .write_all(&frame(
            ApiKey::ApiVersions,
            version,
            correlation_id,
            &request,
        ))
        .await
        .unwrap();
    let mut body = read_response(stream).await.expect("response");
    // ApiVersions responses use header v0 whatever the request version: no tagged fields.
    let header = ResponseHeader::decode(&mut body, 0).unwrap();
    assert_eq!(header.correlation_id, correlation_id);
    let response = ApiVersionsResponse::decode(&mut body, version).unwrap();
    assert!(
        !body.has_remaining(),
        "{} stray bytes after the response",
        body.remaining()
    );
    response
}

/// A fresh connection is served normally.
async fn assert_serves(broker: &TestBroker) {
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    let response = api_versions(&mut stream, 3, 77).await;
    assert_eq!(response.error_code, 0);
}

fn error_code_only(mut body: Bytes, correlation_id: i32) -> i16 {
    let header = ResponseHeader::decode(&mut body, 0).unwrap();
    assert_eq!(header.correlation_id, correlation_id);
    body.get_i16()
}

#[tokio::test]
async fn api_versions_lists_the_table_with_a_plain_header() {
    let broker = TestBroker::start().await;
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    for version in 0..=3 {
        let response = api_versions(&mut stream, version, version as i32).await;
        assert_eq!(response.error_code, 0);
        let range = |key: ApiKey| {
            let k = response
                .api_keys
                .iter()
                .find(|k| k.api_key == key as i16)
                .unwrap_or_else(|| panic!("{key:?} advertised"));
            (k.min_version, k.max_version)
        };
        assert_eq!(
            range(ApiKey::Produce).0,
            0,
            "Produce min 0 keeps librdkafka compression on"
        );
        assert!(range(ApiKey::Fetch).1 >= 13, "Fetch with topic ids");
        assert!(range(ApiKey::Metadata).1 >= 12);
        assert_eq!(range(ApiKey::ApiVersions), (0, 3));
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn api_versions_too_new_gets_the_v0_fallback() {
    let broker = TestBroker::start().await;
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    // Version 99 with a flexible header and a body the broker cannot know.
    stream
        .write_all(&raw_frame(ApiKey::ApiVersions as i16, 99, 5, &[0, 1, 2, 3]))
        .await
        .unwrap();
    let mut body = read_response(&mut stream).await.expect("fallback response");
    assert_eq!(
        ResponseHeader::decode(&mut body, 0).unwrap().correlation_id,
        5
    );
    let response = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(response.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(response
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ApiVersions as i16));
    // The connection stays usable: the client retries with a listed version.
    assert_eq!(api_versions(&mut stream, 3, 6).await.error_code, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn unknown_api_key_and_old_produce_get_unsupported_version() {
    let broker = TestBroker::start().await;
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    stream.write_all(&raw_frame(999, 0, 11, &[])).await.unwrap();
    let body = read_response(&mut stream).await.expect("error response");
    assert_eq!(error_code_only(body, 11), 35);
    // Produce v2 is advertised (min 0, for librdkafka) but not answered.
    stream
        .write_all(&raw_frame(ApiKey::Produce as i16, 2, 12, &[0, 1]))
        .await
        .unwrap();
    let body = read_response(&mut stream).await.expect("error response");
    assert_eq!(error_code_only(body, 12), 35);
    // Fetch beyond the advertised range.
    stream
        .write_all(&raw_frame(ApiKey::Fetch as i16, 200, 13, &[]))
        .await
        .unwrap();
    let body = read_response(&mut stream).await.expect("error response");
    assert_eq!(error_code_only(body, 13), 35);
    assert_eq!(api_versions(&mut stream, 3, 14).await.error_code, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn garbage_bytes_close_only_that_connection() {
    let broker = TestBroker::start().await;
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: strata\r\n\r\n")
        .await
        .unwrap();
    assert_closed(&mut stream).await;
    assert_serves(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn oversized_and_negative_length_prefixes_close_before_allocating() {
    let broker = TestBroker::start().await;
    for prefix in [i32::MAX, -1, i32::MIN, 100 * 1024 * 1024 + 1] {
        let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
        stream.write_all(&prefix.to_be_bytes()).await.unwrap();
        assert_closed(&mut stream).await;
    }
    assert_serves(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn truncated_and_tiny_frames_close_the_connection() {
    let broker = TestBroker::start().await;
    // A length promising more than is ever sent, then the client half-closes.
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    let full = frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default());
    stream.write_all(&full[..full.len() - 3]).await.unwrap();
    stream.shutdown().await.unwrap();
    assert_closed(&mut stream).await;
    // A frame too short to hold a request header.
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    stream.write_all(&[0, 0, 0, 3, 0, 18, 0]).await.unwrap();
    assert_closed(&mut stream).await;
    assert_serves(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn valid_header_with_corrupt_body_closes_the_connection() {
    let broker = TestBroker::start().await;
    // Metadata v12 (flexible): a compact array length far beyond the frame.
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    let mut request = frame(ApiKey::Metadata, 12, 1, &MetadataRequest::default());
    let header_len = request.len() - MetadataRequest::default().compute_size(12).unwrap();
    request.truncate(header_len);
    request.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2]);
    let len = (request.len() - 4) as i32;
    request[..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&request).await.unwrap();
    assert_closed(&mut stream).await;
    // Produce v9 whose body ends in the middle of a field.
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    let mut request = frame(
        ApiKey::Produce,
        9,
        2,
        &ProduceRequest::default().with_acks(1),
    );
    request.truncate(request.len() - 2);
    let len = (request.len() - 4) as i32;
    request[..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&request).await.unwrap();
    assert_closed(&mut stream).await;
    assert_serves(&broker).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let broker = TestBroker::start().await;
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    let mut burst = Vec::new();
    for i in 0..40 {
        if i % 2 == 0 {
            burst.extend(frame(
                ApiKey::ApiVersions,
                3,
                i,
                &ApiVersionsRequest::default(),
            ));
        } else {
            burst.extend(frame(ApiKey::Metadata, 12, i, &MetadataRequest::default()));
        }
    }
    stream.write_all(&burst).await.unwrap();
    for i in 0..40 {
        let mut body = read_response(&mut stream).await.expect("response");
        let header_version = if i % 2 == 0 { 0 } else { 1 };
        let header = ResponseHeader::decode(&mut body, header_version).unwrap();
        assert_eq!(header.correlation_id, i);
        if i % 2 == 1 {
            let metadata = MetadataResponse::decode(&mut body, 12).unwrap();
            assert_eq!(metadata.brokers.len(), 1);
            assert_eq!(metadata.brokers[0].port, broker.addr().port() as i32);
            assert_eq!(metadata.controller_id.0, 0);
        }
    }
    broker.shutdown().await;
}

/// A mutable copy of the harness's uncompressed batch, for tests that corrupt it.
fn one_batch(values: &[&str]) -> BytesMut {
    BytesMut::from(&common::raw::batch(values, 1_700_000_000_000)[..])
}

async fn produce_raw(
    stream: &mut TcpStream,
    correlation_id: i32,
    topic: &str,
    records: Bytes,
) -> i16 {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    stream
        .write_all(&frame(ApiKey::Produce, 9, correlation_id, &request))
        .await
        .unwrap();
    let mut body = read_response(stream).await.expect("produce response");
    let header = ResponseHeader::decode(&mut body, 1).unwrap();
    assert_eq!(header.correlation_id, correlation_id);
    let response = ProduceResponse::decode(&mut body, 9).unwrap();
    response.responses[0].partition_responses[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_get_per_partition_errors_and_good_ones_land() {
    let broker = TestBroker::start().await;
    common::raw::RawClient::connect(broker.addr())
        .await
        .auto_create("raw")
        .await;
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    assert_eq!(
        produce_raw(&mut stream, 1, "raw", one_batch(&["a", "b"]).freeze()).await,
        0
    );
    // A flipped byte inside the records: CRC mismatch -> CORRUPT_MESSAGE.
    let mut corrupt = one_batch(&["c"]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce_raw(&mut stream, 2, "raw", corrupt.freeze()).await,
        2
    );
    // Two batches for one partition: Produce v3+ requires exactly one -> INVALID_RECORD.
    let mut two = one_batch(&["d"]);
    two.extend_from_slice(&one_batch(&["e"]));
    assert_eq!(produce_raw(&mut stream, 3, "raw", two.freeze()).await, 87);
    // A truncated batch -> CORRUPT_MESSAGE.
    let batch = one_batch(&["f"]);
    assert_eq!(
        produce_raw(&mut stream, 4, "raw", batch.freeze().slice(..20)).await,
        2
    );
    // Only the good batch is in the log, and the connection still serves a real client.
    let bootstrap = broker.bootstrap();
    let producer = producer(&bootstrap, &[]);
    producer
        .send(FutureRecord::to("raw").key("k").payload("g"), PATIENCE)
        .await
        .unwrap();
    let got = tokio::task::spawn_blocking(move || consume(&bootstrap, "raw", 1, 3))
        .await
        .unwrap();
    let values: Vec<Vec<u8>> = got
        .iter()
        .map(|m| rdkafka::Message::payload(m).unwrap().to_vec())
        .collect();
    assert_eq!(values, vec![b"a".to_vec(), b"b".to_vec(), b"g".to_vec()]);
    broker.shutdown().await;
}

/// A client that pipelines large fetches and never reads the responses holds a bounded
/// amount of broker memory, does not stop other clients, and does not block shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cannot_stall_the_broker() {
    use common::raw::{batch, RawClient};
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::FetchRequest;

    let broker = TestBroker::start().await;
    RawClient::connect(broker.addr())
        .await
        .auto_create("big")
        .await;
    let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
    let big = "x".repeat(60 * 1024);
    let values: Vec<&str> = (0..15).map(|_| big.as_str()).collect();
    assert_eq!(
        produce_raw(&mut stream, 1, "big", batch(&values, 0)).await,
        0
    );

    let mut hog = RawClient::connect(broker.addr()).await;
    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(4 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("big")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(4 << 20)])]);
    // About 200 MiB of responses requested; the hog never reads one of them. The sends
    // themselves stop completing once the broker stops reading this connection, so
    // they run in the background.
    let hog_task = tokio::spawn(async move {
        for _ in 0..200 {
            hog.send(ApiKey::Fetch, 12, &fetch).await;
        }
        hog
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_serves(&broker).await;
    tokio::time::timeout(PATIENCE, broker.shutdown())
        .await
        .expect("shutdown completes despite the hog");
    hog_task.abort();
}
