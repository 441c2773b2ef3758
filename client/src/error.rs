//! Errors of the client; each names the broker address concerned.

use std::time::Duration;

/// Why a connection, a request or a response failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No TCP connection could be made (refused, unreachable, DNS, timeout).
    #[error("broker {addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// Reading or writing an established connection failed (closed, reset).
    #[error("connection to {addr} failed: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// No response within the request timeout.
    #[error("broker {addr}: no response to api {api_key} within {timeout:?}")]
    Timeout {
        addr: String,
        api_key: i16,
        timeout: Duration,
    },
    /// A response frame longer than the limit, or with a negative length.
    #[error("broker {addr}: response frame length {len}, the limit is {max} bytes")]
    FrameLength { addr: String, len: i32, max: usize },
    /// The request could not be encoded at that version.
    #[error("encoding api {api_key} v{version} for {addr}: {message}")]
    Encode {
        addr: String,
        api_key: i16,
        version: i16,
        message: String,
    },
    /// The response did not decode at the version it was asked at.
    #[error("decoding the response to api {api_key} v{version} from {addr}: {message}")]
    Decode {
        addr: String,
        api_key: i16,
        version: i16,
        message: String,
    },
    /// Bytes left after a decoded response (with [`crate::TrailingBytes::Reject`]).
    #[error("broker {addr}: {left} bytes left after the response to api {api_key} v{version}")]
    TrailingBytes {
        addr: String,
        api_key: i16,
        version: i16,
        left: usize,
    },
    /// A response out of request order.
    #[error("broker {addr}: correlation id {got} in the response, expected {expected}")]
    Correlation {
        addr: String,
        expected: i32,
        got: i32,
    },
    /// The broker does not offer the API at all.
    #[error("broker {addr} does not support {api}")]
    Unsupported { addr: String, api: &'static str },
    /// The broker and this client share no version of the API.
    #[error("broker {addr} supports {api} v{broker_min}-v{broker_max}, this client speaks v{client_min}-v{client_max}")]
    NoCommonVersion {
        addr: String,
        api: &'static str,
        broker_min: i16,
        broker_max: i16,
        client_min: i16,
        client_max: i16,
    },
    /// ApiVersions answered with an error code.
    #[error("broker {addr}: ApiVersions failed with error code {code}")]
    ApiVersions { addr: String, code: i16 },
}

/// Result of the client's operations.
pub type Result<T> = std::result::Result<T, Error>;
