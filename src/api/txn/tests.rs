//! The transaction APIs through `handle_frame`: every advertised version is answered, and
//! the error codes are Kafka's for each version.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, GroupId, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProduceRequest, ProduceResponse, ProducerId,
    RequestHeader, ResponseHeader, TopicName, TransactionalId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strata_storage::testing::txn_batch;

use crate::api::{handle_frame, supported, RequestContext};
use crate::broker::{now_ms, Broker};
use crate::config::Config;
use crate::group::{GroupService, GroupServiceConfig};
use crate::txn::{TxnConfig, TxnCoordinator};

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_REQUEST: i16 = 42;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const PRODUCER_FENCED: i16 = 90;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

async fn context(dir: &std::path::Path) -> (RequestContext, tokio::sync::watch::Sender<bool>) {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let broker = Broker::open(Config::with_defaults(addr, dir), addr).unwrap();
    broker.create_topic("t", 2, BTreeMap::new()).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let groups = GroupService::start(
        GroupServiceConfig::default(),
        broker.state_dir(),
        rx.clone(),
    )
    .await
    .unwrap();
    let txns = TxnCoordinator::start(
        TxnConfig::default(),
        broker.clone(),
        groups.clone(),
        rx.clone(),
    )
    .await
    .unwrap();
    let ctx = RequestContext {
        broker,
        shutdown: rx,
        groups,
        txns,
        peer: None,
    };
    (ctx, tx)
}

/// Encodes `request` as a frame of `api` v`version`, handles it, decodes the response.
async fn call<Req: Encodable, Resp: Decodable>(
    ctx: &RequestContext,
    api: ApiKey,
    version: i16,
    request: &Req,
) -> Resp {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("test")))
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    request.encode(&mut buf, version).unwrap();
    let frame = handle_frame(buf.freeze(), ctx)
        .unwrap()
        .into_frame()
        .await
        .unwrap_or_else(|| panic!("{api:?} v{version}: no response"));
    let mut bytes = BytesMut::new();
    for part in frame.parts() {
        bytes.extend_from_slice(part);
    }
    let mut bytes: Bytes = bytes.freeze().slice(4..);
    let header = ResponseHeader::decode(&mut bytes, api.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    let response = Resp::decode(&mut bytes, version).unwrap();
    assert!(bytes.is_empty(), "{api:?} v{version}: trailing bytes");
    response
}

fn tid(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

async fn init(ctx: &RequestContext, version: i16, id: &str) -> InitProducerIdResponse {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(tid(id)))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    call(ctx, ApiKey::InitProducerId, version, &request).await
}

fn add_partitions(
    id: &str,
    pid: i64,
    epoch: i16,
    topics: &[(&str, &[i32])],
) -> AddPartitionsToTxnRequest {
    AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(tid(id))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(
            topics
                .iter()
                .map(|(t, ps)| {
                    AddPartitionsToTxnTopic::default()
                        .with_name(topic(t))
                        .with_partitions(ps.to_vec())
                })
                .collect(),
        )
}

fn partition_codes(response: &AddPartitionsToTxnResponse) -> Vec<(String, i32, i16)> {
    response
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition.iter().map(|p| {
                (
                    t.name.to_string(),
                    p.partition_index,
                    p.partition_error_code,
                )
            })
        })
        .collect()
}

fn end(id: &str, pid: i64, epoch: i16, commit: bool) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(tid(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit)
}

fn produce(pid: i64, epoch: i16, partition: i32, seq: i32) -> ProduceRequest {
    ProduceRequest::default()
        .with_transactional_id(Some(tid("tx")))
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("t"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(txn_batch(
                    2,
                    pid,
                    epoch,
                    seq,
                    now_ms(),
                ))))])])
}

fn produce_code(response: &ProduceResponse) -> i16 {
    response.responses[0].partition_responses[0].error_code
}

