//! Produce (v3+, RecordBatch v2): appends each partition's batch verbatim to its log.
//!
//! acks=0: no response. acks=1: answered once appended (page cache). acks=-1: answered only
//! when the log's durable offset covers the batch (fsync'd), or REQUEST_TIMED_OUT after the
//! request's timeout, or KAFKA_STORAGE_ERROR if the fsync failed.
//!
//! A batch with the transactional bit is first verified by the transaction coordinator
//! (`TxnCoordinator::verify_produce`): its producer's transaction must be Ongoing with
//! this epoch and include the partition, else the partition answers INVALID_PRODUCER_EPOCH
//! (an older epoch: fenced) or INVALID_TXN_STATE and nothing is appended.

use kafka_protocol::error::ResponseError;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use strata_storage::{Log, StorageError};
use tracing::{debug, warn};

use super::{Handled, RequestContext};
use crate::broker::now_ms;
use crate::txn::ProduceGate;

const CORRUPT_MESSAGE: i16 = ResponseError::CorruptMessage.code();
const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
const REQUEST_TIMED_OUT: i16 = ResponseError::RequestTimedOut.code();
const INVALID_REQUIRED_ACKS: i16 = ResponseError::InvalidRequiredAcks.code();
const KAFKA_STORAGE_ERROR: i16 = ResponseError::KafkaStorageError.code();
const INVALID_RECORD: i16 = ResponseError::InvalidRecord.code();

/// Size of the RecordBatch fields before and including `batchLength`.
const BATCH_LENGTH_END: usize = 12;

/// A partition whose acks=-1 response waits for `offset` to become durable.
struct DurableWait {
    topic: usize,
    partition: usize,
    log: Arc<Log>,
    offset: i64,
}

pub(crate) fn handle(
    request: ProduceRequest,
    _version: i16,
    ctx: &RequestContext,
) -> Handled<ProduceResponse> {
    let acks = request.acks;
    let valid_acks = (-1..=1).contains(&acks);
    let now = now_ms();
    let mut waits = Vec::new();
    // Taken at the first transactional batch and held until every append of the request
    // is done: no verified transaction can enter Prepare* (and get its markers) before
    // its batches are in the logs.
    let mut gate: Option<ProduceGate<'_>> = None;
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for (ti, topic_data) in request.topic_data.into_iter().enumerate() {
        let name = topic_data.name.as_str().to_string();
        // Missing topic: UNKNOWN_TOPIC_OR_PARTITION, or why auto-creation failed
        // (e.g. INVALID_TOPIC_EXCEPTION for an illegal name).
        let (topic, missing_code) = match ctx.broker.topic_or_auto_create(&name) {
            Ok(topic) => (topic, UNKNOWN_TOPIC_OR_PARTITION),
            Err(e) => {
                debug!(topic = %name, error = %e, "produce to unavailable topic");
                (None, e.error_code())
            }
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for (pi, data) in topic_data.partition_data.into_iter().enumerate() {
            let response = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let log = topic.as_ref().and_then(|t| t.partition(data.index));
            let outcome = match (valid_acks, log) {
                (false, _) => Err(INVALID_REQUIRED_ACKS),
                (true, None) if topic.is_some() => Err(UNKNOWN_TOPIC_OR_PARTITION),
                (true, None) => Err(missing_code),
                (true, Some(log)) => {
                    let records = data.records.as_deref();
                    verify_transactional(&mut gate, ctx, &name, data.index, records)
                        .and_then(|()| append_one(log, records, now))
                }
            };
            let response = match outcome {
                Err(code) => response.with_error_code(code),
                Ok(info) => {
                    if acks == -1 {
                        if let Some(log) = log {
                            waits.push(DurableWait {
                                topic: ti,
                                partition: pi,
                                log: log.clone(),
                                offset: info.last_offset + 1,
                            });
                        }
                    }
                    response
                        .with_base_offset(info.base_offset)
                        .with_log_append_time_ms(info.log_append_time.unwrap_or(-1))
                        .with_log_start_offset(info.log_start_offset)
                }
            };
            partitions.push(response);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partitions),
        );
    }
    let response = ProduceResponse::default().with_responses(topics);
    if acks == 0 {
        return Handled::NoResponse;
    }
    if waits.is_empty() {
        return Handled::Ready(response);
    }
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    Handled::Deferred(Box::pin(wait_durable(response, waits, timeout)))
}

