//! Fetch (v4+, topic ids on v13): reads whole batches from each partition's log up to the
//! high watermark, which is the durable offset, so a consumer never sees a record that a
//! crash could erase. The record bytes from the log go into the response unchanged.
//!
//! Long poll: when fewer than `min_bytes` are available the response is deferred until the
//! high watermark of a fetched partition moves (`Partition::subscribe_high_watermark`), `max_wait_ms`
//! passes, or the broker shuts down — never a busy loop. A wake-up reads nothing: it
//! decides from the logs' offsets and index positions whether `min_bytes` could now be
//! returned ([`may_satisfy`], Kafka's `DelayedFetch.tryComplete`), and only then reads
//! every partition, once, and answers with what that read found.
//!
//! Isolation: read_uncommitted reads up to the high watermark. read_committed
//! (`isolation_level` 1) reads only below the last stable offset (the first offset of the
//! oldest open transaction, or the high watermark) and lists the aborted transactions
//! overlapping the returned range, so the client drops their records; control batches
//! (transaction markers) are returned as stored and skipped by clients. Every response
//! carries the LSO in `last_stable_offset`.
//!
//! Fetch sessions (KIP-227) are refused: every response carries session id 0, which tells
//! the client no session was created, and every request is served as a full fetch.

use kafka_protocol::error::ResponseError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use tokio::sync::watch;
use tracing::error;
use uuid::Uuid;

use super::{Handled, RequestContext};
use crate::broker::partition::Partition;
use crate::broker::Broker;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
const FETCH_SESSION_ID_NOT_FOUND: i16 = ResponseError::FetchSessionIdNotFound.code();
const UNKNOWN_SERVER_ERROR: i16 = ResponseError::UnknownServerError.code();
const UNKNOWN_TOPIC_ID: i16 = ResponseError::UnknownTopicId.code();
/// `isolation_level` of a read_committed consumer.
const READ_COMMITTED: i8 = 1;

/// What one fetched partition asks for.
struct PartitionPlan {
    index: i32,
    fetch_offset: i64,
    max_bytes: i32,
    /// None: the topic or partition does not exist; `missing_code` says which error.
    log: Option<Arc<Partition>>,
    missing_code: i16,
}

struct TopicPlan {
    name: TopicName,
    id: Uuid,
    partitions: Vec<PartitionPlan>,
}

/// The whole request, resolved against the broker once.
struct FetchPlan {
    topics: Vec<TopicPlan>,
    max_bytes: usize,
    /// Read only below the last stable offset, and list aborted transactions.
    read_committed: bool,
}

pub(crate) fn handle(
    request: FetchRequest,
    version: i16,
    ctx: &RequestContext,
) -> Handled<FetchResponse> {
    if request.session_id != 0 {
        // An incremental fetch in a session we never created.
        return Handled::Ready(
            FetchResponse::default()
                .with_error_code(FETCH_SESSION_ID_NOT_FOUND)
                .with_session_id(0),
        );
    }
    // The broker's own limit (fetch.max.bytes) caps what the client asks for.
    let max_bytes = request.max_bytes.min(ctx.broker.config().fetch_max_bytes);
    let mut plan = resolve(&ctx.broker, request.topics, version, max_bytes);
    plan.read_committed = request.isolation_level == READ_COMMITTED;
    // Subscribe before the first read so that an append landing between the read and
    // the wait still wakes the long poll.
    let mut receivers: Vec<watch::Receiver<i64>> = plan
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.log.as_ref().map(|log| log.subscribe_high_watermark()))
        .collect();
    let (response, bytes, any_error) = gather(&plan);
    let min_bytes = request.min_bytes.max(0) as usize;
    if bytes >= min_bytes || any_error || request.max_wait_ms <= 0 || receivers.is_empty() {
        return Handled::Ready(response);
    }
    let max_wait = Duration::from_millis(request.max_wait_ms as u64);
    let mut shutdown = ctx.shutdown.clone();
    let broker = ctx.broker.clone();
    Handled::Deferred(Box::pin(async move {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = crate::server::shutdown::requested(&mut shutdown) => break,
                _ = any_changed(&mut receivers) => {}
            }
            if may_satisfy(&plan, min_bytes) {
                break;
            }
        }
        // The one read runs on the storage I/O pool, not on this async worker.
        match broker.io().run(move || gather(&plan).0).await {
            Ok(response) => response,
            Err(e) => {
                error!(error = %e, "a long-polling fetch's read failed on the storage I/O pool");
                FetchResponse::default().with_error_code(UNKNOWN_SERVER_ERROR)
            }
        }
    }))
}

