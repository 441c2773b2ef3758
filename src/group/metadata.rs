//! The state the coordinator keeps per group and per member.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

use super::events::RequestId;
use super::limits::{self, GROUP_OVERHEAD, MEMBER_OVERHEAD, PENDING_MEMBER_OVERHEAD};
use super::offsets::{StoredGroup, StoredMember};

/// The classic group states, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; the group may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join before a new generation starts.
    PreparingRebalance,
    /// A generation started; waiting for the leader's SyncGroup with the assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// The group was deleted.
    Dead,
}

impl GroupState {
    /// The name Kafka uses on the wire (DescribeGroups, ListGroups).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Parses a wire name, case-insensitively (ListGroups v4 states filter).
    pub fn parse(name: &str) -> Option<GroupState> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member of a group. Its ids and byte fields are shared (not copied) with
/// the timers, the group's indexes and its stored membership record.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub member_id: Arc<str>,
    pub group_instance_id: Option<Arc<str>>,
    /// Cut to `id.max.bytes`.
    pub client_id: Arc<str>,
    pub client_host: Arc<str>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(Arc<str>, Bytes)>,
    /// The member's assignment in the current generation (empty until SyncGroup).
    pub assignment: Bytes,
    /// The JoinGroup request waiting for the join phase to end.
    pub awaiting_join: Option<RequestId>,
    /// Whether the waiting JoinGroup speaks v9+ (may skip assignment).
    pub join_supports_skip: bool,
    /// The SyncGroup request waiting for the leader's assignment.
    pub awaiting_sync: Option<RequestId>,
    /// Joined but never completed a join: its session is the new-member join timeout.
    pub is_new: bool,
}

impl Member {
    /// Whether the member joined with exactly these protocols.
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols.len() == protocols.len()
            && self.protocols.iter().zip(protocols).all(
                |((name, meta), (other_name, other_meta))| {
                    **name == **other_name && meta == other_meta
                },
            )
    }

    /// The member's cost (see `group::limits`): its ids, protocols and assignment.
    pub fn cost(&self) -> u64 {
        MEMBER_OVERHEAD
            + limits::len(&self.member_id)
            + self.group_instance_id.as_deref().map_or(0, limits::len)
            + limits::len(&self.client_id)
            + limits::len(&self.client_host)
            + limits::protocols_cost(&self.protocols)
            + self.assignment.len() as u64
    }

    /// The member's metadata for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| &**name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// The member's first choice among `candidates`.
    fn vote<'a>(&'a self, candidates: &BTreeSet<&str>) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|(name, _)| &**name)
            .find(|name| candidates.contains(name))
    }
}

/// Which delayed operation ends the current join phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinPhase {
    /// The group was empty: wait `group.initial.rebalance.delay.ms` steps while new
    /// members keep arriving, at most the rebalance timeout in total.
    InitialDelay { remaining_ms: u64 },
    /// Wait until every member has rejoined or the rebalance timeout passes.
    Delayed,
}

/// One consumer group. Its id is shared with the offsets table and the timers.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub group_id: Arc<str>,
    pub state: GroupState,
    /// When the group entered its current state (Unix ms).
    pub state_since_ms: u64,
    pub generation_id: i32,
    pub protocol_type: Option<Arc<str>>,
    pub protocol_name: Option<Arc<str>>,
    pub leader_id: Option<Arc<str>>,
    /// Members by member id (boxed: a map node holds 11 entries, most of them empty
    /// in a small group).
    pub members: BTreeMap<Arc<str>, Box<Member>>,
    /// Member ids handed out with MEMBER_ID_REQUIRED that have not joined yet.
    pub pending_members: BTreeSet<Arc<str>>,
    /// `group.instance.id` → member id of the static member holding it.
    pub static_members: HashMap<Arc<str>, Arc<str>>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pub pending_sync: BTreeSet<Arc<str>>,
    /// Set while an initial delay runs and a new member arrived in it.
    pub new_member_added: bool,
    pub join_phase: Option<JoinPhase>,
    /// The generation whose leader assignment is being stored: the group stays
    /// CompletingRebalance until the store is durable (then Stable).
    pub storing: Option<i32>,
    /// The group's cost as last accounted in the coordinator's total.
    pub accounted: u64,
}

impl Group {
    pub fn new(group_id: Arc<str>, now: u64) -> Self {
        Group {
            group_id,
            state: GroupState::Empty,
            state_since_ms: now,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            pending_members: BTreeSet::new(),
            static_members: HashMap::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            join_phase: None,
            storing: None,
            accounted: 0,
        }
    }

    /// The cost of a group with no members (see `group::limits`).
    pub fn base_cost(group_id: &str) -> u64 {
        GROUP_OVERHEAD + limits::len(group_id)
    }

