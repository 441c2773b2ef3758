//! Unit tests of the coordinator state machine: every transition, driven by
//! events and a simulated clock, checked through the effects it returns.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::events::{Heartbeat, JoinGroup, JoinResult, LeavingMember, SyncGroup, SyncResult};
use super::offsets::StoredGroup;
use super::*;

const GROUP: &str = "g";
const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

/// A store not completed yet: (group, generation, answers it holds).
type HeldStore = (Arc<str>, i32, Vec<(RequestId, Response)>);

/// A coordinator with a simulated clock and a timer table that fires timers in
/// deadline order, collecting every response by request id.
struct Harness {
    c: GroupCoordinator,
    now: u64,
    next_request: RequestId,
    responses: HashMap<RequestId, Response>,
    timers: BTreeMap<TimerKey, u64>,
    /// Every membership record the coordinator asked to store, in order.
    stored: Vec<StoredGroup>,
    /// When set, stores wait in `held_stores` until `complete_stores`.
    hold_stores: bool,
    held_stores: Vec<HeldStore>,
}

fn protocols(names: &[&str]) -> Vec<(String, Bytes)> {
    names
        .iter()
        .map(|n| (n.to_string(), Bytes::from(format!("meta-{n}"))))
        .collect()
}

fn join_request(member_id: &str, instance: Option<&str>, names: &[&str]) -> JoinGroup {
    JoinGroup {
        group_id: GROUP.into(),
        member_id: member_id.into(),
        group_instance_id: instance.map(str::to_string),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols(names),
        require_known_member_id: true,
        supports_skip_assignment: true,
    }
}

impl Harness {
    fn new() -> Self {
        Harness::with(CoordinatorConfig::default())
    }

    fn with(config: CoordinatorConfig) -> Self {
        Harness {
            c: GroupCoordinator::new(config),
            now: 1_000_000,
            next_request: 0,
            responses: HashMap::new(),
            timers: BTreeMap::new(),
            stored: Vec::new(),
            hold_stores: false,
            held_stores: Vec::new(),
        }
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        self.c.assert_accounted();
        for effect in effects {
            match effect {
                Effect::Respond { request, response } => {
                    let previous = self.responses.insert(request, response);
                    assert!(previous.is_none(), "request {request} answered twice");
                }
                Effect::SetTimer { key, deadline_ms } => {
                    self.timers.insert(key, deadline_ms);
                }
                Effect::CancelTimer { key } => {
                    self.timers.remove(&key);
                }
                Effect::StoreGroup {
                    group_id,
                    generation_id,
                    metadata,
                    then,
                } => {
                    self.stored.push(metadata);
                    if self.hold_stores {
                        self.held_stores.push((group_id, generation_id, then));
                    } else {
                        self.finish_store(group_id, generation_id, then, Ok(()));
                    }
                }
            }
        }
    }

    /// Completes a store as the service does: held answers first (or their
    /// failed form), then the outcome to the state machine.
    fn finish_store(
        &mut self,
        group_id: Arc<str>,
        generation_id: i32,
        then: Vec<(RequestId, Response)>,
        result: Result<(), ResponseError>,
    ) {
        for (request, response) in then {
            let response = match result {
                Ok(()) => response,
                Err(e) => response.failed(e),
            };
            let previous = self.responses.insert(request, response);
            assert!(previous.is_none(), "request {request} answered twice");
        }
        let effects = self
            .c
            .group_stored(self.now, &group_id, generation_id, result);
        self.apply(effects);
    }

    /// Completes every held store with `result`, oldest first.
    fn complete_stores(&mut self, result: Result<(), ResponseError>) {
        for (group_id, generation_id, then) in std::mem::take(&mut self.held_stores) {
            self.finish_store(group_id, generation_id, then, result);
        }
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        self.next_request
    }

    fn join(&mut self, join: JoinGroup) -> RequestId {
        let id = self.request_id();
        let effects = self.c.join(self.now, id, join);
        self.apply(effects);
        id
    }

    /// A dynamic member's first join (MEMBER_ID_REQUIRED), then the real join.
    fn join_new(&mut self, names: &[&str]) -> (String, RequestId) {
        let first = self.join(join_request("", None, names));
        let result = self.join_result(first);
        assert_eq!(result.error, Some(ResponseError::MemberIdRequired));
        assert!(result.member_id.starts_with("client-"));
        let id = result.member_id;
        let second = self.join(join_request(&id, None, names));
        (id, second)
    }

    fn sync(&mut self, member: &str, generation: i32, assignments: &[(&str, &str)]) -> RequestId {
        let id = self.request_id();
        let effects = self.c.sync(
            self.now,
            id,
            SyncGroup {
                group_id: GROUP.into(),
                generation_id: generation,
                member_id: member.into(),
                group_instance_id: None,
                protocol_type: Some("consumer".into()),
                protocol_name: None,
                assignments: assignments
                    .iter()
                    .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                    .collect(),
            },
        );
        self.apply(effects);
        id
    }

