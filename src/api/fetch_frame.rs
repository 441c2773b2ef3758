//! Fetch responses encoded without copying record bytes: the frame is a list of parts in
//! which each partition's record set is the `Bytes` the log read returned (shared, not
//! copied); only the fields around them are written into small owned buffers. The byte
//! stream is identical to kafka-protocol's encoding (tested for every version served);
//! anything this encoder does not model (tagged fields, versions outside 4..=13) falls
//! back to the generic encoder.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchResponse};

use tracing::error;

use super::{encode_frame, frame_length, Frame, ResponseFrame};

/// Record sets smaller than this are copied into the surrounding part (a separate write
/// for a few bytes costs more than the copy).
const SHARE_AT_LEAST: usize = 4096;

/// Encodes `[length][response header][FetchResponse]` as a multi-part frame.
pub(crate) fn encode(version: i16, correlation_id: i32, body: &FetchResponse) -> ResponseFrame {
    if !(4..=13).contains(&version) || !plain(body) {
        return encode_frame(ApiKey::Fetch, version, correlation_id, body);
    }
    let flexible = version >= 12;
    let mut w = PartsWriter::default();
    w.cur.put_i32(0); // length, filled in at the end
    w.cur.put_i32(correlation_id);
    if flexible {
        w.cur.put_u8(0); // response header tagged fields
    }
    w.cur.put_i32(body.throttle_time_ms);
    if version >= 7 {
        w.cur.put_i16(body.error_code);
        w.cur.put_i32(body.session_id);
    }
    array_len(&mut w.cur, body.responses.len(), flexible);
    for topic in &body.responses {
        if version >= 13 {
            w.cur.put_slice(topic.topic_id.as_bytes());
        } else {
            let name = topic.topic.0.as_bytes();
            if flexible {
                uvarint(&mut w.cur, name.len() as u32 + 1);
            } else {
                w.cur.put_i16(name.len() as i16);
            }
            w.cur.put_slice(name);
        }
        array_len(&mut w.cur, topic.partitions.len(), flexible);
        for p in &topic.partitions {
            partition(&mut w, p, version, flexible);
        }
        if flexible {
            w.cur.put_u8(0);
        }
    }
    if flexible {
        w.cur.put_u8(0);
    }
    w.finish()
}

/// True when the response has nothing this encoder leaves out: no unknown or non-default
/// tagged fields, no node endpoints.
fn plain(body: &FetchResponse) -> bool {
    body.unknown_tagged_fields.is_empty()
        && body.node_endpoints.is_empty()
        && body.responses.iter().all(|t| {
            t.unknown_tagged_fields.is_empty()
                && t.partitions.iter().all(|p| {
                    p.unknown_tagged_fields.is_empty()
                        && p.diverging_epoch == Default::default()
                        && p.current_leader == Default::default()
                        && p.snapshot_id == Default::default()
                        && p.aborted_transactions
                            .as_ref()
                            .is_none_or(|a| a.iter().all(|t| t.unknown_tagged_fields.is_empty()))
                })
        })
}

fn partition(w: &mut PartsWriter, p: &PartitionData, version: i16, flexible: bool) {
    let b = &mut w.cur;
    b.put_i32(p.partition_index);
    b.put_i16(p.error_code);
    b.put_i64(p.high_watermark);
    b.put_i64(p.last_stable_offset);
    if version >= 5 {
        b.put_i64(p.log_start_offset);
    }
    match &p.aborted_transactions {
        None if flexible => b.put_u8(0),
        None => b.put_i32(-1),
        Some(list) => {
            array_len(b, list.len(), flexible);
            for t in list {
                b.put_i64(t.producer_id.0);
                b.put_i64(t.first_offset);
                if flexible {
                    b.put_u8(0);
                }
            }
        }
    }
    if version >= 11 {
        b.put_i32(p.preferred_read_replica.0);
    }
    match &p.records {
        None if flexible => b.put_u8(0),
        None => b.put_i32(-1),
        Some(records) => {
            if flexible {
                uvarint(b, records.len() as u32 + 1);
            } else {
                b.put_i32(records.len() as i32);
            }
            w.put_shared(records);
        }
    }
    if flexible {
        w.cur.put_u8(0);
    }
}

fn array_len(b: &mut BytesMut, n: usize, flexible: bool) {
    if flexible {
        uvarint(b, n as u32 + 1);
    } else {
        b.put_i32(n as i32);
    }
}

fn uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

enum Part {
    Owned(BytesMut),
    Shared(Bytes),
}

/// Owned parts interleaved with shared record sets.
#[derive(Default)]
struct PartsWriter {
    parts: Vec<Part>,
    cur: BytesMut,
    total: usize,
}

