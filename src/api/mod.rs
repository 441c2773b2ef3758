//! Request dispatch and the ApiVersions table.
//!
//! `handle_frame` takes one request frame (without its length prefix), decodes the header
//! and body with `kafka-protocol`, runs the API's handler and returns the encoded response
//! frame, now or later. Handlers live one module per API family; each is a function from
//! a decoded request (and the broker) to a response.
//!
//! Order: `handle_frame` runs synchronously in the connection's read loop, so the
//! synchronous part of every request (appends) happens in arrival order. Work that must
//! wait (acks=all durability, fetch long-poll) is returned as a deferred future; the
//! connection writes responses strictly in request order. Topic administration (create,
//! delete, partitions, auto-creation) is queued, in arrival order, on the broker's admin
//! thread and answered by a deferred future, so it never blocks the async workers.

pub(crate) mod alter_configs;
pub(crate) mod api_versions;
pub(crate) mod create_partitions;
pub(crate) mod create_topics;
pub(crate) mod delete_records;
pub(crate) mod delete_topics;
pub(crate) mod describe_cluster;
pub(crate) mod describe_configs;
pub(crate) mod fetch;
pub(crate) mod fetch_frame;
pub(crate) mod groups;
pub(crate) mod init_producer_id;
pub(crate) mod list_offsets;
pub(crate) mod metadata;
pub(crate) mod produce;
pub(crate) mod txn;

use kafka_protocol::error::ResponseError;
use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::buf::{DecodeBudget, DecodeBudgetExceeded};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::sync::watch;
use tracing::{debug, error, warn};

use crate::broker::Broker;

/// Kafka's UNSUPPORTED_VERSION error code.
pub(crate) const UNSUPPORTED_VERSION: i16 = ResponseError::UnsupportedVersion.code();

/// One API and the version range clients may use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ApiRange {
    pub key: ApiKey,
    /// Lowest version advertised in ApiVersions.
    pub advertised_min: i16,
    /// Lowest version actually answered (Produce advertises 0 but answers 3+, because
    /// librdkafka turns compression off when Produce's advertised minimum is above 0).
    pub answered_min: i16,
    pub max: i16,
}

const fn range(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange {
        key,
        advertised_min: min,
        answered_min: min,
        max,
    }
}

/// The ApiVersions table: every API and version implemented and tested. Add a row when
/// an API's handler and its tests land.
pub(crate) const SUPPORTED: &[ApiRange] = &[
    ApiRange {
        key: ApiKey::Produce,
        advertised_min: 0,
        answered_min: 3,
        max: 9,
    },
    range(ApiKey::Fetch, 4, 13),
    range(ApiKey::ListOffsets, 1, 8),
    range(ApiKey::Metadata, 0, 12),
    range(ApiKey::ApiVersions, 0, 3),
    range(ApiKey::CreateTopics, 2, 7),
    range(ApiKey::DeleteTopics, 1, 6),
    range(ApiKey::DeleteRecords, 0, 2),
    range(ApiKey::DescribeConfigs, 1, 4),
    range(ApiKey::AlterConfigs, 0, 2),
    range(ApiKey::CreatePartitions, 0, 3),
    range(ApiKey::IncrementalAlterConfigs, 0, 1),
    range(ApiKey::DescribeCluster, 0, 2),
    // Consumer groups (api::groups). kafka-protocol decodes OffsetCommit from v2 and
    // OffsetFetch from v1 (Kafka 4 dropped the older versions as well).
    range(ApiKey::FindCoordinator, 0, 4),
    range(ApiKey::JoinGroup, 0, 9),
    range(ApiKey::SyncGroup, 0, 5),
    range(ApiKey::Heartbeat, 0, 4),
    range(ApiKey::LeaveGroup, 0, 5),
    range(ApiKey::OffsetCommit, 2, 8),
    range(ApiKey::OffsetFetch, 1, 8),
    range(ApiKey::ListGroups, 0, 4),
    range(ApiKey::DescribeGroups, 0, 5),
    range(ApiKey::DeleteGroups, 0, 2),
    range(ApiKey::OffsetDelete, 0, 0),
    // Idempotent and transactional producers (api::init_producer_id, api::txn). Versions
    // above the ones librdkafka and the Java client send differ only by error codes
    // Strata never returns (TRANSACTION_ABORTABLE); AddPartitionsToTxn v4+ is the
    // broker-to-broker form, EndTxn v5 / TxnOffsetCommit v5 KIP-890's epoch bump per
    // transaction: not implemented.
    range(ApiKey::InitProducerId, 0, 5),
    range(ApiKey::AddPartitionsToTxn, 0, 3),
    range(ApiKey::AddOffsetsToTxn, 0, 4),
    range(ApiKey::TxnOffsetCommit, 0, 4),
    range(ApiKey::EndTxn, 0, 4),
    range(ApiKey::DescribeTransactions, 0, 0),
    range(ApiKey::ListTransactions, 0, 1),
];

