//! `ccx mcp`: the MCP server on stdin/stdout (newline-delimited JSON-RPC),
//! as MCP hosts such as Claude Code start it. Nothing but protocol messages
//! goes to stdout; logs go to stderr.
//!
//! The SDK ignores a line that is not JSON at all (rmcp#938: a reply could
//! start an error storm with a peer that echoes); JSON-RPC 2.0 asks for a
//! -32700 answer, and a client that sent garbage deserves to learn it. So
//! stdin passes through a small filter that answers unparsable lines itself
//! and forwards the rest to the SDK; one writer task owns stdout.

use std::sync::Arc;

use rmcp::ServiceExt;
use serde_json::{json, Value};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Tools;
use crate::config::Config;

/// Bytes buffered between the filter and the SDK in each direction.
const PIPE_BUFFER: usize = 64 * 1024;
/// Lines queued for stdout.
const OUT_QUEUE: usize = 16;

#[derive(Debug, Error)]
pub enum StdioError {
    #[error("MCP over stdio could not start: {0}")]
    Start(String),
    #[error("MCP over stdio failed: {0}")]
    Serve(String),
}

/// Serves one client on stdin/stdout until it closes stdin or `shutdown`
/// is cancelled. Commands still running then are ended with their group.
pub async fn serve(config: Config, shutdown: CancellationToken) -> Result<(), StdioError> {
    serve_on(config, tokio::io::stdin(), tokio::io::stdout(), shutdown).await
}

/// [`serve`] on any pair of streams.
pub async fn serve_on(
    config: Config,
    input: impl AsyncRead + Unpin + Send + 'static,
    output: impl AsyncWrite + Unpin + Send + 'static,
    shutdown: CancellationToken,
) -> Result<(), StdioError> {
    let (sdk_side, our_side) = tokio::io::duplex(PIPE_BUFFER);
    let (from_sdk, to_sdk) = tokio::io::split(our_side);
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(OUT_QUEUE);
    let writer = tokio::spawn(write_lines(out_rx, output));
    tokio::spawn(forward_sdk_output(from_sdk, out_tx.clone()));
    tokio::spawn(filter_input(input, to_sdk, out_tx));

    let tools = Tools::new(Arc::new(config));
    let served = match tools.serve_with_ct(sdk_side, shutdown).await {
        Ok(service) => service
            .waiting()
            .await
            .map(|_| ())
            .map_err(|e| StdioError::Serve(e.to_string())),
        Err(e) => Err(StdioError::Start(e.to_string())),
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    served
}

/// Stdin → the SDK, line by line; a line that is not JSON is answered with
/// -32700 here. EOF on stdin closes the SDK's input, which ends the service.
async fn filter_input(
    input: impl AsyncRead + Unpin,
    mut to_sdk: impl AsyncWrite + Unpin,
    out: mpsc::Sender<Vec<u8>>,
) {
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Err(e) = serde_json::from_slice::<Value>(text) {
            let error = json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": {"code": -32700, "message": format!("Parse error: not JSON ({e})")},
            });
            let mut bytes = error.to_string().into_bytes();
            bytes.push(b'\n');
            if out.send(bytes).await.is_err() {
                break;
            }
            continue;
        }
        if to_sdk.write_all(text).await.is_err() || to_sdk.write_all(b"\n").await.is_err() {
            break;
        }
    }
    let _ = to_sdk.shutdown().await;
}

/// The SDK's output → the stdout writer, a line at a time.
async fn forward_sdk_output(from_sdk: impl AsyncRead + Unpin, out: mpsc::Sender<Vec<u8>>) {
    let mut reader = BufReader::new(from_sdk);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if out.send(line).await.is_err() {
                    break;
                }
            }
        }
    }
}

async fn write_lines(mut lines: mpsc::Receiver<Vec<u8>>, mut output: impl AsyncWrite + Unpin) {
    while let Some(line) = lines.recv().await {
        if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
            break;
        }
    }
}
