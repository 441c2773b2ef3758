//! ListOffsets (v1+): earliest (-2, and -4 "earliest local"), latest (-1 = the high
//! watermark, i.e. the durable offset), max timestamp (-3), or the first offset whose
//! timestamp is at or after a given time. Offsets at or above the high watermark are never
//! returned, so a consumer cannot be pointed at a record a crash could erase.
//!
//! With `isolation_level` 1 (read_committed, v2+) the bound is the last stable offset
//! instead: "latest" is the LSO, and a timestamp lookup that lands at or above it finds
//! nothing, as in Kafka.
//!
//! A partition named more than once in one request is INVALID_REQUEST at each mention,
//! as Kafka answers.

use std::collections::HashSet;

use crate::broker::partition::Partition;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
const INVALID_REQUEST: i16 = ResponseError::InvalidRequest.code();

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// Offset and timestamp of one answer; (-1, -1) means "no such offset".
#[derive(Debug, PartialEq, Eq)]
struct Found {
    offset: i64,
    timestamp: i64,
}

const NONE: Found = Found {
    offset: -1,
    timestamp: -1,
};

/// `isolation_level` of a read_committed client.
const READ_COMMITTED: i8 = 1;

pub(crate) fn handle(
    request: ListOffsetsRequest,
    version: i16,
    broker: &Broker,
) -> ListOffsetsResponse {
    let read_committed = version >= 2 && request.isolation_level == READ_COMMITTED;
    // As Kafka: a partition asked for more than once is INVALID_REQUEST wherever it appears.
    let duplicated: HashSet<(String, i32)> = super::repeated(request.topics.iter().flat_map(|t| {
        t.partitions
            .iter()
            .map(|p| (t.name.as_str(), p.partition_index))
    }))
    .into_iter()
    .map(|(name, index)| (name.to_owned(), index))
    .collect();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topic(t.name.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let log = topic.as_ref().and_then(|t| t.partition(p.partition_index));
                    let duplicate = !duplicated.is_empty()
                        && duplicated.contains(&(t.name.as_str().to_owned(), p.partition_index));
                    let result = match log {
                        _ if duplicate => Err(INVALID_REQUEST),
                        None => Err(UNKNOWN_TOPIC_OR_PARTITION),
                        Some(log) => lookup(log, p.timestamp, read_committed).map(|found| {
                            let epoch = log.epoch_at(found.offset);
                            (found, epoch)
                        }),
                    };
                    // v4+: the leader epoch of the batch holding the offset (-1 unknown).
                    match result {
                        Ok((found, epoch)) => response
                            .with_offset(found.offset)
                            .with_timestamp(found.timestamp)
                            .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                        Err(code) => response
                            .with_error_code(code)
                            .with_offset(-1)
                            .with_timestamp(-1)
                            .with_leader_epoch(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// Answers one partition. Nothing at or above the bound (the high watermark, or the last
/// stable offset for read_committed) is ever returned.
fn lookup(log: &Partition, timestamp: i64, read_committed: bool) -> Result<Found, i16> {
    let bound = if read_committed {
        log.last_stable_offset()
    } else {
        log.high_watermark()
    };
    let visible = |found: Found| {
        if found.offset >= 0 && found.offset < bound {
            found
        } else {
            NONE
        }
    };
    Ok(match timestamp {
        LATEST => Found {
            offset: bound,
            timestamp: -1,
        },
        EARLIEST | EARLIEST_LOCAL => Found {
            offset: log.log_start_offset(),
            timestamp: -1,
        },
        MAX_TIMESTAMP => log.max_timestamp().map_or(NONE, |t| {
            visible(Found {
                offset: t.offset,
                timestamp: t.timestamp,
            })
        }),
        ts if ts >= 0 => match log.offset_for_timestamp(ts) {
            Ok(Some(t)) => visible(Found {
                offset: t.offset,
                timestamp: t.timestamp,
            }),
            Ok(None) => NONE,
            Err(e) => return Err(e.error_code()),
        },
        _ => NONE,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::api::describe_configs::fixture::{round_trip, TestBroker};

    fn topic(name: &str, partitions: &[(i32, i64)]) -> ListOffsetsTopic {
        ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_owned())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(index, timestamp)| {
                        ListOffsetsPartition::default()
                            .with_partition_index(index)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )
    }

    /// As Kafka: a partition named more than once in one request (in one topic entry or
    /// across two) is answered INVALID_REQUEST wherever it appears; the others are looked up.
    #[test]
    fn a_partition_asked_twice_is_an_invalid_request() {
        let t = TestBroker::open();
        t.broker.create_topic("lo", 2, BTreeMap::new()).unwrap();
        for version in 1..=8 {
            let request = ListOffsetsRequest::default().with_topics(vec![
                topic("lo", &[(0, LATEST), (1, EARLIEST), (0, EARLIEST)]),
                topic("lo", &[(1, LATEST)]),
                topic("other", &[(0, LATEST)]),
            ]);
            let response = round_trip(&handle(request, version, &t.broker), version);
            let answers: Vec<Vec<(i32, i16, i64)>> = response
                .topics
                .iter()
                .map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (p.partition_index, p.error_code, p.offset))
                        .collect()
                })
                .collect();
            assert_eq!(
                answers,
                vec![
                    vec![(0, 42, -1), (1, 42, -1), (0, 42, -1)],
                    vec![(1, 42, -1)],
                    vec![(0, UNKNOWN_TOPIC_OR_PARTITION, -1)],
                ],
                "v{version}"
            );
        }
        let request = ListOffsetsRequest::default().with_topics(vec![topic("lo", &[(0, LATEST)])]);
        let response = round_trip(&handle(request, 8, &t.broker), 8);
        assert_eq!(response.topics[0].partitions[0].error_code, 0);
        assert_eq!(response.topics[0].partitions[0].offset, 0);
    }
}
