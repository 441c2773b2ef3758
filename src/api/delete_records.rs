//! DeleteRecords (v0–v2): moves a partition's log start offset forward. Offset -1 means
//! the high watermark (the durable offset: what consumers can see); an offset beyond it,
//! or below -1, is OFFSET_OUT_OF_RANGE. The response carries the new low watermark (log
//! start offset). An offset at or below the current log start changes nothing.

use crate::broker::partition::Partition;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use tracing::{info, warn};

use crate::broker::Broker;

/// Kafka's "delete everything up to the high watermark" offset.
const HIGH_WATERMARK: i64 = -1;

pub(crate) fn handle(
    request: DeleteRecordsRequest,
    _version: i16,
    broker: &Broker,
) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let log_topic = broker.topic(topic.name.0.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    let log = log_topic
                        .as_ref()
                        .and_then(|t| t.partition(p.partition_index));
                    let Some(log) = log else {
                        return result
                            .with_low_watermark(-1)
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    match delete_before(log, p.offset) {
                        Ok(low_watermark) => {
                            info!(topic = %topic.name.0, partition = p.partition_index,
                                  low_watermark, "deleted records");
                            result.with_low_watermark(low_watermark)
                        }
                        Err(code) => {
                            warn!(topic = %topic.name.0, partition = p.partition_index,
                                  offset = p.offset, code, "DeleteRecords refused");
                            result.with_low_watermark(-1).with_error_code(code)
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Applies one partition's request; returns the new log start offset or an error code.
fn delete_before(log: &Partition, offset: i64) -> Result<i64, i16> {
    let high_watermark = log.high_watermark();
    let target = if offset == HIGH_WATERMARK {
        high_watermark
    } else {
        offset
    };
    if target < 0 || target > high_watermark {
        return Err(ResponseError::OffsetOutOfRange.code());
    }
    if target <= log.log_start_offset() {
        return Ok(log.log_start_offset());
    }
    log.delete_records_before(target)
        .map_err(|e| e.error_code())
}