/// Whether a waiting fetch can be answered now: the bytes below each partition's upper
/// bound (high watermark, or LSO for read_committed) from its fetch offset, each at most
/// the partition's max_bytes, add up to `min_bytes`, or a fetch offset is out of range
/// (an error to answer). From offsets and index positions only (`Log::bytes_available`,
/// an upper bound by at most an index interval per end): no log is read.
fn may_satisfy(plan: &FetchPlan, min_bytes: usize) -> bool {
    let need = u64::try_from(min_bytes).unwrap_or(u64::MAX);
    let mut total = 0u64;
    for p in plan.topics.iter().flat_map(|t| t.partitions.iter()) {
        let Some(log) = &p.log else {
            continue;
        };
        let upper = if plan.read_committed {
            log.last_stable_offset()
        } else {
            log.high_watermark()
        };
        let cap = u64::try_from(p.max_bytes).unwrap_or(0);
        match log.bytes_available(p.fetch_offset, upper, need) {
            None => return true,
            Some(available) => total = total.saturating_add(available.min(cap)),
        }
        if total >= need {
            return true;
        }
    }
    false
}

/// Looks every requested topic up by name (or by id from v13 on).
fn resolve(
    broker: &Broker,
    topics: Vec<kafka_protocol::messages::fetch_request::FetchTopic>,
    version: i16,
    max_bytes: i32,
) -> FetchPlan {
    let topics = topics
        .into_iter()
        .map(|t| {
            let (topic, missing_code) = if version >= 13 {
                (broker.topic_by_id(t.topic_id), UNKNOWN_TOPIC_ID)
            } else {
                (broker.topic(t.topic.as_str()), UNKNOWN_TOPIC_OR_PARTITION)
            };
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let log = topic
                        .as_ref()
                        .and_then(|t| t.partition(p.partition))
                        .cloned();
                    let missing_code = if topic.is_some() {
                        UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        missing_code
                    };
                    PartitionPlan {
                        index: p.partition,
                        fetch_offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes,
                        log,
                        missing_code,
                    }
                })
                .collect();
            TopicPlan {
                name: t.topic,
                id: t.topic_id,
                partitions,
            }
        })
        .collect();
    FetchPlan {
        topics,
        max_bytes: usize::try_from(max_bytes).unwrap_or(0),
        read_committed: false,
    }
}

/// Reads every partition once. Returns the response, the record bytes in it, and whether
/// any partition has an error (which is answered at once, as Kafka does).
fn gather(plan: &FetchPlan) -> (FetchResponse, usize, bool) {
    let mut remaining = plan.max_bytes;
    let mut total = 0usize;
    let mut any_error = false;
    let topics = plan
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let data = read_partition(p, remaining, total == 0, plan.read_committed);
                    if data.error_code != 0 {
                        any_error = true;
                    }
                    let len = data.records.as_ref().map_or(0, Bytes::len);
                    total += len;
                    remaining = remaining.saturating_sub(len);
                    data
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.name.clone())
                .with_topic_id(topic.id)
                .with_partitions(partitions)
        })
        .collect();
    let response = FetchResponse::default()
        .with_error_code(0)
        .with_session_id(0)
        .with_responses(topics);
    (response, total, any_error)
}

