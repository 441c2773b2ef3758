//! A small async Kafka protocol client: requests and responses are the typed messages of
//! the `kafka-protocol` crate, carried over one tokio TCP connection per broker.
//!
//! - [`frame`]: the bytes of a request (`[length][header][body]`) and of a response
//!   frame, with the frame size limit applied before anything is allocated.
//! - [`versions`]: the API versions a broker advertises (ApiVersions) and the highest
//!   version both sides speak.
//! - [`Connection`]: correlation ids, request/response round trips with a timeout, and
//!   [`Connection::into_split`] into a [`RequestWriter`] and a [`ResponseReader`] for
//!   pipelining (Kafka answers the requests of one connection in order).
//!
//! Used by `strata-offsets`, `strata-bench` and the broker's tests; shaped to become the
//! replica fetcher and the cross-broker transaction-marker writer (it is `Send`, async and
//! knows nothing of the broker).

pub mod connection;
pub mod error;
pub mod frame;
pub mod versions;

pub use connection::{Config, Connection, RequestWriter, ResponseReader, TrailingBytes};
pub use error::{Error, Result};
pub use versions::{negotiate, ApiVersionTable};