    fn heartbeat_as(
        &mut self,
        member: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Option<ResponseError> {
        let id = self.request_id();
        let effects = self.c.heartbeat(
            self.now,
            id,
            Heartbeat {
                group_id: GROUP.into(),
                generation_id: generation,
                member_id: member.into(),
                group_instance_id: instance.map(str::to_string),
            },
        );
        self.apply(effects);
        match self.responses.remove(&id) {
            Some(Response::Heartbeat(error)) => error,
            other => panic!("heartbeat answered with {other:?}"),
        }
    }

    fn heartbeat(&mut self, member: &str, generation: i32) -> Option<ResponseError> {
        self.heartbeat_as(member, None, generation)
    }

    fn leave(&mut self, members: &[(&str, Option<&str>)]) -> Vec<Option<ResponseError>> {
        let id = self.request_id();
        let leaving = members
            .iter()
            .map(|(m, i)| LeavingMember {
                member_id: m.to_string(),
                group_instance_id: i.map(str::to_string),
            })
            .collect();
        let effects = self.c.leave(self.now, id, GROUP, leaving);
        self.apply(effects);
        match self.responses.remove(&id) {
            Some(Response::Leave(result)) => {
                assert_eq!(result.error, None);
                result.members.into_iter().map(|(_, e)| e).collect()
            }
            other => panic!("leave answered with {other:?}"),
        }
    }

    /// Moves the clock forward, firing due timers in deadline order.
    fn advance(&mut self, ms: u64) {
        let target = self.now + ms;
        loop {
            let due = self
                .timers
                .iter()
                .filter(|(_, d)| **d <= target)
                .min_by_key(|(_, d)| **d)
                .map(|(k, d)| (k.clone(), *d));
            let Some((key, deadline)) = due else { break };
            self.timers.remove(&key);
            self.now = self.now.max(deadline);
            let effects = self.c.on_timer(self.now, &key);
            self.apply(effects);
        }
        self.now = target;
    }

    fn answered(&self, request: RequestId) -> bool {
        self.responses.contains_key(&request)
    }

    fn join_result(&mut self, request: RequestId) -> JoinResult {
        match self.responses.remove(&request) {
            Some(Response::Join(result)) => result,
            other => panic!("join {request} answered with {other:?}"),
        }
    }

    fn sync_result(&mut self, request: RequestId) -> SyncResult {
        match self.responses.remove(&request) {
            Some(Response::Sync(result)) => result,
            other => panic!("sync {request} answered with {other:?}"),
        }
    }

    fn state(&self) -> GroupState {
        self.c.describe(GROUP).state
    }

    /// Brings `n` dynamic members to a Stable group; returns their ids, the
    /// leader's first, and the generation.
    fn stable_group(&mut self, n: usize) -> (Vec<String>, i32) {
        let mut joins = Vec::new();
        for _ in 0..n {
            joins.push(self.join_new(&["range"]));
        }
        // Members that join during the initial delay extend it once.
        self.advance(2 * self.c.config().initial_rebalance_delay_ms);
        let mut leader = String::new();
        let mut generation = 0;
        for (_, request) in &joins {
            let result = self.join_result(*request);
            assert_eq!(result.error, None);
            leader = result.leader_id.clone();
            generation = result.generation_id;
        }
        let mut ids: Vec<String> = joins.into_iter().map(|(id, _)| id).collect();
        ids.sort_by_key(|id| *id != leader);
        let assignments: Vec<(String, String)> = ids
            .iter()
            .map(|id| (id.clone(), format!("to-{id}")))
            .collect();
        let refs: Vec<(&str, &str)> = assignments
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        for id in ids.iter().skip(1) {
            let r = self.sync(id, generation, &[]);
            assert!(!self.answered(r), "a follower's sync waits for the leader");
        }
        let r = self.sync(&ids[0], generation, &refs);
        assert_eq!(
            self.sync_result(r).assignment,
            Bytes::from(format!("to-{}", ids[0]))
        );
        for request in (r - ids.len() as u64 + 1)..r {
            assert_eq!(self.sync_result(request).error, None);
        }
        assert_eq!(self.state(), GroupState::Stable);
        (ids, generation)
    }
}

#[test]
fn single_member_joins_after_the_initial_delay_and_syncs() {
    let mut h = Harness::new();
    let (member, join) = h.join_new(&["range"]);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert!(!h.answered(join), "the initial delay holds the first join");
    h.advance(99);
    assert!(!h.answered(join));
    h.advance(1);
    let result = h.join_result(join);
    assert_eq!(result.error, None);
    assert_eq!(result.generation_id, 1);
    assert_eq!(result.leader_id, member);
    assert_eq!(result.protocol_name.as_deref(), Some("range"));
    assert_eq!(result.members.len(), 1);
    assert_eq!(result.members[0].metadata, Bytes::from("meta-range"));
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert_eq!(
        h.heartbeat(&member, 1),
        None,
        "heartbeats are fine while completing"
    );

    let sync = h.sync(&member, 1, &[(&member, "all")]);
    let sync = h.sync_result(sync);
    assert_eq!(sync.error, None);
    assert_eq!(sync.assignment, Bytes::from("all"));
    assert_eq!(sync.protocol_name.as_deref(), Some("range"));
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.heartbeat(&member, 1), None);
}

#[test]
fn followers_that_sync_first_wait_for_the_leader_assignment() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group(3);
    assert_eq!(generation, 1);
    let described = h.c.describe(GROUP);
    assert_eq!(described.members.len(), 3);
    assert_eq!(described.protocol, "range");
    for m in &described.members {
        assert_eq!(m.assignment, Bytes::from(format!("to-{}", m.member_id)));
        assert_eq!(m.client_host, "/127.0.0.1");
    }
    // A late sync in Stable returns the member's assignment again.
    let r = h.sync(&ids[2], generation, &[]);
    assert_eq!(
        h.sync_result(r).assignment,
        Bytes::from(format!("to-{}", ids[2]))
    );
}

#[test]
fn only_the_leader_receives_the_member_list() {
    let mut h = Harness::new();
    let (a, ja) = h.join_new(&["range"]);
    let (b, jb) = h.join_new(&["range"]);
    h.advance(200);
    let ra = h.join_result(ja);
    let rb = h.join_result(jb);
    assert_eq!(ra.leader_id, a, "the first member to join leads");
    assert_eq!(rb.leader_id, a);
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty());
    assert_eq!(ra.generation_id, rb.generation_id);
    assert_ne!(a, b);
}

#[test]
fn protocol_is_chosen_by_votes_among_common_protocols() {
    let mut h = Harness::new();
    let (_, j1) = h.join_new(&["range", "roundrobin", "sticky"]);
    let (_, j2) = h.join_new(&["roundrobin", "range"]);
    let (_, j3) = h.join_new(&["roundrobin", "range"]);
    h.advance(200);
    for j in [j1, j2, j3] {
        assert_eq!(
            h.join_result(j).protocol_name.as_deref(),
            Some("roundrobin"),
            "sticky is not common; roundrobin has two votes"
        );
    }
}