/// The supported range of `key`, if any.
pub(crate) fn supported(key: ApiKey) -> Option<&'static ApiRange> {
    SUPPORTED.iter().find(|r| r.key == key)
}

/// What a connection needs to serve requests.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub broker: Arc<Broker>,
    /// Turns true when the broker shuts down: long-polls end early.
    pub shutdown: watch::Receiver<bool>,
    /// The consumer group coordinator.
    pub groups: crate::group::GroupService,
    /// The transaction coordinator.
    pub txns: crate::txn::TxnCoordinator,
    /// The client's address (set per connection; DescribeGroups shows it).
    pub peer: Option<std::net::SocketAddr>,
}

/// An encoded response frame (length prefix included), or None when encoding failed and
/// the connection must be closed.
pub type ResponseFrame = Option<Frame>;

/// One encoded response: parts written back to back. Most responses are one part; a Fetch
/// response shares each partition's record bytes with the log read instead of copying
/// them into the frame (`fetch_frame`).
#[derive(Debug, Clone, Default)]
pub struct Frame {
    parts: Vec<Bytes>,
}

impl Frame {
    /// A frame of these parts, in order.
    pub fn from_parts(parts: Vec<Bytes>) -> Frame {
        Frame { parts }
    }

    /// Total bytes, length prefix included.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// True for a frame without bytes.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(Bytes::is_empty)
    }

    /// The parts to write, in order.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Frame {
        Frame { parts: vec![bytes] }
    }
}

/// A response that is computed later, in request order on the connection.
pub type DeferredResponse = Pin<Box<dyn Future<Output = ResponseFrame> + Send + 'static>>;

