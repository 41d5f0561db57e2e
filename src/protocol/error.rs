//! JSON-RPC errors on the wire: the codes (the standard ones and
//! cc_executor's custom range) and the `error` member of a response.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// JSON-RPC error codes: the standard ones and cc_executor's custom range
/// (its `core/constants.py`), so its clients read ccx's errors unchanged.
/// A second `execute` while one runs is `InvalidParams`, as in cc_executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ParseError,
    InvalidRequest,
    MethodNotFound,
    InvalidParams,
    Internal,
    CommandNotAllowed,
    NoProcess,
    SessionLimit,
    TokenLimit,
}

impl ErrorCode {
    pub const fn code(self) -> i64 {
        match self {
            ErrorCode::ParseError => -32700,
            ErrorCode::InvalidRequest => -32600,
            ErrorCode::MethodNotFound => -32601,
            ErrorCode::InvalidParams => -32602,
            ErrorCode::Internal => -32603,
            ErrorCode::CommandNotAllowed => -32001,
            ErrorCode::NoProcess => -32002,
            ErrorCode::SessionLimit => -32003,
            ErrorCode::TokenLimit => -32004,
        }
    }
}

/// The `error` member of a JSON-RPC response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError {
            code: code.code(),
            message: message.into(),
            data: None,
        }
    }

    /// -32003 with cc_executor's wording; `variable` is the name the limit
    /// was configured by (`MAX_SESSIONS` or `CCX_MAX_SESSIONS`).
    pub fn session_limit(max: usize, variable: &str) -> Self {
        RpcError::new(
            ErrorCode::SessionLimit,
            format!("Session limit exceeded: {max} sessions are open ({variable})"),
        )
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}
