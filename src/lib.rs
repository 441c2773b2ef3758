//! Strata: a durable, partitioned commit-log broker that speaks the Apache Kafka wire
//! protocol. The `strata` binary is a thin wrapper around [`start`].

pub mod api;
pub mod broker;
mod clock;
pub mod config;
pub mod group;
pub mod server;
pub mod txn;

pub use config::Config;
pub use server::{start, RunningBroker, StartError};