/// The result of handling one request frame.
pub enum Reply {
    /// Send this now (in order).
    Now(ResponseFrame),
    /// The request has no response (Produce with acks=0).
    Nothing,
    /// Send what this future yields, after every earlier response.
    Later(DeferredResponse),
    /// Storage work that must be done before the connection's next request is handled (an
    /// append: a client's later request may rely on it), run off the async workers; the
    /// connection waits for it, then handles the reply it yields (never `InOrder` again).
    InOrder(Pin<Box<dyn Future<Output = Reply> + Send + 'static>>),
}

impl Reply {
    /// The response frame this reply sends, once computed (`None` when the request has no
    /// response or the connection must close). For callers outside a connection: tests,
    /// benches.
    pub async fn into_frame(self) -> Option<Frame> {
        let reply = match self {
            Reply::InOrder(first) => first.await,
            other => other,
        };
        match reply {
            Reply::Now(frame) => frame,
            Reply::Later(future) => future.await,
            Reply::Nothing | Reply::InOrder(_) => None,
        }
    }
}

/// A handler's answer before encoding.
pub(crate) enum Handled<R> {
    Ready(R),
    Deferred(Pin<Box<dyn Future<Output = R> + Send + 'static>>),
    NoResponse,
    /// Work that must finish before the connection's next request (see [`Reply::InOrder`]),
    /// then this answer.
    InOrder(Pin<Box<dyn Future<Output = Handled<R>> + Send + 'static>>),
    /// The handler failed (its storage job panicked): close the connection, as a
    /// panicking handler on the connection's own task would.
    Close,
}

/// Runs one request's handler — blocking storage work — on the broker's I/O pool
/// ([`crate::broker::io_pool`]); the connection's next request waits for it
/// ([`Reply::InOrder`]), other connections do not. What the handler defers (an acks=all
/// wait, a long poll) is awaited by the connection's response writer, as usual.
fn on_io<R: Send + 'static>(
    ctx: &RequestContext,
    handler: impl FnOnce(&RequestContext) -> Handled<R> + Send + 'static,
) -> Handled<R> {
    let ctx = ctx.clone();
    let pool = ctx.broker.clone();
    let job = pool.io().run(move || handler(&ctx));
    Handled::InOrder(Box::pin(async move {
        match job.await {
            Ok(handled) => handled,
            Err(e) => {
                error!(error = %e, "request handler failed on the storage I/O pool");
                Handled::Close
            }
        }
    }))
}

/// [`on_io`] for a handler that only needs the broker and answers at once.
fn in_order_on_io<R: Send + 'static>(
    ctx: &RequestContext,
    handler: impl FnOnce(&Broker) -> R + Send + 'static,
) -> Handled<R> {
    on_io(ctx, move |ctx| Handled::Ready(handler(&ctx.broker)))
}

/// A frame that cannot be parsed: the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("request frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("cannot decode request header (api key {api_key}, version {version}): {message}")]
    Header {
        api_key: i16,
        version: i16,
        message: String,
    },
    #[error("cannot decode {api:?} v{version} request body: {message}")]
    Body {
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error(
        "{api:?} v{version} request of {wire_bytes} bytes decodes to more than {limit} bytes \
         (at most {DECODE_RATIO}x its size plus {DECODE_FLOOR} bytes, {DECODE_MAX} in all)"
    )]
    DecodesTooLarge {
        api: ApiKey,
        version: i16,
        wire_bytes: usize,
        limit: usize,
    },
}

/// Decoded bytes every request body may take, whatever its size.
pub const DECODE_FLOOR: usize = 1 << 20;
/// Decoded bytes a request body may take per byte on the wire, above `DECODE_FLOOR`.
pub const DECODE_RATIO: usize = 8;
/// Decoded bytes no request body may exceed.
pub const DECODE_MAX: usize = 64 << 20;

/// Bytes of decoded arrays and tagged fields a request body of `wire_bytes` may decode to
/// (kafka-protocol's `DecodeBudget`). Decoding inflates: an empty topic name is 2 bytes on
/// the wire and a 72-byte `MetadataRequestTopic`, so a 20 MB Metadata request once decoded
/// to 1.7 GB. Real requests stay far below the limit: a Produce or Fetch decodes to under
/// its wire size (record sets are not copied), a Metadata v10+ request to at most 4x, an
/// older one to 24x only when naming tens of thousands of 1-character topics, which the
/// floor covers. A body over the limit is not decoded further: the connection is closed,
/// as for any frame that cannot be parsed.
pub fn decode_limit(wire_bytes: usize) -> usize {
    wire_bytes
        .saturating_mul(DECODE_RATIO)
        .saturating_add(DECODE_FLOOR)
        .min(DECODE_MAX)
}

/// A request body being decoded, and how much of its decode budget it has used.
pub(crate) struct RequestBody {
    bytes: Bytes,
    wire_bytes: usize,
    limit: usize,
    decoded: usize,
}

/// Handles one request frame (the bytes after the length prefix).
pub fn handle_frame(frame: Bytes, ctx: &RequestContext) -> Result<Reply, FrameError> {
    handle_frame_counted(frame, ctx).map(|(reply, _)| reply)
}

