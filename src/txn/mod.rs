//! The transaction coordinator (KIP-98): transactional ids, their producer ids and
//! epochs, and the two-phase end of every transaction.
//!
//! - [`metadata`]: the state of one transactional id and its transitions, pure.
//! - [`log`]: the transaction log, durable under `<data_dir>/_strata/transactions/`.
//! - [`coordinator`]: [`TxnCoordinator`], which serves the API handlers, writes the
//!   transaction markers and aborts transactions that outlive their timeout.

pub mod coordinator;
pub mod log;
pub mod metadata;

pub use coordinator::{TxnConfig, TxnCoordinator, TxnDescription};
pub use metadata::{ExpectedProducer, TxnError, TxnMetadata, TxnState};

#[cfg(test)]
mod tests;