#[tokio::test]
async fn every_advertised_version_of_the_transaction_apis_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _tx) = context(dir.path()).await;
    let range = |api| {
        let r = supported(api).unwrap();
        r.answered_min..=r.max
    };
    for version in range(ApiKey::InitProducerId) {
        let id = format!("v{version}");
        let r = init(&ctx, version, &id).await;
        assert_eq!(
            (r.error_code, r.producer_epoch),
            (NONE, 0),
            "InitProducerId v{version}"
        );
        let pid = *r.producer_id;
        for v in range(ApiKey::AddPartitionsToTxn) {
            let r: AddPartitionsToTxnResponse = call(
                &ctx,
                ApiKey::AddPartitionsToTxn,
                v,
                &add_partitions(&id, pid, 0, &[("t", &[0, 1])]),
            )
            .await;
            assert_eq!(
                partition_codes(&r),
                vec![("t".into(), 0, NONE), ("t".into(), 1, NONE)]
            );
        }
        for v in range(ApiKey::AddOffsetsToTxn) {
            let request = AddOffsetsToTxnRequest::default()
                .with_transactional_id(tid(&id))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(0)
                .with_group_id(GroupId(StrBytes::from_static_str("g")));
            let r: AddOffsetsToTxnResponse = call(&ctx, ApiKey::AddOffsetsToTxn, v, &request).await;
            assert_eq!(r.error_code, NONE, "AddOffsetsToTxn v{v}");
        }
        for v in range(ApiKey::TxnOffsetCommit) {
            let request = TxnOffsetCommitRequest::default()
                .with_transactional_id(tid(&id))
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(0)
                .with_generation_id(-1)
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![
                        TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(i64::from(v) + 1),
                        TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(9)
                            .with_committed_offset(1),
                    ])]);
            let r: TxnOffsetCommitResponse = call(&ctx, ApiKey::TxnOffsetCommit, v, &request).await;
            let codes: Vec<i16> = r.topics[0]
                .partitions
                .iter()
                .map(|p| p.error_code)
                .collect();
            assert_eq!(
                codes,
                vec![NONE, UNKNOWN_TOPIC_OR_PARTITION],
                "TxnOffsetCommit v{v}"
            );
        }
        let described: DescribeTransactionsResponse = call(
            &ctx,
            ApiKey::DescribeTransactions,
            0,
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![tid(&id), tid("nope")]),
        )
        .await;
        let s = &described.transaction_states[0];
        assert_eq!(
            (s.error_code, s.transaction_state.as_str()),
            (NONE, "Ongoing")
        );
        assert_eq!(
            (*s.producer_id, s.producer_epoch, s.transaction_timeout_ms),
            (pid, 0, 60_000)
        );
        assert_eq!(s.topics.len(), 1);
        assert_eq!(s.topics[0].partitions, vec![0, 1]);
        assert!(s.transaction_start_time_ms > 0);
        assert_eq!(
            described.transaction_states[1].error_code,
            TRANSACTIONAL_ID_NOT_FOUND
        );

        let ev = *range(ApiKey::EndTxn).end();
        let ev = ev.min(version.max(0));
        let r: EndTxnResponse = call(&ctx, ApiKey::EndTxn, ev, &end(&id, pid, 0, true)).await;
        assert_eq!(r.error_code, NONE, "EndTxn v{ev}");
        // The last TxnOffsetCommit's offset is now the group's.
        let last = i64::from(*range(ApiKey::TxnOffsetCommit).end()) + 1;
        assert_eq!(
            ctx.groups.committed("g", "t", 0).map(|o| o.offset),
            Some(last)
        );
    }
    for v in range(ApiKey::EndTxn) {
        let r = init(&ctx, 4, "e").await;
        let r: EndTxnResponse = call(
            &ctx,
            ApiKey::EndTxn,
            v,
            &end("e", *r.producer_id, r.producer_epoch, false),
        )
        .await;
        assert_eq!(
            r.error_code, INVALID_TXN_STATE,
            "EndTxn v{v} with no transaction"
        );
    }
    for v in range(ApiKey::ListTransactions) {
        let all: ListTransactionsResponse = call(
            &ctx,
            ApiKey::ListTransactions,
            v,
            &ListTransactionsRequest::default().with_duration_filter(-1),
        )
        .await;
        assert_eq!(
            all.transaction_states.len(),
            range(ApiKey::InitProducerId).count() + 1
        );
    }
}

