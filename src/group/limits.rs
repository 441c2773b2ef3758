//! What clients can make the group coordinator hold, and what each thing costs.
//!
//! Every group, member, pending member id and committed or pending offset has a *cost*
//! in bytes: the bytes of its client-chosen strings and byte fields (ids, protocol
//! names and metadata, assignments, offset metadata) plus a fixed overhead per entry for
//! the maps that hold it. Costs are what the limits below bound; they approximate the
//! memory held (each string and byte field is held once: ids are shared `Arc<str>`s and
//! metadata shared `Bytes` between the state machine, the offsets table and the stored
//! membership records).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

// The overheads below are what the release build's allocations measure, roughly
// (`tools/scripts/group-memory.py`): map entries and nodes, the structs, the timers.

/// Cost of a group entry besides its strings: its state and the map entries holding
/// it in the state machine and the offsets table.
pub const GROUP_OVERHEAD: u64 = 512;
/// Cost of a member entry besides its strings and byte fields: the member, its map
/// slots and its timers.
pub const MEMBER_OVERHEAD: u64 = 384;
/// Cost of one (protocol name, metadata) pair besides its bytes.
pub const PROTOCOL_OVERHEAD: u64 = 64;
/// Cost of a member id handed out with MEMBER_ID_REQUIRED besides its bytes.
pub const PENDING_MEMBER_OVERHEAD: u64 = 128;
/// Cost of a committed or pending offset besides its topic name and metadata.
pub const OFFSET_OVERHEAD: u64 = 128;

/// Length of the `-<uuid>` suffix of a member id.
const MEMBER_ID_SUFFIX_LEN: usize = 37;

/// Limits on what clients can make the group coordinator hold (broker settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLimits {
    /// `id.max.bytes`: the longest group id, group instance id, protocol type or
    /// protocol name a request may store. Client ids are kept cut to it, and member
    /// ids (client id + `-` + a UUID) never exceed it.
    pub id_max_bytes: usize,
    /// `group.max.size`: members of one group, with the member ids handed out by
    /// MEMBER_ID_REQUIRED that have not joined yet.
    pub group_max_size: usize,
    /// `group.max.bytes`: the cost of one group's membership (ids, protocol
    /// metadata, assignments). Its stored record must fit the record log.
    pub group_max_bytes: u64,
    /// `group.state.max.bytes`: the cost of every group and every committed and
    /// pending offset together, broker-wide.
    pub state_max_bytes: u64,
    /// `offset.metadata.max.bytes`: the longest metadata string of a committed offset.
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            id_max_bytes: 1024,
            group_max_size: 1000,
            group_max_bytes: 4 * 1024 * 1024,
            state_max_bytes: 512 * 1024 * 1024,
            offset_metadata_max_bytes: 4096,
        }
    }
}

impl GroupLimits {
    /// INVALID_GROUP_ID for an empty group id or one longer than `id.max.bytes`.
    pub fn check_group_id(&self, group_id: &str) -> Result<(), ResponseError> {
        if group_id.is_empty() || group_id.len() > self.id_max_bytes {
            return Err(ResponseError::InvalidGroupId);
        }
        Ok(())
    }

    /// Whether `id` (an instance id, protocol type or name) fits `id.max.bytes`.
    pub fn id_fits(&self, id: &str) -> bool {
        id.len() <= self.id_max_bytes
    }

    /// The client id as the coordinator keeps it: cut to `id.max.bytes`.
    pub fn client_id<'a>(&self, client_id: &'a str) -> &'a str {
        truncate(client_id, self.id_max_bytes)
    }

    /// A new member id as Kafka builds it (`<client id>-<uuid>`), with the client id
    /// cut so that the whole id fits `id.max.bytes`.
    pub fn new_member_id(&self, client_id: &str) -> Arc<str> {
        Arc::from(format!(
            "{}-{}",
            self.member_id_prefix(client_id),
            uuid::Uuid::new_v4()
        ))
    }

    /// The length of the member ids [`GroupLimits::new_member_id`] builds.
    pub fn new_member_id_len(&self, client_id: &str) -> usize {
        self.member_id_prefix(client_id).len() + MEMBER_ID_SUFFIX_LEN
    }

    fn member_id_prefix<'a>(&self, client_id: &'a str) -> &'a str {
        truncate(
            client_id,
            self.id_max_bytes.saturating_sub(MEMBER_ID_SUFFIX_LEN),
        )
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Bytes of a string, as a cost.
pub fn len(s: &str) -> u64 {
    s.len() as u64
}

/// Cost of a member's protocols.
pub fn protocols_cost<S: AsRef<str>>(protocols: &[(S, Bytes)]) -> u64 {
    protocols
        .iter()
        .map(|(name, metadata)| PROTOCOL_OVERHEAD + len(name.as_ref()) + metadata.len() as u64)
        .sum()
}

/// Cost of one committed or pending offset of `topic` with `metadata`.
pub fn offset_cost(topic: &str, metadata: Option<&str>) -> u64 {
    OFFSET_OVERHEAD + len(topic) + metadata.map_or(0, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_fit_the_limit_and_keep_a_char_boundary() {
        let limits = GroupLimits {
            id_max_bytes: 64,
            ..GroupLimits::default()
        };
        let long = "é".repeat(100);
        let id = limits.new_member_id(&long);
        assert!(id.len() <= 64, "{} bytes", id.len());
        assert!(id.starts_with("éé"));
        assert_eq!(limits.new_member_id("c").len(), 1 + MEMBER_ID_SUFFIX_LEN);
        assert_eq!(limits.new_member_id_len(&long), id.len());
        assert_eq!(limits.client_id(&long).len(), 64);
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn group_ids_must_be_non_empty_and_fit() {
        let limits = GroupLimits {
            id_max_bytes: 3,
            ..GroupLimits::default()
        };
        assert_eq!(limits.check_group_id("abc"), Ok(()));
        assert_eq!(
            limits.check_group_id("abcd"),
            Err(ResponseError::InvalidGroupId)
        );
        assert_eq!(
            limits.check_group_id(""),
            Err(ResponseError::InvalidGroupId)
        );
    }
}
