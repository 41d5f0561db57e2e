//! The small MCP client the doctor uses to check any MCP server, ccx's or
//! another: the `initialize` handshake (the revision every SDK serves),
//! requests and notifications, over stdio (a server command it starts) or
//! Streamable HTTP (POST; JSON or SSE answers; `Mcp-Session-Id`).
//!
//! Hand-written on purpose: a diagnosis needs every failure by name (the
//! HTTP status, the server's stderr, a line that is not JSON-RPC), which a
//! full SDK client hides. It knows nothing of ccx's server internals.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{json, Value};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::protocol::{Endpoint, Scheme};
use stdio::StdioConn;

mod stdio;

/// The revision the client asks for in `initialize`.
pub const CLIENT_PROTOCOL_VERSION: &str = "2025-11-25";
/// Every revision with an `initialize` handshake.
pub const HANDSHAKE_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Bytes of the server's stderr kept for the report.
const STDERR_TAIL: usize = 8 * 1024;

#[derive(Debug, Error)]
pub enum McpClientError {
    #[error("cannot start the server command: {0}")]
    Spawn(std::io::Error),
    #[error("the server exited before answering{}", exit_text(.status))]
    Exited { status: Option<i32> },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    #[error("HTTP {status}{}", if body.is_empty() { " (empty body)".to_string() } else { format!(": {body}") })]
    Http { status: u16, body: String },
    #[error("I/O error: {0}")]
    Io(String),
    #[error("the server sent something that is not JSON-RPC: {0}")]
    NotJsonRpc(String),
    #[error("JSON-RPC error {code}: {message}")]
    Rpc { code: i64, message: String },
    #[error("unsupported URL {0:?}: expected http://HOST:PORT/PATH")]
    BadUrl(String),
}

fn exit_text(status: &Option<i32>) -> String {
    status
        .map(|s| format!(" (exit status {s})"))
        .unwrap_or_default()
}

/// Where the server is.
#[derive(Debug, Clone)]
pub enum McpTarget {
    /// A command run by `/bin/sh -c`, speaking MCP on its stdin/stdout.
    Stdio { command: String },
    /// Another program with arguments (ccx's own `ccx mcp`).
    Program {
        program: std::path::PathBuf,
        args: Vec<String>,
    },
    /// A Streamable HTTP endpoint, with the bearer token to send.
    Http { url: String, token: Option<String> },
}

impl McpTarget {
    pub fn describe(&self) -> String {
        match self {
            McpTarget::Stdio { command } => format!("stdio: {command}"),
            McpTarget::Program { program, args } => {
                format!("stdio: {} {}", program.display(), args.join(" "))
            }
            McpTarget::Http { url, .. } => url.clone(),
        }
    }
}

/// A connection to one MCP server.
pub struct McpClient {
    transport: Transport,
    next_id: u64,
    /// A request went unanswered past its deadline: a server that ignores
    /// requests is not given time to notice its stdin close either.
    unresponsive: bool,
}

enum Transport {
    Stdio(Box<StdioConn>),
    Http(HttpConn),
}

struct HttpConn {
    authority: String,
    path: String,
    token: Option<String>,
    session: Option<String>,
    protocol: Option<String>,
}