impl PartsWriter {
    fn put_shared(&mut self, records: &Bytes) {
        if records.len() < SHARE_AT_LEAST {
            self.cur.put_slice(records);
            return;
        }
        let owned = std::mem::take(&mut self.cur);
        self.push_owned(owned);
        self.total += records.len();
        self.parts.push(Part::Shared(records.clone()));
    }

    fn push_owned(&mut self, owned: BytesMut) {
        if !owned.is_empty() {
            self.total += owned.len();
            self.parts.push(Part::Owned(owned));
        }
    }

    /// The frame, or None when its length does not fit the i32 length prefix (the handler
    /// keeps responses far below it with fetch.max.bytes; this is the encoder's guard).
    fn finish(mut self) -> Option<Frame> {
        let last = std::mem::take(&mut self.cur);
        self.push_owned(last);
        let Some(len) = frame_length(self.total) else {
            error!(
                bytes = self.total,
                "Fetch response too large to encode; closing connection"
            );
            return None;
        };
        // The first part is owned and starts with the 4-byte length placeholder.
        if let Some(Part::Owned(first)) = self.parts.first_mut() {
            first[..4].copy_from_slice(&len.to_be_bytes());
        }
        Some(Frame::from_parts(
            self.parts
                .into_iter()
                .map(|p| match p {
                    Part::Owned(b) => b.freeze(),
                    Part::Shared(b) => b,
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse};
    use kafka_protocol::messages::{BrokerId, ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn response(records: Vec<Option<Bytes>>, aborted: bool) -> FetchResponse {
        let partitions = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_error_code(if i == 2 { 1 } else { 0 })
                    .with_high_watermark(1000 + i as i64)
                    .with_last_stable_offset(900)
                    .with_log_start_offset(7)
                    .with_aborted_transactions(aborted.then(|| {
                        vec![AbortedTransaction::default()
                            .with_producer_id(ProducerId(5))
                            .with_first_offset(77)]
                    }))
                    .with_records(r)
            })
            .collect();
        FetchResponse::default()
            .with_throttle_time_ms(3)
            .with_session_id(0)
            .with_responses(vec![
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str("topic-a")))
                    .with_topic_id(uuid::Uuid::from_u128(0x1234_5678_9abc))
                    .with_partitions(partitions),
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str("b")))
                    .with_partitions(vec![]),
            ])
    }

    fn concat(frame: &Frame) -> Vec<u8> {
        frame
            .parts()
            .iter()
            .flat_map(|p| p.iter().copied())
            .collect()
    }

    #[test]
    fn same_bytes_as_kafka_protocol_for_every_served_version() {
        let big = Bytes::from(vec![9u8; 100_000]);
        let small = Bytes::from(vec![1u8; 10]);
        for aborted in [false, true] {
            let body = response(
                vec![
                    Some(big.clone()),
                    Some(small.clone()),
                    None,
                    Some(Bytes::new()),
                ],
                aborted,
            );
            for version in 4..=13 {
                let mut body = body.clone();
                if version >= 11 {
                    body.responses[0].partitions[0].preferred_read_replica = BrokerId(-1);
                }
                let generic = encode_frame(ApiKey::Fetch, version, 42, &body).unwrap();
                let parts = encode(version, 42, &body).unwrap();
                assert_eq!(concat(&parts), concat(&generic), "version {version}");
                assert_eq!(parts.len(), generic.len());
            }
        }
    }

    #[test]
    fn a_frame_length_never_wraps() {
        assert_eq!(frame_length(4), Some(0));
        assert_eq!(frame_length(i32::MAX as usize + 4), Some(i32::MAX));
        assert_eq!(frame_length(i32::MAX as usize + 5), None);
        assert_eq!(frame_length(u32::MAX as usize + 10), None);
        assert_eq!(frame_length(3), None);
    }

    #[test]
    fn large_record_sets_are_shared_not_copied() {
        let big = Bytes::from(vec![9u8; 100_000]);
        let body = response(vec![Some(big.clone())], false);
        let frame = encode(11, 1, &body).unwrap();
        assert!(frame
            .parts()
            .iter()
            .any(|p| p.as_ptr() == big.as_ptr() && p.len() == big.len()));
    }

    #[test]
    fn unmodelled_fields_fall_back_to_the_generic_encoder() {
        let mut body = response(vec![Some(Bytes::from(vec![1u8; 5000]))], false);
        body.unknown_tagged_fields
            .insert(9, Bytes::from_static(b"x"));
        let frame = encode(12, 1, &body).unwrap();
        assert_eq!(frame.parts().len(), 1);
        let generic = encode_frame(ApiKey::Fetch, 12, 1, &body).unwrap();
        assert_eq!(concat(&frame), concat(&generic));
    }
}
