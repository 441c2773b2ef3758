//! What a client can make the group and transaction coordinators hold: ids longer than
//! `id.max.bytes`, members beyond `group.max.size`, group state beyond
//! `group.max.bytes` / `group.state.max.bytes`, transactional state beyond
//! `transaction.state.max.bytes` are refused with Kafka's error codes before anything
//! is stored or logged; what an older log holds beyond today's limits still loads.
//! Raw kafka-protocol requests (flexible versions, so ids may be longer than 32 KiB).

mod common;

use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use common::raw::RawClient;
use common::{TestBroker, PATIENCE};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ApiKey, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, GroupId, InitProducerIdRequest,
    InitProducerIdResponse, JoinGroupRequest, JoinGroupResponse, ListGroupsRequest,
    ListGroupsResponse, ListTransactionsRequest, ListTransactionsResponse, MetadataRequest,
    MetadataResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProducerId, RequestHeader, ResponseHeader, SyncGroupRequest,
    SyncGroupResponse, TopicName, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOPIC: &str = "t";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// Creates `TOPIC` (one partition) by Metadata auto-creation.
async fn create_topic(client: &mut RawClient) {
    for _ in 0..100 {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(TopicName(s(TOPIC))))
            ]))
            .with_allow_auto_topic_creation(true);
        let response: MetadataResponse = client.call(ApiKey::Metadata, 12, &request).await;
        if response.topics[0].error_code == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("topic {TOPIC} was not created");
}

/// Total bytes of the live files of a record log directory (`offsets`, `transactions`).
fn log_len(data_dir: &Path, log: &str) -> u64 {
    let dir = data_dir.join("_strata").join(log);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// An OffsetCommit v8 of `TOPIC`/0 at `offset` by a simple consumer of `group`; the
/// partition's error code.
async fn commit(client: &mut RawClient, group: &str, offset: i64, metadata: Option<&str>) -> i16 {
    let response: OffsetCommitResponse = client
        .call(
            ApiKey::OffsetCommit,
            8,
            &commit_request(group, offset, metadata),
        )
        .await;
    response.topics[0].partitions[0].error_code
}

fn commit_request(group: &str, offset: i64, metadata: Option<&str>) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(metadata.map(s))])])
}

/// The committed offset of `TOPIC`/0 for `group` (OffsetFetch v8), -1 for none.
async fn fetch(client: &mut RawClient, group: &str) -> i64 {
    let request =
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partition_indexes(vec![0])]))]);
    let response: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 8, &request).await;
    response.groups[0].topics[0].partitions[0].committed_offset
}

async fn list_groups(client: &mut RawClient) -> Vec<String> {
    let response: ListGroupsResponse = client
        .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
        .await;
    response
        .groups
        .iter()
        .map(|g| g.group_id.to_string())
        .collect()
}

fn join_request(group: &str, member: &str, instance: Option<&str>) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"subscription"))])
}

/// Sends `request` as `api` v`version` on a new connection with `client_id` in its
/// header and decodes the answer.
async fn call_as<Req: Encodable, Resp: Decodable>(
    addr: std::net::SocketAddr,
    client_id: &str,
    api: ApiKey,
    version: i16,
    request: &Req,
) -> Resp {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(s(client_id)));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    request.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&buf).await.unwrap();
    let mut body = tokio::time::timeout(PATIENCE, async {
        let len = stream.read_i32().await.unwrap();
        let mut body = vec![0u8; len as usize];
        stream.read_exact(&mut body).await.unwrap();
        Bytes::from(body)
    })
    .await
    .expect("an answer");
    ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
    Resp::decode(&mut body, version).unwrap()
}

