//! Committed offsets: an append-only log of versioned records (`log`, `record`)
//! and the in-memory table rebuilt from it (`table`).

mod log;
mod record;
mod table;

pub use log::{OffsetLog, OffsetLogError};
pub use record::{CommittedOffset, OffsetRecord, StoredGroup, StoredMember};
pub use table::{GroupActivity, OffsetTable, PartitionOffsets, PendingTxn};
