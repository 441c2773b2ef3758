//! Typed errors of `strata-offsets`. Each one is printed as a single line on stderr and
//! turns into a non-zero exit status (see the binary's `main`).

use std::path::PathBuf;

use kafka_protocol::error::ResponseError;

/// Everything that can make a `strata-offsets` command fail.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// No TCP connection could be made (refused, unreachable, DNS, timeout).
    #[error("broker {addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// An established connection broke or answered with bytes we cannot parse.
    #[error("connection to {addr} failed: {reason}")]
    Connection { addr: String, reason: String },
    /// The broker and this tool share no version of an API.
    #[error("broker {addr} supports {api} v{broker_min}-v{broker_max}, this tool speaks v{tool_min}-v{tool_max}")]
    NoCommonVersion {
        addr: String,
        api: &'static str,
        broker_min: i16,
        broker_max: i16,
        tool_min: i16,
        tool_max: i16,
    },
    /// The broker does not offer an API at all (e.g. an older Kafka without it).
    #[error("broker {addr} does not support {api}")]
    Unsupported { addr: String, api: &'static str },
    /// The broker does not know the topic.
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    /// The topic exists but not that partition.
    #[error("unknown partition {topic}:{partition}")]
    UnknownPartition { topic: String, partition: i32 },
    /// The group does not exist (no members and no committed offsets).
    #[error("unknown group '{0}'")]
    UnknownGroup(String),
    /// The transaction coordinator does not know the transactional id.
    #[error("unknown transactional id '{0}'")]
    UnknownTransaction(String),
    /// A Kafka error code in a response.
    #[error("{context}: {}", kafka_error_text(*.code))]
    Kafka { context: String, code: i16 },
    /// A time or duration argument that does not parse.
    #[error("invalid time '{input}': {reason}")]
    InvalidTime { input: String, reason: String },
    /// Arguments that parse but make no sense together.
    #[error("{0}")]
    Usage(String),
    /// `groups reset --execute` while consumers are in the group.
    #[error("group '{group}' is {state} with {members} active member(s); stop its consumers before resetting offsets")]
    GroupActive {
        group: String,
        state: String,
        members: usize,
    },
    /// A problem found by `log dump` / `log verify`: the file and byte position.
    #[error("{}: byte {position}: {reason}", .path.display())]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// A file could not be read.
    #[error("{}: {source}", .path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Records that kafka-protocol could not decode.
    #[error("cannot decode records of {context}: {reason}")]
    Decode { context: String, reason: String },
    /// Writing the command's output failed (e.g. a closed pipe).
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

impl From<strata_client::Error> for ToolError {
    /// The client's errors as the tool's: one line naming the broker.
    fn from(e: strata_client::Error) -> ToolError {
        use strata_client::Error as E;
        match e {
            E::Unreachable { addr, reason } => ToolError::Unreachable { addr, reason },
            E::Unsupported { addr, api } => ToolError::Unsupported { addr, api },
            E::NoCommonVersion {
                addr,
                api,
                broker_min,
                broker_max,
                client_min,
                client_max,
            } => ToolError::NoCommonVersion {
                addr,
                api,
                broker_min,
                broker_max,
                tool_min: client_min,
                tool_max: client_max,
            },
            E::Io { addr, source } => ToolError::Connection {
                addr,
                reason: source.to_string(),
            },
            E::Timeout {
                addr,
                api_key,
                timeout,
            } => ToolError::Connection {
                addr,
                reason: format!("no response to api {api_key} within {}s", timeout.as_secs()),
            },
            E::FrameLength { addr, len, .. } => ToolError::Connection {
                addr,
                reason: format!("response frame length {len}"),
            },
            E::Encode {
                addr,
                api_key,
                message,
                ..
            } => ToolError::Connection {
                addr,
                reason: format!("encoding request api {api_key}: {message}"),
            },
            E::Decode {
                addr,
                api_key,
                message,
                ..
            } => ToolError::Connection {
                addr,
                reason: format!("decoding response to api {api_key}: {message}"),
            },
            E::TrailingBytes {
                addr,
                api_key,
                left,
                ..
            } => ToolError::Connection {
                addr,
                reason: format!("{left} bytes after the response to api {api_key}"),
            },
            E::Correlation {
                addr,
                expected,
                got,
            } => ToolError::Connection {
                addr,
                reason: format!("correlation id {got} in response, expected {expected}"),
            },
            E::ApiVersions { addr, code } => ToolError::Kafka {
                context: format!("ApiVersions from {addr}"),
                code,
            },
        }
    }
}

/// Result of a `strata-offsets` operation.
pub type Result<T> = std::result::Result<T, ToolError>;

/// `"<code> <NAME-ish description>"` for a Kafka error code.
pub fn kafka_error_text(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("Kafka error {code} ({e:?}: {e})"),
        None => "no error".to_string(),
    }
}

impl ToolError {
    /// A Kafka error when `code` is non-zero.
    pub fn check(code: i16, context: impl FnOnce() -> String) -> Result<()> {
        if code == 0 {
            Ok(())
        } else {
            Err(ToolError::Kafka {
                context: context(),
                code,
            })
        }
    }
}