/// Like `handle_frame`, also returning the bytes the request decoded to (what a deferred
/// reply may hold until it resolves).
pub fn handle_frame_counted(
    mut frame: Bytes,
    ctx: &RequestContext,
) -> Result<(Reply, usize), FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::try_from(raw_key).ok();
    let range = api.and_then(supported);
    let answerable = range.is_some_and(|r| version >= r.answered_min && version <= r.max);
    if !answerable {
        // Header v1 (key, version, correlation id, client id) is a prefix of every header
        // version, so it can be read whatever the API and version are.
        let header = RequestHeader::decode(&mut frame, 1).map_err(|e| FrameError::Header {
            api_key: raw_key,
            version,
            message: e.to_string(),
        })?;
        debug!(api_key = raw_key, version, "unsupported API or version");
        if api == Some(ApiKey::ApiVersions) {
            return Ok((
                Reply::Now(api_versions::unsupported_version_frame(
                    header.correlation_id,
                )),
                0,
            ));
        }
        return Ok((
            Reply::Now(Some(error_only_frame(
                header.correlation_id,
                UNSUPPORTED_VERSION,
            ))),
            0,
        ));
    }
    // `answerable` implies `api` is Some.
    let Some(api) = api else {
        return Err(FrameError::TooShort(frame.len()));
    };
    let header =
        RequestHeader::decode(&mut frame, api.request_header_version(version)).map_err(|e| {
            FrameError::Header {
                api_key: raw_key,
                version,
                message: e.to_string(),
            }
        })?;
    let corr = header.correlation_id;
    tracing::trace!(?api, version, correlation_id = corr, client_id = ?header.client_id, "request");
    let wire_bytes = frame.len();
    let body = &mut RequestBody {
        bytes: frame,
        wire_bytes,
        limit: decode_limit(wire_bytes),
        decoded: 0,
    };
    let reply = match api {
        ApiKey::ApiVersions => respond(
            api,
            version,
            corr,
            Handled::Ready(api_versions::handle(decode(api, version, body)?)),
        ),
        ApiKey::Metadata => respond(
            api,
            version,
            corr,
            metadata::handle(decode(api, version, body)?, version, &ctx.broker),
        ),
        ApiKey::Produce => {
            let request = decode(api, version, body)?;
            respond(
                api,
                version,
                corr,
                on_io(ctx, move |ctx| produce::handle(request, version, ctx)),
            )
        }
        ApiKey::Fetch => {
            let request = decode(api, version, body)?;
            respond_with(
                version,
                corr,
                on_io(ctx, move |ctx| fetch::handle(request, version, ctx)),
                fetch_frame::encode,
            )
        }
        ApiKey::ListOffsets => {
            let request = decode(api, version, body)?;
            respond(
                api,
                version,
                corr,
                in_order_on_io(ctx, move |broker| {
                    list_offsets::handle(request, version, broker)
                }),
            )
        }
        ApiKey::CreateTopics => respond(
            api,
            version,
            corr,
            create_topics::handle(decode(api, version, body)?, version, &ctx.broker),
        ),
        ApiKey::DeleteTopics => respond(
            api,
            version,
            corr,
            delete_topics::handle(
                decode(api, version, body)?,
                version,
                &ctx.broker,
                &ctx.groups,
            ),
        ),
        ApiKey::DeleteRecords => {
            let request = decode(api, version, body)?;
            respond(
                api,
                version,
                corr,
                in_order_on_io(ctx, move |broker| {
                    delete_records::handle(request, version, broker)
                }),
            )
        }
        ApiKey::DescribeConfigs => respond(
            api,
            version,
            corr,
            Handled::Ready(describe_configs::handle(
                decode(api, version, body)?,
                version,
                &ctx.broker,
            )),
        ),
        ApiKey::AlterConfigs => respond(
            api,
            version,
            corr,
            alter_configs::handle_alter(decode(api, version, body)?, version, &ctx.broker),
        ),
        ApiKey::CreatePartitions => respond(
            api,
            version,
            corr,
            create_partitions::handle(decode(api, version, body)?, version, &ctx.broker),
        ),
        ApiKey::IncrementalAlterConfigs => respond(
            api,
            version,
            corr,
            alter_configs::handle_incremental(decode(api, version, body)?, version, &ctx.broker),
        ),
        ApiKey::DescribeCluster => respond(
            api,
            version,
            corr,
            Handled::Ready(describe_cluster::handle(
                decode(api, version, body)?,
                version,
                &ctx.broker,
            )),
        ),
        ApiKey::InitProducerId => respond(
            api,
            version,
            corr,
            init_producer_id::handle(decode(api, version, body)?, version, ctx),
        ),
        ApiKey::AddPartitionsToTxn
        | ApiKey::AddOffsetsToTxn
        | ApiKey::TxnOffsetCommit
        | ApiKey::EndTxn
        | ApiKey::DescribeTransactions
        | ApiKey::ListTransactions => txn::dispatch(api, version, &header, body, ctx)?,
        ApiKey::FindCoordinator
        | ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::OffsetCommit
        | ApiKey::OffsetFetch
        | ApiKey::ListGroups
        | ApiKey::DescribeGroups
        | ApiKey::DeleteGroups
        | ApiKey::OffsetDelete => groups::dispatch(api, version, &header, body, ctx)?,
        // Listed in SUPPORTED but without a dispatch arm would be a bug; answer as unknown.
        _ => Reply::Now(Some(error_only_frame(corr, UNSUPPORTED_VERSION))),
    };
    Ok((reply, body.decoded))
}

