//! Strata operator tools: the offset/replay CLI and the `strata-bench` load generator.

pub mod bench;
pub mod murmur2;
pub mod offsets;
