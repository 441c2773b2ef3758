//! The consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups,
//! DeleteGroups and OffsetDelete. Each module turns a decoded request into the
//! group service's terms and its answer back into a response; the protocol
//! itself lives in `crate::group`.
//!
//! Every group API except FindCoordinator waits on the coordinator task, so
//! its response is deferred (JoinGroup and SyncGroup may wait a whole rebalance).

pub(crate) mod delete_groups;
pub(crate) mod describe_groups;
pub(crate) mod find_coordinator;
pub(crate) mod heartbeat;
pub(crate) mod join_group;
pub(crate) mod leave_group;
pub(crate) mod list_groups;
pub(crate) mod offset_commit;
pub(crate) mod offset_delete;
pub(crate) mod offset_fetch;
pub(crate) mod sync_group;

use std::future::Future;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use super::{decode, respond, FrameError, Handled, Reply, RequestBody, RequestContext};

/// Decodes and handles one group API request.
pub(crate) fn dispatch(
    api: ApiKey,
    version: i16,
    header: &RequestHeader,
    body: &mut RequestBody,
    ctx: &RequestContext,
) -> Result<Reply, FrameError> {
    let corr = header.correlation_id;
    let reply = match api {
        ApiKey::FindCoordinator => respond(
            api,
            version,
            corr,
            Handled::Ready(find_coordinator::handle(
                decode(api, version, body)?,
                version,
                &ctx.broker,
            )),
        ),
        ApiKey::JoinGroup => respond(
            api,
            version,
            corr,
            join_group::handle(decode(api, version, body)?, version, header, ctx),
        ),
        ApiKey::SyncGroup => respond(
            api,
            version,
            corr,
            sync_group::handle(decode(api, version, body)?, version, ctx),
        ),
        ApiKey::Heartbeat => respond(
            api,
            version,
            corr,
            heartbeat::handle(decode(api, version, body)?, ctx),
        ),
        ApiKey::LeaveGroup => respond(
            api,
            version,
            corr,
            leave_group::handle(decode(api, version, body)?, version, ctx),
        ),
        ApiKey::OffsetCommit => respond(
            api,
            version,
            corr,
            offset_commit::handle(decode(api, version, body)?, version, ctx),
        ),
        ApiKey::OffsetFetch => respond(
            api,
            version,
            corr,
            offset_fetch::handle(decode(api, version, body)?, version, ctx),
        ),
        ApiKey::ListGroups => respond(
            api,
            version,
            corr,
            list_groups::handle(decode(api, version, body)?, ctx),
        ),
        ApiKey::DescribeGroups => respond(
            api,
            version,
            corr,
            describe_groups::handle(decode(api, version, body)?, version, ctx),
        ),
        ApiKey::DeleteGroups => respond(
            api,
            version,
            corr,
            delete_groups::handle(decode(api, version, body)?, ctx),
        ),
        ApiKey::OffsetDelete => respond(
            api,
            version,
            corr,
            offset_delete::handle(decode(api, version, body)?, ctx),
        ),
        _ => Reply::Now(Some(super::error_only_frame(
            corr,
            super::UNSUPPORTED_VERSION,
        ))),
    };
    Ok(reply)
}

/// A deferred handler answer.
fn deferred<R: Send + 'static>(future: impl Future<Output = R> + Send + 'static) -> Handled<R> {
    Handled::Deferred(Box::pin(future))
}

fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn opt_str_bytes(s: Option<String>) -> Option<StrBytes> {
    s.map(StrBytes::from_string)
}

fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}
