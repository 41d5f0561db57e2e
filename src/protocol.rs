//! The wire protocol: JSON-RPC 2.0 messages exchanged on `/ws/mcp`, as serde
//! types shared by the server and the client.
//!
//! This module knows nothing of sockets or processes; it only says what the
//! frames look like, which error codes exist, and how an incoming text frame
//! is classified into a request or a protocol error. Beside the frames:
//! the readiness line, the `/health` document (`health`) and where a server
//! is reached (`endpoint`).

mod batch_read;
mod info;
mod output;
mod ready;
mod response;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

mod endpoint;
mod error;
mod health;
mod request;

pub use endpoint::{Endpoint, EndpointError, Scheme, HEALTH_PATH, WS_PATH};
pub use error::{ErrorCode, RpcError};
pub use health::{Health, Healthz, CCX_SERVICE, CC_EXECUTOR_SERVICE};
pub use request::{parse_request, Rejection, Request};

pub use info::*;
pub use output::{Data, Encoding, Output, StreamKind};
pub use ready::*;
pub use response::*;

/// The only JSON-RPC version spoken.
pub const JSONRPC_VERSION: &str = "2.0";

/// What the server announces it can do in `connected`.
pub const CAPABILITIES: [&str; 4] = ["execute", "control", "stream", BATCHED_OUTPUT];
/// The capability that says `execute` takes `framing: "batched"` (see
/// [`Framing`]); cc_executor does not announce it.
pub const BATCHED_OUTPUT: &str = "batched_output";
/// What a draining server (SIGTERM received) answers a new session: a
/// WebSocket upgrade, or an `initialize` on `/mcp`.
pub const DRAINING_NO_SESSION: &str =
    "server is draining (SIGTERM received): it takes no new sessions; connect to another replica";
/// What a draining server answers an `execute`, on either endpoint.
pub const DRAINING_NO_COMMAND: &str =
    "server is draining (SIGTERM received): it starts no new command; reconnect to another replica";

/// Method names, as they appear on the wire.
pub mod method {
    pub const CONNECTED: &str = "connected";
    pub const EXECUTE: &str = "execute";
    pub const CONTROL: &str = "control";
    pub const PROCESS_STARTED: &str = "process.started";
    pub const PROCESS_OUTPUT: &str = "process.output";
    pub const PROCESS_COMPLETED: &str = "process.completed";
    pub const PROCESS_PAUSED: &str = "process.paused";
    pub const PROCESS_RESUMED: &str = "process.resumed";
    /// cc_executor's spelling, kept on the wire.
    pub const PROCESS_CANCELED: &str = "process.canceled";
    pub const SERVER_INFO: &str = "server.info";
    /// cc_executor's application-level heartbeat: the server sends `ping`
    /// notifications, clients may answer with a `pong` request.
    pub const PING: &str = "ping";
    pub const PONG: &str = "pong";
    /// cc_executor's hook-status query; accepted without error.
    pub const HOOK_STATUS: &str = "hook_status";
}

/// Any frame on the wire. Requests, responses and notifications share this
/// shape; which members are present says which kind it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub jsonrpc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Frame {
    /// A notification (`method` + `params`, no `id`).
    pub fn notification(method: &str, params: impl Serialize) -> Frame {
        Frame {
            jsonrpc: JSONRPC_VERSION.into(),
            id: None,
            method: Some(method.into()),
            params: Some(to_value(params)),
            result: None,
            error: None,
        }
    }

    /// A request with an id.
    pub fn request(id: u64, method: &str, params: impl Serialize) -> Frame {
        Frame {
            id: Some(Value::from(id)),
            ..Frame::notification(method, params)
        }
    }

    /// A successful response. `id` is echoed as the client sent it.
    pub fn response(id: Value, result: impl Serialize) -> Frame {
        Frame {
            jsonrpc: JSONRPC_VERSION.into(),
            id: Some(id),
            method: None,
            params: None,
            result: Some(to_value(result)),
            error: None,
        }
    }

    /// An error response; `id` is `null` when the request's id is unknown.
    pub fn error(id: Option<Value>, error: RpcError) -> Frame {
        Frame {
            jsonrpc: JSONRPC_VERSION.into(),
            id: Some(id.unwrap_or(Value::Null)),
            method: None,
            params: None,
            result: None,
            error: Some(error),
        }
    }

    pub fn to_json(&self) -> String {
        // A Frame holds only strings, numbers and JSON values: it always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn to_value(v: impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `connected` notification, sent by the server on every new session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connected {
    pub session_id: String,
    pub version: String,
    pub capabilities: Vec<String>,
}