/// Largest response body the broker encodes (Fetch aside), in bytes: far above anything a
/// sane request asks for (every API that lists things in proportion to a request answers
/// each thing once, see [`distinct`]); a request whose answer would be larger closes its
/// connection, as an unparseable one does, instead of making the broker allocate it.
const MAX_RESPONSE_BYTES: usize = 128 << 20;

/// Longest `error_message` put in a response, in bytes. Messages quote what a client sent
/// (topic, config and resource names, values); a quote of a 32,767-byte name would not fit
/// a non-flexible version's string, and the whole response would fail to encode.
const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// `message` as a response's error message, cut to [`MAX_ERROR_MESSAGE_BYTES`] at a
/// character boundary (ending in "..." when cut). Every error message a handler puts in a
/// response goes through here.
pub(crate) fn error_message(message: impl Into<String>) -> StrBytes {
    let mut message = message.into();
    if message.len() > MAX_ERROR_MESSAGE_BYTES {
        let mut end = MAX_ERROR_MESSAGE_BYTES - 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    StrBytes::from_string(message)
}

/// `items` without the repeats of an item already kept (same `key`), in order. A
/// describe request naming one thing many times would otherwise make a response that
/// many times larger than the request (a topic of 10,000 partitions, a group's members
/// and their metadata, every config of a resource, all of a group's offsets): each is
/// answered once, as Kafka's Metadata answers each topic once.
pub(crate) fn distinct<T, K: Hash + Eq>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut seen = HashSet::with_capacity(items.len().min(1024));
    items
        .into_iter()
        .filter(|item| seen.insert(key(item)))
        .collect()
}

/// The items named more than once in `items`. Several of Kafka's APIs answer every
/// mention of such a topic, partition or resource with INVALID_REQUEST and act on none.
fn repeated<K: Hash + Eq>(items: impl IntoIterator<Item = K>) -> HashSet<K> {
    let mut seen = HashSet::new();
    let mut repeated = HashSet::new();
    for item in items {
        if seen.contains(&item) {
            repeated.insert(item);
        } else {
            seen.insert(item);
        }
    }
    repeated
}

/// Decodes `body` as `T` within what is left of its decode budget.
fn decode<T: Decodable>(
    api: ApiKey,
    version: i16,
    body: &mut RequestBody,
) -> Result<T, FrameError> {
    let mut budgeted = DecodeBudget::new(&mut body.bytes, body.limit - body.decoded);
    let decoded = T::decode(&mut budgeted, version);
    body.decoded += budgeted.used();
    decoded.map_err(|e| {
        if e.downcast_ref::<DecodeBudgetExceeded>().is_some() {
            FrameError::DecodesTooLarge {
                api,
                version,
                wire_bytes: body.wire_bytes,
                limit: body.limit,
            }
        } else {
            FrameError::Body {
                api,
                version,
                message: format!("{e:#}"),
            }
        }
    })
}

