//! The `execute` tool: one shell command under the server's process rules
//! (shell, process group, timeout, kill grace, output cap, allowlist), its
//! output as text content (its head and tail when over CCX_MCP_MAX_OUTPUT,
//! bounded while it runs: `super::output`), `{exit_code, signal, status, truncated,
//! duration_ms}` as structured content, `isError` when it did not succeed,
//! output as `notifications/progress` while it runs (when the caller sent a
//! progress token), and the whole process group ended when the request is
//! cancelled or its connection goes away.
//!
//! The process runner is `crate::process`; this file only translates.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolResult, ContentBlock, JsonObject, ProgressNotificationParam, ProgressToken, Tool,
};
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::output::HeadTail;
use crate::config::Config;
use crate::process::admission::AdmissionError;
use crate::process::{Executor, ProcessEvent, SpawnError, StartError, StopReason};
use crate::protocol::{CompletionStatus, ExecuteParams, DRAINING_NO_COMMAND};

pub const NAME: &str = "execute";

/// How long one progress notification may wait for the transport before
/// it is dropped (a client that stopped reading must not stall the command).
const PROGRESS_SEND_LIMIT: Duration = Duration::from_secs(5);

/// The structured content of an `execute` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The exit status, or `-N` when killed by signal N.
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// `completed`, `failed`, `timed_out` or `canceled`.
    pub status: String,
    /// True when output was cut: at the process's output cap
    /// (CCX_MAX_OUTPUT), or in the middle to fit the result's
    /// (CCX_MCP_MAX_OUTPUT).
    pub truncated: bool,
    pub duration_ms: u64,
}

fn object(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// The tool as `tools/list` describes it.
pub fn tool() -> Tool {
    let input = json!({
        "type": "object",
        "properties": {
            "command": {
                "type": "string",
                "description": "Shell command line, run by the server's shell (CCX_SHELL, /bin/sh) with -c"
            },
            "timeout": {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": "Seconds before the command's process group is ended (default: CCX_DEFAULT_TIMEOUT, none)"
            },
            "cwd": {"type": "string", "description": "Working directory (must exist)"},
            "env": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Variables added to the command's environment"
            }
        },
        "required": ["command"]
    });
    let output = json!({
        "type": "object",
        "properties": {
            "exit_code": {"type": "integer", "description": "exit status, or -N when killed by signal N"},
            "signal": {"type": ["integer", "null"]},
            "status": {"type": "string", "enum": ["completed", "failed", "timed_out", "canceled"]},
            "truncated": {"type": "boolean"},
            "duration_ms": {"type": "integer", "minimum": 0}
        },
        "required": ["exit_code", "signal", "status", "truncated", "duration_ms"]
    });
    Tool::new(
        NAME,
        "Run a shell command on the server's machine in its own process group and return its \
         output (stdout and stderr, in arrival order), exit code and status. isError is true \
         when the command exits non-zero, times out or is cancelled.",
        object(input),
    )
    .with_raw_output_schema(object(output))
}

/// A result for a call that could not start a command.
fn refused(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

/// Runs one `execute` call to its end.
pub async fn call(
    config: &Config,
    executor: &Executor,
    draining: Option<&CancellationToken>,
    arguments: Option<JsonObject>,
    context: RequestContext<RoleServer>,
) -> CallToolResult {
    if draining.is_some_and(CancellationToken::is_cancelled) {
        return refused(DRAINING_NO_COMMAND);
    }
    let arguments = Value::Object(arguments.unwrap_or_default());
    let params: ExecuteParams = match serde_json::from_value(arguments) {
        Ok(p) => p,
        Err(e) => {
            return refused(format!(
                "invalid arguments for execute: {e}; e.g. {{\"command\": \"echo hi\"}}"
            ))
        }
    };
    let (running, mut events) = match executor.start(&params) {
        Ok(started) => started,
        Err(StartError::Refused(e @ AdmissionError::Spec(_))) => {
            return refused(format!("invalid arguments for execute: {e}"))
        }
        Err(StartError::Refused(e @ AdmissionError::Invalid(_))) => {
            return refused(format!("invalid params: {e}"))
        }
        Err(StartError::Refused(e @ AdmissionError::NotAllowed(_))) => {
            return refused(e.to_string())
        }
        Err(StartError::Spawn(e @ SpawnError::BadCwd(_))) => {
            return refused(format!("invalid arguments: {e}"))
        }
        Err(StartError::Spawn(e)) => return refused(e.to_string()),
    };
    tracing::info!(pid = running.pid, "mcp execute started");

    let progress = context.meta.get_progress_token();
    let mut sent = 0u64;
    let mut output = HeadTail::new(config.mcp_max_output);
    let mut truncated = false;
    let mut cancel_open = true;
    let completed = loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = context.ct.cancelled(), if cancel_open => {
                cancel_open = false;
                tracing::info!(pid = running.pid, "mcp execute cancelled (request cancelled, session closed or server stopping)");
                running.stop(StopReason::Cancel, config.kill_grace);
                continue;
            }
        };
        match event {
            Some(ProcessEvent::Output(batch)) => {
                for chunk in batch {
                    truncated |= chunk.truncated;
                    // MCP runs commands line-framed: the data is text.
                    let text = chunk.data.to_text();
                    if let Some(token) = &progress {
                        sent += 1;
                        notify(&context, token, sent, &text).await;
                    }
                    output.push(&text);
                }
            }
            Some(ProcessEvent::Completed(c)) => break Some(c),
            None => break None,
        }
    };
    drop(running);
    let Some(completed) = completed else {
        return refused("the process runner ended without a completion (internal error)");
    };
    tracing::info!(
        pid = completed.pid,
        status = completed.status.as_str(),
        exit_code = completed.exit_code,
        "mcp execute completed"
    );
    let output_left_out = output.omitted() > 0;
    let output = output.finish();
    let outcome = Outcome {
        exit_code: completed.exit_code,
        signal: completed.signal,
        status: completed.status.as_str().into(),
        truncated: truncated || output_left_out,
        duration_ms: completed.duration_ms.unwrap_or_default(),
    };
    let mut content = Vec::new();
    if !output.is_empty() {
        content.push(ContentBlock::text(output));
    }
    content.push(ContentBlock::text(summary(&outcome)));
    let structured = serde_json::to_value(&outcome).unwrap_or_default();
    let mut result = if completed.status == CompletionStatus::Completed {
        CallToolResult::success(content)
    } else {
        CallToolResult::error(content)
    };
    result.structured_content = Some(structured);
    result
}

/// One line a model reads after the output: how the command ended.
fn summary(o: &Outcome) -> String {
    let how = match (o.status.as_str(), o.signal) {
        ("timed_out", _) => "timed out and was ended".to_string(),
        ("canceled", _) => "was cancelled".to_string(),
        (_, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("exited with code {}", o.exit_code),
    };
    let cut = if o.truncated {
        " (output truncated at the server's output caps)"
    } else {
        ""
    };
    format!("[command {how} after {} ms{cut}]", o.duration_ms)
}

async fn notify(context: &RequestContext<RoleServer>, token: &ProgressToken, n: u64, data: &str) {
    let param = ProgressNotificationParam::new(token.clone(), n as f64).with_message(data);
    match tokio::time::timeout(PROGRESS_SEND_LIMIT, context.peer.notify_progress(param)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("progress notification not sent: {e}"),
        Err(_) => tracing::debug!("progress notification dropped: the transport took none for 5s"),
    }
}
