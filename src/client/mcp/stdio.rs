//! The stdio transport of the MCP client: the server command in its own
//! process group, its stdin for requests, its stdout read line by line for
//! answers (and for lines that are not JSON-RPC, kept for the report), its
//! stderr drained to the end into a bounded tail.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::time::timeout;

use super::{truncate, McpClientError, STDERR_TAIL};
use crate::process::Group;

pub(super) struct StdioConn {
    pub(super) child: Child,
    pub(super) group: Group,
    pub(super) stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    pub(super) stderr: Arc<Mutex<Vec<u8>>>,
    /// Lines the server wrote to stdout that are not JSON-RPC (at most
    /// [`STRAY_LINES`]): the most common bug of a stdio server is a log
    /// line or banner there.
    pub(super) stray: Vec<String>,
}

/// Non-JSON stdout lines kept for the report.
const STRAY_LINES: usize = 10;

impl StdioConn {
    pub(super) fn spawn(mut cmd: tokio::process::Command) -> Result<StdioConn, McpClientError> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(McpClientError::Spawn)?;
        let group = Group(child.id().unwrap_or_default());
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(McpClientError::Spawn(std::io::Error::other(
                "the child's pipes are missing",
            )));
        };
        let tail = Arc::new(Mutex::new(Vec::new()));
        let sink = tail.clone();
        // Read to EOF whatever happens: a server blocked on a full stderr
        // pipe would look like a hang.
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut kept) = sink.lock() {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * STDERR_TAIL {
                        let cut = kept.len() - STDERR_TAIL;
                        kept.drain(..cut);
                    }
                }
            }
        });
        Ok(StdioConn {
            child,
            group,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout).lines(),
            stderr: tail,
            stray: Vec::new(),
        })
    }

    pub(super) async fn exchange(
        &mut self,
        message: Value,
        id: Option<u64>,
    ) -> Result<Option<Value>, McpClientError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| McpClientError::Io("stdin is closed".into()))?;
        let mut line = message.to_string();
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            return Err(self.exited().await);
        }
        let Some(id) = id else { return Ok(None) };
        loop {
            let line = match self.stdout.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => return Err(self.exited().await),
                Err(e) => return Err(McpClientError::Io(e.to_string())),
            };
            if line.trim().is_empty() {
                continue;
            }
            let Ok(value) = serde_json::from_str::<Value>(&line) else {
                self.keep_stray(&line);
                return Err(McpClientError::NotJsonRpc(format!(
                    "stdout line {:?} (an MCP stdio server must write only JSON-RPC to stdout; logs go to stderr)",
                    truncate(&crate::sanitize::captured(&line))
                )));
            };
            if value.get("id").and_then(Value::as_u64) == Some(id) && value.get("method").is_none()
            {
                return Ok(Some(value));
            }
        }
    }

    fn keep_stray(&mut self, line: &str) {
        if self.stray.len() < STRAY_LINES {
            self.stray
                .push(truncate(&crate::sanitize::captured(line.trim_end())));
        }
    }

    /// Reads what the server left on stdout (for at most `within`),
    /// keeping the lines that are not JSON.
    pub(super) async fn drain_stdout(&mut self, within: Duration) {
        let until = tokio::time::Instant::now() + within;
        while let Ok(Ok(Some(line))) = tokio::time::timeout_at(until, self.stdout.next_line()).await
        {
            if !line.trim().is_empty() && serde_json::from_str::<Value>(&line).is_err() {
                self.keep_stray(&line);
            }
        }
    }

    async fn exited(&mut self) -> McpClientError {
        let status = timeout(Duration::from_secs(2), self.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        self.drain_stdout(Duration::from_millis(200)).await;
        McpClientError::Exited {
            status: status.and_then(|s| s.code()),
        }
    }
}
