//! Produce (v3+, RecordBatch v2): appends each partition's batch verbatim to its log.
//!
//! acks=0: no response. acks=1: answered once appended (page cache). acks=-1: answered only
//! when the partition's high watermark covers the batch (on a single node, its durable
//! offset: fsync'd), or REQUEST_TIMED_OUT after the request's timeout, or
//! KAFKA_STORAGE_ERROR if the fsync failed.
//!
//! Each partition's batch goes through these checks, in Kafka's order, before the log
//! appends it (any refusal appends nothing):
//!
//! 1. exactly one batch (Produce v3+): INVALID_RECORD for more, CORRUPT_MESSAGE for less;
//! 2. its header and CRC ([`batch::check_batch`]; on failure the log refuses it with the
//!    code Kafka gives), then every record ([`records::validate_records`]): structure,
//!    count, offset deltas, a key for each record of a topic whose `cleanup.policy`
//!    contains `compact`, compressed payloads inflated as a bounded stream (at most
//!    `socket.request.max.bytes` inflated bytes per batch). INVALID_RECORD,
//!    CORRUPT_MESSAGE or MESSAGE_TOO_LARGE, with the reason in `error_message` (v8+);
//! 3. a non-transactional batch from a producer id that InitProducerId never issued
//!    (`ProducerIds::never_issued`): UNKNOWN_PRODUCER_ID, as Kafka answers a producer it
//!    has no state for (librdkafka then bumps its epoch and retries);
//! 4. a batch with the transactional bit is verified by the transaction coordinator
//!    (`TxnCoordinator::verify_produce`): its producer's transaction must be Ongoing with
//!    this epoch and include the partition, else INVALID_PRODUCER_EPOCH (an older epoch:
//!    fenced) or INVALID_TXN_STATE (which a never-issued id also gets: it has no
//!    transaction). The verification is per partition (Kafka's verification guard): the
//!    append checks under the partition's own append lock that no marker of the producer
//!    was written there since, else INVALID_TXN_STATE; nothing is held across partitions
//!    or across the appends of a request.

use kafka_protocol::error::ResponseError;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use strata_storage::batch::{self, BatchHeader};
use strata_storage::records::{BatchRefusal, CheckedBatch, RecordFault, RecordRules};
use strata_storage::{AppendError, AppendInfo, Log, StorageError};
use tracing::{debug, warn};

use super::{Handled, RequestContext};
use crate::broker::partition::Partition;
use crate::broker::{now_ms, Topic};

const CORRUPT_MESSAGE: i16 = ResponseError::CorruptMessage.code();
const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
const REQUEST_TIMED_OUT: i16 = ResponseError::RequestTimedOut.code();
const INVALID_REQUIRED_ACKS: i16 = ResponseError::InvalidRequiredAcks.code();
const KAFKA_STORAGE_ERROR: i16 = ResponseError::KafkaStorageError.code();
const INVALID_RECORD: i16 = ResponseError::InvalidRecord.code();
const UNKNOWN_PRODUCER_ID: i16 = ResponseError::UnknownProducerId.code();
/// The first Produce version whose response has `error_message` and `record_errors`.
const ERROR_MESSAGE_SINCE: i16 = 8;

/// A partition whose acks=-1 response waits for `offset` to become durable.
struct DurableWait {
    topic: usize,
    partition: usize,
    log: Arc<Partition>,
    offset: i64,
}

