//! `ccx mcp`: the MCP server on stdin/stdout (newline-delimited JSON-RPC),
//! as MCP hosts such as Claude Code start it. Nothing but protocol messages
//! goes to stdout; logs go to stderr.

use std::sync::Arc;

use rmcp::ServiceExt;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use super::Tools;
use crate::config::Config;

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
    let tools = Tools::new(Arc::new(config));
    let service = tools
        .serve_with_ct(rmcp::transport::stdio(), shutdown)
        .await
        .map_err(|e| StdioError::Start(e.to_string()))?;
    service
        .waiting()
        .await
        .map(|_| ())
        .map_err(|e| StdioError::Serve(e.to_string()))
}