#[test]
fn protocol_mismatch_is_refused() {
    let mut h = Harness::new();
    let (_, j1) = h.join_new(&["range"]);
    // No protocol in common with the current member.
    let r = h.join(join_request("", None, &["roundrobin"]));
    assert_eq!(
        h.join_result(r).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    // A different protocol type.
    let mut other = join_request("", None, &["range"]);
    other.protocol_type = "connect".into();
    let r = h.join(other);
    assert_eq!(
        h.join_result(r).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    // An empty protocol type or list is refused for the first member too.
    let mut first = join_request("", None, &[]);
    first.group_id = "other".into();
    let r = h.join(first);
    assert_eq!(
        h.join_result(r).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    h.advance(200);
    assert_eq!(h.join_result(j1).error, None);
}

#[test]
fn session_timeout_outside_the_configured_range_is_refused() {
    let mut h = Harness::with(CoordinatorConfig {
        min_session_timeout_ms: 1_000,
        max_session_timeout_ms: 60_000,
        ..CoordinatorConfig::default()
    });
    for timeout in [999, 60_001] {
        let mut join = join_request("", None, &["range"]);
        join.session_timeout_ms = timeout;
        let r = h.join(join);
        assert_eq!(
            h.join_result(r).error,
            Some(ResponseError::InvalidSessionTimeout)
        );
    }
    let mut join = join_request("", None, &["range"]);
    join.session_timeout_ms = 1_000;
    let r = h.join(join);
    assert_eq!(
        h.join_result(r).error,
        Some(ResponseError::MemberIdRequired)
    );
}

#[test]
fn joins_without_member_id_before_v4_are_accepted_directly() {
    let mut h = Harness::new();
    let mut join = join_request("", None, &["range"]);
    join.require_known_member_id = false;
    let r = h.join(join);
    h.advance(200);
    let result = h.join_result(r);
    assert_eq!(result.error, None);
    assert_eq!(result.leader_id, result.member_id);
}

#[test]
fn stale_generation_is_illegal() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group(2);
    assert_eq!(
        h.heartbeat(&ids[0], generation - 1),
        Some(ResponseError::IllegalGeneration)
    );
    let r = h.sync(&ids[1], generation + 1, &[]);
    assert_eq!(
        h.sync_result(r).error,
        Some(ResponseError::IllegalGeneration)
    );
    let (result, _) =
        h.c.validate_offset_commit(h.now, GROUP, &ids[0], None, generation - 1);
    assert_eq!(result, Err(ResponseError::IllegalGeneration));
    let (result, _) =
        h.c.validate_offset_commit(h.now, GROUP, &ids[0], None, generation);
    assert_eq!(result.map(|_| ()), Ok(()));
}

#[test]
fn unknown_members_are_refused() {
    let mut h = Harness::new();
    assert_eq!(
        h.heartbeat("nobody", 1),
        Some(ResponseError::UnknownMemberId),
        "no such group"
    );
    let (_, generation) = h.stable_group(1);
    assert_eq!(
        h.heartbeat("nobody", generation),
        Some(ResponseError::UnknownMemberId)
    );
    let r = h.join(join_request("nobody", None, &["range"]));
    assert_eq!(h.join_result(r).error, Some(ResponseError::UnknownMemberId));
    let r = h.sync("nobody", generation, &[]);
    assert_eq!(h.sync_result(r).error, Some(ResponseError::UnknownMemberId));
    let (result, _) =
        h.c.validate_offset_commit(h.now, GROUP, "nobody", None, generation);
    assert_eq!(result, Err(ResponseError::UnknownMemberId));
    assert_eq!(
        h.leave(&[("nobody", None)]),
        vec![Some(ResponseError::UnknownMemberId)]
    );
    assert_eq!(h.state(), GroupState::Stable, "nothing changed");
}

#[test]
fn rejoin_during_a_rebalance_completes_once_everyone_rejoined() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group(2);
    // A third member arrives: the group rebalances.
    let (c, jc) = h.join_new(&["range"]);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.heartbeat(&ids[0], generation),
        Some(ResponseError::RebalanceInProgress)
    );
    let r = h.sync(&ids[1], generation, &[]);
    assert_eq!(
        h.sync_result(r).error,
        Some(ResponseError::RebalanceInProgress)
    );
    // Commits are still accepted while preparing.
    let (result, _) =
        h.c.validate_offset_commit(h.now, GROUP, &ids[0], None, generation);
    assert_eq!(result.map(|_| ()), Ok(()));

    let j0 = h.join(join_request(&ids[0], None, &["range"]));
    // A second JoinGroup from the same member replaces the first.
    let j0b = h.join(join_request(&ids[0], None, &["range"]));
    assert_eq!(
        h.join_result(j0).error,
        Some(ResponseError::RebalanceInProgress)
    );
    assert!(!h.answered(jc));
    let j1 = h.join(join_request(&ids[1], None, &["range"]));
    // Everyone rejoined: no need to wait for the rebalance timeout.
    let results: Vec<JoinResult> = [j0b, j1, jc].iter().map(|r| h.join_result(*r)).collect();
    for result in &results {
        assert_eq!(result.error, None);
        assert_eq!(result.generation_id, generation + 1);
    }
    assert_eq!(results.iter().map(|r| r.members.len()).sum::<usize>(), 3);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert!(results.iter().any(|r| r.member_id == c));
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group(2);
    let (_, jc) = h.join_new(&["range"]);
    let j0 = h.join(join_request(&ids[0], None, &["range"]));
    // ids[1] keeps heartbeating but never rejoins.
    for _ in 0..5 {
        h.advance(REBALANCE as u64 / 6);
        assert_eq!(
            h.heartbeat(&ids[1], generation),
            Some(ResponseError::RebalanceInProgress)
        );
    }
    assert!(!h.answered(j0));
    h.advance(REBALANCE as u64 / 6);
    let r0 = h.join_result(j0);
    let rc = h.join_result(jc);
    assert_eq!(r0.generation_id, generation + 1);
    assert_eq!(r0.members.len() + rc.members.len(), 2);
    assert_eq!(
        h.heartbeat(&ids[1], generation),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn leader_leaving_mid_sync_starts_a_new_rebalance() {
    let mut h = Harness::new();
    let (a, ja) = h.join_new(&["range"]);
    let (b, jb) = h.join_new(&["range"]);
    h.advance(200);
    let leader = h.join_result(ja);
    assert_eq!(leader.leader_id, a);
    let generation = h.join_result(jb).generation_id;
    let follower_sync = h.sync(&b, generation, &[]);
    assert!(!h.answered(follower_sync));

    assert_eq!(h.leave(&[(&a, None)]), vec![None]);
    assert_eq!(
        h.sync_result(follower_sync).error,
        Some(ResponseError::RebalanceInProgress)
    );
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let jb2 = h.join(join_request(&b, None, &["range"]));
    let result = h.join_result(jb2);
    assert_eq!(result.error, None);
    assert_eq!(result.generation_id, generation + 1);
    assert_eq!(result.leader_id, b, "the remaining member leads");
    assert_eq!(result.members.len(), 1);
}

#[test]
fn any_member_leaving_a_stable_group_triggers_a_rebalance_and_the_last_empties_it() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group(2);
    assert_eq!(h.leave(&[(&ids[1], None)]), vec![None]);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.heartbeat(&ids[0], generation),
        Some(ResponseError::RebalanceInProgress)
    );
    assert_eq!(h.leave(&[(&ids[0], None)]), vec![None]);
    assert_eq!(h.state(), GroupState::Empty);
    assert!(h
        .c
        .list()
        .iter()
        .any(|g| g.group_id == GROUP && g.state == GroupState::Empty));
}

#[test]
fn batched_leave_answers_each_member() {
    let mut h = Harness::new();
    let (ids, _) = h.stable_group(3);
    let errors = h.leave(&[(&ids[1], None), ("ghost", None), (&ids[2], None)]);
    assert_eq!(
        errors,
        vec![None, Some(ResponseError::UnknownMemberId), None]
    );
    let j = h.join(join_request(&ids[0], None, &["range"]));
    let result = h.join_result(j);
    assert_eq!(result.members.len(), 1);
}

