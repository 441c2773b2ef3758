//! The consumer group coordinator.
//!
//! - [`coordinator`]: the classic JoinGroup/SyncGroup state machine, pure:
//!   events in (with the time), [`events::Effect`]s out.
//! - [`offsets`]: committed offsets, durable in an internal log under
//!   `<data_dir>/_strata/offsets/`.

pub mod coordinator;
pub mod events;
pub mod metadata;
pub mod offsets;

pub use coordinator::{
    CoordinatorConfig, GroupCoordinator, GroupDescription, GroupListing, MemberDescription,
    SubscribedTopics,
};
pub use events::{Effect, RequestId, Response, TimerKey, TimerKind};
pub use metadata::GroupState;

#[cfg(test)]
mod tests;
