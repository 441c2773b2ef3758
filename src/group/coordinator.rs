//! The group coordinator: a pure state machine over JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup and timer events, following Apache Kafka's classic
//! `GroupCoordinator`. Every call returns the [`Effect`]s the caller must carry
//! out; nothing here reads a clock, sleeps or does I/O.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::events::{
    Effect, Heartbeat, JoinGroup, JoinResult, JoinedMember, LeaveResult, LeavingMember,
    LeavingMemberOutcome, RequestId, Response, SyncGroup, SyncResult, TimerKey, TimerKind,
};
use super::limits::{self, GroupLimits, MEMBER_OVERHEAD};
use super::metadata::{Group, GroupState, JoinPhase, Member};
use super::offsets::StoredGroup;

/// Settings of the coordinator (Kafka's broker-level group settings).
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// `group.min.session.timeout.ms`: smallest session timeout a member may ask for.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`: largest session timeout a member may ask for.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty
    /// group waits for more members (extended while members keep arriving).
    pub initial_rebalance_delay_ms: u64,
    /// How long a new member may wait in a join phase before it is dropped (Kafka: 5 min).
    pub new_member_join_timeout_ms: u64,
    /// What clients can make the coordinator hold.
    pub limits: GroupLimits,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            min_session_timeout_ms: 1_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 100,
            new_member_join_timeout_ms: 300_000,
            limits: GroupLimits::default(),
        }
    }
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Metadata for the chosen protocol; empty unless the group is Stable.
    pub metadata: Bytes,
    /// The member's assignment; empty unless the group is Stable.
    pub assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    /// The chosen protocol when Stable, else empty.
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// Which topics' offsets OffsetDelete must refuse (GROUP_SUBSCRIBED_TO_TOPIC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribedTopics {
    /// The group is empty: every topic's offsets may be deleted.
    None,
    /// The group consumes these topics.
    Topics(BTreeSet<String>),
    /// The subscription is unknown: treat every topic as consumed.
    All,
}

impl SubscribedTopics {
    pub fn contains(&self, topic: &str) -> bool {
        match self {
            SubscribedTopics::None => false,
            SubscribedTopics::Topics(t) => t.contains(topic),
            SubscribedTopics::All => true,
        }
    }
}

/// The state machine of every group this node coordinates.
///
/// Invariant: `membership_bytes` is the sum of every group's `accounted` cost, and a
/// group's `accounted` is its [`Group::cost`] after every call that returns (each call
/// settles the groups it touched). Growth a request would bring is checked against
/// `group.max.size`, `group.max.bytes` and `group.state.max.bytes` before anything of
/// it is kept; a group already over a limit (lowered since, or loaded from an older
/// log) keeps working but cannot grow.
#[derive(Debug, Default)]
pub struct GroupCoordinator {
    config: CoordinatorConfig,
    groups: HashMap<Arc<str>, Group>,
    /// Cost of every group's membership.
    membership_bytes: u64,
    /// Cost of the committed and pending offsets (kept by the driver's offsets table,
    /// with writes in flight), as last told by [`GroupCoordinator::set_offsets_bytes`].
    offsets_bytes: u64,
}

/// The context of one step: configuration, the time and the effects produced.
struct Step<'a> {
    config: &'a CoordinatorConfig,
    now: u64,
    out: Vec<Effect>,
}

impl Step<'_> {
    fn respond(&mut self, request: RequestId, response: Response) {
        self.out.push(Effect::Respond { request, response });
    }

    fn set_timer(&mut self, group: &Group, kind: TimerKind, after_ms: u64) {
        self.out.push(Effect::SetTimer {
            key: TimerKey {
                group_id: group.group_id.clone(),
                kind,
            },
            deadline_ms: self.now.saturating_add(after_ms),
        });
    }

    fn cancel_timer(&mut self, group: &Group, kind: TimerKind) {
        self.out.push(Effect::CancelTimer {
            key: TimerKey {
                group_id: group.group_id.clone(),
                kind,
            },
        });
    }

    /// Asks for the group's membership record to be made durable; `then` is
    /// answered only once it is.
    fn store(&mut self, group: &Group, then: Vec<(RequestId, Response)>) {
        self.out.push(Effect::StoreGroup {
            group_id: group.group_id.clone(),
            generation_id: group.generation_id,
            metadata: group.to_stored(self.now),
            then,
        });
    }

    fn arm_session(&mut self, group: &Group, member: &Member) {
        self.set_timer(
            group,
            TimerKind::Session {
                member_id: member.member_id.clone(),
            },
            member.session_timeout_ms.max(0) as u64,
        );
    }
}