#[test]
fn session_timeout_evicts_a_silent_member() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group(2);
    h.advance(SESSION as u64 / 2);
    assert_eq!(h.heartbeat(&ids[0], generation), None);
    assert_eq!(h.state(), GroupState::Stable);
    h.advance(SESSION as u64 / 2);
    // ids[1] has been silent for a whole session: it is gone and a rebalance runs.
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.heartbeat(&ids[0], generation),
        Some(ResponseError::RebalanceInProgress)
    );
    let j = h.join(join_request(&ids[0], None, &["range"]));
    let result = h.join_result(j);
    assert_eq!(result.generation_id, generation + 1);
    assert_eq!(result.members.len(), 1);
    assert_eq!(
        h.heartbeat(&ids[1], generation),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_member_that_never_syncs_is_dropped() {
    let mut h = Harness::new();
    let (a, ja) = h.join_new(&["range"]);
    let (b, jb) = h.join_new(&["range"]);
    h.advance(200);
    let generation = h.join_result(ja).generation_id;
    h.join_result(jb);
    let r = h.sync(&a, generation, &[(&a, "x"), (&b, "y")]);
    assert_eq!(h.sync_result(r).assignment, Bytes::from("x"));
    // b heartbeats but never sends SyncGroup.
    for _ in 0..4 {
        h.advance(REBALANCE as u64 / 4);
        h.heartbeat(&a, generation);
        h.heartbeat(&b, generation);
    }
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.heartbeat(&b, generation),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn unused_member_ids_expire() {
    let mut h = Harness::new();
    let r = h.join(join_request("", None, &["range"]));
    let id = h.join_result(r).member_id;
    h.advance(SESSION as u64);
    let r = h.join(join_request(&id, None, &["range"]));
    assert_eq!(h.join_result(r).error, Some(ResponseError::UnknownMemberId));
}

#[test]
fn new_members_extend_the_initial_delay_up_to_the_rebalance_timeout() {
    let mut h = Harness::with(CoordinatorConfig {
        initial_rebalance_delay_ms: 1_000,
        ..CoordinatorConfig::default()
    });
    let (_, j1) = h.join_new(&["range"]);
    h.advance(900);
    let (_, j2) = h.join_new(&["range"]);
    h.advance(200);
    assert!(
        !h.answered(j1),
        "a member arrived during the delay: wait once more"
    );
    h.advance(1_000);
    assert_eq!(h.join_result(j1).members.len(), 2);
    assert_eq!(h.join_result(j2).error, None);
}

fn static_group(h: &mut Harness) -> (String, String, i32) {
    let ja = h.join(join_request("", Some("ia"), &["range"]));
    let jb = h.join(join_request("", Some("ib"), &["range"]));
    h.advance(200);
    let ra = h.join_result(ja);
    let rb = h.join_result(jb);
    assert_eq!(
        ra.error, None,
        "static members need no MEMBER_ID_REQUIRED round"
    );
    let (a, b, generation) = (ra.member_id, rb.member_id, ra.generation_id);
    let r = h.sync(&a, generation, &[(&a, "pa"), (&b, "pb")]);
    h.sync_result(r);
    (a, b, generation)
}

#[test]
fn static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
    let mut h = Harness::new();
    let (a, b, generation) = static_group(&mut h);
    assert_eq!(h.state(), GroupState::Stable);
    // b restarts: same instance id, no member id.
    let j = h.join(join_request("", Some("ib"), &["range"]));
    let result = h.join_result(j);
    assert_eq!(result.error, None);
    assert_ne!(result.member_id, b);
    assert_eq!(result.generation_id, generation, "no new generation");
    assert_eq!(result.leader_id, a);
    assert!(result.members.is_empty());
    assert_eq!(h.state(), GroupState::Stable);
    let new_b = result.member_id;
    assert_eq!(
        h.heartbeat_as(&b, Some("ib"), generation),
        Some(ResponseError::FencedInstanceId)
    );
    assert_eq!(h.heartbeat_as(&new_b, Some("ib"), generation), None);
    let r = h.sync(&new_b, generation, &[]);
    assert_eq!(h.sync_result(r).assignment, Bytes::from("pb"));
    assert_eq!(
        h.leave(&[(&b, Some("ib"))]),
        vec![Some(ResponseError::FencedInstanceId)]
    );
}

#[test]
fn static_leader_rejoin_skips_assignment_on_v9_and_hides_leadership_before() {
    let mut h = Harness::new();
    let (a, _, generation) = static_group(&mut h);
    let j = h.join(join_request("", Some("ia"), &["range"]));
    let result = h.join_result(j);
    assert_eq!(result.generation_id, generation);
    assert!(result.skip_assignment);
    assert_eq!(result.leader_id, result.member_id);
    assert_eq!(result.members.len(), 2);

    let mut old = join_request("", Some("ia"), &["range"]);
    old.supports_skip_assignment = false;
    let leader_before = result.member_id.clone();
    let j = h.join(old);
    let result = h.join_result(j);
    assert!(!result.skip_assignment);
    assert_eq!(result.leader_id, leader_before);
    assert_ne!(result.member_id, leader_before);
    assert_ne!(result.member_id, a);
    assert_eq!(h.state(), GroupState::Stable);
}

#[test]
fn static_member_rejoin_while_completing_fences_the_waiting_sync_and_rebalances() {
    let mut h = Harness::new();
    let ja = h.join(join_request("", Some("ia"), &["range"]));
    let jb = h.join(join_request("", Some("ib"), &["range"]));
    h.advance(200);
    let ra = h.join_result(ja);
    let rb = h.join_result(jb);
    let waiting = h.sync(&rb.member_id, rb.generation_id, &[]);
    let j = h.join(join_request("", Some("ib"), &["range"]));
    assert_eq!(
        h.sync_result(waiting).error,
        Some(ResponseError::FencedInstanceId)
    );
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let ja2 = h.join(join_request(&ra.member_id, Some("ia"), &["range"]));
    let r = h.join_result(j);
    assert_eq!(r.generation_id, ra.generation_id + 1);
    assert_eq!(h.join_result(ja2).members.len(), 2);
}

#[test]
fn static_member_leaves_by_instance_id() {
    let mut h = Harness::new();
    let (_, _, _) = static_group(&mut h);
    assert_eq!(h.leave(&[("", Some("ib"))]), vec![None]);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.leave(&[("", Some("nope"))]),
        vec![Some(ResponseError::UnknownMemberId)]
    );
}

