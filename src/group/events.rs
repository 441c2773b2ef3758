//! Inputs to and outputs of the group state machine.
//!
//! The coordinator never touches a socket or a clock: every call carries `now`
//! (milliseconds since the Unix epoch, as read by the caller) and returns a list
//! of [`Effect`]s — answers for specific waiting requests and timers to arm or
//! disarm. The caller (the async driver) owns the sockets and the clock.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::offsets::StoredGroup;

/// Opaque identifier of a request that waits for an answer, chosen by the caller.
/// The coordinator answers each request id it is given exactly once.
pub type RequestId = u64;

/// A JoinGroup request, independent of its wire version.
#[derive(Debug, Clone)]
pub struct JoinGroup {
    pub group_id: String,
    /// Empty when the member does not have an id yet.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Milliseconds without a heartbeat after which the member is evicted.
    pub session_timeout_ms: i32,
    /// Milliseconds the coordinator waits for members to rejoin during a rebalance.
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (protocol name, protocol metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id is first answered MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a static leader that rejoins may be told to skip the assignment.
    pub supports_skip_assignment: bool,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    /// -1 when the join failed.
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// Empty when there is no leader (the join failed).
    pub leader_id: String,
    /// The member id the client must use from now on (also set with MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol; only the leader gets it.
    pub members: Vec<JoinedMember>,
    pub skip_assignment: bool,
}

impl JoinResult {
    /// A failed join that only carries an error and the member id.
    pub fn error(member_id: &str, error: ResponseError) -> Self {
        JoinResult {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader_id: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// A SyncGroup request, independent of its wire version.
#[derive(Debug, Clone)]
pub struct SyncGroup {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// SyncGroup v5+: must match the group's when present.
    pub protocol_type: Option<String>,
    /// SyncGroup v5+: must match the group's when present.
    pub protocol_name: Option<String>,
    /// (member id, assignment); only the leader's are used.
    pub assignments: Vec<(String, Bytes)>,
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ResponseError) -> Self {
        SyncResult {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A Heartbeat request.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// One member leaving (LeaveGroup v3+ batches several).
#[derive(Debug, Clone)]
pub struct LeavingMember {
    /// Empty when a static member leaves by instance id only.
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// The answer to a LeaveGroup: a top-level error, else one error per member in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveResult {
    pub error: Option<ResponseError>,
    pub members: Vec<(LeavingMemberOutcome, Option<ResponseError>)>,
}

/// Echo of a leaving member in the LeaveGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMemberOutcome {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// The answer to a request that waited on the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Join(JoinResult),
    Sync(SyncResult),
    Heartbeat(Option<ResponseError>),
    Leave(LeaveResult),
}

impl Response {
    /// The same kind of answer carrying only `error` (when what was to be
    /// answered cannot be delivered, e.g. its group record could not be stored).
    pub fn failed(&self, error: ResponseError) -> Response {
        match self {
            Response::Join(join) => Response::Join(JoinResult::error(&join.member_id, error)),
            Response::Sync(_) => Response::Sync(SyncResult::error(error)),
            Response::Heartbeat(_) => Response::Heartbeat(Some(error)),
            Response::Leave(_) => Response::Leave(LeaveResult {
                error: Some(error),
                members: Vec::new(),
            }),
        }
    }
}

/// What a timer is for. A timer is identified by its group and kind; setting a
/// timer with a key that is already armed replaces its deadline.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// The member's session: fires when no heartbeat arrived in `session.timeout.ms`
    /// (or, for a member that never completed a join, in the new-member join timeout).
    Session { member_id: Arc<str> },
    /// A member that was given an id with MEMBER_ID_REQUIRED and has not joined yet.
    PendingMember { member_id: Arc<str> },
    /// End of the join phase of a rebalance: members that did not rejoin are dropped.
    Rebalance,
    /// End of one step of `group.initial.rebalance.delay.ms` for a group that was empty.
    InitialRebalanceDelay,
    /// Members that joined but did not send SyncGroup within the rebalance timeout.
    PendingSync,
}

/// A timer of one group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerKey {
    pub group_id: Arc<str>,
    pub kind: TimerKind,
}

/// What the caller must do after a call into the coordinator, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Deliver `response` to the request that was given id `request`.
    Respond {
        request: RequestId,
        response: Response,
    },
    /// Arm (or re-arm) the timer `key` to fire at `deadline_ms` (Unix ms); when it
    /// fires, call [`crate::group::GroupCoordinator::on_timer`] with the key.
    SetTimer { key: TimerKey, deadline_ms: u64 },
    /// Disarm the timer `key` if it is armed.
    CancelTimer { key: TimerKey },
    /// Make `metadata` durable as the group's membership record (fsync'd),
    /// then deliver the answers in `then` (in order: they must not go out
    /// before the record is durable), then call
    /// [`crate::group::GroupCoordinator::group_stored`] with `Ok(())`. If the
    /// write fails, answer each of `then` with [`Response::failed`] instead and
    /// call `group_stored` with the error. Stores of one group are written in
    /// the order they are emitted.
    StoreGroup {
        group_id: Arc<str>,
        generation_id: i32,
        metadata: StoredGroup,
        then: Vec<(RequestId, Response)>,
    },
}