pub(crate) fn handle(
    request: ProduceRequest,
    version: i16,
    ctx: &RequestContext,
) -> Handled<ProduceResponse> {
    let acks = request.acks;
    let valid_acks = (-1..=1).contains(&acks);
    let now = now_ms();
    let mut waits = Vec::new();
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
            let outcome = match (valid_acks, topic.as_deref(), log) {
                (false, _, _) => Err(Refusal::code(INVALID_REQUIRED_ACKS)),
                (true, Some(_), None) => Err(Refusal::code(UNKNOWN_TOPIC_OR_PARTITION)),
                (true, None, _) => Err(Refusal::code(missing_code)),
                (true, Some(topic), Some(log)) => {
                    let records = data.records.as_deref().unwrap_or_default();
                    produce_one(ctx, topic, data.index, log, records, now)
                }
            };
            let response = match outcome {
                Err(refusal) => refusal.into_response(response, version),
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

/// Why a partition's batch was not appended: a Kafka error code and, for a record fault,
/// what the producer is told in `error_message` / `record_errors` (Produce v8+).
struct Refusal {
    code: i16,
    fault: Option<RecordFault>,
}

impl Refusal {
    fn code(code: i16) -> Refusal {
        Refusal { code, fault: None }
    }

    fn into_response(
        self,
        response: PartitionProduceResponse,
        version: i16,
    ) -> PartitionProduceResponse {
        let response = response.with_error_code(self.code);
        match self.fault {
            Some(fault) if version >= ERROR_MESSAGE_SINCE => {
                let record_errors = fault
                    .record_errors()
                    .into_iter()
                    .map(|(index, message)| {
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(index)
                            .with_batch_index_error_message(Some(super::error_message(message)))
                    })
                    .collect();
                response
                    .with_error_message(Some(super::error_message(fault.to_string())))
                    .with_record_errors(record_errors)
            }
            _ => response,
        }
    }
}

impl From<RecordFault> for Refusal {
    fn from(fault: RecordFault) -> Refusal {
        Refusal {
            code: fault.error_code(),
            fault: Some(fault),
        }
    }
}

/// Checks one partition's batch (see the module doc for the order) and appends it.
fn produce_one(
    ctx: &RequestContext,
    topic: &Topic,
    partition: i32,
    log: &Log,
    records: &[u8],
    now: i64,
) -> Result<Appended, Refusal> {
    check_one_batch(records).map_err(Refusal::code)?;
    // A batch the log refuses on its header alone is left to it, so that it gets the code
    // Kafka gives: a size above max.message.bytes (MESSAGE_TOO_LARGE), a control batch
    // (INVALID_RECORD), a wrong header or CRC (CORRUPT_MESSAGE, INVALID_RECORD,
    // UNSUPPORTED_FOR_MESSAGE_FORMAT). The first two are told before any record is read.
    let refused_by_header = BatchHeader::parse(records)
        .is_some_and(|h| h.is_control() || h.size() as u64 > log.config().max_message_bytes);
    if refused_by_header {
        return append_one(log, records, now).map_err(Refusal::code);
    }
    let rules = RecordRules {
        keys_required: is_compacted(topic),
        max_inflated_bytes: u64::from(ctx.broker.config().socket_request_max_bytes),
    };
    let checked = match CheckedBatch::check(records, &rules) {
        Ok(checked) => checked,
        Err(BatchRefusal::Header(_)) => {
            return append_one(log, records, now).map_err(Refusal::code)
        }
        Err(BatchRefusal::Records(fault)) => {
            debug!(topic = %topic.name, partition, error = %fault, "produce refused");
            return Err(Refusal::from(fault));
        }
    };
    let header = checked.header();
    check_producer_issued(ctx, header, &topic.name, partition)?;
    if header.is_transactional() && header.has_producer_id() {
        let guard = ctx
            .txns
            .verify_produce(
                log,
                header.producer_id,
                header.producer_epoch,
                &topic.name,
                partition,
            )
            .map_err(|e| Refusal::code(e.code()))?;
        return appended(log, log.append_verified_batch(checked, now, guard))
            .map_err(Refusal::code);
    }
    appended(log, log.append_checked_batch(checked, now)).map_err(Refusal::code)
}

/// Kafka's rule for Produce v3+: `records` is exactly one batch (its `batchLength` covers
/// every byte). More bytes: INVALID_RECORD; fewer, or no length: CORRUPT_MESSAGE.
fn check_one_batch(records: &[u8]) -> Result<(), i16> {
    let Some(length) = records.get(batch::LOG_OVERHEAD - 4..batch::LOG_OVERHEAD) else {
        return Err(CORRUPT_MESSAGE);
    };
    let batch_length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
    let whole = usize::try_from(batch_length)
        .ok()
        .and_then(|l| l.checked_add(batch::LOG_OVERHEAD));
    match whole {
        Some(len) if len == records.len() => Ok(()),
        Some(len) if len < records.len() => Err(INVALID_RECORD),
        _ => Err(CORRUPT_MESSAGE),
    }
}

/// Whether the topic's `cleanup.policy` contains `compact` (the broker-wide
/// `log.cleanup.policy` is always `delete`, so only a topic override can say so).
fn is_compacted(topic: &Topic) -> bool {
    topic
        .configs
        .get("cleanup.policy")
        .is_some_and(|policy| policy.split(',').any(|p| p.trim() == "compact"))
}

/// UNKNOWN_PRODUCER_ID for a non-transactional batch whose producer id was never handed
/// out: accepting it would let a client claim the id the next InitProducerId returns and
/// make that producer's first batch look like a duplicate. Transactional batches are
/// verified against their transaction instead.
fn check_producer_issued(
    ctx: &RequestContext,
    header: &BatchHeader,
    topic: &str,
    partition: i32,
) -> Result<(), Refusal> {
    if header.has_producer_id()
        && !header.is_transactional()
        && ctx.broker.producer_ids().never_issued(header.producer_id)
    {
        debug!(
            topic,
            partition,
            producer_id = header.producer_id,
            "batch from a producer id that was never issued"
        );
        return Err(Refusal::code(UNKNOWN_PRODUCER_ID));
    }
    Ok(())
}

/// The parts of `AppendInfo` a response needs.
struct Appended {
    base_offset: i64,
    last_offset: i64,
    log_append_time: Option<i64>,
    log_start_offset: i64,
}

/// Appends one checked batch.
fn append_one(log: &Log, records: &[u8], now: i64) -> Result<Appended, i16> {
    appended(log, log.append(records, now))
}

/// What a response needs of an append's outcome.
fn appended(log: &Log, outcome: Result<AppendInfo, AppendError>) -> Result<Appended, i16> {
    match outcome {
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
        let result =
            tokio::time::timeout_at(deadline, wait.log.wait_high_watermark(wait.offset)).await;
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