#[test]
fn static_members_that_do_not_rejoin_stay_in_the_next_generation() {
    let mut h = Harness::new();
    let (a, b, generation) = static_group(&mut h);
    // b (the follower) changes its protocols: a rebalance starts; a keeps
    // heartbeating but does not rejoin.
    let j = h.join(join_request(&b, Some("ib"), &["range", "roundrobin"]));
    for _ in 0..5 {
        h.advance(REBALANCE as u64 / 6);
        assert_eq!(
            h.heartbeat_as(&a, Some("ia"), generation),
            Some(ResponseError::RebalanceInProgress)
        );
    }
    assert!(!h.answered(j));
    h.advance(REBALANCE as u64 / 6);
    let result = h.join_result(j);
    assert_eq!(result.error, None);
    assert_eq!(result.generation_id, generation + 1);
    assert_eq!(result.leader_id, b, "a joined member leads");
    assert_eq!(result.members.len(), 2, "the static member is kept");
    assert_eq!(result.protocol_name.as_deref(), Some("range"));
    assert_eq!(
        h.heartbeat_as(&a, Some("ia"), generation),
        Some(ResponseError::IllegalGeneration),
        "a learns it must rejoin"
    );
}

#[test]
fn offset_commit_checks_membership() {
    let mut h = Harness::new();
    // A simple consumer (generation -1) may commit to an unknown group: it is created.
    let (result, _) = h.c.validate_offset_commit(h.now, "simple", "", None, -1);
    assert_eq!(result.map(|_| ()), Ok(()));
    assert_eq!(
        h.c.group_state("simple").map(|s| s.0),
        Some(GroupState::Empty)
    );
    let (result, _) = h.c.validate_offset_commit(h.now, "unknown", "m", None, 3);
    assert_eq!(result, Err(ResponseError::IllegalGeneration));

    let (a, ja) = h.join_new(&["range"]);
    h.advance(200);
    let generation = h.join_result(ja).generation_id;
    let (result, _) =
        h.c.validate_offset_commit(h.now, GROUP, &a, None, generation);
    assert_eq!(
        result,
        Err(ResponseError::RebalanceInProgress),
        "completing"
    );
    let r = h.sync(&a, generation, &[]);
    h.sync_result(r);
    let (result, effects) =
        h.c.validate_offset_commit(h.now, GROUP, &a, None, generation);
    assert_eq!(result.map(|_| ()), Ok(()));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::SetTimer { key, .. }
            if key.kind == TimerKind::Session { member_id: a.as_str().into() })),
        "a commit counts as a heartbeat"
    );
    let (result, _) = h.c.validate_offset_commit(h.now, GROUP, "", None, -1);
    assert_eq!(
        result,
        Err(ResponseError::UnknownMemberId),
        "group is not empty"
    );
}

#[test]
fn only_empty_groups_can_be_deleted() {
    let mut h = Harness::new();
    let (ids, _) = h.stable_group(1);
    let (result, _) = h.c.delete_group(h.now, GROUP);
    assert_eq!(result, Err(ResponseError::NonEmptyGroup));
    h.leave(&[(&ids[0], None)]);
    assert_eq!(h.state(), GroupState::Empty);
    let (result, _) = h.c.delete_group(h.now, GROUP);
    assert_eq!(result.map(|_| ()), Ok(()));
    assert_eq!(h.state(), GroupState::Dead);
    let (result, _) = h.c.delete_group(h.now, GROUP);
    assert_eq!(result, Err(ResponseError::GroupIdNotFound));
    assert!(h.c.list().is_empty());
}

fn subscription(topics: &[&str]) -> Bytes {
    let sub = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.to_string()))
            .collect(),
    );
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&1i16.to_be_bytes());
    sub.encode(&mut buf, 1).unwrap();
    buf.freeze()
}

#[test]
fn offset_delete_is_refused_for_subscribed_topics() {
    let mut h = Harness::new();
    assert_eq!(
        h.c.offset_delete_guard(GROUP),
        Err(ResponseError::GroupIdNotFound)
    );
    let mut join = join_request("", None, &[]);
    join.require_known_member_id = false;
    join.protocols = vec![("range".into(), subscription(&["orders", "payments"]))];
    let j = h.join(join);
    h.advance(200);
    let result = h.join_result(j);
    let guard = h.c.offset_delete_guard(GROUP).unwrap();
    assert!(guard.contains("orders"));
    assert!(guard.contains("payments"));
    assert!(!guard.contains("other"));
    h.leave(&[(&result.member_id, None)]);
    assert_eq!(h.c.offset_delete_guard(GROUP), Ok(SubscribedTopics::None));
}

#[test]
fn describe_and_list_show_state_and_members() {
    let mut h = Harness::new();
    assert_eq!(h.c.describe("none").state, GroupState::Dead);
    let (_, j) = h.join_new(&["range"]);
    let described = h.c.describe(GROUP);
    assert_eq!(described.state, GroupState::PreparingRebalance);
    assert_eq!(described.protocol, "");
    assert!(described.members[0].metadata.is_empty());
    h.advance(200);
    h.join_result(j);
    let listed = h.c.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].protocol_type, "consumer");
    assert_eq!(listed[0].state, GroupState::CompletingRebalance);
    assert_eq!(
        GroupState::parse("completingrebalance"),
        Some(GroupState::CompletingRebalance)
    );
}

#[test]
fn txn_offset_commit_checks_membership_like_kafka() {
    let mut h = Harness::new();
    // v0-v2 carry no member data: any live group, created if missing.
    assert_eq!(
        h.c.validate_txn_offset_commit(h.now, "txn", None)
            .map(|_| ()),
        Ok(())
    );
    assert_eq!(h.c.group_state("txn").map(|s| s.0), Some(GroupState::Empty));
    assert_eq!(
        h.c.validate_txn_offset_commit(h.now, "", None),
        Err(ResponseError::InvalidGroupId)
    );
    let (a, b, generation) = static_group(&mut h);
    let check = |h: &mut Harness, member: &str, instance: Option<&str>, generation: i32| {
        h.c.validate_txn_offset_commit(h.now, GROUP, Some((member, instance, generation)))
            .map(|_| ())
    };
    assert_eq!(check(&mut h, &a, Some("ia"), generation), Ok(()));
    // Empty member id and generation -1 skip their checks.
    assert_eq!(check(&mut h, "", None, -1), Ok(()));
    assert_eq!(check(&mut h, &a, None, -1), Ok(()));
    assert_eq!(
        check(&mut h, &a, None, generation + 1),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        check(&mut h, "nobody", None, generation),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        check(&mut h, &b, Some("ia"), generation),
        Err(ResponseError::FencedInstanceId)
    );
}

// ---- Durable membership (GroupMetadata records) ----