    /// The group's cost: its id and protocol names, its members, and the member
    /// ids handed out that have not joined yet.
    pub fn cost(&self) -> u64 {
        Group::base_cost(&self.group_id)
            + self.protocol_type.as_deref().map_or(0, limits::len)
            + self.protocol_name.as_deref().map_or(0, limits::len)
            + self.members.values().map(|m| m.cost()).sum::<u64>()
            + self
                .pending_members
                .iter()
                .map(|m| PENDING_MEMBER_OVERHEAD + limits::len(m))
                .sum::<u64>()
    }

    /// The group's membership as a durable record: the current generation's
    /// members with their assignments (none when Empty), stamped `now`.
    pub fn to_stored(&self, now: u64) -> StoredGroup {
        StoredGroup {
            protocol_type: self.protocol_type.clone(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone(),
            state_timestamp_ms: i64::try_from(now).unwrap_or(i64::MAX),
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: m.protocols.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// A group rebuilt from its stored record at start: Stable with the stored
    /// generation's members (none waiting on anything), or Empty since the
    /// record's time when it has none. The caller arms the members' sessions.
    /// Ids and byte fields are shared with `stored`, not copied.
    pub fn from_stored(group_id: Arc<str>, stored: &StoredGroup, now: u64) -> Self {
        let mut group = Group::new(group_id, now);
        group.generation_id = stored.generation_id;
        group.protocol_type = stored.protocol_type.clone();
        if stored.members.is_empty() {
            group.state_since_ms = u64::try_from(stored.state_timestamp_ms).unwrap_or(0);
            return group;
        }
        for m in &stored.members {
            if let Some(instance) = &m.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            group.members.insert(
                m.member_id.clone(),
                Box::new(Member {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: m.protocols.clone(),
                    assignment: m.assignment.clone(),
                    awaiting_join: None,
                    join_supports_skip: false,
                    awaiting_sync: None,
                    is_new: false,
                }),
            );
        }
        group.protocol_name = stored.protocol_name.clone();
        group.leader_id = stored
            .leader_id
            .clone()
            .filter(|l| group.members.contains_key(l))
            .or_else(|| group.members.keys().next().cloned());
        group.state = GroupState::Stable;
        group
    }

    pub fn transition(&mut self, state: GroupState, now: u64) {
        self.state = state;
        self.state_since_ms = now;
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// The largest rebalance timeout of the members (ms); 0 for no members.
    pub fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0)
    }

    /// Protocols every current member supports.
    fn candidate_protocols(&self) -> BTreeSet<&str> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            let mut seen = BTreeSet::new();
            for (name, _) in &member.protocols {
                if seen.insert(&**name) {
                    *counts.entry(&**name).or_default() += 1;
                }
            }
        }
        counts
            .into_iter()
            .filter(|(_, n)| *n == self.members.len())
            .map(|(name, _)| name)
            .collect()
    }

    /// Whether a member with this protocol type and these protocols may join:
    /// the first member sets the type; later ones must share the type and at
    /// least one protocol with every current member.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            !protocol_type.is_empty() && !protocols.is_empty()
        } else {
            let candidates = self.candidate_protocols();
            self.protocol_type.as_deref() == Some(protocol_type)
                && protocols
                    .iter()
                    .any(|(name, _)| candidates.contains(name.as_str()))
        }
    }

    /// Chooses the protocol of the next generation as Kafka does: among the
    /// protocols every member supports, each member votes for its most preferred
    /// one and the most votes win (ties go to the leader's preference order).
    pub fn select_protocol(&self) -> Option<Arc<str>> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(choice) = member.vote(&candidates) {
                *votes.entry(choice).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        let preference: Vec<&str> = self
            .leader_id
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().next())
            .map(|m| m.protocols.iter().map(|(n, _)| &**n).collect())
            .unwrap_or_default();
        preference
            .into_iter()
            .find(|p| votes.get(p) == Some(&best))
            .or_else(|| votes.iter().find(|(_, n)| **n == best).map(|(p, _)| *p))
            .map(Arc::from)
    }

    /// Every member joined and no member id handed out is still outstanding.
    pub fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// The topics the group consumes, read from the members' consumer-protocol
    /// subscriptions for the chosen protocol; `None` when the group is not a
    /// consumer group or a subscription cannot be read.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            let mut metadata = member.metadata(protocol);
            if metadata.len() < 2 {
                return None;
            }
            let version = i16::from_be_bytes([metadata[0], metadata[1]]);
            let mut body = metadata.split_off(2);
            let subscription =
                ConsumerProtocolSubscription::decode(&mut body, version.clamp(0, 3)).ok()?;
            topics.extend(subscription.topics.iter().map(|t| t.to_string()));
        }
        Some(topics)
    }
}