/// Turns a handler's answer into a reply carrying the encoded frame.
fn respond<R: Encodable + Send + 'static>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    handled: Handled<R>,
) -> Reply {
    match handled {
        Handled::Ready(body) => Reply::Now(encode_frame(api, version, correlation_id, &body)),
        Handled::NoResponse => Reply::Nothing,
        Handled::Close => Reply::Now(None),
        Handled::Deferred(future) => Reply::Later(Box::pin(async move {
            let body = future.await;
            encode_frame(api, version, correlation_id, &body)
        })),
        Handled::InOrder(first) => Reply::InOrder(Box::pin(async move {
            flatten(respond(api, version, correlation_id, first.await))
        })),
    }
}

/// An `InOrder` reply's own reply, which must not be `InOrder` again: a nested one is
/// awaited here.
fn flatten(reply: Reply) -> Reply {
    match reply {
        Reply::InOrder(_) => {
            error!("an in-order reply yielded another; closing the connection");
            Reply::Now(None)
        }
        other => other,
    }
}

/// Like `respond`, with an API-specific encoder (Fetch: record bytes are not copied).
fn respond_with<R: Send + 'static>(
    version: i16,
    correlation_id: i32,
    handled: Handled<R>,
    encode: fn(i16, i32, &R) -> ResponseFrame,
) -> Reply {
    match handled {
        Handled::Ready(body) => Reply::Now(encode(version, correlation_id, &body)),
        Handled::NoResponse => Reply::Nothing,
        Handled::Close => Reply::Now(None),
        Handled::Deferred(future) => Reply::Later(Box::pin(async move {
            let body = future.await;
            encode(version, correlation_id, &body)
        })),
        Handled::InOrder(first) => Reply::InOrder(Box::pin(async move {
            flatten(respond_with(version, correlation_id, first.await, encode))
        })),
    }
}

/// Encodes `[length][response header][body]`. The header version comes from the API
/// (ApiVersions always uses header v0: no tagged fields, whatever the request version).
pub(crate) fn encode_frame<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> ResponseFrame {
    let header_version = api.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    // Sized before a byte is allocated: no request may make the broker build a response
    // larger than MAX_RESPONSE_BYTES (Fetch, the only API whose responses grow with the
    // data, is bounded by fetch.max.bytes and encoded elsewhere).
    let size = match body.compute_size(version) {
        Ok(size) if size <= MAX_RESPONSE_BYTES => size,
        Ok(size) => {
            warn!(
                ?api,
                version,
                bytes = size,
                max = MAX_RESPONSE_BYTES,
                "response larger than the broker sends; closing connection"
            );
            return None;
        }
        Err(e) => {
            error!(?api, version, error = %format!("{e:#}"), "cannot encode response; closing connection");
            return None;
        }
    };
    // The length prefix, the header (a correlation id and at most an empty tag buffer).
    let mut buf = BytesMut::with_capacity(4 + 5 + size);
    buf.put_i32(0);
    let encoded = header
        .encode(&mut buf, header_version)
        .and_then(|()| body.encode(&mut buf, version));
    if let Err(e) = encoded {
        error!(?api, version, error = %format!("{e:#}"), "cannot encode response; closing connection");
        return None;
    }
    let Some(len) = frame_length(buf.len()) else {
        error!(
            ?api,
            version,
            bytes = buf.len(),
            "response too large to encode; closing connection"
        );
        return None;
    };
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Some(Frame::from(buf.freeze()))
}

/// The length prefix of a response frame of `total` bytes (prefix included), or None past
/// `i32::MAX`: never a wrapped, negative or short length.
pub(crate) fn frame_length(total: usize) -> Option<i32> {
    total.checked_sub(4).and_then(|len| i32::try_from(len).ok())
}

/// A response of just the correlation id and an error code: the answer to an API key or
/// version this broker does not serve (Kafka's own brokers close the connection instead;
/// clients never send these because they pick versions from ApiVersions).
fn error_only_frame(correlation_id: i32, error_code: i16) -> Frame {
    let mut buf = BytesMut::with_capacity(10);
    buf.put_i32(6);
    buf.put_i32(correlation_id);
    buf.put_i16(error_code);
    Frame::from(buf.freeze())
}