impl Harness {
    /// A new coordinator (a restarted broker) at the same time, loaded from
    /// the last membership record this one stored.
    fn restarted(&self) -> Harness {
        let stored = self.stored.last().expect("a stored group").clone();
        let mut h = Harness::new();
        h.now = self.now;
        h.next_request = self.next_request;
        let effects = h.c.load_group(h.now, &Arc::from(GROUP), &stored);
        h.apply(effects);
        h
    }
}

#[test]
fn sync_answers_wait_until_the_generation_is_stored() {
    let mut h = Harness::new();
    h.hold_stores = true;
    let (a, ja) = h.join_new(&["range", "roundrobin"]);
    let (b, jb) = h.join_new(&["range"]);
    h.advance(200);
    let generation = h.join_result(ja).generation_id;
    h.join_result(jb);
    let rb = h.sync(&b, generation, &[]);
    let ra = h.sync(&a, generation, &[(&a, "pa"), (&b, "pb")]);
    assert!(
        !h.answered(ra) && !h.answered(rb),
        "nothing goes out before the record is durable"
    );
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    // Heartbeats are fine meanwhile; offset commits of the new generation wait.
    assert_eq!(h.heartbeat(&b, generation), None);
    let (checked, _) =
        h.c.validate_offset_commit(h.now, GROUP, &b, None, generation);
    assert_eq!(checked, Err(ResponseError::RebalanceInProgress));

    let stored = h.stored.last().unwrap().clone();
    assert_eq!(stored.generation_id, generation);
    assert_eq!(stored.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(stored.protocol_name.as_deref(), Some("range"));
    assert_eq!(stored.leader_id.as_deref(), Some(a.as_str()));
    let by_id: BTreeMap<&str, &Bytes> = stored
        .members
        .iter()
        .map(|m| (&*m.member_id, &m.assignment))
        .collect();
    assert_eq!(by_id[a.as_str()], &b"pa"[..]);
    assert_eq!(by_id[b.as_str()], &b"pb"[..]);
    let member_a = stored.members.iter().find(|m| *m.member_id == *a).unwrap();
    assert_eq!(member_a.protocols.len(), 2, "every protocol is kept");
    assert_eq!(member_a.session_timeout_ms, SESSION);
    assert_eq!(member_a.rebalance_timeout_ms, REBALANCE);
    assert_eq!(&*member_a.client_host, "/127.0.0.1");

    h.complete_stores(Ok(()));
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.sync_result(ra).assignment, Bytes::from("pa"));
    assert_eq!(h.sync_result(rb).assignment, Bytes::from("pb"));
}

#[test]
fn a_failed_store_answers_the_syncs_with_the_error_and_rebalances() {
    let mut h = Harness::new();
    h.hold_stores = true;
    let (a, ja) = h.join_new(&["range"]);
    let (b, jb) = h.join_new(&["range"]);
    h.advance(200);
    let generation = h.join_result(ja).generation_id;
    h.join_result(jb);
    let rb = h.sync(&b, generation, &[]);
    let ra = h.sync(&a, generation, &[(&a, "pa"), (&b, "pb")]);
    h.complete_stores(Err(ResponseError::CoordinatorNotAvailable));
    for r in [ra, rb] {
        assert_eq!(
            h.sync_result(r).error,
            Some(ResponseError::CoordinatorNotAvailable)
        );
    }
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.heartbeat(&a, generation),
        Some(ResponseError::RebalanceInProgress)
    );
}

#[test]
fn a_store_that_completes_after_a_new_rebalance_began_is_ignored() {
    let mut h = Harness::new();
    h.hold_stores = true;
    let (a, ja) = h.join_new(&["range"]);
    let (b, jb) = h.join_new(&["range"]);
    h.advance(200);
    let generation = h.join_result(ja).generation_id;
    h.join_result(jb);
    let ra = h.sync(&a, generation, &[(&a, "pa"), (&b, "pb")]);
    assert_eq!(h.leave(&[(&b, None)]), vec![None]);
    assert_eq!(
        h.sync_result(ra).error,
        Some(ResponseError::RebalanceInProgress)
    );
    h.complete_stores(Ok(()));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn a_loaded_group_keeps_its_generation_and_a_silent_member_expires() {
    let mut before = Harness::new();
    let (ids, generation) = before.stable_group(3);
    let mut h = before.restarted();
    assert_eq!(h.state(), GroupState::Stable);
    let described = h.c.describe(GROUP);
    assert_eq!(described.protocol, "range");
    assert_eq!(described.members.len(), 3);
    for m in &described.members {
        assert_eq!(m.assignment, Bytes::from(format!("to-{}", m.member_id)));
    }
    // Members go on in their generation: no rebalance, commits accepted.
    for id in &ids {
        assert_eq!(h.heartbeat(id, generation), None);
        let (checked, _) =
            h.c.validate_offset_commit(h.now, GROUP, id, None, generation);
        assert_eq!(checked.map(|_| ()), Ok(()));
    }
    // A follower that lost its SyncGroup answer gets its assignment again.
    let r = h.sync(&ids[1], generation, &[]);
    assert_eq!(
        h.sync_result(r).assignment,
        Bytes::from(format!("to-{}", ids[1]))
    );
    // ids[2] never comes back: sessions started at load, so it expires one
    // session later while the others heartbeat.
    h.advance(SESSION as u64 / 2);
    assert_eq!(h.heartbeat(&ids[0], generation), None);
    assert_eq!(h.heartbeat(&ids[1], generation), None);
    assert_eq!(h.state(), GroupState::Stable);
    h.advance(SESSION as u64 / 2);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.heartbeat(&ids[0], generation),
        Some(ResponseError::RebalanceInProgress)
    );
    let j0 = h.join(join_request(&ids[0], None, &["range"]));
    let j1 = h.join(join_request(&ids[1], None, &["range"]));
    let r0 = h.join_result(j0);
    assert_eq!(r0.generation_id, generation + 1);
    assert_eq!(
        r0.members.len(),
        2,
        "the leader sees the two that came back"
    );
    assert_eq!(h.join_result(j1).generation_id, generation + 1);
    assert_eq!(
        h.heartbeat(&ids[2], generation),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn an_empty_group_is_stored_and_loads_empty_with_its_generation() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group(1);
    let stores = h.stored.len();
    assert_eq!(h.leave(&[(&ids[0], None)]), vec![None]);
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.stored.len(), stores + 1, "going Empty is stored");
    let stored = h.stored.last().unwrap();
    assert!(stored.members.is_empty() && stored.leader_id.is_none());
    assert_eq!(stored.generation_id, generation + 1);
    assert_eq!(stored.state_timestamp_ms, h.now as i64);

    let mut again = h.restarted();
    assert_eq!(again.state(), GroupState::Empty);
    assert_eq!(
        again.c.group_state(GROUP),
        Some((GroupState::Empty, h.now)),
        "Empty since the stored time (offset expiry counts from it)"
    );
    assert_eq!(
        again.heartbeat(&ids[0], generation),
        Some(ResponseError::UnknownMemberId)
    );
    let (_, j) = again.join_new(&["range"]);
    again.advance(200);
    assert_eq!(again.join_result(j).generation_id, generation + 2);
}