impl GroupCoordinator {
    pub fn new(config: CoordinatorConfig) -> Self {
        GroupCoordinator {
            config,
            groups: HashMap::new(),
            membership_bytes: 0,
            offsets_bytes: 0,
        }
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// Tells the state machine what the committed and pending offsets cost now
    /// (applied and in flight), for the broker-wide limit.
    pub fn set_offsets_bytes(&mut self, bytes: u64) {
        self.offsets_bytes = bytes;
    }

    /// Cost of every group's membership (not their offsets).
    pub fn membership_bytes(&self) -> u64 {
        self.membership_bytes
    }

    /// Whether `growth` more bytes fit `group.state.max.bytes`.
    fn state_fits(&self, growth: u64) -> bool {
        self.membership_bytes
            .saturating_add(self.offsets_bytes)
            .saturating_add(growth)
            <= self.config.limits.state_max_bytes
    }

    /// Whether offsets costing `growth` (see [`crate::group::offsets::OffsetTable::commit_growth`])
    /// may be committed for `group_id`, creating the group if needed: INVALID_COMMIT_OFFSET_SIZE
    /// (Kafka's answer when its offsets log refuses a commit) beyond `group.state.max.bytes`.
    pub fn admit_offsets(&self, group_id: &str, growth: u64) -> Result<(), ResponseError> {
        let creation = if self.groups.contains_key(group_id) {
            0
        } else {
            Group::base_cost(group_id)
        };
        let growth = growth + creation;
        if growth > 0 && !self.state_fits(growth) {
            tracing::debug!(
                group = group_id,
                growth,
                "offset commit refused: group.state.max.bytes reached"
            );
            return Err(ResponseError::InvalidCommitOffsetSize);
        }
        Ok(())
    }

    /// The group's id as this coordinator holds it (to share, not copy).
    pub fn group_key(&self, group_id: &str) -> Option<Arc<str>> {
        self.groups.get_key_value(group_id).map(|(k, _)| k.clone())
    }

    /// Brings the accounted cost of `group_id` up to date (a removed group's cost
    /// was taken out by `remove`).
    fn settle(&mut self, group_id: &str) {
        if let Some(group) = self.groups.get_mut(group_id) {
            let cost = group.cost();
            self.membership_bytes = self.membership_bytes - group.accounted + cost;
            group.accounted = cost;
        }
    }

    /// Tests: the accounting invariant (see the type's doc).
    #[cfg(test)]
    pub(crate) fn assert_accounted(&self) {
        for group in self.groups.values() {
            assert_eq!(group.accounted, group.cost(), "group {}", group.group_id);
        }
        let sum: u64 = self.groups.values().map(|g| g.accounted).sum();
        assert_eq!(self.membership_bytes, sum);
    }

    /// Removes a group and its accounted cost.
    fn remove(&mut self, group_id: &str) -> Option<Group> {
        let group = self.groups.remove(group_id)?;
        self.membership_bytes -= group.accounted;
        Some(group)
    }

    /// Inserts a new group (Empty) and accounts for it.
    fn create(&mut self, group_id: Arc<str>, now: u64) {
        let mut group = Group::new(group_id.clone(), now);
        group.accounted = group.cost();
        self.membership_bytes += group.accounted;
        self.groups.insert(group_id, group);
    }

    /// Checks the ids a JoinGroup would make the coordinator hold against
    /// `id.max.bytes`: INVALID_GROUP_ID for the group id (or an empty one),
    /// INVALID_REQUEST for the instance id, protocol type and protocol names.
    fn check_join_ids(&self, join: &JoinGroup) -> Result<(), ResponseError> {
        let limits = &self.config.limits;
        limits.check_group_id(&join.group_id)?;
        let ids_fit = limits.id_fits(&join.protocol_type)
            && join
                .group_instance_id
                .as_deref()
                .is_none_or(|i| limits.id_fits(i))
            && join.protocols.iter().all(|(name, _)| limits.id_fits(name));
        if !ids_fit {
            return Err(ResponseError::InvalidRequest);
        }
        Ok(())
    }

    /// Checks, before anything of it is kept, that a member a JoinGroup would add or
    /// grow fits `group.max.size`, `group.max.bytes` and `group.state.max.bytes`
    /// (GROUP_MAX_SIZE_REACHED, Kafka's answer beyond `group.max.size`). A join that
    /// fails later for another reason (an unknown member id) is not charged; one that
    /// does not grow the group always passes.
    fn admit_join(&self, join: &JoinGroup) -> Result<(), ResponseError> {
        let limits = &self.config.limits;
        let group = self.groups.get(join.group_id.as_str());
        // The member this join replaces or updates, and whether it adds one.
        let (previous, adds_member) = match group {
            // A member id for a group that does not exist fails as unknown.
            None if !join.member_id.is_empty() => return Ok(()),
            None => (None, true),
            Some(g) if join.member_id.is_empty() => {
                let holder = join
                    .group_instance_id
                    .as_deref()
                    .and_then(|i| g.static_members.get(i))
                    .and_then(|m| g.members.get(m));
                (holder, holder.is_none())
            }
            Some(g) => match g.members.get(join.member_id.as_str()) {
                Some(m) => (Some(m), false),
                None if g.pending_members.contains(join.member_id.as_str()) => (None, false),
                None => return Ok(()),
            },
        };
        if adds_member {
            let size = group.map_or(0, |g| g.members.len() + g.pending_members.len());
            if size >= limits.group_max_size {
                tracing::debug!(group = %join.group_id, size, "join refused: group.max.size reached");
                return Err(ResponseError::GroupMaxSizeReached);
            }
        }
        let member_id_len = if join.member_id.is_empty() {
            limits.new_member_id_len(&join.client_id) as u64
        } else {
            limits::len(&join.member_id)
        };
        let cost = MEMBER_OVERHEAD
            + member_id_len
            + join.group_instance_id.as_deref().map_or(0, limits::len)
            + limits::len(limits.client_id(&join.client_id))
            + limits::len(&join.client_host)
            + limits::protocols_cost(&join.protocols)
            + previous.map_or(0, |m| m.assignment.len() as u64);
        let base = match group {
            Some(g) => g.accounted,
            None => Group::base_cost(&join.group_id) + limits::len(&join.protocol_type),
        };
        let growth = cost.saturating_sub(previous.map_or(0, |m| m.cost()));
        if growth > 0
            && (base + growth > limits.group_max_bytes
                || !self.state_fits(growth + base * u64::from(group.is_none())))
        {
            tracing::debug!(group = %join.group_id, growth, "join refused: group.max.bytes or group.state.max.bytes reached");
            return Err(ResponseError::GroupMaxSizeReached);
        }
        Ok(())
    }

    /// Handles a JoinGroup; the answer may come now or when the join phase ends.
    pub fn join(&mut self, now: u64, request: RequestId, join: JoinGroup) -> Vec<Effect> {
        // Kafka's order: the group id, the session timeout, then the group's size.
        let refused = self.check_join_ids(&join).err().or_else(|| {
            let timeout = join.session_timeout_ms;
            (timeout < self.config.min_session_timeout_ms
                || timeout > self.config.max_session_timeout_ms)
                .then_some(ResponseError::InvalidSessionTimeout)
        });
        let refused = refused.or_else(|| self.admit_join(&join).err());
        let refused = refused.or_else(|| match self.groups.contains_key(join.group_id.as_str()) {
            true => None,
            false if join.member_id.is_empty() => {
                self.create(Arc::from(join.group_id.as_str()), now);
                None
            }
            false => Some(ResponseError::UnknownMemberId),
        });
        let mut step = Step {
            config: &self.config,
            now,
            out: Vec::new(),
        };
        let fail = |step: &mut Step, error| {
            step.respond(
                request,
                Response::Join(JoinResult::error(&join.member_id, error)),
            )
        };
        let group = match (refused, self.groups.get_mut(join.group_id.as_str())) {
            (None, Some(group)) => group,
            (refused, _) => {
                fail(&mut step, refused.unwrap_or(ResponseError::UnknownMemberId));
                return step.out;
            }
        };
        let group_id = group.group_id.clone();
        if group.state == GroupState::Dead {
            fail(&mut step, ResponseError::CoordinatorNotAvailable);
        } else if !group.supports_protocols(&join.protocol_type, &join.protocols) {
            fail(&mut step, ResponseError::InconsistentGroupProtocol);
        } else if join.member_id.is_empty() {
            join_unknown_member(&mut step, group, request, join);
        } else {
            join_known_member(&mut step, group, request, join);
        }
        if group.state == GroupState::PreparingRebalance {
            try_complete_join(&mut step, group);
        }
        let out = step.out;
        self.settle(&group_id);
        out
    }

    /// Handles a SyncGroup; members other than the leader wait for the leader's assignment.
    pub fn sync(&mut self, now: u64, request: RequestId, sync: SyncGroup) -> Vec<Effect> {
        let room = self
            .config
            .limits
            .state_max_bytes
            .saturating_sub(self.membership_bytes.saturating_add(self.offsets_bytes));
        let mut step = Step {
            config: &self.config,
            now,
            out: Vec::new(),
        };
        if let Err(error) = step.config.limits.check_group_id(&sync.group_id) {
            step.respond(request, Response::Sync(SyncResult::error(error)));
            return step.out;
        }
        let Some(group) = self.groups.get_mut(sync.group_id.as_str()) else {
            step.respond(
                request,
                Response::Sync(SyncResult::error(ResponseError::UnknownMemberId)),
            );
            return step.out;
        };
        let group_id = group.group_id.clone();
        if let Err(error) = check_member(
            group,
            &sync.member_id,
            sync.group_instance_id.as_deref(),
            sync.generation_id,
        ) {
            step.respond(request, Response::Sync(SyncResult::error(error)));
            return step.out;
        }
        if sync
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t.as_str()) != group.protocol_type.as_deref())
            || sync
                .protocol_name
                .as_ref()
                .is_some_and(|n| Some(n.as_str()) != group.protocol_name.as_deref())
        {
            step.respond(
                request,
                Response::Sync(SyncResult::error(ResponseError::InconsistentGroupProtocol)),
            );
            return step.out;
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => step.respond(
                request,
                Response::Sync(SyncResult::error(ResponseError::UnknownMemberId)),
            ),
            GroupState::PreparingRebalance => step.respond(
                request,
                Response::Sync(SyncResult::error(ResponseError::RebalanceInProgress)),
            ),
            GroupState::CompletingRebalance => {
                remove_pending_sync(&mut step, group, &sync.member_id);
                if let Some(member) = group.members.get_mut(sync.member_id.as_str()) {
                    if let Some(previous) = member.awaiting_sync.replace(request) {
                        step.respond(
                            previous,
                            Response::Sync(SyncResult::error(ResponseError::RebalanceInProgress)),
                        );
                    }
                }
                if group.is_leader(&sync.member_id) {
                    let assignments: HashMap<String, Bytes> =
                        sync.assignments.into_iter().collect();
                    let find =
                        |member_id: &str| assignments.get(member_id).map_or(0, |a| a.len() as u64);
                    let growth = group
                        .members
                        .values()
                        .map(|m| find(&m.member_id).saturating_sub(m.assignment.len() as u64))
                        .sum::<u64>();
                    let limits = &step.config.limits;
                    if growth > 0
                        && (group.accounted + growth > limits.group_max_bytes || growth > room)
                    {
                        // As Kafka does when the group's record cannot be stored:
                        // every waiting member gets the error and the group rebalances.
                        tracing::warn!(group = %group.group_id, generation = group.generation_id, growth,
                            "assignment refused: group.max.bytes or group.state.max.bytes reached");
                        fail_assignment(&mut step, group, ResponseError::GroupMaxSizeReached);
                    } else {
                        for member in group.members.values_mut() {
                            // Copied out of the request frame, so that the frame is not
                            // held for as long as the assignment.
                            member.assignment = assignments
                                .get(&*member.member_id)
                                .map(|a| Bytes::copy_from_slice(a))
                                .unwrap_or_default();
                        }
                        // Kafka's storeGroup: the group becomes Stable and the
                        // assignment goes out only once the record is durable
                        // (see `group_stored`).
                        group.storing = Some(group.generation_id);
                        step.store(group, Vec::new());
                    }
                }
            }
            GroupState::Stable => {
                remove_pending_sync(&mut step, group, &sync.member_id);
                if let Some(member) = group.members.get(sync.member_id.as_str()) {
                    step.respond(
                        request,
                        Response::Sync(SyncResult {
                            error: None,
                            protocol_type: owned(&group.protocol_type),
                            protocol_name: owned(&group.protocol_name),
                            assignment: member.assignment.clone(),
                        }),
                    );
                    step.arm_session(group, member);
                }
            }
        }
        let out = step.out;
        self.settle(&group_id);
        out
    }

    /// Handles a Heartbeat: keeps the member's session alive and tells it whether
    /// a rebalance is in progress.
    pub fn heartbeat(&mut self, now: u64, request: RequestId, heartbeat: Heartbeat) -> Vec<Effect> {
        let mut step = Step {
            config: &self.config,
            now,
            out: Vec::new(),
        };
        let result = match self.groups.get_mut(heartbeat.group_id.as_str()) {
            None => Err(ResponseError::UnknownMemberId),
            Some(group) => check_member(
                group,
                &heartbeat.member_id,
                heartbeat.group_instance_id.as_deref(),
                heartbeat.generation_id,
            )
            .and_then(|()| match group.state {
                GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
                state => {
                    if let Some(member) = group.members.get(heartbeat.member_id.as_str()) {
                        step.arm_session(group, member);
                    }
                    if state == GroupState::PreparingRebalance {
                        Err(ResponseError::RebalanceInProgress)
                    } else {
                        Ok(())
                    }
                }
            }),
        };
        step.respond(request, Response::Heartbeat(result.err()));
        step.out
    }

    /// Handles a (possibly batched) LeaveGroup.
    pub fn leave(
        &mut self,
        now: u64,
        request: RequestId,
        group_id: &str,
        leaving: Vec<LeavingMember>,
    ) -> Vec<Effect> {
        let mut step = Step {
            config: &self.config,
            now,
            out: Vec::new(),
        };
        let outcome = |m: &LeavingMember| LeavingMemberOutcome {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
        };
        let Some(group) = self.groups.get_mut(group_id) else {
            let members = leaving
                .iter()
                .map(|m| (outcome(m), Some(ResponseError::UnknownMemberId)))
                .collect();
            step.respond(
                request,
                Response::Leave(LeaveResult {
                    error: None,
                    members,
                }),
            );
            return step.out;
        };
        let mut members = Vec::with_capacity(leaving.len());
        for m in &leaving {
            let error = leave_one(&mut step, group, m).err();
            members.push((outcome(m), error));
        }
        step.respond(
            request,
            Response::Leave(LeaveResult {
                error: None,
                members,
            }),
        );
        let out = step.out;
        self.settle(group_id);
        out
    }

    /// Handles a timer that fired. Timers that no longer apply are ignored.
    pub fn on_timer(&mut self, now: u64, key: &TimerKey) -> Vec<Effect> {
        let mut step = Step {
            config: &self.config,
            now,
            out: Vec::new(),
        };
        let Some(group) = self.groups.get_mut(&key.group_id) else {
            return step.out;
        };
        match &key.kind {
            TimerKind::Session { member_id } => {
                let expired = match group.members.get(member_id) {
                    None => false,
                    Some(m) if m.is_new => true,
                    Some(m) => m.awaiting_join.is_none() && m.awaiting_sync.is_none(),
                };
                if expired {
                    tracing::info!(group = %group.group_id, member = %member_id, "member session expired");
                    remove_member_and_update(&mut step, group, member_id);
                }
            }
            TimerKind::PendingMember { member_id } => {
                if group.pending_members.remove(member_id) {
                    try_complete_join(&mut step, group);
                }
            }
            TimerKind::Rebalance => {
                if group.state == GroupState::PreparingRebalance
                    && group.join_phase == Some(JoinPhase::Delayed)
                {
                    complete_join(&mut step, group);
                }
            }
            TimerKind::InitialRebalanceDelay => {
                if group.state == GroupState::PreparingRebalance {
                    if let Some(JoinPhase::InitialDelay { remaining_ms }) = group.join_phase {
                        if group.new_member_added && remaining_ms > 0 {
                            group.new_member_added = false;
                            let delay = step.config.initial_rebalance_delay_ms.min(remaining_ms);
                            group.join_phase = Some(JoinPhase::InitialDelay {
                                remaining_ms: remaining_ms - delay,
                            });
                            step.set_timer(group, TimerKind::InitialRebalanceDelay, delay);
                        } else {
                            complete_join(&mut step, group);
                        }
                    }
                }
            }
            TimerKind::PendingSync => {
                if matches!(
                    group.state,
                    GroupState::CompletingRebalance | GroupState::Stable
                ) && !group.pending_sync.is_empty()
                {
                    let missing: Vec<Arc<str>> = group.pending_sync.iter().cloned().collect();
                    for member_id in &missing {
                        tracing::info!(group = %group.group_id, member = %member_id, "member did not sync in time");
                        remove_member(&mut step, group, member_id);
                    }
                    prepare_rebalance(&mut step, group);
                }
            }
        }
        let out = step.out;
        self.settle(&key.group_id);
        out
    }

    /// The outcome of an [`Effect::StoreGroup`] of `generation_id`. Once the
    /// leader's assignment is durable the group becomes Stable and every
    /// member waiting in SyncGroup gets its assignment. If the store failed,
    /// the waiting SyncGroups get `error` and the group rebalances (Kafka's
    /// `resetAndPropagateAssignmentError` + `maybePrepareRebalance`); a failed
    /// store of a stable group (a static member's new id) rebalances it too.
    /// Outcomes for a generation that is over are ignored.
    pub fn group_stored(
        &mut self,
        now: u64,
        group_id: &str,
        generation_id: i32,
        result: Result<(), ResponseError>,
    ) -> Vec<Effect> {
        let mut step = Step {
            config: &self.config,
            now,
            out: Vec::new(),
        };
        let Some(group) = self.groups.get_mut(group_id) else {
            return step.out;
        };
        if group.generation_id != generation_id {
            return step.out;
        }
        match (group.state, result) {
            (GroupState::CompletingRebalance, result) if group.storing == Some(generation_id) => {
                group.storing = None;
                match result {
                    Ok(()) => {
                        group.transition(GroupState::Stable, now);
                        propagate_assignment(&mut step, group);
                    }
                    Err(error) => {
                        tracing::warn!(group = %group.group_id, generation = generation_id,
                            error = ?error, "could not store the group's assignment; rebalancing");
                        fail_assignment(&mut step, group, error);
                    }
                }
            }
            (GroupState::Stable, Err(error)) => {
                tracing::warn!(group = %group.group_id, generation = generation_id,
                    error = ?error, "could not store the group's membership; rebalancing");
                prepare_rebalance(&mut step, group);
            }
            _ => {}
        }
        let out = step.out;
        self.settle(group_id);
        out
    }

    /// Rebuilds a group from its stored membership at start (before any
    /// request): Stable with the stored members, each with a fresh session
    /// (`now` + its session timeout), so they go on heartbeating in their
    /// generation; Empty when the record has no members. Returns the session
    /// timers to arm. The group shares `group_id` and the record's fields.
    pub fn load_group(
        &mut self,
        now: u64,
        group_id: &Arc<str>,
        stored: &StoredGroup,
    ) -> Vec<Effect> {
        let mut step = Step {
            config: &self.config,
            now,
            out: Vec::new(),
        };
        let group = Group::from_stored(group_id.clone(), stored, now);
        for member in group.members.values() {
            step.arm_session(&group, member);
        }
        let out = step.out;
        if let Some(old) = self.groups.insert(group_id.clone(), group) {
            self.membership_bytes -= old.accounted;
        }
        self.settle(group_id);
        out
    }

    /// Checks an OffsetCommit against the group's membership, as Kafka does:
    /// `generation < 0` commits (simple consumers) are allowed while the group is
    /// empty (and create it), others need a current member and generation. Ok:
    /// the group's id, to share with the records and the offsets table.
    pub fn validate_offset_commit(
        &mut self,
        now: u64,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> (Result<Arc<str>, ResponseError>, Vec<Effect>) {
        if let Err(e) = self.config.limits.check_group_id(group_id) {
            return (Err(e), Vec::new());
        }
        if !self.groups.contains_key(group_id) {
            if generation_id < 0 {
                self.create(Arc::from(group_id), now);
            } else {
                return (Err(ResponseError::IllegalGeneration), Vec::new());
            }
        }
        let mut step = Step {
            config: &self.config,
            now,
            out: Vec::new(),
        };
        let result = (|| {
            let Some(group) = self.groups.get_mut(group_id) else {
                return Err(ResponseError::IllegalGeneration);
            };
            if group.state == GroupState::Dead {
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            if let Some(instance) = group_instance_id {
                if group
                    .static_members
                    .get(instance)
                    .is_some_and(|id| **id != *member_id)
                {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
            if generation_id < 0 && group.state == GroupState::Empty {
                return Ok(group.group_id.clone());
            }
            let Some(member) = group.members.get(member_id) else {
                return Err(ResponseError::UnknownMemberId);
            };
            if generation_id != group.generation_id {
                return Err(ResponseError::IllegalGeneration);
            }
            match group.state {
                GroupState::Stable | GroupState::PreparingRebalance => {
                    step.arm_session(group, member);
                    Ok(group.group_id.clone())
                }
                GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
                GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
            }
        })();
        (result, step.out)
    }

    /// Checks a TxnOffsetCommit as Kafka's `doTxnCommitOffsets` does. Without
    /// member data (v0-v2) only a Dead group is refused; with it, a fenced
    /// static member answers FENCED_INSTANCE_ID, a non-empty unknown member id
    /// UNKNOWN_MEMBER_ID and a generation `>= 0` other than the group's
    /// ILLEGAL_GENERATION (an empty member id / generation -1 skips that check).
    /// Unlike OffsetCommit a rebalance in progress is no error: the offsets are
    /// only pending until the transaction commits. A missing group is created
    /// (Empty), as for simple consumers. Ok: the group's id, to share.
    pub fn validate_txn_offset_commit(
        &mut self,
        now: u64,
        group_id: &str,
        member: Option<(&str, Option<&str>, i32)>,
    ) -> Result<Arc<str>, ResponseError> {
        self.config.limits.check_group_id(group_id)?;
        if !self.groups.contains_key(group_id) {
            self.create(Arc::from(group_id), now);
        }
        let Some(group) = self.groups.get(group_id) else {
            return Err(ResponseError::CoordinatorNotAvailable);
        };
        if group.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let Some((member_id, group_instance_id, generation_id)) = member else {
            return Ok(group.group_id.clone());
        };
        if let Some(instance) = group_instance_id {
            if group
                .static_members
                .get(instance)
                .is_some_and(|id| **id != *member_id)
            {
                return Err(ResponseError::FencedInstanceId);
            }
        }
        if !member_id.is_empty() && !group.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation_id >= 0 && generation_id != group.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(group.group_id.clone())
    }

    /// Makes sure a group known only from its committed offsets exists (Empty),
    /// sharing `group_id`.
    pub fn ensure_group(&mut self, group_id: &Arc<str>, now: u64) {
        if !self.groups.contains_key(&**group_id) {
            self.create(group_id.clone(), now);
        }
    }

    /// The group's state and since when (Unix ms); `None` if there is no such group.
    pub fn group_state(&self, group_id: &str) -> Option<(GroupState, u64)> {
        self.groups
            .get(group_id)
            .map(|g| (g.state, g.state_since_ms))
    }

    /// Forgets an empty group that has nothing left (no members, no member ids
    /// outstanding); the caller has already dropped its offsets. Returns its id.
    pub fn remove_group_if_empty(&mut self, group_id: &str) -> Option<Arc<str>> {
        let removable = self.groups.get(group_id).is_some_and(|g| {
            g.state == GroupState::Empty && g.members.is_empty() && g.pending_members.is_empty()
        });
        if removable {
            self.remove(group_id).map(|g| g.group_id)
        } else {
            None
        }
    }

    /// DeleteGroups for one group: only an empty group may be deleted; it becomes Dead.
    pub fn delete_group(
        &mut self,
        now: u64,
        group_id: &str,
    ) -> (Result<(), ResponseError>, Vec<Effect>) {
        let mut step = Step {
            config: &self.config,
            now,
            out: Vec::new(),
        };
        let result = match self.groups.get_mut(group_id) {
            None => Err(ResponseError::GroupIdNotFound),
            Some(group) if group.state == GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            Some(group) if group.state != GroupState::Empty => Err(ResponseError::NonEmptyGroup),
            Some(group) => {
                for member_id in std::mem::take(&mut group.pending_members) {
                    step.cancel_timer(group, TimerKind::PendingMember { member_id });
                }
                group.transition(GroupState::Dead, now);
                Ok(())
            }
        };
        let out = std::mem::take(&mut step.out);
        if result.is_ok() {
            self.remove(group_id);
        }
        (result, out)
    }

    /// Which topics' offsets OffsetDelete must keep for this group.
    pub fn offset_delete_guard(&self, group_id: &str) -> Result<SubscribedTopics, ResponseError> {
        match self.groups.get(group_id) {
            None => Err(ResponseError::GroupIdNotFound),
            Some(g) => match g.state {
                GroupState::Dead => Err(ResponseError::GroupIdNotFound),
                GroupState::Empty => Ok(SubscribedTopics::None),
                _ if g.protocol_type.as_deref() == Some("consumer") => Ok(g
                    .subscribed_topics()
                    .map(SubscribedTopics::Topics)
                    .unwrap_or(SubscribedTopics::All)),
                _ => Err(ResponseError::NonEmptyGroup),
            },
        }
    }

    /// DescribeGroups for one group; an unknown group is described as Dead.
    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let Some(g) = self.groups.get(group_id) else {
            return GroupDescription {
                group_id: group_id.to_string(),
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            };
        };
        let stable = g.state == GroupState::Stable;
        let protocol = if stable {
            g.protocol_name.as_deref().unwrap_or_default().to_string()
        } else {
            String::new()
        };
        let members = g
            .members
            .values()
            .map(|m| MemberDescription {
                member_id: m.member_id.to_string(),
                group_instance_id: owned(&m.group_instance_id),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                metadata: if stable {
                    m.metadata(&protocol)
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        GroupDescription {
            group_id: group_id.to_string(),
            state: g.state,
            protocol_type: owned(&g.protocol_type).unwrap_or_default(),
            protocol,
            members,
        }
    }

    /// ListGroups: every group this node coordinates, sorted by id.
    pub fn list(&self) -> Vec<GroupListing> {
        let mut list: Vec<GroupListing> = self
            .groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(|g| GroupListing {
                group_id: g.group_id.to_string(),
                protocol_type: owned(&g.protocol_type).unwrap_or_default(),
                state: g.state,
            })
            .collect();
        list.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        list
    }
}

/// An id as a response carries it.
fn owned(id: &Option<Arc<str>>) -> Option<String> {
    id.as_deref().map(str::to_string)
}

/// Checks that `member_id` (and its static instance, if any) belongs to the group
/// in `generation_id`, in Kafka's order: fenced instance, unknown member, generation.
fn check_member(
    group: &Group,
    member_id: &str,
    group_instance_id: Option<&str>,
    generation_id: i32,
) -> Result<(), ResponseError> {
    if group.state == GroupState::Dead {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    validate_current_member(group, member_id, group_instance_id)?;
    if generation_id != group.generation_id {
        return Err(ResponseError::IllegalGeneration);
    }
    Ok(())
}

/// The member exists and, if static, still holds its instance id.
fn validate_current_member(
    group: &Group,
    member_id: &str,
    group_instance_id: Option<&str>,
) -> Result<(), ResponseError> {
    if let Some(instance) = group_instance_id {
        match group.static_members.get(instance) {
            Some(holder) if **holder != *member_id => return Err(ResponseError::FencedInstanceId),
            Some(_) => {}
            None => return Err(ResponseError::UnknownMemberId),
        }
    }
    if !group.members.contains_key(member_id) {
        return Err(ResponseError::UnknownMemberId);
    }
    Ok(())
}

/// The protocols of a JoinGroup as a member keeps them: metadata copied out of the
/// request frame, so that the frame is not held for as long as the member.
fn kept_protocols(protocols: Vec<(String, Bytes)>) -> Vec<(Arc<str>, Bytes)> {
    protocols
        .into_iter()
        .map(|(name, metadata)| (Arc::from(name), Bytes::copy_from_slice(&metadata)))
        .collect()
}

/// JoinGroup without a member id.
fn join_unknown_member(step: &mut Step, group: &mut Group, request: RequestId, join: JoinGroup) {
    let member_id = step.config.limits.new_member_id(&join.client_id);
    if let Some(instance) = join.group_instance_id.clone() {
        match group.static_members.get(instance.as_str()).cloned() {
            Some(old_member_id) => replace_static_member(
                step,
                group,
                request,
                join,
                &instance,
                &old_member_id,
                member_id,
            ),
            None => add_member_and_rebalance(step, group, request, join, member_id),
        }
    } else if join.require_known_member_id {
        group.pending_members.insert(member_id.clone());
        let session = join.session_timeout_ms.max(0) as u64;
        step.set_timer(
            group,
            TimerKind::PendingMember {
                member_id: member_id.clone(),
            },
            session,
        );
        step.respond(
            request,
            Response::Join(JoinResult::error(
                &member_id,
                ResponseError::MemberIdRequired,
            )),
        );
    } else {
        add_member_and_rebalance(step, group, request, join, member_id);
    }
}

/// JoinGroup with a member id: a pending member completing its join, or a
/// current member rejoining.
fn join_known_member(step: &mut Step, group: &mut Group, request: RequestId, join: JoinGroup) {
    if let Some(member_id) = group.pending_members.take(join.member_id.as_str()) {
        step.cancel_timer(
            group,
            TimerKind::PendingMember {
                member_id: member_id.clone(),
            },
        );
        add_member_and_rebalance(step, group, request, join, member_id);
        return;
    }
    if let Err(error) =
        validate_current_member(group, &join.member_id, join.group_instance_id.as_deref())
    {
        step.respond(
            request,
            Response::Join(JoinResult::error(&join.member_id, error)),
        );
        return;
    }
    let Some(member) = group.members.get(join.member_id.as_str()) else {
        return;
    };
    let same_protocols = member.matches(&join.protocols);
    let is_leader = group.is_leader(&join.member_id);
    match group.state {
        GroupState::PreparingRebalance => update_member_and_rebalance(step, group, request, join),
        GroupState::CompletingRebalance if same_protocols => {
            // The member lost the JoinGroup response: answer with the current generation.
            let result = join_result(group, &join.member_id, is_leader);
            step.respond(request, Response::Join(result));
        }
        GroupState::Stable if !is_leader && same_protocols => {
            let result = join_result(group, &join.member_id, false);
            step.respond(request, Response::Join(result));
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            // The leader rejoining forces a rebalance (it may have seen a metadata
            // change); so does a member whose protocols changed.
            update_member_and_rebalance(step, group, request, join)
        }
        GroupState::Empty | GroupState::Dead => step.respond(
            request,
            Response::Join(JoinResult::error(
                &join.member_id,
                ResponseError::UnknownMemberId,
            )),
        ),
    }
}

/// The successful JoinGroup answer for `member_id` in the current generation.
fn join_result(group: &Group, member_id: &str, with_members: bool) -> JoinResult {
    let protocol = group.protocol_name.as_deref().unwrap_or_default();
    JoinResult {
        error: None,
        generation_id: group.generation_id,
        protocol_type: owned(&group.protocol_type),
        protocol_name: owned(&group.protocol_name),
        leader_id: owned(&group.leader_id).unwrap_or_default(),
        member_id: member_id.to_string(),
        members: if with_members {
            group
                .members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: owned(&m.group_instance_id),
                    metadata: m.metadata(protocol),
                })
                .collect()
        } else {
            Vec::new()
        },
        skip_assignment: false,
    }
}

fn add_member_and_rebalance(
    step: &mut Step,
    group: &mut Group,
    request: RequestId,
    join: JoinGroup,
    member_id: Arc<str>,
) {
    if group.state == GroupState::PreparingRebalance && group.generation_id == 0 {
        group.new_member_added = true;
    }
    if group.members.is_empty() {
        group.protocol_type = Some(Arc::from(join.protocol_type.as_str()));
    }
    let instance = join.group_instance_id.as_deref().map(Arc::<str>::from);
    if let Some(instance) = &instance {
        group
            .static_members
            .insert(instance.clone(), member_id.clone());
    }
    if group.leader_id.is_none() {
        group.leader_id = Some(member_id.clone());
    }
    let member = Member {
        member_id: member_id.clone(),
        group_instance_id: instance,
        client_id: Arc::from(step.config.limits.client_id(&join.client_id)),
        client_host: Arc::from(join.client_host.as_str()),
        session_timeout_ms: join.session_timeout_ms,
        rebalance_timeout_ms: join.rebalance_timeout_ms,
        protocols: kept_protocols(join.protocols),
        assignment: Bytes::new(),
        awaiting_join: Some(request),
        join_supports_skip: join.supports_skip_assignment,
        awaiting_sync: None,
        is_new: true,
    };
    // A new member cannot heartbeat before its join completes; bound its wait.
    let timeout = step.config.new_member_join_timeout_ms;
    step.set_timer(
        group,
        TimerKind::Session {
            member_id: member_id.clone(),
        },
        timeout,
    );
    group.members.insert(member_id, Box::new(member));
    maybe_prepare_rebalance(step, group);
}

fn update_member_and_rebalance(
    step: &mut Step,
    group: &mut Group,
    request: RequestId,
    join: JoinGroup,
) {
    if let Some(member) = group.members.get_mut(join.member_id.as_str()) {
        member.protocols = kept_protocols(join.protocols);
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        member.join_supports_skip = join.supports_skip_assignment;
        if let Some(previous) = member.awaiting_join.replace(request) {
            // A client has one JoinGroup in flight: the earlier one was abandoned.
            step.respond(
                previous,
                Response::Join(JoinResult::error(
                    &join.member_id,
                    ResponseError::RebalanceInProgress,
                )),
            );
        }
    }
    maybe_prepare_rebalance(step, group);
}

/// A static member rejoined without its member id: it takes a new member id,
/// the old one is fenced, and a stable group needs no rebalance.
fn replace_static_member(
    step: &mut Step,
    group: &mut Group,
    request: RequestId,
    join: JoinGroup,
    instance: &str,
    old_member_id: &str,
    new_member_id: Arc<str>,
) {
    let Some(mut member) = group.members.remove(old_member_id) else {
        group.static_members.remove(instance);
        add_member_and_rebalance(step, group, request, join, new_member_id);
        return;
    };
    let leader_before = group.leader_id.clone();
    if let Some(previous) = member.awaiting_join.take() {
        step.respond(
            previous,
            Response::Join(JoinResult::error(
                old_member_id,
                ResponseError::FencedInstanceId,
            )),
        );
    }
    if let Some(previous) = member.awaiting_sync.take() {
        step.respond(
            previous,
            Response::Sync(SyncResult::error(ResponseError::FencedInstanceId)),
        );
    }
    step.cancel_timer(
        group,
        TimerKind::Session {
            member_id: member.member_id.clone(),
        },
    );
    if group.pending_sync.remove(old_member_id) {
        group.pending_sync.insert(new_member_id.clone());
    }
    if group.is_leader(old_member_id) {
        group.leader_id = Some(new_member_id.clone());
    }
    if let Some(holder) = group.static_members.get_mut(instance) {
        *holder = new_member_id.clone();
    }
    member.member_id = new_member_id.clone();
    member.client_id = Arc::from(step.config.limits.client_id(&join.client_id));
    member.client_host = Arc::from(join.client_host.as_str());
    member.protocols = kept_protocols(join.protocols);
    member.session_timeout_ms = join.session_timeout_ms;
    member.rebalance_timeout_ms = join.rebalance_timeout_ms;
    member.join_supports_skip = join.supports_skip_assignment;
    member.awaiting_join = Some(request);
    step.arm_session(group, &member);
    group.members.insert(new_member_id.clone(), member);

    match group.state {
        GroupState::Stable => {
            if group.select_protocol() == group.protocol_name {
                tracing::info!(group = %group.group_id, instance, "static member rejoined without a rebalance");
                let is_leader = group.is_leader(&new_member_id);
                let skip = is_leader && join.supports_skip_assignment;
                let mut result = join_result(group, &new_member_id, skip);
                result.skip_assignment = skip;
                if !join.supports_skip_assignment {
                    // Before v9 a client that sees itself as leader computes an
                    // assignment a stable group would ignore; name the old leader id.
                    result.leader_id = owned(&leader_before).unwrap_or_default();
                }
                if let Some(m) = group.members.get_mut(&new_member_id) {
                    m.awaiting_join = None;
                }
                // The new member id must survive a restart (else the member
                // would be fenced by its own old id): answer once stored.
                step.store(group, vec![(request, Response::Join(result))]);
            } else {
                prepare_rebalance(step, group);
            }
        }
        // The leader may already be assigning for the old member id: start over.
        GroupState::CompletingRebalance => prepare_rebalance(step, group),
        GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {}
    }
}

fn maybe_prepare_rebalance(step: &mut Step, group: &mut Group) {
    if matches!(
        group.state,
        GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
    ) {
        prepare_rebalance(step, group);
    }
}

/// Starts a join phase. Members waiting for an assignment are told to rejoin.
fn prepare_rebalance(step: &mut Step, group: &mut Group) {
    if group.state == GroupState::CompletingRebalance {
        for member in group.members.values_mut() {
            member.assignment = Bytes::new();
            if let Some(waiting) = member.awaiting_sync.take() {
                step.respond(
                    waiting,
                    Response::Sync(SyncResult::error(ResponseError::RebalanceInProgress)),
                );
            }
        }
    }
    group.storing = None;
    if !group.pending_sync.is_empty() || group.state == GroupState::CompletingRebalance {
        group.pending_sync.clear();
        step.cancel_timer(group, TimerKind::PendingSync);
    }
    let rebalance_timeout = group.rebalance_timeout_ms();
    if group.state == GroupState::Empty {
        let delay = step
            .config
            .initial_rebalance_delay_ms
            .min(rebalance_timeout);
        group.join_phase = Some(JoinPhase::InitialDelay {
            remaining_ms: rebalance_timeout - delay,
        });
        group.new_member_added = false;
        step.set_timer(group, TimerKind::InitialRebalanceDelay, delay);
    } else {
        group.join_phase = Some(JoinPhase::Delayed);
        step.set_timer(group, TimerKind::Rebalance, rebalance_timeout);
    }
    tracing::debug!(group = %group.group_id, from = %group.state, "preparing rebalance");
    group.transition(GroupState::PreparingRebalance, step.now);
    try_complete_join(step, group);
}

/// Ends the join phase early once every member has rejoined.
fn try_complete_join(step: &mut Step, group: &mut Group) {
    if group.state == GroupState::PreparingRebalance
        && group.join_phase == Some(JoinPhase::Delayed)
        && group.all_members_joined()
    {
        complete_join(step, group);
    }
}

/// Ends the join phase: drops dynamic members that did not rejoin, starts the
/// next generation and answers every waiting JoinGroup (the leader gets the members).
fn complete_join(step: &mut Step, group: &mut Group) {
    step.cancel_timer(group, TimerKind::Rebalance);
    step.cancel_timer(group, TimerKind::InitialRebalanceDelay);
    group.join_phase = None;
    let not_rejoined: Vec<Arc<str>> = group
        .members
        .values()
        .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
        .map(|m| m.member_id.clone())
        .collect();
    for member_id in &not_rejoined {
        tracing::info!(group = %group.group_id, member = %member_id, "member did not rejoin in time");
        remove_member(step, group, member_id);
    }
    if !group.members.is_empty() && group.members.values().all(|m| m.awaiting_join.is_none()) {
        // Only static members that have not rejoined are left: wait for them
        // (or for their sessions to expire) another rebalance timeout.
        group.join_phase = Some(JoinPhase::Delayed);
        let timeout = group.rebalance_timeout_ms();
        step.set_timer(group, TimerKind::Rebalance, timeout);
        return;
    }
    let leader_joined = group
        .leader_id
        .as_ref()
        .and_then(|l| group.members.get(&**l))
        .is_some_and(|m| m.awaiting_join.is_some());
    if !leader_joined {
        group.leader_id = group
            .members
            .values()
            .find(|m| m.awaiting_join.is_some())
            .map(|m| m.member_id.clone());
    }
    group.generation_id += 1;
    if group.members.is_empty() {
        group.protocol_name = None;
        group.leader_id = None;
        group.transition(GroupState::Empty, step.now);
        step.store(group, Vec::new());
        return;
    }
    group.protocol_name = group.select_protocol();
    group.transition(GroupState::CompletingRebalance, step.now);
    tracing::info!(group = %group.group_id, generation = group.generation_id,
        members = group.members.len(), protocol = ?group.protocol_name, "join phase complete");
    let ids: Vec<Arc<str>> = group.members.keys().cloned().collect();
    for member_id in ids {
        let is_leader = group.is_leader(&member_id);
        let result = join_result(group, &member_id, is_leader);
        let Some(member) = group.members.get_mut(&*member_id) else {
            continue;
        };
        member.is_new = false;
        if let Some(waiting) = member.awaiting_join.take() {
            step.respond(waiting, Response::Join(result));
        }
        let member = member.clone();
        step.arm_session(group, &member);
        group.pending_sync.insert(member_id);
    }
    let timeout = group.rebalance_timeout_ms();
    step.set_timer(group, TimerKind::PendingSync, timeout);
}

/// The generation's assignment cannot be kept (Kafka's
/// `resetAndPropagateAssignmentError` + `maybePrepareRebalance`): assignments are
/// dropped, every member waiting in SyncGroup gets `error`, the group rebalances.
fn fail_assignment(step: &mut Step, group: &mut Group, error: ResponseError) {
    group.storing = None;
    for member in group.members.values_mut() {
        member.assignment = Bytes::new();
        if let Some(waiting) = member.awaiting_sync.take() {
            step.respond(waiting, Response::Sync(SyncResult::error(error)));
        }
    }
    prepare_rebalance(step, group);
}

/// Hands the leader's assignment to every member waiting in SyncGroup.
fn propagate_assignment(step: &mut Step, group: &mut Group) {
    let ids: Vec<Arc<str>> = group.members.keys().cloned().collect();
    for member_id in ids {
        let Some(member) = group.members.get_mut(&*member_id) else {
            continue;
        };
        if let Some(waiting) = member.awaiting_sync.take() {
            let response = Response::Sync(SyncResult {
                error: None,
                protocol_type: owned(&group.protocol_type),
                protocol_name: owned(&group.protocol_name),
                assignment: member.assignment.clone(),
            });
            step.respond(waiting, response);
            let member = member.clone();
            step.arm_session(group, &member);
        }
    }
}

fn remove_pending_sync(step: &mut Step, group: &mut Group, member_id: &str) {
    if group.pending_sync.remove(member_id) && group.pending_sync.is_empty() {
        step.cancel_timer(group, TimerKind::PendingSync);
    }
}

/// Removes a member without starting a rebalance; its waiting requests are
/// answered UNKNOWN_MEMBER_ID.
fn remove_member(step: &mut Step, group: &mut Group, member_id: &str) {
    let Some(mut member) = group.members.remove(member_id) else {
        return;
    };
    if let Some(waiting) = member.awaiting_join.take() {
        step.respond(
            waiting,
            Response::Join(JoinResult::error(member_id, ResponseError::UnknownMemberId)),
        );
    }
    if let Some(waiting) = member.awaiting_sync.take() {
        step.respond(
            waiting,
            Response::Sync(SyncResult::error(ResponseError::UnknownMemberId)),
        );
    }
    step.cancel_timer(
        group,
        TimerKind::Session {
            member_id: member.member_id.clone(),
        },
    );
    if let Some(instance) = &member.group_instance_id {
        if group.static_members.get(instance).map(|m| &**m) == Some(member_id) {
            group.static_members.remove(instance);
        }
    }
    remove_pending_sync(step, group, member_id);
    if group.is_leader(member_id) {
        group.leader_id = group.members.keys().next().cloned();
    }
}

/// Removes a member (left or expired) and moves the group on: a stable or
/// completing group rebalances, a joining group may now be complete.
fn remove_member_and_update(step: &mut Step, group: &mut Group, member_id: &str) {
    remove_member(step, group, member_id);
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance => prepare_rebalance(step, group),
        GroupState::PreparingRebalance => try_complete_join(step, group),
        GroupState::Empty | GroupState::Dead => {}
    }
}

/// One member of a LeaveGroup.
fn leave_one(
    step: &mut Step,
    group: &mut Group,
    leaving: &LeavingMember,
) -> Result<(), ResponseError> {
    if group.state == GroupState::Dead {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    if let Some(instance) = &leaving.group_instance_id {
        let Some(holder) = group.static_members.get(instance.as_str()).cloned() else {
            return Err(ResponseError::UnknownMemberId);
        };
        if !leaving.member_id.is_empty() && *holder != *leaving.member_id {
            return Err(ResponseError::FencedInstanceId);
        }
        tracing::info!(group = %group.group_id, member = %holder, instance = %instance, "static member left");
        remove_member_and_update(step, group, &holder);
        return Ok(());
    }
    if let Some(member_id) = group.pending_members.take(leaving.member_id.as_str()) {
        step.cancel_timer(group, TimerKind::PendingMember { member_id });
        try_complete_join(step, group);
        return Ok(());
    }
    if !group.members.contains_key(leaving.member_id.as_str()) {
        return Err(ResponseError::UnknownMemberId);
    }
    tracing::info!(group = %group.group_id, member = %leaving.member_id, "member left");
    remove_member_and_update(step, group, &leaving.member_id);
    Ok(())
}