/// Parameters of `execute`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecuteParams {
    pub command: String,
    /// Seconds; fractions allowed. A numeric string (`"10"`) is accepted, as
    /// cc_executor accepts it.
    /// Sent as an integer when whole: cc_executor reads `timeout` as an
    /// `int` and refuses `2.5` (but takes `30` and `30.0`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "seconds_number_or_string",
        serialize_with = "seconds_whole_as_integer"
    )]
    pub timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// How output is framed; sent only to a server that announces
    /// [`BATCHED_OUTPUT`] (absent: one message per line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framing: Option<Framing>,
}

/// How `process.output` frames a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// cc_executor's: one message per line (long lines as chunks).
    #[default]
    Lines,
    /// The bytes as read, many lines per message, up to 64 KiB each,
    /// carried exactly (base64, see [`Encoding`]).
    Batched,
}

impl ExecuteParams {
    pub fn command(command: impl Into<String>) -> Self {
        ExecuteParams {
            command: command.into(),
            ..Default::default()
        }
    }
}

fn seconds_whole_as_integer<S>(seconds: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
{
    match seconds {
        Some(s) if s.fract() == 0.0 && *s >= 0.0 && *s < u64::MAX as f64 => {
            serializer.serialize_some(&(*s as u64))
        }
        Some(s) => serializer.serialize_some(s),
        None => serializer.serialize_none(),
    }
}

/// A `timeout` given as a JSON number or a string holding one; `null` is none.
fn seconds_number_or_string<'de, D>(deserializer: D) -> Result<Option<f64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(f64),
        Text(String),
    }
    match Option::<Seconds>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Seconds::Number(n)) => Ok(Some(n)),
        Some(Seconds::Text(text)) => text.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("timeout {text:?} is not a number of seconds"))
        }),
    }
}

/// Process identity: the result of `execute` and the params of
/// `process.started`, `process.paused`, `process.resumed`, `process.canceled`.
/// cc_executor sends `pgid: null` when it could not read the group in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub status: String,
    pub pid: u32,
    #[serde(default)]
    pub pgid: Option<u32>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompletionStatus {
    /// Exited with status 0.
    Completed,
    /// Exited non-zero, or was killed by a signal ccx did not send.
    Failed,
    /// Ended by CANCEL, a client disconnect, or server shutdown
    /// (cc_executor's spelling; `cancelled` is read too).
    #[serde(alias = "cancelled")]
    Canceled,
    /// Ended because its timeout passed.
    #[serde(alias = "timeout")]
    TimedOut,
}

impl CompletionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CompletionStatus::Completed => "completed",
            CompletionStatus::Failed => "failed",
            CompletionStatus::Canceled => "canceled",
            CompletionStatus::TimedOut => "timed_out",
        }
    }
}

/// `process.completed`. ccx always sends every field; cc_executor sends no
/// `signal` or `duration_ms` and may send `pgid: null`, so a client reads
/// those as optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completed {
    pub status: CompletionStatus,
    pub pid: u32,
    #[serde(default)]
    pub pgid: Option<u32>,
    /// The exit status, or `-N` when killed by signal N.
    pub exit_code: i32,
    /// The signal that killed the process, if any.
    #[serde(default)]
    pub signal: Option<i32>,
    /// Wall time from spawn to reaping (ccx only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// The three control actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ControlType {
    Pause,
    Resume,
    Cancel,
}