impl McpClient {
    /// Starts the server (stdio) or checks the URL (HTTP); nothing is sent yet.
    pub fn connect(target: &McpTarget) -> Result<McpClient, McpClientError> {
        let transport = match target {
            McpTarget::Stdio { command } => {
                let mut cmd = tokio::process::Command::new("/bin/sh");
                cmd.arg("-c").arg(command);
                Transport::Stdio(Box::new(StdioConn::spawn(cmd)?))
            }
            McpTarget::Program { program, args } => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args);
                Transport::Stdio(Box::new(StdioConn::spawn(cmd)?))
            }
            McpTarget::Http { url, token } => {
                let endpoint = Endpoint::parse(url)
                    .ok()
                    .filter(|e| e.scheme() == Scheme::Http)
                    .ok_or_else(|| McpClientError::BadUrl(url.clone()))?;
                Transport::Http(HttpConn {
                    authority: endpoint.authority(),
                    path: endpoint.path().to_string(),
                    token: token.clone(),
                    session: None,
                    protocol: None,
                })
            }
        };
        Ok(McpClient {
            transport,
            next_id: 1,
            unresponsive: false,
        })
    }

    /// `initialize` then `notifications/initialized`; returns the result.
    pub async fn initialize(&mut self, deadline: Duration) -> Result<Value, McpClientError> {
        let params = json!({
            "protocolVersion": CLIENT_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "ccx-doctor", "version": crate::VERSION},
        });
        let result = self.request("initialize", params, deadline).await?;
        if let Transport::Http(http) = &mut self.transport {
            http.protocol = result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        self.notify("notifications/initialized", deadline).await?;
        Ok(result)
    }

    /// One request; its result, or the JSON-RPC error as [`McpClientError::Rpc`].
    pub async fn request(
        &mut self,
        method: &str,
        params: Value,
        deadline: Duration,
    ) -> Result<Value, McpClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let Ok(answer) = timeout(deadline, self.exchange(message, Some(id))).await else {
            self.unresponsive = true;
            return Err(McpClientError::Timeout(deadline));
        };
        let answer = answer?;
        let answer = answer.ok_or_else(|| McpClientError::NotJsonRpc("no response".into()))?;
        if let Some(error) = answer.get("error") {
            return Err(McpClientError::Rpc {
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
                    .to_string(),
            });
        }
        answer
            .get("result")
            .cloned()
            .ok_or_else(|| McpClientError::NotJsonRpc(truncate(&answer.to_string())))
    }

    async fn notify(&mut self, method: &str, deadline: Duration) -> Result<(), McpClientError> {
        let message = json!({"jsonrpc": "2.0", "method": method});
        timeout(deadline, self.exchange(message, None))
            .await
            .map_err(|_| McpClientError::Timeout(deadline))?
            .map(|_| ())
    }

    async fn exchange(
        &mut self,
        message: Value,
        id: Option<u64>,
    ) -> Result<Option<Value>, McpClientError> {
        match &mut self.transport {
            Transport::Stdio(conn) => conn.exchange(message, id).await,
            Transport::Http(conn) => conn.exchange(message, id).await,
        }
    }

    /// Lines a stdio server wrote to stdout that are not JSON-RPC (empty
    /// for HTTP), after reading briefly what it left there.
    pub async fn stray_stdout(&mut self) -> Vec<String> {
        let Transport::Stdio(conn) = &mut self.transport else {
            return Vec::new();
        };
        conn.drain_stdout(Duration::from_millis(100)).await;
        conn.stray.clone()
    }

    /// The last lines of a stdio server's stderr (empty for HTTP).
    pub fn stderr_tail(&self, lines: usize) -> Vec<String> {
        let Transport::Stdio(conn) = &self.transport else {
            return Vec::new();
        };
        let bytes = conn.stderr.lock().map(|b| b.clone()).unwrap_or_default();
        let text = crate::sanitize::captured(&String::from_utf8_lossy(&bytes));
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        all[all.len().saturating_sub(lines)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    /// Ends the session: DELETE for HTTP; for stdio, stdin closed, then the
    /// server's whole process group ended and waited for.
    pub async fn close(self) {
        match self.transport {
            Transport::Stdio(mut conn) => {
                drop(conn.stdin.take());
                // A stdio server ends when its stdin closes; one that does
                // not is stopped with its group.
                let wait = if self.unresponsive {
                    Duration::from_millis(200)
                } else {
                    Duration::from_secs(2)
                };
                if timeout(wait, conn.child.wait()).await.is_err() {
                    crate::process::stop_child(&mut conn.child, conn.group, Duration::from_secs(1))
                        .await;
                }
                conn.group.stop(Duration::from_secs(1)).await;
            }
            Transport::Http(conn) => {
                if conn.session.is_some() {
                    let _ = timeout(Duration::from_secs(2), conn.send("DELETE", None)).await;
                }
            }
        }
    }
}

fn truncate(text: &str) -> String {
    const MAX: usize = 300;
    if text.len() <= MAX {
        return text.to_string();
    }
    format!(
        "{}…",
        &text[..crate::sanitize::floor_char_boundary(text, MAX)]
    )
}

impl HttpConn {
    async fn exchange(
        &mut self,
        message: Value,
        id: Option<u64>,
    ) -> Result<Option<Value>, McpClientError> {
        let (status, headers, body) = self.send("POST", Some(message.to_string())).await?;
        if !(200..300).contains(&status) {
            return Err(McpClientError::Http {
                status,
                body: truncate(body.trim()),
            });
        }
        if let Some(session) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            self.session = Some(session.to_string());
        }
        let Some(id) = id else { return Ok(None) };
        let is_sse = headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let messages: Vec<Value> = if is_sse {
            sse_data(&body)
                .iter()
                .filter_map(|d| serde_json::from_str(d).ok())
                .collect()
        } else {
            match serde_json::from_str::<Value>(&body) {
                Ok(Value::Array(items)) => items,
                Ok(one) => vec![one],
                Err(_) => return Err(McpClientError::NotJsonRpc(truncate(body.trim()))),
            }
        };
        messages
            .into_iter()
            .find(|m| m.get("id").and_then(Value::as_u64) == Some(id) && m.get("method").is_none())
            .map(Some)
            .ok_or_else(|| {
                McpClientError::NotJsonRpc(format!(
                    "no response with id {id} in the answer: {}",
                    truncate(body.trim())
                ))
            })
    }

    async fn send(
        &self,
        method: &str,
        body: Option<String>,
    ) -> Result<(u16, hyper::HeaderMap, String), McpClientError> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|source| McpClientError::Connect {
                authority: self.authority.clone(),
                source,
            })?;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(&self.path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::ACCEPT, "application/json, text/event-stream")
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(protocol) = &self.protocol {
            request = request.header("mcp-protocol-version", protocol);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| McpClientError::Io(e.to_string()))?;
        let (status, headers, bytes) = super::http::exchange(stream, request)
            .await
            .map_err(|e| McpClientError::Io(e.to_string()))?;
        Ok((
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    }
}

/// The `data` of each event of a text/event-stream body.
fn sse_data(body: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    for line in body.lines() {
        if line.is_empty() {
            if !data.is_empty() {
                events.push(data.join("\n"));
                data.clear();
            }
        } else if let Some(rest) = line.strip_prefix("data:") {
            data.push(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    if !data.is_empty() {
        events.push(data.join("\n"));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_join_their_data_lines() {
        let body = "event: message\ndata: {\"a\":1}\n\nid: 2\ndata: x\ndata: y\n\n: comment\n";
        assert_eq!(
            sse_data(body),
            vec!["{\"a\":1}".to_string(), "x\ny".to_string()]
        );
    }
}