#[tokio::test]
async fn group_ids_longer_than_id_max_bytes_are_refused_and_nothing_is_stored() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    create_topic(&mut client).await;
    let long = "g".repeat(1025);
    let invalid = code(ResponseError::InvalidGroupId);

    assert_eq!(commit(&mut client, &long, 1, None).await, invalid);
    let join: JoinGroupResponse = client
        .call(ApiKey::JoinGroup, 9, &join_request(&long, "", None))
        .await;
    assert_eq!(join.error_code, invalid);
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s(&long)))
        .with_generation_id(1)
        .with_member_id(s("m"));
    let sync: SyncGroupResponse = client.call(ApiKey::SyncGroup, 5, &sync).await;
    assert_eq!(sync.error_code, invalid);
    let txn_commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s("tx")))
        .with_group_id(GroupId(s(&long)))
        .with_producer_id(ProducerId(1))
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)])]);
    let txn_commit: TxnOffsetCommitResponse =
        client.call(ApiKey::TxnOffsetCommit, 3, &txn_commit).await;
    assert_eq!(txn_commit.topics[0].partitions[0].error_code, invalid);
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(s("tx")))
        .with_producer_id(ProducerId(1))
        .with_group_id(GroupId(s(&long)));
    let add: AddOffsetsToTxnResponse = client.call(ApiKey::AddOffsetsToTxn, 3, &add).await;
    assert_eq!(add.error_code, invalid);

    assert!(list_groups(&mut client).await.is_empty());
    assert_eq!(
        log_len(broker.data_dir(), "offsets"),
        0,
        "nothing was logged"
    );

    // At the limit the group works as any other.
    let at = "g".repeat(1024);
    assert_eq!(commit(&mut client, &at, 42, Some("m")).await, 0);
    assert_eq!(fetch(&mut client, &at).await, 42);
    assert_eq!(list_groups(&mut client).await, vec![at]);
}

#[tokio::test]
async fn instance_ids_protocol_names_and_metadata_beyond_the_limits_are_refused() {
    let broker = TestBroker::start_with(|c| c.group_max_bytes = 65_536).await;
    let mut client = RawClient::connect(broker.addr()).await;
    create_topic(&mut client).await;
    let long = "x".repeat(1025);
    let mut refused = Vec::new();
    let requests = [
        join_request("g", "", Some(&long)),
        join_request("g", "", None).with_protocol_type(s(&long)),
        join_request("g", "", None)
            .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s(&long))]),
        join_request("g", "", Some("i")).with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from(vec![0u8; 70_000]))]),
    ];
    for request in &requests {
        let response: JoinGroupResponse = client.call(ApiKey::JoinGroup, 9, request).await;
        refused.push(response.error_code);
    }
    assert_eq!(
        refused,
        vec![
            code(ResponseError::InvalidRequest),
            code(ResponseError::InvalidRequest),
            code(ResponseError::InvalidRequest),
            code(ResponseError::GroupMaxSizeReached),
        ]
    );
    assert!(
        list_groups(&mut client).await.is_empty(),
        "no group was created"
    );

    // Offset metadata: Kafka's offset.metadata.max.bytes, 4096 by default.
    let too_large = "m".repeat(4097);
    assert_eq!(
        commit(&mut client, "g", 1, Some(&too_large)).await,
        code(ResponseError::OffsetMetadataTooLarge)
    );
    assert_eq!(
        log_len(broker.data_dir(), "offsets"),
        0,
        "nothing was logged"
    );
    assert_eq!(
        commit(&mut client, "g", 1, Some(&"m".repeat(4096))).await,
        0
    );

    // At the limits a static member joins.
    let at = "y".repeat(1024);
    let request = join_request("static", "", Some(&at))
        .with_protocol_type(s(&at))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s(&at))
            .with_metadata(Bytes::from(vec![0u8; 60_000]))]);
    let joined: JoinGroupResponse = client.call(ApiKey::JoinGroup, 9, &request).await;
    assert_eq!(joined.error_code, 0);
    let described: DescribeGroupsResponse = client
        .call(
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("static"))]),
        )
        .await;
    let member = &described.groups[0].members[0];
    assert_eq!(member.group_instance_id.as_deref(), Some(at.as_str()));
}

#[tokio::test]
async fn client_ids_are_cut_to_id_max_bytes_and_member_ids_fit_it() {
    let broker = TestBroker::start().await;
    // A request header's client id is a STRING: at most 32767 bytes.
    let client_id = "c".repeat(32_767);
    let first: JoinGroupResponse = call_as(
        broker.addr(),
        &client_id,
        ApiKey::JoinGroup,
        9,
        &join_request("g", "", None),
    )
    .await;
    assert_eq!(first.error_code, code(ResponseError::MemberIdRequired));
    let member_id = first.member_id.to_string();
    assert!(member_id.len() <= 1024, "{} bytes", member_id.len());
    assert!(member_id.starts_with("ccc"));
    let joined: JoinGroupResponse = call_as(
        broker.addr(),
        &client_id,
        ApiKey::JoinGroup,
        9,
        &join_request("g", &member_id, None),
    )
    .await;
    assert_eq!(joined.error_code, 0);
    let mut client = RawClient::connect(broker.addr()).await;
    let described: DescribeGroupsResponse = client
        .call(
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
        )
        .await;
    let member = &described.groups[0].members[0];
    assert_eq!(member.member_id.as_str(), member_id);
    assert_eq!(member.client_id.len(), 1024);
}

