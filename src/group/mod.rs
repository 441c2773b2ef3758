//! The consumer group coordinator.
//!
//! - [`coordinator`]: the classic JoinGroup/SyncGroup state machine, pure:
//!   events in (with the time), [`events::Effect`]s out.
//! - [`offsets`]: committed offsets and group membership records, durable in
//!   an internal log under `<data_dir>/_strata/offsets/`.
//! - [`limits`]: what clients can make the coordinator hold, and its cost.
//! - [`service`]: the tokio driver that owns both and serves the API handlers.

pub mod coordinator;
pub mod events;
pub mod limits;
pub mod metadata;
pub mod offsets;
pub mod service;

pub use coordinator::{
    CoordinatorConfig, GroupCoordinator, GroupDescription, GroupListing, MemberDescription,
    SubscribedTopics,
};
pub use events::{Effect, RequestId, Response, TimerKey, TimerKind};
pub use limits::GroupLimits;
pub use metadata::GroupState;
pub use service::{GroupService, GroupServiceConfig};

#[cfg(test)]
mod tests;