#[test]
fn static_members_are_restored_and_a_new_id_is_stored_before_the_join_answer() {
    let mut h = Harness::new();
    let (a, b, generation) = static_group(&mut h);
    let mut h = h.restarted();
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.heartbeat_as(&a, Some("ia"), generation), None);
    assert_eq!(h.heartbeat_as(&b, Some("ib"), generation), None);
    // b restarts as a new client instance: it takes a new member id without
    // a rebalance, and the answer waits for the record with the new id.
    h.hold_stores = true;
    let j = h.join(join_request("", Some("ib"), &["range"]));
    assert!(!h.answered(j));
    let stored = h.stored.last().unwrap().clone();
    let new_b = stored
        .members
        .iter()
        .find(|m| m.group_instance_id.as_deref() == Some("ib"))
        .map(|m| m.member_id.to_string())
        .unwrap();
    assert_ne!(new_b, b);
    assert_eq!(stored.generation_id, generation);
    h.complete_stores(Ok(()));
    let result = h.join_result(j);
    assert_eq!(
        (result.error, result.member_id.clone()),
        (None, new_b.clone())
    );
    assert_eq!(h.state(), GroupState::Stable);
    // After another restart the new id holds the instance; the old one is fenced.
    let mut h = h.restarted();
    assert_eq!(h.heartbeat_as(&new_b, Some("ib"), generation), None);
    assert_eq!(
        h.heartbeat_as(&b, Some("ib"), generation),
        Some(ResponseError::FencedInstanceId)
    );
}

#[test]
fn a_failed_store_of_a_static_member_id_answers_the_join_with_the_error() {
    let mut h = Harness::new();
    let (a, _, generation) = static_group(&mut h);
    h.hold_stores = true;
    let j = h.join(join_request("", Some("ib"), &["range"]));
    h.complete_stores(Err(ResponseError::CoordinatorNotAvailable));
    assert_eq!(
        h.join_result(j).error,
        Some(ResponseError::CoordinatorNotAvailable)
    );
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.heartbeat_as(&a, Some("ia"), generation),
        Some(ResponseError::RebalanceInProgress)
    );
}

/// A harness whose coordinator has these limits (the rest default).
fn limited(limits: GroupLimits) -> Harness {
    Harness::with(CoordinatorConfig {
        limits,
        ..CoordinatorConfig::default()
    })
}

fn small_limits() -> GroupLimits {
    GroupLimits {
        id_max_bytes: 64,
        ..GroupLimits::default()
    }
}

#[test]
fn ids_beyond_id_max_bytes_are_refused_and_nothing_is_kept() {
    let mut h = limited(small_limits());
    let long = "x".repeat(65);
    let refused = |h: &mut Harness, join: JoinGroup| {
        let r = h.join(join);
        h.join_result(r).error
    };
    let mut join = join_request("", None, &["range"]);
    join.group_id = long.clone();
    assert_eq!(refused(&mut h, join), Some(ResponseError::InvalidGroupId));
    let join = join_request("", Some(&long), &["range"]);
    assert_eq!(refused(&mut h, join), Some(ResponseError::InvalidRequest));
    let join = join_request("", None, &[&long]);
    assert_eq!(refused(&mut h, join), Some(ResponseError::InvalidRequest));
    let mut join = join_request("", None, &["range"]);
    join.protocol_type = long.clone();
    assert_eq!(refused(&mut h, join), Some(ResponseError::InvalidRequest));
    // A member id no broker-issued id can be is simply unknown.
    let join = join_request(&long, None, &["range"]);
    assert_eq!(refused(&mut h, join), Some(ResponseError::UnknownMemberId));
    let (result, _) = h.c.validate_offset_commit(h.now, &long, "", None, -1);
    assert_eq!(result, Err(ResponseError::InvalidGroupId));
    assert_eq!(
        h.c.validate_txn_offset_commit(h.now, &long, None),
        Err(ResponseError::InvalidGroupId)
    );
    let r = h.sync("m", 1, &[]);
    assert_eq!(h.sync_result(r).error, Some(ResponseError::UnknownMemberId));
    assert!(h.c.list().is_empty(), "no group was created");
    assert_eq!(h.c.membership_bytes(), 0);
    assert!(h.timers.is_empty());

    // At the limit every id is accepted.
    let at = "y".repeat(64);
    let mut join = join_request("", Some(&at), &[&at]);
    join.group_id = at.clone();
    join.protocol_type = at.clone();
    let r = h.join(join);
    h.advance(200);
    assert_eq!(h.join_result(r).error, None);
    assert_eq!(h.c.describe(&at).members.len(), 1);
}

#[test]
fn client_ids_are_cut_and_member_ids_fit_id_max_bytes() {
    let mut h = limited(small_limits());
    let mut join = join_request("", None, &["range"]);
    join.client_id = "é".repeat(200);
    let r = h.join(join);
    let member_id = h.join_result(r).member_id;
    assert!(member_id.len() <= 64, "{} bytes", member_id.len());
    assert!(member_id.starts_with("éé"));
    let mut join = join_request(&member_id, None, &["range"]);
    join.client_id = "é".repeat(200);
    let r = h.join(join);
    h.advance(200);
    assert_eq!(h.join_result(r).error, None);
    let described = h.c.describe(GROUP);
    assert_eq!(described.members[0].member_id, member_id);
    assert_eq!(described.members[0].client_id, "é".repeat(32));
}

#[test]
fn group_max_size_counts_members_and_handed_out_ids() {
    let mut h = limited(GroupLimits {
        group_max_size: 2,
        ..GroupLimits::default()
    });
    let (a, ja) = h.join_new(&["range"]);
    let first = h.join(join_request("", None, &["range"]));
    let b = h.join_result(first).member_id;
    // a joined and b holds a handed-out id: a third is refused, in either form.
    let r = h.join(join_request("", None, &["range"]));
    assert_eq!(
        h.join_result(r).error,
        Some(ResponseError::GroupMaxSizeReached)
    );
    let r = h.join(join_request("", Some("static"), &["range"]));
    assert_eq!(
        h.join_result(r).error,
        Some(ResponseError::GroupMaxSizeReached)
    );
    // The handed-out id completes its join; both rejoin as often as they like.
    let jb = h.join(join_request(&b, None, &["range"]));
    h.advance(200);
    assert_eq!(h.join_result(ja).error, None);
    let generation = h.join_result(jb).generation_id;
    for member in [&a, &b] {
        let r = h.join(join_request(member, None, &["range"]));
        let result = h.join_result(r);
        assert_eq!((result.error, result.generation_id), (None, generation));
    }
}