#[tokio::test]
async fn fencing_codes_follow_each_apis_version() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _tx) = context(dir.path()).await;
    let first = init(&ctx, 4, "tx").await;
    let (pid, old) = (*first.producer_id, first.producer_epoch);
    let second = init(&ctx, 4, "tx").await;
    assert_eq!((*second.producer_id, second.producer_epoch), (pid, old + 1));

    for (version, code) in [
        (1, INVALID_PRODUCER_EPOCH),
        (2, PRODUCER_FENCED),
        (3, PRODUCER_FENCED),
    ] {
        let r: AddPartitionsToTxnResponse = call(
            &ctx,
            ApiKey::AddPartitionsToTxn,
            version,
            &add_partitions("tx", pid, old, &[("t", &[0])]),
        )
        .await;
        assert_eq!(
            partition_codes(&r),
            vec![("t".into(), 0, code)],
            "AddPartitionsToTxn v{version}"
        );
        let r: EndTxnResponse =
            call(&ctx, ApiKey::EndTxn, version, &end("tx", pid, old, true)).await;
        assert_eq!(r.error_code, code, "EndTxn v{version}");
        let request = AddOffsetsToTxnRequest::default()
            .with_transactional_id(tid("tx"))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(old)
            .with_group_id(GroupId(StrBytes::from_static_str("g")));
        let r: AddOffsetsToTxnResponse =
            call(&ctx, ApiKey::AddOffsetsToTxn, version, &request).await;
        assert_eq!(r.error_code, code, "AddOffsetsToTxn v{version}");
    }
    // InitProducerId learned PRODUCER_FENCED in v4.
    for (version, code) in [(3, INVALID_PRODUCER_EPOCH), (4, PRODUCER_FENCED)] {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(tid("tx")))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(old + 7);
        let r: InitProducerIdResponse = call(&ctx, ApiKey::InitProducerId, version, &request).await;
        assert_eq!(
            (r.error_code, *r.producer_id),
            (code, -1),
            "InitProducerId v{version}"
        );
    }
    // Another producer id, an unknown transactional id.
    let r: EndTxnResponse = call(&ctx, ApiKey::EndTxn, 3, &end("tx", pid + 1, old + 1, true)).await;
    assert_eq!(r.error_code, INVALID_PRODUCER_ID_MAPPING);
    let r: EndTxnResponse = call(&ctx, ApiKey::EndTxn, 3, &end("nobody", pid, 0, true)).await;
    assert_eq!(r.error_code, INVALID_PRODUCER_ID_MAPPING);
    // Timeouts beyond transaction.max.timeout.ms; a half -1 producer.
    let too_long = InitProducerIdRequest::default()
        .with_transactional_id(Some(tid("tx")))
        .with_transaction_timeout_ms(900_001)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r: InitProducerIdResponse = call(&ctx, ApiKey::InitProducerId, 4, &too_long).await;
    assert_eq!(r.error_code, INVALID_TRANSACTION_TIMEOUT);
    let half = too_long
        .with_transaction_timeout_ms(1000)
        .with_producer_epoch(2);
    let r: InitProducerIdResponse = call(&ctx, ApiKey::InitProducerId, 4, &half).await;
    assert_eq!(r.error_code, INVALID_REQUEST);
}

#[tokio::test]
async fn an_unknown_partition_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _tx) = context(dir.path()).await;
    let r = init(&ctx, 4, "tx").await;
    let (pid, epoch) = (*r.producer_id, r.producer_epoch);
    let r: AddPartitionsToTxnResponse = call(
        &ctx,
        ApiKey::AddPartitionsToTxn,
        3,
        &add_partitions("tx", pid, epoch, &[("t", &[0, 5]), ("missing", &[0])]),
    )
    .await;
    assert_eq!(
        partition_codes(&r),
        vec![
            ("t".into(), 0, OPERATION_NOT_ATTEMPTED),
            ("t".into(), 5, UNKNOWN_TOPIC_OR_PARTITION),
            ("missing".into(), 0, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );
    let state = &ctx.txns.describe(&["tx".to_string()])[0];
    assert_eq!(state.as_ref().map(|m| m.partitions.len()), Some(0));
}

#[tokio::test]
async fn produce_verifies_transactional_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _tx) = context(dir.path()).await;
    let r = init(&ctx, 4, "tx").await;
    let (pid, epoch) = (*r.producer_id, r.producer_epoch);
    let log = ctx.broker.topic("t").unwrap().partition(0).unwrap().clone();

    // Before AddPartitionsToTxn: refused, nothing appended.
    let r: ProduceResponse = call(&ctx, ApiKey::Produce, 9, &produce(pid, epoch, 0, 0)).await;
    assert_eq!(produce_code(&r), INVALID_TXN_STATE);
    assert_eq!(log.log_end_offset(), 0);

    let r: AddPartitionsToTxnResponse = call(
        &ctx,
        ApiKey::AddPartitionsToTxn,
        3,
        &add_partitions("tx", pid, epoch, &[("t", &[0])]),
    )
    .await;
    assert_eq!(partition_codes(&r), vec![("t".into(), 0, NONE)]);
    let r: ProduceResponse = call(&ctx, ApiKey::Produce, 9, &produce(pid, epoch, 0, 0)).await;
    assert_eq!(produce_code(&r), NONE);
    // Partition 1 is not in the transaction.
    let r: ProduceResponse = call(&ctx, ApiKey::Produce, 9, &produce(pid, epoch, 1, 0)).await;
    assert_eq!(produce_code(&r), INVALID_TXN_STATE);
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(
        log.last_stable_offset(),
        0,
        "the open transaction holds the LSO back"
    );

    // A new instance fences the old one: its batches are INVALID_PRODUCER_EPOCH.
    let new = init(&ctx, 4, "tx").await;
    assert_eq!(new.producer_epoch, epoch + 2);
    let r: ProduceResponse = call(&ctx, ApiKey::Produce, 9, &produce(pid, epoch, 0, 2)).await;
    assert_eq!(produce_code(&r), INVALID_PRODUCER_EPOCH);
    assert_eq!(
        log.log_end_offset(),
        3,
        "2 records + the abort marker, nothing more"
    );
    assert_eq!(log.last_stable_offset(), 3);
}