impl ControlType {
    /// The status word of the result and the notification suffix.
    pub fn status(self) -> &'static str {
        match self {
            ControlType::Pause => "paused",
            ControlType::Resume => "resumed",
            ControlType::Cancel => "canceled",
        }
    }

    pub fn notification_method(self) -> &'static str {
        match self {
            ControlType::Pause => method::PROCESS_PAUSED,
            ControlType::Resume => method::PROCESS_RESUMED,
            ControlType::Cancel => method::PROCESS_CANCELED,
        }
    }
}

/// Parameters of `control`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlParams {
    #[serde(rename = "type")]
    pub kind: ControlType,
}

/// Result of `control`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlResult {
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_serializes_as_the_design_says() {
        let c = Completed {
            status: CompletionStatus::TimedOut,
            pid: 10,
            pgid: Some(10),
            exit_code: -15,
            signal: Some(15),
            duration_ms: Some(3),
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["status"], "timed_out");
        assert_eq!(v["exit_code"], -15);
        let out = Output {
            stream: StreamKind::Stderr,
            data: "x".into(),
            truncated: false,
            lossy: false,
            chunk_index: None,
            total_chunks: None,
        };
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(v["type"], "stderr");
        assert!(v.get("chunk_index").is_none(), "{v}");
    }

    #[test]
    fn reads_cc_executor_messages() {
        let completed: Completed = serde_json::from_str(
            r#"{"status":"completed","pid":7,"pgid":null,"exit_code":0,"error":null,"execution_time":8.1}"#,
        )
        .unwrap();
        assert_eq!(completed.pgid, None);
        assert_eq!(completed.duration_ms, None);
        let canceled: Completed =
            serde_json::from_str(r#"{"status":"cancelled","pid":7,"pgid":7,"exit_code":-15}"#)
                .unwrap();
        assert_eq!(canceled.status, CompletionStatus::Canceled);
        assert_eq!(
            serde_json::to_value(CompletionStatus::Canceled).unwrap(),
            "canceled"
        );
        let started: ProcessStatus =
            serde_json::from_str(r#"{"status":"started","pid":7,"pgid":null}"#).unwrap();
        assert_eq!(started.pgid, None);
    }

    #[test]
    fn execute_timeout_is_a_number_or_a_numeric_string() {
        let read = |json: &str| serde_json::from_str::<ExecuteParams>(json).map(|p| p.timeout);
        assert_eq!(read(r#"{"command":"x","timeout":10}"#).unwrap(), Some(10.0));
        assert_eq!(
            read(r#"{"command":"x","timeout":"2.5"}"#).unwrap(),
            Some(2.5)
        );
        assert_eq!(read(r#"{"command":"x","timeout":null}"#).unwrap(), None);
        assert_eq!(read(r#"{"command":"x"}"#).unwrap(), None);
        let sent = |t: f64| {
            serde_json::to_string(&ExecuteParams {
                timeout: Some(t),
                ..ExecuteParams::command("x")
            })
            .unwrap()
        };
        assert_eq!(sent(30.0), r#"{"command":"x","timeout":30}"#);
        assert_eq!(sent(2.5), r#"{"command":"x","timeout":2.5}"#);
        let err = read(r#"{"command":"x","timeout":"soon"}"#).unwrap_err();
        assert!(err.to_string().contains("\"soon\""), "{err}");
    }

    #[test]
    fn error_codes_are_cc_executors() {
        assert_eq!(ErrorCode::CommandNotAllowed.code(), -32001);
        assert_eq!(ErrorCode::NoProcess.code(), -32002);
        assert_eq!(ErrorCode::SessionLimit.code(), -32003);
        assert_eq!(ErrorCode::TokenLimit.code(), -32004);
    }
}