#[test]
fn group_max_bytes_refuses_growth_but_never_a_rejoin_that_does_not_grow() {
    let mut h = limited(GroupLimits {
        group_max_bytes: 4096,
        ..GroupLimits::default()
    });
    let big = |n: usize| vec![("range".to_string(), Bytes::from(vec![7u8; n]))];
    let mut join = join_request("", Some("a"), &[]);
    join.protocols = big(2000);
    let ja = h.join(join.clone());
    h.advance(200);
    let a = h.join_result(ja).member_id;
    // A second member of the same size does not fit.
    let mut second = join_request("", Some("b"), &[]);
    second.protocols = big(2000);
    let r = h.join(second);
    assert_eq!(
        h.join_result(r).error,
        Some(ResponseError::GroupMaxSizeReached)
    );
    // Nor does a's own metadata growing past the limit.
    let mut grown = join_request(&a, Some("a"), &[]);
    grown.protocols = big(5000);
    let r = h.join(grown);
    assert_eq!(
        h.join_result(r).error,
        Some(ResponseError::GroupMaxSizeReached)
    );
    // The same metadata again, or less, is always accepted.
    let mut same = join_request(&a, Some("a"), &[]);
    same.protocols = big(2000);
    let r = h.join(same);
    h.advance(200);
    assert_eq!(h.join_result(r).error, None);
    assert!(h.c.describe(GROUP).members.len() == 1);
}

#[test]
fn an_assignment_beyond_group_max_bytes_fails_the_generation_and_keeps_nothing() {
    let mut h = limited(GroupLimits {
        group_max_bytes: 4096,
        ..GroupLimits::default()
    });
    let ja = h.join(join_request("", Some("ia"), &["range"]));
    let jb = h.join(join_request("", Some("ib"), &["range"]));
    h.advance(200);
    let (a, generation) = {
        let ra = h.join_result(ja);
        (ra.member_id, ra.generation_id)
    };
    let b = h.join_result(jb).member_id;
    let follower = h.sync(&b, generation, &[]);
    let huge = "z".repeat(4000);
    let stored_before = h.stored.len();
    let leader = h.sync(&a, generation, &[(&a, &huge), (&b, &huge)]);
    for r in [leader, follower] {
        assert_eq!(
            h.sync_result(r).error,
            Some(ResponseError::GroupMaxSizeReached)
        );
    }
    assert_eq!(h.stored.len(), stored_before, "nothing was stored");
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    // A generation whose assignment fits completes.
    let ja = h.join(join_request(&a, Some("ia"), &["range"]));
    let jb = h.join(join_request(&b, Some("ib"), &["range"]));
    let generation = h.join_result(ja).generation_id;
    assert_eq!(h.join_result(jb).generation_id, generation);
    let r = h.sync(&a, generation, &[(&a, "pa"), (&b, "pb")]);
    assert_eq!(h.sync_result(r).assignment, Bytes::from("pa"));
    assert_eq!(h.state(), GroupState::Stable);
}

#[test]
fn group_state_max_bytes_bounds_every_group_and_offset_together() {
    let mut h = limited(GroupLimits {
        state_max_bytes: 10_000,
        ..GroupLimits::default()
    });
    let mut created = 0;
    loop {
        let mut join = join_request("", Some("i"), &["range"]);
        join.group_id = format!("group-{created:04}");
        let r = h.join(join);
        h.advance(200);
        match h.join_result(r).error {
            None => created += 1,
            Some(error) => {
                assert_eq!(error, ResponseError::GroupMaxSizeReached);
                break;
            }
        }
    }
    assert!(created > 5, "{created} groups");
    assert!(h.c.membership_bytes() <= 10_000);
    let used = h.c.membership_bytes();
    // What is left is for offsets; an existing group may commit into it, a new one
    // costs its own entry too.
    let room = 10_000 - used;
    assert_eq!(h.c.admit_offsets("group-0000", room), Ok(()));
    assert_eq!(
        h.c.admit_offsets("group-0000", room + 1),
        Err(ResponseError::InvalidCommitOffsetSize)
    );
    assert_eq!(
        h.c.admit_offsets("new", room),
        Err(ResponseError::InvalidCommitOffsetSize)
    );
    h.c.set_offsets_bytes(room);
    assert_eq!(h.c.admit_offsets("group-0000", 0), Ok(()), "no growth");
    let r = h.join(join_request("", Some("j"), &["range"]));
    h.advance(200);
    assert_eq!(
        h.join_result(r).error,
        Some(ResponseError::GroupMaxSizeReached)
    );
    // Members leaving and groups going free the room again.
    h.c.set_offsets_bytes(0);
    h.advance(2 * SESSION as u64);
    let free: Vec<String> = h.c.list().into_iter().map(|g| g.group_id).collect();
    for group in &free {
        assert!(h.c.remove_group_if_empty(group).is_some());
    }
    assert_eq!(h.c.membership_bytes(), 0);
}

#[test]
fn stored_membership_is_shared_with_the_state_machine_not_copied() {
    use super::metadata::Group;
    use super::offsets::StoredMember;
    let stored = StoredGroup {
        protocol_type: Some("consumer".into()),
        generation_id: 3,
        protocol_name: Some("range".into()),
        leader_id: Some("m".into()),
        state_timestamp_ms: 1,
        members: vec![StoredMember {
            member_id: "m".into(),
            group_instance_id: Some("i".into()),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            protocols: vec![("range".into(), Bytes::from(vec![1u8; 1000]))],
            assignment: Bytes::from(vec![2u8; 1000]),
        }],
    };
    let id: Arc<str> = Arc::from(GROUP);
    let group = Group::from_stored(id.clone(), &stored, 5);
    assert!(Arc::ptr_eq(&group.group_id, &id));
    let member = &group.members["m"];
    let original = &stored.members[0];
    assert!(Arc::ptr_eq(&member.member_id, &original.member_id));
    assert!(Arc::ptr_eq(&member.client_id, &original.client_id));
    assert_eq!(
        member.protocols[0].1.as_ptr(),
        original.protocols[0].1.as_ptr()
    );
    assert_eq!(member.assignment.as_ptr(), original.assignment.as_ptr());
    // And back: the record a store writes shares the member's fields.
    let again = group.to_stored(6);
    assert!(Arc::ptr_eq(&again.members[0].member_id, &member.member_id));
    assert_eq!(
        again.members[0].assignment.as_ptr(),
        member.assignment.as_ptr()
    );
}