async fn init_producer_id(client: &mut RawClient, transactional_id: &str) -> (i16, i64) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(transactional_id))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response: InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &request).await;
    (response.error_code, *response.producer_id)
}

async fn list_transactions(client: &mut RawClient) -> Vec<String> {
    let response: ListTransactionsResponse = client
        .call(
            ApiKey::ListTransactions,
            1,
            &ListTransactionsRequest::default(),
        )
        .await;
    response
        .transaction_states
        .iter()
        .map(|t| t.transactional_id.to_string())
        .collect()
}

#[tokio::test]
async fn transactional_ids_longer_than_id_max_bytes_are_refused_and_not_logged() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let (error, _) = init_producer_id(&mut client, &"x".repeat(1025)).await;
    assert_eq!(error, code(ResponseError::InvalidRequest));
    assert!(list_transactions(&mut client).await.is_empty());
    assert_eq!(log_len(broker.data_dir(), "transactions"), 0);
    let at = "y".repeat(1024);
    let (error, producer_id) = init_producer_id(&mut client, &at).await;
    assert_eq!((error, producer_id >= 0), (0, true));
    assert_eq!(list_transactions(&mut client).await, vec![at]);
}

#[tokio::test]
async fn group_max_size_refuses_the_member_beyond_it() {
    let broker = TestBroker::start_with(|c| c.group_max_size = 2).await;
    let mut client = RawClient::connect(broker.addr()).await;
    let mut errors = Vec::new();
    for _ in 0..3 {
        let response: JoinGroupResponse = client
            .call(ApiKey::JoinGroup, 9, &join_request("g", "", None))
            .await;
        errors.push(response.error_code);
    }
    let required = code(ResponseError::MemberIdRequired);
    assert_eq!(
        errors,
        vec![required, required, code(ResponseError::GroupMaxSizeReached)]
    );
}

/// Commits one offset for each of `groups` (pipelined); their error codes.
async fn commit_all(client: &mut RawClient, groups: &[String]) -> Vec<i16> {
    let mut errors = Vec::new();
    for chunk in groups.chunks(32) {
        let mut sent = Vec::new();
        for group in chunk {
            let request = commit_request(group, 1, None);
            sent.push(client.send(ApiKey::OffsetCommit, 8, &request).await);
        }
        for correlation_id in sent {
            let response: OffsetCommitResponse = client
                .receive(ApiKey::OffsetCommit, 8, correlation_id)
                .await;
            errors.push(response.topics[0].partitions[0].error_code);
        }
    }
    errors
}

#[tokio::test]
async fn group_state_max_bytes_bounds_groups_and_offsets_across_a_restart() {
    let limit = |c: &mut strata::Config| c.group_state_max_bytes = 1_048_576;
    let broker = TestBroker::start_with(limit).await;
    let mut client = RawClient::connect(broker.addr()).await;
    create_topic(&mut client).await;
    let groups: Vec<String> = (0..1000)
        .map(|i| format!("{i:04}-{}", "g".repeat(1000)))
        .collect();
    let errors = commit_all(&mut client, &groups).await;
    let accepted = errors.iter().take_while(|e| **e == 0).count();
    assert!(
        (100..1000).contains(&accepted),
        "{accepted} groups fit 1 MiB"
    );
    assert!(
        errors[accepted..]
            .iter()
            .all(|e| *e == code(ResponseError::InvalidCommitOffsetSize)),
        "{errors:?}"
    );
    let logged = log_len(broker.data_dir(), "offsets");
    // Refused: another new group, by commit or join; nothing more is logged.
    assert_eq!(
        commit(&mut client, "one-more", 1, None).await,
        code(ResponseError::InvalidCommitOffsetSize)
    );
    let join: JoinGroupResponse = client
        .call(ApiKey::JoinGroup, 9, &join_request("one-more", "", None))
        .await;
    assert_eq!(join.error_code, code(ResponseError::GroupMaxSizeReached));
    assert_eq!(log_len(broker.data_dir(), "offsets"), logged);
    // Accepted: groups that have room go on committing.
    assert_eq!(commit(&mut client, &groups[0], 2, None).await, 0);

    // The limit holds the same after a restart.
    let broker = broker.restart(limit).await;
    let mut client = RawClient::connect(broker.addr()).await;
    assert_eq!(fetch(&mut client, &groups[0]).await, 2);
    assert_eq!(list_groups(&mut client).await.len(), accepted);
    assert_eq!(
        commit(&mut client, "one-more", 1, None).await,
        code(ResponseError::InvalidCommitOffsetSize)
    );
    // Deleting groups makes room again.
    let delete = DeleteGroupsRequest::default().with_groups_names(
        groups[..10]
            .iter()
            .map(|g| GroupId(s(g)))
            .collect::<Vec<_>>(),
    );
    let deleted: DeleteGroupsResponse = client.call(ApiKey::DeleteGroups, 2, &delete).await;
    assert!(deleted.results.iter().all(|r| r.error_code == 0));
    assert_eq!(commit(&mut client, "one-more", 1, None).await, 0);
}