#[tokio::test]
async fn list_transactions_filters_by_state_producer_and_duration() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _tx) = context(dir.path()).await;
    let a = init(&ctx, 4, "a").await;
    let b = init(&ctx, 4, "b").await;
    let r: AddPartitionsToTxnResponse = call(
        &ctx,
        ApiKey::AddPartitionsToTxn,
        3,
        &add_partitions("a", *a.producer_id, 0, &[("t", &[1])]),
    )
    .await;
    assert_eq!(partition_codes(&r)[0].2, NONE);
    let list = |states: &[&str], producers: &[i64], duration: i64| {
        ListTransactionsRequest::default()
            .with_state_filters(
                states
                    .iter()
                    .map(|s| StrBytes::from_string(s.to_string()))
                    .collect(),
            )
            .with_producer_id_filters(producers.iter().map(|p| ProducerId(*p)).collect())
            .with_duration_filter(duration)
    };
    let ids = |r: &ListTransactionsResponse| -> Vec<String> {
        r.transaction_states
            .iter()
            .map(|s| s.transactional_id.to_string())
            .collect()
    };
    let r: ListTransactionsResponse =
        call(&ctx, ApiKey::ListTransactions, 1, &list(&[], &[], -1)).await;
    assert_eq!(ids(&r), vec!["a", "b"]);
    let r: ListTransactionsResponse = call(
        &ctx,
        ApiKey::ListTransactions,
        1,
        &list(&["Ongoing", "Bogus"], &[], -1),
    )
    .await;
    assert_eq!(ids(&r), vec!["a"]);
    assert_eq!(
        r.transaction_states[0].transaction_state.as_str(),
        "Ongoing"
    );
    assert_eq!(
        r.unknown_state_filters,
        vec![StrBytes::from_static_str("Bogus")]
    );
    let r: ListTransactionsResponse = call(
        &ctx,
        ApiKey::ListTransactions,
        0,
        &list(&[], &[*b.producer_id], -1),
    )
    .await;
    assert_eq!(ids(&r), vec!["b"]);
    // Only Ongoing transactions running longer than an hour: none ("a" just started).
    let r: ListTransactionsResponse = call(
        &ctx,
        ApiKey::ListTransactions,
        1,
        &list(&["Ongoing"], &[], 3_600_000),
    )
    .await;
    assert!(ids(&r).is_empty());
    // Kafka counts from the start time, -1 for an id that never started one: "b" is
    // "running" since 1970 and listed by a duration filter without a state filter.
    let r: ListTransactionsResponse = call(
        &ctx,
        ApiKey::ListTransactions,
        1,
        &list(&[], &[], 3_600_000),
    )
    .await;
    assert_eq!(ids(&r), vec!["b"]);
}

/// A read_committed Fetch of partition "t"-0 at `offset` (v12, no wait).
async fn fetch_committed(
    ctx: &RequestContext,
    offset: i64,
) -> kafka_protocol::messages::fetch_response::PartitionData {
    fetch_committed_max(ctx, offset, 1 << 20).await
}

/// [`fetch_committed`] with a partition byte limit.
async fn fetch_committed_max(
    ctx: &RequestContext,
    offset: i64,
    partition_max_bytes: i32,
) -> kafka_protocol::messages::fetch_response::PartitionData {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse};
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic("t"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(partition_max_bytes)])]);
    let r: FetchResponse = call(ctx, ApiKey::Fetch, 12, &request).await;
    r.responses[0].partitions[0].clone()
}