/// One partition's data, within `min(partition max_bytes, remaining)` bytes. `first` (no
/// earlier partition returned records) allows one batch beyond those limits so that a
/// batch larger than max_bytes can still be consumed (KIP-74); any other partition gets
/// only whole batches that fit.
fn read_partition(
    p: &PartitionPlan,
    remaining: usize,
    first: bool,
    read_committed: bool,
) -> PartitionData {
    let errored = |code: i16| {
        PartitionData::default()
            .with_partition_index(p.index)
            .with_error_code(code)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_records(Some(Bytes::new()))
    };
    let Some(log) = &p.log else {
        return errored(p.missing_code);
    };
    // The LSO first: it is min(durable offset, oldest open transaction), so reading the
    // durable offset second keeps last_stable_offset <= high_watermark in the response.
    let last_stable_offset = log.last_stable_offset();
    let high_watermark = log.high_watermark();
    let log_start_offset = log.log_start_offset();
    // read_committed reads stop at the LSO; read_uncommitted ones at the high watermark.
    let upper = if read_committed {
        last_stable_offset
    } else {
        high_watermark
    };
    let ok = |records: Bytes| {
        // Kafka's bound: only the aborted transactions overlapping the returned batches
        // (not all of them up to the LSO, which for a consumer far behind many aborted
        // transactions would be an unbounded list in every response).
        let aborted = read_committed.then(|| {
            let listed = match fetched_end(&records) {
                Some(end) => log.aborted_transactions(p.fetch_offset, end.min(upper)),
                None => Vec::new(),
            };
            listed
                .into_iter()
                .map(|t| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(t.producer_id))
                        .with_first_offset(t.first_offset)
                })
                .collect()
        });
        PartitionData::default()
            .with_partition_index(p.index)
            .with_error_code(0)
            .with_high_watermark(high_watermark)
            .with_last_stable_offset(last_stable_offset)
            .with_log_start_offset(log_start_offset)
            .with_aborted_transactions(aborted)
            .with_records(Some(records))
    };
    let budget = usize::try_from(p.max_bytes).unwrap_or(0).min(remaining);
    // Between the upper bound and the log end there is data not yet durable (or not yet
    // stable): nothing to return yet, but not out of range either.
    if p.fetch_offset >= upper
        && p.fetch_offset >= log_start_offset
        && p.fetch_offset <= log.log_end_offset()
    {
        return ok(Bytes::new());
    }
    if budget == 0 && !(first && p.max_bytes > 0) {
        if p.fetch_offset < log_start_offset || p.fetch_offset > log.log_end_offset() {
            return errored(1);
        }
        return ok(Bytes::new());
    }
    match log.read(p.fetch_offset, budget.max(1), upper) {
        // The log always returns at least one whole batch. Only the first partition with
        // data may go over the limit with it; a later one gets nothing (Kafka's
        // minOneMessage), or the response would exceed the client's max_bytes.
        Ok(result) if !first && result.records.len() > budget => ok(Bytes::new()),
        Ok(result) => ok(result.records),
        Err(e) => errored(e.error_code()),
    }
}

/// The offset after the last batch in `records` (whole batches as the log returns them),
/// or None when there is none.
fn fetched_end(records: &[u8]) -> Option<i64> {
    let mut end = None;
    let mut pos = 0usize;
    while let Some(header) = records
        .get(pos..)
        .and_then(strata_storage::batch::BatchHeader::parse)
    {
        end = Some(header.next_offset());
        pos = pos.saturating_add(header.size());
    }
    end
}

/// Resolves when any receiver sees a new durable offset. Receivers whose log closed are
/// dropped from the set (they would otherwise resolve at once, forever); with none left
/// this never resolves and the caller's deadline ends the wait.
async fn any_changed(receivers: &mut Vec<watch::Receiver<i64>>) {
    let closed = {
        let mut waits: Vec<Pin<Box<dyn Future<Output = bool> + Send + '_>>> = receivers
            .iter_mut()
            .map(|rx| {
                Box::pin(async move { rx.changed().await.is_err() })
                    as Pin<Box<dyn Future<Output = bool> + Send + '_>>
            })
            .collect();
        std::future::poll_fn(|cx| {
            for (i, wait) in waits.iter_mut().enumerate() {
                if let Poll::Ready(closed) = wait.as_mut().poll(cx) {
                    return Poll::Ready(closed.then_some(i));
                }
            }
            Poll::Pending
        })
        .await
    };
    if let Some(i) = closed {
        receivers.swap_remove(i);
    }
    if receivers.is_empty() {
        std::future::pending::<()>().await;
    }
}