#[tokio::test]
async fn ids_stored_under_a_larger_limit_still_load_and_can_be_read_and_deleted() {
    // An older broker (or a larger id.max.bytes) stored ids longer than today's limit.
    let broker = TestBroker::start_with(|c| c.id_max_bytes = 4096).await;
    let mut client = RawClient::connect(broker.addr()).await;
    create_topic(&mut client).await;
    let group = "g".repeat(3000);
    let transactional_id = "t".repeat(3000);
    assert_eq!(commit(&mut client, &group, 42, None).await, 0);
    assert_eq!(init_producer_id(&mut client, &transactional_id).await.0, 0);

    let broker = broker.restart(|_| {}).await;
    let mut client = RawClient::connect(broker.addr()).await;
    assert_eq!(fetch(&mut client, &group).await, 42);
    assert_eq!(list_groups(&mut client).await, vec![group.clone()]);
    let described: DescribeTransactionsResponse = client
        .call(
            ApiKey::DescribeTransactions,
            0,
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s(&transactional_id))]),
        )
        .await;
    assert_eq!(described.transaction_states[0].error_code, 0);
    // Nothing more is stored under it ...
    assert_eq!(
        commit(&mut client, &group, 43, None).await,
        code(ResponseError::InvalidGroupId)
    );
    assert_eq!(
        init_producer_id(&mut client, &transactional_id).await.0,
        code(ResponseError::InvalidRequest)
    );
    // ... and it can be deleted.
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&group))]);
    let deleted: DeleteGroupsResponse = client.call(ApiKey::DeleteGroups, 2, &delete).await;
    assert_eq!(deleted.results[0].error_code, 0);
    assert_eq!(fetch(&mut client, &group).await, -1);
    assert!(list_groups(&mut client).await.is_empty());
}

/// The `strata` binary as a child process with extra flags, so its memory can be
/// measured apart from the test's; killed when dropped.
struct Child {
    process: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Child {
    fn spawn(data_dir: &Path, flags: &[&str]) -> Child {
        use std::io::BufRead;
        let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn strata");
        let stdout = process.stdout.take().expect("piped stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .trim()
            .strip_prefix("strata listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("listen address");
        Child { process, addr }
    }

    /// Resident memory in bytes (Linux).
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id()))
            .expect("/proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test]
async fn a_stored_group_id_is_held_about_once() {
    // Ids of 1 MiB (under a limit raised for the purpose) make the ids dominate what
    // each group costs. Before ids were shared, each was held three times (the state
    // machine's key and field, the offsets table's key), and RSS grew by ~3.2x the ids.
    let dir = tempfile::tempdir().unwrap();
    let broker = Child::spawn(dir.path(), &["--id-max-bytes", "1048576"]);
    let mut client = RawClient::connect(broker.addr).await;
    create_topic(&mut client).await;
    let count = 64;
    let groups: Vec<String> = (0..count)
        .map(|i| format!("{i:04}-{}", "g".repeat((1 << 20) - 5)))
        .collect();
    // Warm up the request path (buffers, allocator arenas) with one group first.
    assert_eq!(commit_all(&mut client, &groups[..1]).await, vec![0]);
    let before = broker.rss();
    let mut errors = Vec::new();
    for chunk in groups[1..].chunks(4) {
        errors.extend(commit_all(&mut client, chunk).await);
    }
    assert!(errors.iter().all(|e| *e == 0), "{errors:?}");
    let grown = broker.rss().saturating_sub(before);
    let ids = (count as u64 - 1) << 20;
    eprintln!(
        "RSS grew by {:.2}x the group ids ({} MiB)",
        grown as f64 / ids as f64,
        ids >> 20
    );
    assert!(
        grown < 2 * ids,
        "RSS grew by {} MiB for {} MiB of group ids",
        grown >> 20,
        ids >> 20
    );
}