#[tokio::test]
async fn read_committed_fetch_between_lso_and_high_watermark_is_empty_not_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _tx) = context(dir.path()).await;
    let r = init(&ctx, 4, "tx").await;
    let (pid, epoch) = (*r.producer_id, r.producer_epoch);
    let log = ctx.broker.topic("t").unwrap().partition(0).unwrap().clone();
    let r: AddPartitionsToTxnResponse = call(
        &ctx,
        ApiKey::AddPartitionsToTxn,
        3,
        &add_partitions("tx", pid, epoch, &[("t", &[0])]),
    )
    .await;
    assert_eq!(partition_codes(&r)[0].2, NONE);
    let r: ProduceResponse = call(&ctx, ApiKey::Produce, 9, &produce(pid, epoch, 0, 0)).await;
    assert_eq!(produce_code(&r), NONE);
    // A plain batch after the open transaction: the high watermark moves past the LSO.
    let plain = strata_storage::testing::simple_batch(3, 10, now_ms());
    let info = log.append(&plain, now_ms()).unwrap();
    log.wait_durable(info.last_offset + 1).await.unwrap();
    assert_eq!((log.last_stable_offset(), log.durable_offset()), (0, 5));

    for offset in [0, 2, 4, 5] {
        let p = fetch_committed(&ctx, offset).await;
        assert_eq!(p.error_code, NONE, "fetch at {offset}");
        assert_eq!(p.records.as_ref().map_or(0, |b| b.len()), 0);
        assert_eq!((p.last_stable_offset, p.high_watermark), (0, 5));
    }
    assert_eq!(fetch_committed(&ctx, 6).await.error_code, 1);

    // Abort: a fetch from inside the aborted range lists it.
    let r: EndTxnResponse = call(&ctx, ApiKey::EndTxn, 3, &end("tx", pid, epoch, false)).await;
    assert_eq!(r.error_code, NONE);
    let p = fetch_committed(&ctx, 1).await;
    assert_eq!(p.error_code, NONE);
    assert_eq!(p.last_stable_offset, 6);
    let aborted: Vec<(i64, i64)> = p
        .aborted_transactions
        .unwrap_or_default()
        .iter()
        .map(|a| (*a.producer_id, a.first_offset))
        .collect();
    assert_eq!(aborted, vec![(pid, 0)]);
}

#[tokio::test]
async fn a_read_committed_fetch_lists_only_the_aborted_transactions_of_the_records_it_returns() {
    // Kafka bounds the list by the fetched range: a consumer far behind many aborted
    // transactions must not get all of them (26 bytes each) in every response.
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _tx) = context(dir.path()).await;
    let r = init(&ctx, 4, "tx").await;
    let (pid, epoch) = (*r.producer_id, r.producer_epoch);
    for round in 0..3 {
        let r: AddPartitionsToTxnResponse = call(
            &ctx,
            ApiKey::AddPartitionsToTxn,
            3,
            &add_partitions("tx", pid, epoch, &[("t", &[0])]),
        )
        .await;
        assert_eq!(partition_codes(&r)[0].2, NONE);
        let r: ProduceResponse =
            call(&ctx, ApiKey::Produce, 9, &produce(pid, epoch, 0, round * 2)).await;
        assert_eq!(produce_code(&r), NONE);
        let r: EndTxnResponse = call(&ctx, ApiKey::EndTxn, 3, &end("tx", pid, epoch, false)).await;
        assert_eq!(r.error_code, NONE);
    }
    // Records 0-1 abort at 2, 3-4 at 5, 6-7 at 8.
    let listed = |p: &kafka_protocol::messages::fetch_response::PartitionData| -> Vec<i64> {
        p.aborted_transactions
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|a| a.first_offset)
            .collect()
    };
    let all = fetch_committed(&ctx, 0).await;
    assert_eq!(all.error_code, NONE);
    assert_eq!(listed(&all), vec![0, 3, 6]);
    // One batch only (the first batch is returned whatever the limit).
    let one = fetch_committed_max(&ctx, 0, 1).await;
    let returned = strata_storage::testing::headers(one.records.as_deref().unwrap());
    assert_eq!(returned.len(), 1);
    assert_eq!(listed(&one), vec![0]);
    // From the first abort marker: the only overlapping transaction is the one it ends.
    let from_marker = fetch_committed_max(&ctx, 2, 1).await;
    assert_eq!(listed(&from_marker), vec![0]);
    let second = fetch_committed_max(&ctx, 3, 1).await;
    assert_eq!(listed(&second), vec![3]);
}