/// Byte offset of the RecordBatch `attributes` (i16).
const ATTRIBUTES_AT: usize = 21;
/// Byte offset of `producerId` (i64); `producerEpoch` (i16) follows it.
const PRODUCER_ID_AT: usize = 43;
/// Size of the RecordBatch v2 header.
const BATCH_HEADER_LEN: usize = 61;
/// The transactional bit of `attributes`.
const TRANSACTIONAL: i16 = 0x10;

/// For a batch with the transactional bit, asks the transaction coordinator whether its
/// producer may write it here (only the first batch header is read; records are not
/// decoded). Batches without the bit, or too short to tell, go to the log's own checks.
fn verify_transactional<'a>(
    gate: &mut Option<ProduceGate<'a>>,
    ctx: &'a RequestContext,
    topic: &str,
    partition: i32,
    records: Option<&[u8]>,
) -> Result<(), i16> {
    let Some(b) = records.filter(|b| b.len() >= BATCH_HEADER_LEN) else {
        return Ok(());
    };
    let attributes = i16::from_be_bytes([b[ATTRIBUTES_AT], b[ATTRIBUTES_AT + 1]]);
    if attributes & TRANSACTIONAL == 0 {
        return Ok(());
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[PRODUCER_ID_AT..PRODUCER_ID_AT + 8]);
    let producer_id = i64::from_be_bytes(id);
    let epoch = i16::from_be_bytes([b[PRODUCER_ID_AT + 8], b[PRODUCER_ID_AT + 9]]);
    if producer_id < 0 {
        // The log refuses it (INVALID_RECORD): a transactional batch needs a producer.
        return Ok(());
    }
    gate.get_or_insert_with(|| ctx.txns.produce_gate())
        .verify(producer_id, epoch, topic, partition)
        .map_err(|e| e.code())
}

/// The parts of `AppendInfo` a response needs.
struct Appended {
    base_offset: i64,
    last_offset: i64,
    log_append_time: Option<i64>,
    log_start_offset: i64,
}

/// Checks that `records` is exactly one batch (Kafka's rule for Produce v3+), then appends.
fn append_one(log: &Log, records: Option<&[u8]>, now: i64) -> Result<Appended, i16> {
    let records = records.unwrap_or_default();
    if records.len() < BATCH_LENGTH_END {
        return Err(CORRUPT_MESSAGE);
    }
    let batch_length = i32::from_be_bytes([records[8], records[9], records[10], records[11]]);
    let whole = usize::try_from(batch_length)
        .ok()
        .and_then(|l| l.checked_add(BATCH_LENGTH_END));
    match whole {
        Some(len) if len == records.len() => {}
        Some(len) if len < records.len() => return Err(INVALID_RECORD),
        _ => return Err(CORRUPT_MESSAGE),
    }
    match log.append(records, now) {
        Ok(info) => Ok(Appended {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_append_time: info.log_append_time,
            log_start_offset: info.log_start_offset,
        }),
        Err(e) => {
            debug!(dir = %log.dir().display(), error = %e, "append refused");
            Err(e.error_code())
        }
    }
}

/// Resolves once every acks=-1 partition is durable; failures become per-partition errors.
async fn wait_durable(
    mut response: ProduceResponse,
    waits: Vec<DurableWait>,
    timeout: Duration,
) -> ProduceResponse {
    let deadline = tokio::time::Instant::now() + timeout;
    for wait in waits {
        let result = tokio::time::timeout_at(deadline, wait.log.wait_durable(wait.offset)).await;
        let code = match result {
            Ok(Ok(())) => continue,
            // The partition was deleted (or the broker is stopping) before the batch was
            // synced: retriable, as Kafka answers for a partition that went away.
            Ok(Err(StorageError::Closed { .. })) => UNKNOWN_TOPIC_OR_PARTITION,
            Ok(Err(e)) => {
                warn!(dir = %wait.log.dir().display(), error = %e, "acks=all append not durable");
                KAFKA_STORAGE_ERROR
            }
            Err(_) => REQUEST_TIMED_OUT,
        };
        if let Some(p) = response
            .responses
            .get_mut(wait.topic)
            .and_then(|t| t.partition_responses.get_mut(wait.partition))
        {
            p.error_code = code;
            p.base_offset = -1;
        }
    }
    response
}
