//! The MCP load generator: one Streamable HTTP session the way an SDK
//! client holds it (one keep-alive HTTP/1.1 connection, `initialize`, then
//! `tools/call` requests carrying `Mcp-Session-Id`), timing sequential
//! `execute` calls of `echo x`. It reads the answer whether the server sends
//! JSON or an SSE stream, and checks the output before it counts a call.
//!
//! Every wait has a deadline and every loop a bound in count and time.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::error::BenchError;
use crate::load::new_histogram;

const DEADLINE: Duration = Duration::from_secs(30);
const PROTOCOL: &str = "2025-11-25";

/// A Streamable HTTP endpoint (`http://127.0.0.1:PORT/mcp`) under a name.
pub struct McpHttpTarget {
    pub name: &'static str,
    pub port: u16,
}

/// One open MCP session on one connection.
struct Session {
    name: &'static str,
    authority: String,
    sender: SendRequest<Full<Bytes>>,
    session: Option<String>,
    next_id: u64,
}

impl Session {
    async fn open(target: &McpHttpTarget) -> Result<Session, BenchError> {
        let authority = format!("127.0.0.1:{}", target.port);
        let err = |reason: String| BenchError::wire(target.name, reason);
        let stream = timeout(DEADLINE, TcpStream::connect(&authority))
            .await
            .map_err(|_| err("no connection within 30 s".into()))?
            .map_err(|e| err(format!("connect {authority}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| err(format!("HTTP handshake: {e}")))?;
        // Ends with the connection, when the sender is dropped.
        tokio::spawn(connection);
        let mut session = Session {
            name: target.name,
            authority,
            sender,
            session: None,
            next_id: 0,
        };
        let params = json!({
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "ccx-bench", "version": "1"},
        });
        session.call("initialize", params).await?;
        session
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(session)
    }

    /// POSTs one message; the body of the answer.
    async fn post(&mut self, message: Value) -> Result<String, BenchError> {
        self.send("POST", message.to_string()).await
    }

    /// Ends the session (`DELETE /mcp`), as SDK clients do on close.
    async fn close(mut self) -> Result<(), BenchError> {
        self.send("DELETE", String::new()).await.map(|_| ())
    }

    async fn send(&mut self, method: &str, body: String) -> Result<String, BenchError> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri("/mcp")
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::ACCEPT, "application/json, text/event-stream")
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(id) = &self.session {
            request = request
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", PROTOCOL);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.err(format!("request: {e}")))?;
        let exchange = async {
            self.sender
                .ready()
                .await
                .map_err(|e| format!("connection: {e}"))?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let status = response.status();
            let session = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, session, body))
        };
        let (status, session, body) = timeout(DEADLINE, exchange)
            .await
            .map_err(|_| self.err("no answer within 30 s"))?
            .map_err(|e| self.err(e))?;
        let body = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            return Err(self.err(format!("HTTP {status}: {}", body.trim())));
        }
        if session.is_some() {
            self.session = session;
        }
        Ok(body)
    }

    /// One request; its `result`.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, BenchError> {
        self.next_id += 1;
        let id = self.next_id;
        let body = self
            .post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        let answer = messages(&body)
            .into_iter()
            .find(|m| m.get("id").and_then(Value::as_u64) == Some(id))
            .ok_or_else(|| self.err(format!("no answer to {method} in: {}", body.trim())))?;
        if let Some(error) = answer.get("error") {
            return Err(self.err(format!("{method} failed: {error}")));
        }
        answer
            .get("result")
            .cloned()
            .ok_or_else(|| self.err(format!("{method}: no result in {answer}")))
    }

    /// `tools/call execute` of `echo x`; fails unless the text is `x`.
    async fn echo(&mut self) -> Result<(), BenchError> {
        let params = json!({"name": "execute", "arguments": {"command": "echo x"}});
        let result = self.call("tools/call", params).await?;
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        if result["isError"] == json!(true) || text.trim_end() != "x" {
            return Err(self.err(format!("`echo x` answered {result}")));
        }
        Ok(())
    }

    fn err(&self, reason: impl Into<String>) -> BenchError {
        BenchError::wire(self.name, reason)
    }
}

/// The JSON-RPC messages of an answer: a JSON body (one message or a batch)
/// or the `data` of each event of an SSE body.
fn messages(body: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(items)) => items,
        Ok(one) => vec![one],
        Err(_) => body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim_start()).ok())
            .collect(),
    }
}

/// Sequential `execute` calls of `echo x` on one session: latencies, after
/// ten unrecorded warm-up calls.
pub async fn sequential(
    target: &McpHttpTarget,
    runs: usize,
    limit: Duration,
) -> Result<Histogram<u64>, BenchError> {
    let mut session = Session::open(target).await?;
    for _ in 0..10 {
        session.echo().await?;
    }
    let mut hist = new_histogram();
    let end = Instant::now() + limit;
    for _ in 0..runs {
        let t0 = Instant::now();
        session.echo().await?;
        let _ = hist.record(t0.elapsed().as_nanos() as u64);
        if Instant::now() > end {
            break;
        }
    }
    session.close().await?;
    Ok(hist)
}
